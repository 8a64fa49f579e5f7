"""Benchmark: FiftyOne → Label Studio push and Label Studio → FiftyOne pull of N samples, activeft vs FiftyOne.

On the same N real PNG images (Fashion-MNIST, else scikit-learn digits), the
same Label Studio server (started here, local-files serving) and the same
FiftyOne database:

* activeft: ``activeft_label.sync.push`` of a dataset whose selection run
  holds all N samples (made beforehand with ``method="random"`` on stored
  vectors, timed apart: this measures the sync, not the selection), then the
  same push again (a no-op); after every task got an annotation,
  ``activeft_label.sync.pull`` into a label field, then again (a no-op).
* FiftyOne: ``dataset.annotate(key, backend="labelstudio", ...)`` on a
  dataset of the same files (classification, same classes, local files via
  the ``LABEL_STUDIO_LOCAL_FILES_*`` variables that FiftyOne reads), then
  ``dataset.load_annotations(key)`` after the same annotations were made in
  its project.

The annotations are made the same way for both projects, outside the timed
parts: one prediction per task (imported in bulk), turned into annotations
by Label Studio's own "predictions to annotations" action.

With ``--compare export`` the pull is also measured the way earlier versions
read the annotations, through Label Studio's one-request JSON export
(``GET /api/projects/ID/export``, deprecated, 404 on Label Studio
Enterprise), side by side with the paginated task list that
:func:`activeft_label.connectors.labelstudio.export_tasks` reads now: each way
pulls into a fresh label field (so each writes every label), in turns
(task list, export, task list, export, ... ``--repeats`` times), and the read
alone (``export_tasks``) is timed after each pull.  The old way is run by
handing ``sync.pull`` the connector's ``export_tasks(..., via="export")``.

Run::

    python bench/sync_roundtrip.py --size 10000 --results bench/RESULTS.md
    python bench/sync_roundtrip.py --size 10000 --skip-fiftyone --compare export --results bench/RESULTS.md
"""

import argparse
import datetime
import functools
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLASSES = ["top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def annotate_every_task(conn, project_id, label_of_task):
    """Give every task of a project one annotation (choice ``label_of_task(task)``), in bulk."""
    from activeft_label.connectors import labelstudio as ls

    project = ls.get_project(conn, project_id)
    control = ls.label_controls(project["label_config"])[0]
    image = ls.image_field(project["label_config"])
    import xml.etree.ElementTree as ET

    to_name = next(e.get("name") for e in ET.fromstring(project["label_config"]).iter("Image")
                   if e.get("value") == f"${image}")
    tasks = ls.pull_tasks(conn, project_id)
    predictions = [{"task": task["id"], "model_version": "bench", "result": [
        {"from_name": control["name"], "to_name": to_name, "type": "choices",
         "value": {"choices": [label_of_task(task)]}}]} for task in tasks]
    for start in range(0, len(predictions), 1000):
        conn.client.projects.import_predictions(id=int(project_id), request=predictions[start:start + 1000])
    conn.client.actions.create(id="predictions_to_annotations", project=int(project_id),
                               selected_items={"all": True},
                               request_options={"additional_body_parameters": {"model_version": "bench"}})
    annotated = sum(1 for t in ls.pull_tasks(conn, project_id) if t["annotations"])
    assert annotated == len(tasks), f"{annotated} of {len(tasks)} tasks annotated"
    return len(tasks)


def compare_pulls(dataset, conn, project_id, size, repeats, class_of, path_of):
    """Pull ``repeats`` times each way, in turns, each into a fresh label field; {step: [seconds, ...]}."""
    from activeft_label import sync
    from activeft_label.connectors import labelstudio as ls

    current = ls.export_tasks
    ways = {"tasks": current, "export": functools.partial(current, via="export")}
    times = {}
    for turn in range(repeats):
        for way, read in ways.items():
            field = f"gt_{way}_{turn}"
            ls.export_tasks = read  # what sync.pull calls (through the package)
            try:
                started = time.perf_counter()
                pulled = sync.pull(dataset, conn, project_id, field)
                elapsed = time.perf_counter() - started
            finally:
                ls.export_tasks = current
            assert len(pulled.written) == size, pulled.describe()
            labels = dict(zip(*dataset.values(["filepath", f"{field}.label"])))
            assert sum(1 for path, label in labels.items() if class_of[path] != label) == 0
            times.setdefault(f"pull via {way}", []).append(elapsed)
            started = time.perf_counter()
            tasks = read(conn, project_id)
            times.setdefault(f"read via {way}", []).append(time.perf_counter() - started)
            annotations = sum(len(task.get("annotations") or []) for task in tasks)
            assert len(tasks) == size and annotations == size, (len(tasks), annotations)
    return times


def machine():
    """(CPU model from lscpu, date from `date`)."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "unknown")
    except (OSError, subprocess.CalledProcessError):
        model = "unknown"
    try:
        date = subprocess.run(["date"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        date = datetime.datetime.now().isoformat(timespec="seconds")
    return model, date


def append_comparison(args, compare, fiftyone_version):
    from importlib.metadata import version

    from activeft_label.connectors import labelstudio as ls

    model, date = machine()
    mean = {key: sum(values) / len(values) for key, values in compare.items()}
    lines = [
        f"\n## Pull: task list vs the deprecated export, {args.size} annotations — "
        f"{datetime.date.today().isoformat()}\n",
        f"`lscpu`: {model}, {os.cpu_count()} CPU cores (shared with other jobs); `date`: {date}. Python "
        f"{platform.python_version()}, label-studio {version('label-studio')} (sqlite, dev server), label-studio-sdk "
        f"{version('label-studio-sdk')}, fiftyone {fiftyone_version}. Command: `python bench/sync_roundtrip.py --size "
        f"{args.size} --skip-fiftyone --compare export --repeats {args.repeats}` (one run, one server, one project "
        f"of {args.size} tasks with one annotation each; the two ways in turns, each pull into a fresh label field).\n",
        "| step | way | runs (s) | mean (s) | annotations/s | export / task list |",
        "|---|---|---|---:|---:|---:|",
    ]
    for step in ("pull", "read"):
        for way in ("tasks", "export"):
            key = f"{step} via {way}"
            ratio = mean[f"{step} via export"] / mean[f"{step} via tasks"]
            lines.append(f"| {step} | {'task list (now)' if way == 'tasks' else 'export (before)'} | "
                         + ", ".join(f"{v:.1f}" for v in compare[key])
                         + f" | {mean[key]:.1f} | {args.size / mean[key]:.0f} | "
                         + (f"{ratio:.2f} |" if way == "tasks" else "|"))
    lines += [
        "",
        f"pull = `sync.pull` of all {args.size} annotations into a new label field (every label written, each checked "
        f"against the class its file was annotated with; images = annotations = tasks here, one each). read = "
        f"`export_tasks` alone: task list = `GET /api/tasks/?fields=all&include=...`, "
        f"{ls.ANNOTATION_PAGE_SIZE} tasks a page; export = `GET /api/projects/ID/export` in one request. The last "
        f"column is the time of the export over the time of the task list (above 1: the task list is faster).",
    ]
    with open(args.results, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--skip-fiftyone", action="store_true")
    parser.add_argument("--workdir", help="folder for the images, the server and the database (default: temp)")
    parser.add_argument("--results", help="append a section to this Markdown file")
    parser.add_argument("--compare", choices=["export"],
                        help="also pull through the deprecated one-request export, side by side with the task list")
    parser.add_argument("--repeats", type=int, default=2, help="turns of each way with --compare (default 2)")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="activeft-sync-bench-"))
    os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(workdir / "fiftyone-db"))
    import fiftyone as fo
    from labelstudio_push import write_images
    from labelstudio_server import LabelStudioServer

    from activeft_label import sync
    from activeft_label.connectors import fiftyone as fo_connector
    from activeft_label.connectors import labelstudio as ls

    server = LabelStudioServer(workdir / "server", local_files_root=workdir / "files")
    print(f"starting Label Studio in {workdir / 'server'} ...", file=sys.stderr)
    server.start()
    times = {}
    try:
        paths, source = write_images(Path(server.local_files_root) / f"images{args.size}", args.size)
        class_of = {os.path.abspath(p): CLASSES[i % len(CLASSES)] for i, p in enumerate(paths)}
        rng = np.random.default_rng(0)
        ours = fo.Dataset(f"bench-sync-{os.getpid()}")
        ours.add_samples([fo.Sample(filepath=p, emb=rng.normal(size=16).astype(np.float32)) for p in paths])
        started = time.perf_counter()
        fo_connector.select_samples(ours, args.size, method="random", embeddings_field="emb")
        times["selection (random, recorded in FiftyOne)"] = time.perf_counter() - started

        conn = ls.connect(server.url, server.personal_token)
        title = f"activeft sync bench {args.size}"
        started = time.perf_counter()
        pushed = sync.push(ours, conn, None, title=title, labels=CLASSES, images="local-files",
                           document_root=server.local_files_root, progress=False)
        times["activeft push"] = time.perf_counter() - started
        assert pushed.created == args.size, pushed.describe()
        started = time.perf_counter()
        again = sync.push(ours, conn, None, project_id=pushed.project_id, images="local-files",
                          document_root=server.local_files_root, progress=False)
        times["activeft push re-run"] = time.perf_counter() - started
        assert again.created == 0 and again.unchanged == args.size, again.describe()

        path_of = dict(zip(*ours.values(["id", "filepath"])))
        annotate_every_task(conn, pushed.project_id, lambda task: class_of[path_of[task["data"][ls.ID_FIELD]]])
        started = time.perf_counter()
        pulled = sync.pull(ours, conn, pushed.project_id, "ground_truth")
        times["activeft pull"] = time.perf_counter() - started
        assert len(pulled.written) == args.size, pulled.describe()
        labels = dict(zip(*ours.values(["filepath", "ground_truth.label"])))
        wrong = sum(1 for path, label in labels.items() if class_of[path] != label)
        assert wrong == 0, f"{wrong} labels on the wrong samples"
        started = time.perf_counter()
        second = sync.pull(ours, conn, pushed.project_id, "ground_truth")
        times["activeft pull re-run"] = time.perf_counter() - started
        assert not second.written and len(second.unchanged) == args.size

        compare = {}
        if args.compare:
            compare = compare_pulls(ours, conn, pushed.project_id, args.size, args.repeats, class_of, path_of)

        if not args.skip_fiftyone:
            os.environ["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] = "true"
            os.environ["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] = server.local_files_root
            theirs = fo.Dataset(f"bench-sync-fiftyone-{os.getpid()}")
            theirs.add_samples([fo.Sample(filepath=p) for p in paths])
            started = time.perf_counter()
            theirs.annotate("bench", backend="labelstudio", label_field="ground_truth", label_type="classification",
                            classes=CLASSES, url=server.url, api_key=server.legacy_token,
                            project_name=f"fiftyone sync bench {args.size}")
            times["FiftyOne annotate"] = time.perf_counter() - started
            project_id = theirs.load_annotation_results("bench").project_id
            image_key = ls.image_field(ls.get_project(conn, project_id)["label_config"])

            def their_label(task):
                ref = task["data"][image_key]
                relative = ref.split("?d=", 1)[1] if "?d=" in ref else ref
                import urllib.parse

                path = os.path.join(server.local_files_root, urllib.parse.unquote(relative))
                return class_of[os.path.abspath(path)]

            annotate_every_task(conn, project_id, their_label)
            started = time.perf_counter()
            theirs.load_annotations("bench", url=server.url, api_key=server.legacy_token)
            times["FiftyOne load_annotations"] = time.perf_counter() - started
            loaded = dict(zip(*theirs.values(["filepath", "ground_truth.label"])))
            times["_fiftyone_labels"] = sum(1 for v in loaded.values() if v is not None)
            times["_fiftyone_wrong"] = sum(1 for p, v in loaded.items() if v is not None and class_of[p] != v)
        conn.close()
    finally:
        server.stop()

    for key, value in times.items():
        print(f"{key}: {value:.1f}" if not key.startswith("_") else f"{key}: {value}")
    for key, values in compare.items():
        print(f"{key}: " + ", ".join(f"{v:.1f}" for v in values))
    if args.results and args.compare:
        append_comparison(args, compare, fo.__version__)
    if args.results and not args.compare:
        from importlib.metadata import version

        push_ratio = times.get("FiftyOne annotate", float("nan")) / times["activeft push"]
        pull_ratio = times.get("FiftyOne load_annotations", float("nan")) / times["activeft pull"]
        lines = [
            f"\n## Sync round trip: {args.size} samples — {datetime.date.today().isoformat()}\n",
            f"{platform.node()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, label-studio "
            f"{version('label-studio')} (sqlite, dev server, local-files serving), label-studio-sdk "
            f"{version('label-studio-sdk')}, fiftyone {fo.__version__}; images: {source}. Command: "
            f"`python bench/sync_roundtrip.py --size {args.size}` (one run, both tools on the same server, files and "
            f"annotations).\n",
            "| step | activeft (s) | activeft re-run (s) | FiftyOne (s) | FiftyOne / activeft |",
            "|---|---:|---:|---:|---:|",
            f"| push {args.size} samples | {times['activeft push']:.1f} | {times['activeft push re-run']:.1f} | "
            f"{times.get('FiftyOne annotate', float('nan')):.1f} | {push_ratio:.2f} |",
            f"| pull {args.size} annotations | {times['activeft pull']:.1f} | {times['activeft pull re-run']:.1f} | "
            f"{times.get('FiftyOne load_annotations', float('nan')):.1f} | {pull_ratio:.2f} |",
            "",
            f"activeft push = `sync.push` reusing a recorded selection run of all {args.size} samples (the "
            f"selection itself, `method=\"random\"` on stored vectors, took "
            f"{times['selection (random, recorded in FiftyOne)']:.1f} s and is not counted): project, tasks "
            f"imported in rank order, priority view, task ids stored on the samples. Pull = export of the project's "
            f"annotations, mapped by the sample id in each task: all {args.size} labels on the right samples "
            f"(checked against the class each file was annotated with). Re-runs change nothing. FiftyOne = "
            f"`annotate(..., backend=\"labelstudio\")` / `load_annotations` on a dataset of the same files; it "
            f"loaded {times.get('_fiftyone_labels', 'n/a')} labels, {times.get('_fiftyone_wrong', 'n/a')} on the "
            f"wrong sample.",
        ]
        with open(args.results, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

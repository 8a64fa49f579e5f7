"""Benchmark: push N ranked images into a new Label Studio project, activeft vs FiftyOne's backend.

For each way of bringing the images in ("upload" and "local-files"), on the
same N real PNG images (Fashion-MNIST, else scikit-learn digits):

* activeft: :func:`activeft_label.connectors.labelstudio.setup_project` —
  project, images, tasks imported in rank order, priority view; then the same
  call again (a no-op re-run: it must find every task and change nothing);
* FiftyOne: ``dataset.annotate(anno_key, backend="labelstudio", ...)`` on a
  dataset of the same files (classification, same classes); for
  "local-files" the ``LABEL_STUDIO_LOCAL_FILES_*`` variables are set in this
  process, as FiftyOne expects.

Only the push is timed (not embedding or selection: the ranking is a fixed
permutation).  A run that fails is reported with its error, and FiftyOne is
also tried at ``--fallback-size`` images so a ratio exists even where it
fails at N.  The server is started here (``tests/labelstudio_server.py``)
unless --url and --api-key (a legacy token; FiftyOne needs one) are given.

Run::

    python bench/labelstudio_push.py --size 10000            # prints a table and a JSON line
    python bench/labelstudio_push.py --size 300 --results bench/RESULTS.md
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

CLASSES = ["top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def write_images(folder, size):
    """``size`` real PNG images under ``folder`` (reused when present); returns their paths."""
    from activeft_label.files.demo import demo_images, write_pngs

    images, _, _, source = demo_images(size, seed=0)
    if images.shape[0] < size:  # the digits fallback has 1,797 images: repeat them, flipped, to reach the size
        reps = -(-size // images.shape[0])
        images = np.concatenate([images if k % 2 == 0 else images[:, :, ::-1] for k in range(reps)])[:size]
    return write_pngs(images, folder), source


def ranked_pool(paths, folder, seed=0):
    """A Pool and a SelectionResult that ranks every image (a fixed random permutation)."""
    from activeft_label.files.pool import Pool
    from activeft_label.selection import SelectionResult

    n = len(paths)
    pool = Pool(features=np.zeros((n, 1), dtype=np.float32), ids=[os.path.relpath(p, folder) for p in paths],
                paths=[os.path.abspath(p) for p in paths], source_index=np.arange(n))
    order = np.random.default_rng(seed).permutation(n)
    result = SelectionResult(method="fixed", indices=order, ranks=np.arange(1, n + 1), cluster_sizes=np.ones(n),
                             coverage=0.0)
    return pool, result


def time_activeft(url, key, pool, result, images, root, tag):
    from activeft_label.connectors import labelstudio as ls

    conn = ls.connect(url, key)
    try:
        start = time.perf_counter()
        report = ls.setup_project(conn, f"activeft {images} {tag}", CLASSES, pool, result, images=images,
                                  document_root=root, progress=False)
        first = time.perf_counter() - start
        start = time.perf_counter()
        again = ls.setup_project(conn, f"activeft {images} {tag}", CLASSES, pool, result, images=images,
                                 document_root=root, progress=False)
        second = time.perf_counter() - start
        tasks = len(ls.pull_tasks(conn, report.project_id))
    finally:
        conn.close()
    assert again.created == 0, "the re-run imported tasks again"
    return {"seconds": first, "rerun_seconds": second, "tasks": tasks, "created": report.created,
            "images": report.images}


def time_fiftyone(url, legacy_key, paths, images, root, tag):
    import fiftyone as fo

    if images == "local-files":
        os.environ["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] = "true"
        os.environ["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] = root
    else:
        os.environ.pop("LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED", None)
        os.environ.pop("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", None)
    name = f"bench-ls-{images}-{tag}-{os.getpid()}"
    dataset = fo.Dataset(name)
    try:
        dataset.add_samples([fo.Sample(filepath=p) for p in paths])
        start = time.perf_counter()
        dataset.annotate(f"bench_{images.replace('-', '_')}", backend="labelstudio", label_field="ground_truth",
                         label_type="classification", classes=CLASSES, url=url, api_key=legacy_key,
                         project_name=f"fiftyone {images} {tag}")
        seconds = time.perf_counter() - start
    finally:
        dataset.delete()
    return {"seconds": seconds}


def attempt(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a failure is a result here
        message = f"{type(exc).__name__}: {exc}"
        response = getattr(exc, "response", None)
        if response is not None:  # requests/httpx errors: the server's explanation is in the body
            try:
                message = f"HTTP {response.status_code}: {response.json().get('detail')} ({message})"
            except Exception:  # noqa: BLE001
                pass
        detail = traceback.format_exc(limit=2).strip().splitlines()[-1]
        return {"error": message[:300], "where": detail[:200]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10000, help="images to push (default 10000)")
    parser.add_argument("--fallback-size", type=int, default=100,
                        help="also run both tools at this size (FiftyOne's upload fails above 100)")
    parser.add_argument("--modes", default="upload,local-files", help="comma-separated: upload, local-files")
    parser.add_argument("--skip-fiftyone", action="store_true")
    parser.add_argument("--url", help="an existing server (default: start one)")
    parser.add_argument("--api-key", help="a legacy token of that server")
    parser.add_argument("--workdir", help="folder for the images and the server (default: a temp folder)")
    parser.add_argument("--results", help="append a section to this Markdown file (e.g. bench/RESULTS.md)")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="activeft-ls-bench-"))
    server = None
    if args.url:
        url, key, root = args.url.rstrip("/"), args.api_key, os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    else:
        from labelstudio_server import LabelStudioServer

        server = LabelStudioServer(workdir / "server", local_files_root=workdir / "files")
        print(f"starting Label Studio in {workdir / 'server'} ...", file=sys.stderr)
        server.start()
        url, key, root = server.url, server.legacy_token, server.local_files_root
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows = []
    try:
        for size in sorted({args.size, args.fallback_size}):
            folder = Path(root or workdir) / f"images{size}"
            paths, source = write_images(folder, size)
            pool, result = ranked_pool(paths, folder)
            for images in modes:
                if images == "local-files" and not root:
                    continue
                tag = f"{size}-{int(time.time())}"
                ours = attempt(time_activeft, url, key, pool, result, images, root, tag)
                theirs = {"skipped": True} if args.skip_fiftyone else attempt(time_fiftyone, url, key, paths, images,
                                                                               root, tag)
                row = {"size": size, "images": images, "activeft": ours, "fiftyone": theirs}
                if "seconds" in ours and "seconds" in theirs:
                    row["ratio_fiftyone_over_activeft"] = theirs["seconds"] / ours["seconds"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if server is not None:
            server.stop()

    import label_studio_sdk

    try:
        import fiftyone
        fo_version = fiftyone.__version__
    except ImportError:
        fo_version = "not installed"
    try:
        from importlib.metadata import version
        ls_version = version("label-studio")
    except Exception:  # noqa: BLE001
        ls_version = "?"
    header = (f"{datetime.date.today().isoformat()}, {platform.node()}, {os.cpu_count()} CPU cores, "
              f"{platform.python_version()}, label-studio {ls_version} (sqlite, dev server), label-studio-sdk "
              f"{getattr(label_studio_sdk, '__version__', '?')}, fiftyone {fo_version}; images: {source}")
    lines = [header, "", "| images | mode | activeft push (s) | activeft re-run (s) | FiftyOne annotate (s) | "
             "FiftyOne / activeft |", "|---:|---|---:|---:|---:|---:|"]
    for row in rows:
        ours, theirs = row["activeft"], row["fiftyone"]
        if "seconds" in ours:
            ours_cells = f"{ours['seconds']:.1f} | {ours['rerun_seconds']:.1f}"
        else:
            ours_cells = f"failed: {ours['error'][:120]} | "
        if "seconds" in theirs:
            theirs_cell = f"{theirs['seconds']:.1f}"
        else:
            theirs_cell = "skipped" if theirs.get("skipped") else f"failed: {theirs['error'][:120]}"
        ratio = row.get("ratio_fiftyone_over_activeft")
        ratio_cell = f"{ratio:.2f}" if ratio else ""
        lines.append(f"| {row['size']} | {row['images']} | {ours_cells} | {theirs_cell} | {ratio_cell} |")
    table = "\n".join(lines)
    print(table)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as handle:
            handle.write("\n## Label Studio push\n\n" + table + "\n\n"
                         "activeft: project + images + tasks in rank order + priority view (`setup_project`); "
                         "re-run: the same call again (finds every task, changes nothing). FiftyOne: "
                         "`dataset.annotate(..., backend=\"labelstudio\")` on the same files. Command: "
                         f"`python bench/labelstudio_push.py --size {args.size}`.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

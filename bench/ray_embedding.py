"""Embedding the same images locally and on a Ray cluster of one and of two nodes, side by side in one run.

Writes ``--images`` PNG images (the demo's Fashion-MNIST sample, or scikit-learn's digits), then embeds them
(default encoder, fp32, cache off, inside ``process_tuning`` as the command line does) in this order: local, Ray with one node, Ray with two nodes, local again. Each
cluster is a real one on 127.0.0.1 (``tests/ray_cluster.py``), started before its run and stopped after it; the
start is timed apart from the job. For each run: wall seconds, images/s, and for Ray the seconds until the first
batch came back (connection, actor start and model load: the job's fixed cost). Features are compared with the
first local run (max |Δ|). On a machine of two cores both nodes share the same cores: the two-node figure shows the
overhead of a second node, not a speed-up.

    python bench/ray_embedding.py                 # 640 images; appends to bench/RESULTS.md
"""

import argparse
import datetime
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from activeft_label.devices import process_tuning  # noqa: E402
from activeft_label.embeddings import embed_images  # noqa: E402
from activeft_label.files.demo import demo_images, write_pngs  # noqa: E402
from ray_cluster import RayCluster  # noqa: E402
from selection_speed import machine, publish  # noqa: E402


def timed(paths, address=None):
    first = []
    started = time.perf_counter()

    def told(done, total):
        if not first:
            first.append(time.perf_counter() - started)

    result = embed_images(paths, cache_dir=False, precision="fp32", ray_address=address,
                          progress=told if address else False)
    return time.perf_counter() - started, (first[0] if first else float("nan")), result.features


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"), help="append here ('' = print only)")
    args = parser.parse_args()
    rows = []
    # As the command line runs (its own process tuned); the Ray actors tune their own worker processes.
    with process_tuning(), tempfile.TemporaryDirectory() as tmp:
        images, _, _, source = demo_images(args.images, seed=0)
        paths = [str(p) for p in write_pngs(images, os.path.join(tmp, "images"))]
        wall, _, reference = timed(paths)
        rows.append(("local", wall, None, None, 0.0))
        print(rows[-1], flush=True)
        for workers in (0, 1):
            started = time.perf_counter()
            with RayCluster(workers=workers) as cluster:
                up = time.perf_counter() - started
                wall, first, features = timed(paths, cluster.address)
            rows.append((f"Ray, {workers + 1} node{'s' if workers else ''}", wall, first, up,
                         float(np.abs(features - reference).max())))
            print(rows[-1], flush=True)
        wall, _, features = timed(paths)
        rows.append(("local again", wall, None, None, float(np.abs(features - reference).max())))
    lines = [f"## Embedding on a Ray cluster — {datetime.date.today()}", "",
             f"Machine: {machine()}. {args.images} PNG images of {source}, efficientnet-lite0, fp32, batch 32, cache "
             f"off; runs in the order of the table. Clusters on 127.0.0.1 (`tests/ray_cluster.py`), 2 CPUs a node; "
             f"on this 2-core machine both nodes share the same cores.", "",
             "| run | wall s | images/s | first batch back after (s) | cluster start (s, not in wall) | max abs diff "
             "to the first local run |", "|---|---|---|---|---|---|"]
    for name, wall, first, up, diff in rows:
        lines.append(f"| {name} | {wall:.1f} | {args.images / wall:.0f} | "
                     f"{'' if first is None else f'{first:.1f}'} | {'' if up is None else f'{up:.1f}'} | "
                     f"{diff:.1e} |")
    lines += ["", f"Command: `python bench/ray_embedding.py --images {args.images}`.", ""]
    publish(lines, args.out)


if __name__ == "__main__":
    main()

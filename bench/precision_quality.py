"""Does bf16 cost selection quality?  The same Fashion-MNIST images embedded in fp32 and in bf16, side by side.

Reads the two feature files ``bench/fashion_features.py`` writes (``--precision fp32``, the default, and
``--precision bf16``: the same seeded images, the same encoder) and reports, for the two precisions:

* the cosine between each image's two feature vectors (min, mean; pool and test images);
* the share of each pool image's 10 nearest neighbours (cosine) that the two precisions agree on;
* ActiveFT's selection (the product's defaults) at 0.5 / 1 / 2 % of the pool, ten seeds, scored by the linear
  probe of ``bench/QUALITY.md`` (pool, validation and test split as ``bench/selection_quality.py`` makes them;
  logistic-regression C from ``--probe-c``, by default 10, the value the validation split chose in every
  QUALITY.md run so far), mean ± std per precision, and the mean per-seed difference with its std.

    python bench/fashion_features.py && python bench/fashion_features.py --precision bf16
    python bench/precision_quality.py                 # appends to bench/QUALITY.md
"""

import argparse
import datetime
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from activeft_label.evaluation.probe import run_trials  # noqa: E402
from activeft_label.selection import unit_rows  # noqa: E402
from selection_quality import load_split  # noqa: E402
from selection_speed import machine, publish  # noqa: E402


def cosines(a, b):
    return np.sum(unit_rows(a) * unit_rows(b), axis=1)


def neighbours(x, k=10, chunk=1000):
    """Each row's k nearest other rows by cosine, (N, k) ints."""
    x = unit_rows(x)
    out = np.empty((x.shape[0], k), dtype=np.int64)
    for start in range(0, x.shape[0], chunk):
        sim = x[start:start + chunk] @ x.T
        sim[np.arange(sim.shape[0]), np.arange(start, start + sim.shape[0])] = -np.inf
        part = np.argpartition(-sim, k, axis=1)[:, :k]
        out[start:start + chunk] = part
    return out


def knn_agreement(a, b, k=10):
    na, nb = neighbours(a, k), neighbours(b, k)
    shared = [len(np.intersect1d(x, y, assume_unique=True)) / k for x, y in zip(na, nb)]
    return float(np.mean(shared)), float(np.min(shared))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", default=os.path.join(HERE, ".cache", "fashion_mnist_10000_2000_112px.npz"))
    parser.add_argument("--bf16", default=os.path.join(HERE, ".cache", "fashion_mnist_10000_2000_112px_bf16.npz"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budgets", default="0.5%,1%,2%")
    parser.add_argument("--probe-c", type=float, default=10.0)
    parser.add_argument("--out", default=os.path.join(HERE, "QUALITY.md"), help="append here ('' = print only)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: many small selections next to other work on a 2-core "
                             "machine ran 20-50x slower with two)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    raw = {name: np.load(path) for name, path in (("fp32", args.fp32), ("bf16", args.bf16))}
    for key in ("train_index", "test_index", "train_labels", "test_labels"):
        if not np.array_equal(raw["fp32"][key], raw["bf16"][key]):
            sys.exit(f"the two files hold different images ({key} differs): make both with the same arguments")
    train_cos = cosines(raw["fp32"]["train_features"], raw["bf16"]["train_features"])
    test_cos = cosines(raw["fp32"]["test_features"], raw["bf16"]["test_features"])
    every = np.concatenate([train_cos, test_cos])
    knn_mean, knn_min = knn_agreement(raw["fp32"]["train_features"], raw["bf16"]["train_features"])
    print(f"cosine min {every.min():.4f} mean {every.mean():.5f}; 10-NN agreement {knn_mean:.3f}", flush=True)

    budgets = [b.strip() for b in args.budgets.split(",") if b.strip()]
    seeds = tuple(range(args.seeds))
    table = {}
    for name, path in (("fp32", args.fp32), ("bf16", args.bf16)):
        (pool_x, pool_y), _, (test_x, test_y) = load_split(path)
        trials = run_trials(pool_x, pool_y, test_x, test_y, budgets, ["activeft"], seeds=seeds,
                            probe_c=args.probe_c, progress=lambda line, name=name: print(name, line, flush=True))
        for trial in trials:
            table.setdefault(trial.budget, {}).setdefault(name, {})[trial.seed] = (trial.accuracy, trial.seconds)
        pool_size = pool_x.shape[0]

    lines = [f"## Precision: fp32 against bf16 features — {datetime.date.today()}", "",
             f"Machine: {machine()} (bf16 flags: {', '.join(f for f in ('avx512_bf16', 'amx_bf16') if f in open('/proc/cpuinfo').read()) or 'none'}). The same seeded Fashion-MNIST images (`bench/fashion_features.py`, 112 px, "
             f"EfficientNet-Lite0 with ImageNet weights) embedded in fp32 and in bf16 autocast (channels_last).", "",
             f"- Cosine between each image's fp32 and bf16 features ({every.size} images): min {every.min():.4f}, "
             f"mean {every.mean():.5f} (pool: min {train_cos.min():.4f}; test: min {test_cos.min():.4f}); "
             f"{np.mean(every < 0.999) * 100:.1f}% of the images below 0.999.",
             f"- Each pool image's 10 nearest neighbours: {knn_mean * 100:.1f}% shared between the precisions on "
             f"average (worst image {knn_min * 100:.0f}%).", "",
             f"ActiveFT (defaults) on the {pool_size}-image pool, linear probe (C = {args.probe_c}) on the test split, "
             f"{len(seeds)} seeds, top-1 accuracy (%):", "",
             "| budget | fp32 | bf16 | bf16 − fp32, per seed (mean ± std) |", "|---|---|---|---|"]
    for count in sorted(table):
        row = table[count]
        fp32 = np.array([row["fp32"][s][0] for s in seeds]) * 100
        bf16 = np.array([row["bf16"][s][0] for s in seeds]) * 100
        diff = bf16 - fp32
        lines.append(f"| {count} ({count / pool_size * 100:.1f}%) | {fp32.mean():.1f} ± {fp32.std():.1f} | "
                     f"{bf16.mean():.1f} ± {bf16.std():.1f} | {diff.mean():+.2f} ± {diff.std():.2f} |")
    lines += ["", f"Command: `python bench/precision_quality.py --seeds {args.seeds} --budgets {args.budgets}`; "
              f"{(time.perf_counter() - started) / 60:.1f} min.", ""]
    publish(lines, args.out)


if __name__ == "__main__":
    main()

"""A diagnostic for the quality benchmark: how much room is there above random picks?

Every column but the first uses the pool's labels, so none is a selection method (no label-free method
can do what they do); they bound what selection can gain on this pool, encoder and probe:

- class-balanced random: the same number of images from every class, drawn at random. How much of a
  method's gain over random could come from balancing the classes alone.
- per-class k-means / per-class ActiveFT: the same per-class counts, chosen inside each class by k-means
  (the image nearest each center) or by ActiveFT (the product's defaults). Balanced *and* representative:
  what a label-free method could reach if it also guessed the classes perfectly.
- the whole pool: the probe trained on every pool image with its label, the ceiling of any selection.

Same split and linear probe as bench/selection_quality.py.

    python bench/class_balance_check.py --features bench/.cache/fashion_mnist_60000_10000_112px.npz
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from activeft_label.budget import parse_budget  # noqa: E402
from activeft_label.evaluation.probe import linear_probe_accuracy  # noqa: E402
from activeft_label.selection import select  # noqa: E402
from selection_quality import load_split  # noqa: E402


def per_class_counts(labels, count, rng):
    """(classes, how many picks each): as equal as ``count`` allows, the remainder to random classes."""
    classes = np.unique(labels)
    per_class = np.full(classes.size, count // classes.size)
    per_class[rng.choice(classes.size, count % classes.size, replace=False)] += 1
    return classes, per_class


def balanced_pick(labels, count, rng):
    """``count`` rows drawn at random inside each class, :func:`per_class_counts` of them."""
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                           for c, k in zip(*per_class_counts(labels, count, rng))])


def per_class_pick(features, labels, count, rng, method, seed):
    """:func:`per_class_counts` rows, chosen inside each class by ``method``."""
    picks = []
    for c, k in zip(*per_class_counts(labels, count, rng)):
        rows = np.flatnonzero(labels == c)
        chosen = select(features[rows], int(k), method=method, seed=seed, device="cpu").indices
        picks.append(rows[np.asarray(chosen)])
    return np.concatenate(picks)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default=os.path.join(HERE, ".cache", "fashion_mnist_10000_2000_112px.npz"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--probe-c", type=float, default=10.0,
                        help="the logistic regression's C (the quality benchmark's validation choice)")
    parser.add_argument("--budgets", default="0.5%,1%,2%")
    args = parser.parse_args()
    (pool_x, pool_y), _, (test_x, test_y) = load_split(args.features)
    whole = 100 * linear_probe_accuracy(pool_x, pool_y, test_x, test_y, c=args.probe_c)
    print(f"The whole pool ({pool_x.shape[0]} labeled images): {whole:.2f}%\n")
    names = ("random", "balanced", "kmeans", "activeft")
    print("| B | random | class-balanced random | per-class k-means | per-class ActiveFT |\n|---|---|---|---|---|")
    for share in args.budgets.split(","):
        count = parse_budget(share, pool_x.shape[0])
        scores = {name: [] for name in names}
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            picks = {"balanced": balanced_pick(pool_y, count, rng),
                     "random": rng.choice(pool_x.shape[0], count, replace=False),
                     "kmeans": per_class_pick(pool_x, pool_y, count, rng, "kmeans", seed),
                     "activeft": per_class_pick(pool_x, pool_y, count, rng, "activeft", seed)}
            for name in names:
                pick = picks[name]
                scores[name].append(100 * linear_probe_accuracy(pool_x[pick], pool_y[pick], test_x, test_y,
                                                                c=args.probe_c))
        cells = " | ".join(f"{np.mean(scores[n]):.2f} ± {np.std(scores[n]):.2f}" for n in names)
        print(f"| {count} ({share}) | {cells} |", flush=True)


if __name__ == "__main__":
    from activeft_label.devices import process_tuning

    with process_tuning():       # this script owns its process: tune it as the command line does
        main()

"""A diagnostic for the quality benchmark: how much can perfectly class-balanced picks gain over random ones?

It uses the pool's labels to draw the same number of images from every class, so it is not a selection
method (no label-free method can do this); it tells how much of a method's gain over random could come from
balancing the classes alone. Same split and linear probe as bench/selection_quality.py.

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
from activeft_label.evaluation import linear_probe_accuracy  # noqa: E402
from selection_quality import load_split  # noqa: E402


def balanced_pick(labels, count, rng):
    """``count`` rows, as equal a number per class as ``count`` allows (the remainder to random classes)."""
    classes = np.unique(labels)
    per_class = np.full(classes.size, count // classes.size)
    per_class[rng.choice(classes.size, count % classes.size, replace=False)] += 1
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                           for c, k in zip(classes, per_class)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default=os.path.join(HERE, ".cache", "fashion_mnist_10000_2000_112px.npz"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--probe-c", type=float, default=10.0,
                        help="the logistic regression's C (the quality benchmark's validation choice)")
    args = parser.parse_args()
    (pool_x, pool_y), _, (test_x, test_y) = load_split(args.features)
    print("| B | random | class-balanced random (uses labels) |\n|---|---|---|")
    for share in ("0.5%", "1%", "2%"):
        count = parse_budget(share, pool_x.shape[0])
        scores = {"random": [], "balanced": []}
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            picks = {"balanced": balanced_pick(pool_y, count, rng),
                     "random": rng.choice(pool_x.shape[0], count, replace=False)}
            for name, pick in picks.items():
                scores[name].append(100 * linear_probe_accuracy(pool_x[pick], pool_y[pick], test_x, test_y,
                                                                c=args.probe_c))
        print(f"| {count} ({share}) | {np.mean(scores['random']):.1f} ± {np.std(scores['random']):.1f} | "
              f"{np.mean(scores['balanced']):.1f} ± {np.std(scores['balanced']):.1f} |", flush=True)


if __name__ == "__main__":
    main()

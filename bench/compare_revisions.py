"""A/B timing of the ActiveFT optimizer: this working tree against an earlier revision of it.

Loads ``activeft_label/selection/activeft.py`` as it was at ``--rev`` (via ``git show``; the modules it imports
come from the working tree) beside the current one, and runs both on the same clustered features in the order
before, after, after, before, so that drift in the machine's load hits both sides alike. Prints each time, the
final loss, and whether the two select the same samples.

    python bench/compare_revisions.py --rev 4514c9a~1        # N = 50,000, C = 384, B = 2,500, 300 steps
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from activeft_label.selection import activeft as current  # noqa: E402
from activeft_label.selection._common import unique_nearest  # noqa: E402
from selection_speed import clustered_features, machine  # noqa: E402


def load_revision(rev):
    shown = subprocess.run(["git", "show", f"{rev}:activeft_label/selection/activeft.py"], cwd=ROOT,
                           capture_output=True, text=True)
    if shown.returncode != 0:
        raise ValueError(f"cannot read activeft_label/selection/activeft.py at revision {rev!r} "
                         f"({shown.stderr.strip()}); give a commit of this repository's history, e.g. 4514c9a~1")
    source = shown.stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(source)
    # A name inside the package, so that its relative imports resolve to the working tree's modules.
    spec = importlib.util.spec_from_file_location("activeft_label.selection._activeft_at_rev", handle.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    os.unlink(handle.name)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", required=True, help="git revision to compare against (e.g. a commit~1)")
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--budget", type=int, default=2500)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--losses", default="released,paper")
    args = parser.parse_args()

    try:
        before = load_revision(args.rev)
    except ValueError as error:
        parser.error(str(error))
    points = clustered_features(args.n, 384, clusters=max(10, args.n // 250))
    print(f"{machine()}; N = {args.n}, B = {args.budget}, {args.iterations} iterations; before = {args.rev}",
          flush=True)
    for loss in [name.strip() for name in args.losses.split(",") if name.strip()]:
        runs = {"before": [], "after": []}
        for side, module in (("before", before), ("after", current), ("after", current), ("before", before)):
            started = time.perf_counter()
            theta, _ = module.optimize_centroids(points, args.budget, loss=loss, iterations=args.iterations, seed=0)
            picked = torch.sort(unique_nearest(points, theta))[0]
            elapsed = time.perf_counter() - started
            value = current.loss_value(points, theta, args.budget, loss)
            runs[side].append((elapsed, value, picked))
            print(f"{loss} {side}: {elapsed:.1f} s, final loss {value:.6f}", flush=True)
        same = all(torch.equal(runs["before"][0][2], run[2]) for run in runs["before"] + runs["after"])
        gap = max(abs(runs["before"][0][1] - run[1]) for run in runs["after"])
        print(f"{loss}: before {[round(r[0], 1) for r in runs['before']]} s, after "
              f"{[round(r[0], 1) for r in runs['after']]} s; same selection: {same}; max |Δ final loss| {gap:.1e}",
              flush=True)


if __name__ == "__main__":
    main()

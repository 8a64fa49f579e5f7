"""Speed and memory of the ActiveFT optimizer (issue: an exact fast optimizer).

Measures, on one machine in one run:

* N = 50,000, C = 384 clustered unit vectors, B ∈ {1000, 2500, 5000}, 300 iterations, both loss forms:
  the fast path (chunked exact gradients + bounded assignment) against a straightforward dense
  implementation (N×B similarities and autograd every step), with the same initialisation. The dense
  reference is run in full where ``--reference-iterations`` allows, otherwise its per-step time over that
  many steps is reported and scaled (marked "extrapolated").
* a scaling table: N ∈ {10k, 100k, 1M} × B ∈ {1%, 5%}, time and peak memory (fast path only, fewer
  iterations where noted).

Results are appended to bench/RESULTS.md with the machine and the date.

    python bench/selection_speed.py                 # the full run (long: the dense reference is slow)
    python bench/selection_speed.py --quick         # a small smoke run
"""

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # tests/reference.py: the dense yardstick

from activeft_label.selection._common import normalize, unique_nearest  # noqa: E402
from activeft_label.selection.activeft import loss_value, optimize_centroids  # noqa: E402
from reference import dense_optimize  # noqa: E402


def clustered_features(n, dim, clusters, seed=0):
    """Unit vectors around ``clusters`` random directions, with varied cluster sizes and spreads."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    sizes = rng.dirichlet(np.ones(clusters) * 2.0)
    labels = rng.choice(clusters, size=n, p=sizes)
    spread = rng.uniform(0.5, 1.2, size=clusters).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100000):          # in blocks: no float64 copy of a million rows
        part = labels[start:start + 100000]
        x[start:start + part.size] = centers[part] + spread[part, None] * rng.standard_normal(
            (part.size, dim), dtype=np.float32)
    return normalize(x, torch.device("cpu"))


def publish(lines, out):
    """Print a report (a list of Markdown lines) and append it to ``out`` (a results file; '' = print only)."""
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "a") as handle:
            handle.write("\n" + text)


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_fast(points, budget, loss, iterations, seed=0, assignment="bounded", minibatch=None, progress=None):
    stats = {}
    started = time.perf_counter()
    theta, history = optimize_centroids(points, budget, loss=loss, iterations=iterations, seed=seed,
                                        assignment=assignment, stats=stats, minibatch=minibatch, progress=progress)
    picked = unique_nearest(points, theta)
    elapsed = time.perf_counter() - started
    return elapsed, theta, picked, history, stats


def compare(points, budget, loss, iterations, reference_iterations):
    fast_time, theta, picked, history, stats = run_fast(points, budget, loss, iterations)
    fast_loss = loss_value(points, theta, budget, loss)
    row = {"B": budget, "loss": loss, "fast_s": fast_time, "fast_loss": fast_loss,
           "kept": stats.get("kept", 0) / max(1, stats["steps"] * points.shape[0]),
           "full": stats["full_rows"] / max(1, stats["steps"] * points.shape[0]),
           "products": stats.get("products", 0) / max(1, stats["steps"] * points.shape[0] * budget)}
    ref_iters = min(iterations, reference_iterations)
    started = time.perf_counter()
    ref_theta, _ = dense_optimize(points, budget, loss=loss, iterations=ref_iters)
    if ref_iters == iterations:
        ref_picked = unique_nearest(points, ref_theta)
        row["ref_s"] = time.perf_counter() - started
        row["ref_loss"] = loss_value(points, ref_theta, budget, loss)
        row["same"] = bool(torch.equal(torch.sort(picked)[0], torch.sort(ref_picked)[0]))
        row["extrapolated"] = False
    else:
        row["ref_s"] = (time.perf_counter() - started) * iterations / ref_iters
        row["ref_loss"] = float("nan")
        row["same"] = None
        row["extrapolated"] = True
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--reference-iterations", type=int, default=300,
                        help="run the dense reference this many steps at most (extrapolated beyond)")
    parser.add_argument("--full-reference-budgets", default="2500",
                        help="budgets at which the reference runs all iterations (others: "
                             "--scaled-reference-steps, scaled)")
    parser.add_argument("--scaled-reference-steps", type=int, default=20,
                        help="steps of the dense reference at the other budgets, timed and scaled (its cost per "
                             "step does not change)")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--scaling-iterations", type=int, default=300)
    parser.add_argument("--large-iterations", type=int, default=5,
                        help="steps for scaling cases with N·B ≥ 1e9 (time per step and peak memory)")
    parser.add_argument("--only-scaling", action="store_true")
    parser.add_argument("--max-scaling-work", type=float, default=1e10,
                        help="skip scaling cases with N·B above this (1M × 5%% needs hours on 2 cores: its first "
                             "steps took 56 s each, RESULTS.md 2026-12-01)")
    parser.add_argument("--minibatch-case", default="1000000,10000,50000",
                        help="N,B,ROWS of a scaling row run with --minibatch ROWS (approximate mode); '' to skip")
    parser.add_argument("--minibatch-iterations", type=int, default=20)
    parser.add_argument("--budgets", default=None,
                        help="comma-separated budgets at N = 50,000 (default 1000,2500,5000)")
    parser.add_argument("--losses", default="released,paper", help="loss forms to compare (comma-separated)")
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = parser.parse_args()

    n, budgets = (5000, [100, 250]) if args.quick else (50000, [1000, 2500, 5000])
    if args.budgets:
        budgets = [int(b) for b in args.budgets.split(",") if b]
    full_ref = {int(b) for b in args.full_reference_budgets.split(",") if b}
    points = clustered_features(n, 384, clusters=max(10, n // 250))
    lines = [f"\n## Selection speed — {datetime.date.today().isoformat()}\n",
             f"Machine: {machine()}. Features: {n}×384 clustered unit vectors (seed 0). "
             f"{args.iterations} iterations, τ = 0.07, lr = 1e-3. Fast = chunked exact gradients + bounded "
             f"assignment (group bounds, local filter); reference = dense N×B similarities with autograd, same "
             f"initialisation.\n",
             "| B | loss | fast (s) | reference (s) | speed-up | same selection | final loss fast / reference | "
             "rows kept by bounds | rows rechecked | similarities computed (share of N×B) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for budget in ([] if args.only_scaling else budgets):
        for loss in [name.strip() for name in args.losses.split(",") if name.strip()]:
            ref_iters = (args.reference_iterations if (budget in full_ref or args.quick)
                         else args.scaled_reference_steps)
            row = compare(points, budget, loss, args.iterations, ref_iters)
            same = "n/a (extrapolated)" if row["same"] is None else ("yes" if row["same"] else "no")
            ref = f"{row['ref_s']:.1f}" + (f" ({ref_iters} steps, scaled)" if row["extrapolated"] else "")
            ref_loss = "—" if row["extrapolated"] else f"{row['ref_loss']:.6f}"
            lines.append(f"| {budget} | {loss} | {row['fast_s']:.1f} | {ref} | {row['ref_s'] / row['fast_s']:.1f}× | "
                         f"{same} | {row['fast_loss']:.6f} / {ref_loss} | {100 * row['kept']:.1f}% | "
                         f"{100 * row['full']:.1f}% | {100 * row['products']:.1f}% |")
            print(lines[-1], flush=True)

    if not args.skip_scaling:
        sizes = [2000, 10000] if args.quick else [10000, 100000, 1000000]
        cases = [(size, max(1, int(size * fraction))) for size in sizes for fraction in (0.01, 0.05)
                 if size * size * fraction <= args.max_scaling_work]
        lines += ["", f"Scaling (fast path, released loss, {args.scaling_iterations} iterations unless noted; "
                      f"each in a fresh process so peak memory is its own):", "",
                  "| N | B | iterations | time (s) | per step (s) | peak RSS (GiB) |", "|---|---|---|---|---|---|"]
        cases = [(size, budget, None) for size, budget in cases]
        if args.minibatch_case and not args.quick:
            size, budget, rows = (int(v) for v in args.minibatch_case.split(","))
            cases.append((size, budget, rows))
        for size, budget, rows in cases:
            # Pools of a million rows get a few steps only: the per-step time and the peak memory are the point.
            if rows:
                iters = args.minibatch_iterations
            else:
                iters = args.scaling_iterations if size * budget < 10**9 else min(args.scaling_iterations,
                                                                                  args.large_iterations)
            out = subprocess.run([sys.executable, __file__, "--_scale", str(size), str(budget), str(iters),
                                  str(rows or 0)], capture_output=True, text=True)
            label = f"{iters} (minibatch {rows})" if rows else str(iters)
            if out.returncode != 0:
                lines.append(f"| {size} | {budget} | {label} | failed: {out.stderr.strip()[-200:]} | | |")
            else:
                elapsed, peak = map(float, out.stdout.split())
                lines.append(f"| {size} | {budget} | {label} | {elapsed:.1f} | {elapsed / max(1, iters):.3f} | "
                             f"{peak:.2f} |")
            print(lines[-1], flush=True)

    with open(args.out, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def scale_worker(n, budget, iterations, minibatch=0):
    points = clustered_features(n, 384, clusters=max(10, n // 250))
    started = time.perf_counter()

    def progress(step, value):             # on stderr, so that long cases can be watched
        if step % 10 == 0 or step == iterations - 1:
            print(f"step {step + 1}/{iterations}  loss {value:.6f}  {time.perf_counter() - started:.1f} s",
                  file=sys.stderr, flush=True)

    elapsed, *_ = run_fast(points, budget, "released", iterations, minibatch=minibatch or None, progress=progress)
    print(elapsed, peak_rss_gib())


if __name__ == "__main__":
    from activeft_label.devices import process_tuning

    with process_tuning():           # this script owns its process: tune it as the command line does
        if len(sys.argv) == 6 and sys.argv[1] == "--_scale":
            scale_worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        else:
            main()

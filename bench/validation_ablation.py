"""Which setting of ActiveFT matters at 0.5%? Asked on the validation split only.

Runs the `released` form (or, with ``--loss paper``, the paper's form) at the smallest budget of the quality
benchmark (0.5% of the pool) on the same seeded split as `bench/selection_quality.py`, scoring the linear probe on
the validation images (never the test set): 300 iterations (the default), the `released` update (raw θ,
normalised inside the loss, as the authors' code), 1,000 iterations, 300 iterations started
from a k-means++ (D²-sampled) draw of the pool instead of a uniform one, and other weights λ of the diversity term
(``--balances``); then k-means, TypiClust and random on the same split for reference. The k-means++ start is an
experiment of this script (it swaps the optimizer's initialisation for the run), not an option of the product.

With ``--whiten K`` every row (baselines included) selects on the pool's top K principal components, each scaled
to unit variance (PCA fitted on the pool's features, no labels), while the probe still trains on the original
features: a test of whether the selection is held back by a few dominant feature directions.

Every ActiveFT row also counts how often the final unique assignment mattered: the centroids whose most similar
sample was also another centroid's most similar sample, so that one of them had to take its next-best sample.

    python bench/validation_ablation.py --features bench/.cache/fashion_mnist_60000_10000_112px.npz
    python bench/validation_ablation.py --features ... --variants default,balance --balances 0.5,2
    python bench/validation_ablation.py --features ... --loss paper --variants balance --balances 0.1,0.3,1
    python bench/validation_ablation.py --features ... --variants default,baselines --whiten 128
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from activeft_label.evaluation import probe as evaluation  # noqa: E402
from activeft_label.evaluation.probe import run_trials, summarize  # noqa: E402
from activeft_label.selection import activeft, api  # noqa: E402
from activeft_label.selection._common import nearest  # noqa: E402
from selection_quality import load_split  # noqa: E402


def kmeanspp_start(points, budget, fixed, seed, memory_budget=None):
    """B distinct rows drawn one by one with probability ∝ squared distance to the rows drawn so far."""
    rng = np.random.default_rng(seed)
    n = points.shape[0]
    chosen = [int(rng.integers(n))]
    dist = torch.clamp(2.0 - 2.0 * (points @ points[chosen[0]]), min=0.0).double()
    for _ in range(budget - 1):
        weight = dist.cpu().numpy() + 1e-12
        weight[chosen] = 0.0
        chosen.append(int(rng.choice(n, p=weight / weight.sum())))
        dist = torch.minimum(dist, torch.clamp(2.0 - 2.0 * (points @ points[chosen[-1]]), min=0.0).double())
    return torch.as_tensor(chosen, dtype=torch.long, device=points.device)


def whitened(features, components):
    """The rows' coordinates on the top principal components, each scaled to unit variance (float32)."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x, full_matrices=False)
    rank = int((singular > singular[0] * 1e-6).sum())
    if not 1 <= components <= rank:
        raise ValueError(f"the pool has only {rank} principal components with non-zero variance; "
                         f"whiten to 1 to {rank}, got {components}")
    scale = singular[:components] / np.sqrt(x.shape[0])
    return (x @ vt[:components].T / scale).astype(np.float32)


def selecting_on(pool, substitute):
    """``evaluation.select`` wrapped so that selections on ``pool`` run on ``substitute`` instead (same rows)."""
    select = evaluation.select

    def wrapped(features, *args, **kwargs):
        if features is not pool:
            raise RuntimeError("selecting_on: a selection ran on features other than the pool it substitutes")
        return select(substitute, *args, **kwargs)
    return wrapped


VARIANTS = ("default", "update", "iterations", "start", "balance", "baselines")


def counting_shared_nearest(record):
    """The product's final mapping, wrapped to append to ``record`` how many centroids shared a nearest sample."""
    mapping = api.centroids_to_samples

    def wrapped(points, theta, fixed=None, **kwargs):
        index, _ = nearest(theta, points)
        record.append(theta.shape[0] - torch.unique(index).numel())
        return mapping(points, theta, fixed, **kwargs)
    return wrapped


def report(name, trials, started, shared=None):
    (cell,) = summarize(trials).values()          # one budget, one method: a single cell
    shared = "—" if shared is None else f"{np.mean(shared):.1f}"
    print(f"| {name} | {100 * cell['accuracy_mean']:.2f} ± {100 * cell['accuracy_std']:.2f} | "
          f"{100 * cell['coverage_mean']:.2f} | {shared} | {time.perf_counter() - started:.0f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default=os.path.join(HERE, ".cache", "fashion_mnist_10000_2000_112px.npz"))
    parser.add_argument("--budget", default="0.5%")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--probe-c", type=float, default=10.0, help="the probe's C (the quality run's validation choice)")
    parser.add_argument("--quick", action="store_true", help="tiny subset, few iterations (smoke run)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"rows to run, comma-separated, from: {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--balances", default="0.5,2",
                        help="λ values for the 'balance' rows (λ = 1 is the default row)")
    parser.add_argument("--loss", default="released", choices=("released", "paper"),
                        help="ActiveFT loss form of every ActiveFT row (default: released, the product's default)")
    parser.add_argument("--temperature", type=float, default=0.07, help="τ of every ActiveFT row (default 0.07)")
    parser.add_argument("--center", action="store_true",
                        help="every row selects on centred features (select(center=True)); the probe is unchanged")
    parser.add_argument("--whiten", type=int, default=0, metavar="K",
                        help="every row selects on the pool's top K principal components scaled to unit variance "
                             "(0: off); the probe is unchanged")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    try:
        balances = [float(v) for v in args.balances.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--balances takes comma-separated numbers, got {args.balances!r}")
    if any(b <= 0 for b in balances):
        parser.error("every λ in --balances must be > 0")
    if not args.temperature > 0:
        parser.error("--temperature must be > 0")
    (pool_x, pool_y), (val_x, val_y), _ = load_split(args.features, args.quick)
    pool_x = np.ascontiguousarray(pool_x, dtype=np.float32)    # run_trials then passes this very array on
    if args.whiten:
        try:
            evaluation.select = selecting_on(pool_x, whitened(pool_x, args.whiten))
        except ValueError as error:
            parser.error(f"--whiten takes 0 (off) or a number of principal components: {error}")
    seeds = tuple(range(args.seeds))
    common = dict(seeds=seeds, probe_c=args.probe_c, center=args.center)
    base = 30 if args.quick else 300
    print(f"Validation accuracy (%) at {args.budget} of {pool_x.shape[0]} pool images, {len(seeds)} seeds "
          f"(mean ± std), coverage ×100, seconds" + (", every row on centred features" if args.center else "")
          + (f", ActiveFT τ = {args.temperature:g}" if args.temperature != 0.07 else "")
          + (f", every row selecting on the top {args.whiten} principal components, whitened" if args.whiten else "")
          + ":\n")
    print("| variant | validation accuracy | coverage | centroids sharing a nearest sample (of B) | time (s) |\n"
          "|---|---|---|---|---|")
    uniform = activeft.initial_centroids
    rows = []
    if "default" in variants:
        rows.append((f"ActiveFT {args.loss}, {base} iterations, uniform start", base, uniform, 1.0, "projected"))
    if "update" in variants:
        rows.append((f"ActiveFT {args.loss}, {base} iterations, update released (raw θ, as the authors' code)",
                     base, uniform, 1.0, "released"))
    if "iterations" in variants:
        rows.append((f"ActiveFT {args.loss}, {base * 10 // 3} iterations", base * 10 // 3, uniform, 1.0,
                     "projected"))
    if "start" in variants:
        rows.append((f"ActiveFT {args.loss}, {base} iterations, k-means++ start", base, kmeanspp_start, 1.0,
                     "projected"))
    if "balance" in variants:
        rows += [(f"ActiveFT {args.loss}, {base} iterations, λ = {lam:g}", base, uniform, lam, "projected")
                 for lam in balances]
    mapping = api.centroids_to_samples
    for name, iterations, start, balance, update in rows:
        shared = []
        activeft.initial_centroids = start
        api.centroids_to_samples = counting_shared_nearest(shared)
        try:
            started = time.perf_counter()
            trials = run_trials(pool_x, pool_y, val_x, val_y, [args.budget], ["activeft"], loss=args.loss,
                                temperature=args.temperature, iterations=iterations, balance=balance,
                                update=update, **common)
        finally:
            activeft.initial_centroids = uniform
            api.centroids_to_samples = mapping
        report(name, trials, started, shared)
    if "baselines" in variants:
        for method in ("kmeans", "typiclust", "random"):
            started = time.perf_counter()
            report(method, run_trials(pool_x, pool_y, val_x, val_y, [args.budget], [method], **common), started)


if __name__ == "__main__":
    from activeft_label.devices import process_tuning

    with process_tuning():       # this script owns its process: tune it as the command line does
        main()

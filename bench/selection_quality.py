"""Selection quality on real images: ActiveFT against the baselines (issue: a table users can trust).

Pool: a seeded subset of Fashion-MNIST train; test: a seeded subset of its test split (sizes set in
bench/fashion_features.py, which must run first). Features: EfficientNet-Lite0 (ImageNet weights).
Budgets 0.5%, 1%, 2% of the selection pool; 3 seeds per cell. Score: logistic regression trained on the
picks with their true labels, top-1 accuracy on the test subset; plus the coverage figure.

Hyper-parameters are chosen on a validation split carved from the pool (10%, never the test set): the
logistic regression's C, and ActiveFT's τ among a few values (each loss form separately). The choices and
their validation scores are written into the report.

    python bench/fashion_features.py && python bench/selection_quality.py
    python bench/selection_quality.py --quick     # a tiny end-to-end run of the harness
"""

import argparse
import datetime
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from activeft_label.evaluation import markdown_table, run_trials, summarize  # noqa: E402

METHODS = ["random", "kmeans", "coreset", "probcover", "typiclust", "activeft"]
LOSSES = ["paper", "released"]


def label_of(trial):
    return f"activeft ({trial.params['loss']})" if trial.method == "activeft" else trial.method


def choose_on_validation(pool_x, pool_y, val_x, val_y, budgets, log, quick=False, tau_grid=(0.07,)):
    """Pick the probe's C (with random picks) and ActiveFT's τ per loss form, by validation accuracy."""
    seeds = (0,) if quick else (0, 1)
    scores = {}
    for c in (0.3, 1.0, 3.0, 10.0):
        trials = run_trials(pool_x, pool_y, val_x, val_y, budgets, ["random"], seeds=seeds, probe_c=c)
        scores[c] = float(np.mean([t.accuracy for t in trials]))
    probe_c = max(scores, key=scores.get)
    log.append(f"- Logistic regression C: {probe_c} (validation accuracy with random picks, mean over budgets "
               f"and {len(seeds)} seeds: " + ", ".join(f"C={c}: {100 * s:.1f}%" for c, s in scores.items()) + ")")
    taus = {}
    for loss in LOSSES:
        tau_scores = {}
        if len(tau_grid) == 1:
            taus[loss] = tau_grid[0]
            continue
        for tau in tau_grid:
            trials = run_trials(pool_x, pool_y, val_x, val_y, budgets, ["activeft"], seeds=seeds, probe_c=probe_c,
                                loss=loss, temperature=tau, iterations=30 if quick else 300)
            tau_scores[tau] = float(np.mean([t.accuracy for t in trials]))
        taus[loss] = max(tau_scores, key=tau_scores.get)
        log.append(f"- ActiveFT τ ({loss} loss): {taus[loss]} (validation accuracy, mean over budgets: " +
                   ", ".join(f"τ={t}: {100 * s:.1f}%" for t, s in tau_scores.items()) + ")")
    return probe_c, taus


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default=os.path.join(HERE, ".cache", "fashion_mnist_10000_2000_112px.npz"))
    parser.add_argument("--quick", action="store_true", help="tiny subset, 1 seed, few iterations")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-tuning", action="store_true", help="paper defaults (τ = 0.07) and C = 1")
    parser.add_argument("--taus", default="0.07",
                        help="comma-separated τ values for ActiveFT, chosen on the validation split (one value: no "
                             "τ tuning)")
    parser.add_argument("--out", default=os.path.join(HERE, "QUALITY.md"))
    parser.add_argument("--plot", default=os.path.join(HERE, "quality.png"))
    args = parser.parse_args()

    data = np.load(args.features)
    x, y = data["train_features"], data["train_labels"]
    test_x, test_y = data["test_features"], data["test_labels"]
    rng = np.random.default_rng(1234)
    if args.quick:
        keep = rng.choice(x.shape[0], size=min(1000, x.shape[0]), replace=False)
        x, y = x[keep], y[keep]
        test_x, test_y = test_x[:300], test_y[:300]
    order = rng.permutation(x.shape[0])
    cut = x.shape[0] // 10
    val_x, val_y = x[order[:cut]], y[order[:cut]]
    pool_x, pool_y = x[order[cut:]], y[order[cut:]]
    budgets = ["0.5%", "1%", "2%"]
    seeds = (0,) if args.quick else tuple(range(args.seeds))
    started = time.perf_counter()

    log = []
    if args.no_tuning:
        probe_c, taus = 1.0, {loss: 0.07 for loss in LOSSES}
        log.append("- No tuning: C = 1, τ = 0.07 (paper).")
    else:
        tau_grid = tuple(float(t) for t in args.taus.split(","))
        probe_c, taus = choose_on_validation(pool_x, pool_y, val_x, val_y, budgets, log, args.quick, tau_grid)
        if len(tau_grid) == 1:
            log.append(f"- ActiveFT τ: {tau_grid[0]} for both loss forms (the paper's value; not tuned in this run)")
    for line in log:
        print(line, flush=True)

    iterations = 30 if args.quick else 300
    trials = run_trials(pool_x, pool_y, test_x, test_y, budgets, [m for m in METHODS if m != "activeft"],
                        seeds=seeds, probe_c=probe_c, progress=print)
    for loss in LOSSES:
        trials += run_trials(pool_x, pool_y, test_x, test_y, budgets, ["activeft"], seeds=seeds, probe_c=probe_c,
                             loss=loss, temperature=taus[loss], iterations=iterations, progress=print)
        if taus[loss] != 0.07:
            paper_tau = run_trials(pool_x, pool_y, test_x, test_y, budgets, ["activeft"], seeds=seeds,
                                   probe_c=probe_c, loss=loss, temperature=0.07, iterations=iterations, progress=print)
            for trial in paper_tau:
                trial.params["loss"] = f"{loss}, τ=0.07"
            trials += paper_tau

    summary = summarize(trials, label_of)
    counts = sorted({t.budget for t in trials})
    labels = [m for m in METHODS if m != "activeft"] + [f"activeft ({loss})" for loss in LOSSES]
    labels += [f"activeft ({loss}, τ=0.07)" for loss in LOSSES if taus[loss] != 0.07]
    table = markdown_table(summary, counts, labels, pool_x.shape[0])
    coverage = markdown_table({k: {"accuracy_mean": v["coverage_mean"], "accuracy_std": v["coverage_std"]}
                               for k, v in summary.items()}, counts, labels, pool_x.shape[0]).replace(
        "| method |", "| method (coverage, lower is better) |")
    elapsed = time.perf_counter() - started
    report = [
        f"\n## Fashion-MNIST, {datetime.date.today().isoformat()}{' (quick run)' if args.quick else ''}\n",
        f"Pool {pool_x.shape[0]} images (seeded subset of the train split, after carving {val_x.shape[0]} for "
        f"validation), test {test_x.shape[0]} images (seeded subset of the test split). Features: "
        f"EfficientNet-Lite0, ImageNet weights, {os.path.basename(args.features)}. {len(seeds)} seed(s) per cell, "
        f"{iterations} ActiveFT iterations. Linear-probe top-1 accuracy (%), mean ± std over seeds:\n",
        table, "", "Coverage (mean distance of the pool to its nearest pick, ×100):\n", coverage, "",
        "Hyper-parameters, chosen on the validation split only:", *log, "",
        f"Total time {elapsed / 60:.1f} min on {os.cpu_count()} CPU cores.",
    ]
    with open(args.out, "a", encoding="utf-8") as handle:
        handle.write("\n".join(report) + "\n")
    print("\n".join(report))
    if args.plot:
        plot(summary, counts, labels, pool_x.shape[0], args.plot)


def plot(summary, counts, labels, pool_size, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xs = [100 * b / pool_size for b in counts]
    for name in labels:
        means = [100 * summary[(b, name)]["accuracy_mean"] for b in counts]
        stds = [100 * summary[(b, name)]["accuracy_std"] for b in counts]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name,
                    linewidth=2.5 if name.startswith("activeft") else 1.2)
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:.1f}%" for x in xs])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("labeled share of the pool")
    ax.set_ylabel("linear-probe accuracy (%)")
    ax.set_title("Fashion-MNIST, EfficientNet-Lite0 features")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()

"""Selection quality on real images: ActiveFT against the baselines (issue: a table users can trust).

Pool: a seeded subset of Fashion-MNIST train; test: a seeded subset of its test split (sizes set in
bench/fashion_features.py, which must run first). Features: EfficientNet-Lite0 (ImageNet weights).
Budgets 0.5%, 1%, 2% of the selection pool; 3 seeds per cell. Score: logistic regression trained on the
picks with their true labels, top-1 accuracy on the test subset; plus the coverage figure.

Hyper-parameters are chosen on a validation split carved from the pool (10%, never the test set): the
logistic regression's C, and ActiveFT's τ among a few values (each loss form separately). The choices and
their validation scores are written into the report.

    python bench/fashion_features.py && python bench/selection_quality.py       # 9,000-image pool
    python bench/fashion_features.py --pool 60000 --test 10000 --image-size 112          # whole train split:
    python bench/selection_quality.py --features bench/.cache/fashion_mnist_60000_10000_112px.npz
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

from activeft_label.evaluation.probe import markdown_table, run_trials, summarize  # noqa: E402

METHODS = ["random", "kmeans", "coreset", "probcover", "typiclust", "bilaf", "activeft"]
LOSSES = ["paper", "released"]


def label_of(trial):
    if trial.method == "bilaf" and trial.params.get("cores_spec") is not None:
        return f"bilaf (cores={trial.params['cores_spec']})"
    return f"activeft ({trial.params['loss']})" if trial.method == "activeft" else trial.method


def load_split(path, quick=False):
    """(pool, validation, test) as (features, labels) pairs: the seeded split every run of this benchmark uses."""
    data = np.load(path)
    x, y = data["train_features"], data["train_labels"]
    test_x, test_y = data["test_features"], data["test_labels"]
    rng = np.random.default_rng(1234)
    if quick:
        keep = rng.choice(x.shape[0], size=min(1000, x.shape[0]), replace=False)
        x, y = x[keep], y[keep]
        test_x, test_y = test_x[:300], test_y[:300]
    order = rng.permutation(x.shape[0])
    cut = x.shape[0] // 10
    return (x[order[cut:]], y[order[cut:]]), (x[order[:cut]], y[order[:cut]]), (test_x, test_y)


def choose_on_validation(pool_x, pool_y, val_x, val_y, budgets, log, quick=False, tau_grid=(0.07,),
                         balance_grid=(1.0,), losses=LOSSES, validation_seeds=2, center=False, probe_c=None):
    """Pick the probe's C (with random picks; unless ``probe_c`` is given) and ActiveFT's (τ, λ) per loss form,
    by validation accuracy."""
    seeds = (0,) if quick else tuple(range(validation_seeds))
    if probe_c is not None:
        log.append(f"- Logistic regression C: {probe_c}, given with --probe-c (not searched in this run)")
    else:
        scores = {}
        for c in (0.3, 1.0, 3.0, 10.0):
            trials = run_trials(pool_x, pool_y, val_x, val_y, budgets, ["random"], seeds=seeds, probe_c=c)
            scores[c] = float(np.mean([t.accuracy for t in trials]))
        probe_c = max(scores, key=scores.get)
        log.append(f"- Logistic regression C: {probe_c} (validation accuracy with random picks, mean over budgets "
                   f"and {len(seeds)} seeds: " + ", ".join(f"C={c}: {100 * s:.1f}%" for c, s in scores.items())
                   + ")")
    chosen = {}
    grid = [(tau, lam) for tau in tau_grid for lam in balance_grid]
    for loss in losses:
        if len(grid) == 1:
            chosen[loss] = grid[0]
            continue
        grid_scores = {}
        for tau, lam in grid:
            trials = run_trials(pool_x, pool_y, val_x, val_y, budgets, ["activeft"], seeds=seeds, probe_c=probe_c,
                                method_params={"activeft": {"balance": lam}}, loss=loss, temperature=tau,
                                iterations=30 if quick else 300, center=center)
            grid_scores[(tau, lam)] = float(np.mean([t.accuracy for t in trials]))
            print(f"validation {loss} τ={tau} λ={lam}: {100 * grid_scores[(tau, lam)]:.2f}%", flush=True)
        chosen[loss] = max(grid_scores, key=grid_scores.get)
        log.append(f"- ActiveFT (τ, λ) ({loss} loss): {chosen[loss]} (validation accuracy, mean over budgets and "
                   f"{len(seeds)} seeds: " + ", ".join(f"τ={t}, λ={b}: {100 * v:.1f}%"
                                                      for (t, b), v in grid_scores.items()) + ")")
    return probe_c, chosen


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default=os.path.join(HERE, ".cache", "fashion_mnist_10000_2000_112px.npz"))
    parser.add_argument("--quick", action="store_true", help="tiny subset, 1 seed, few iterations")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-tuning", action="store_true", help="paper defaults (τ = 0.07) and C = 1")
    parser.add_argument("--taus", default="0.07",
                        help="comma-separated τ values for ActiveFT, chosen on the validation split (one value: no "
                             "τ tuning)")
    parser.add_argument("--balances", default="1",
                        help="comma-separated λ values (released: weight of R; paper: weight of the diversity term), "
                             "chosen on the validation split together with τ")
    parser.add_argument("--losses", default=",".join(LOSSES), help="ActiveFT loss forms to run (comma-separated)")
    parser.add_argument("--validation-seeds", type=int, default=2, help="seeds per cell on the validation split")
    parser.add_argument("--chosen", action="append", default=[], metavar="LOSS:TAU:LAMBDA",
                        help="use this (τ, λ) for a loss form without a validation search in this run (e.g. the "
                             "choice of an earlier validation run on a smaller pool; the report says so); no row at "
                             "the paper's defaults is run for that form. Repeatable.")
    parser.add_argument("--only-activeft", action="store_true",
                        help="skip the baselines (their numbers do not depend on τ or λ: same split and seeds as a "
                             "full run)")
    parser.add_argument("--budgets", default="0.5%,1%,2%",
                        help="comma-separated budgets, counts or percentages of the pool (default: 0.5%%,1%%,2%%)")
    parser.add_argument("--baselines", default=",".join(m for m in METHODS if m != "activeft"),
                        help="comma-separated baseline methods to run beside ActiveFT (default: all)")
    parser.add_argument("--cores", default="",
                        help="bilaf (when among --baselines): comma-separated core counts or percentages of the pool, "
                             "one bilaf row each (default: bilaf's own default, 0.5%% of the pool, at most half the "
                             "budget)")
    parser.add_argument("--probe-c", type=float, default=None,
                        help="use this logistic-regression C without the validation search (e.g. the choice of an "
                             "earlier run on the same split; the report says so)")
    parser.add_argument("--center", action="store_true",
                        help="every method selects on centred features (select(center=True)); the probe is "
                             "unchanged")
    parser.add_argument("--out", default=os.path.join(HERE, "QUALITY.md"))
    parser.add_argument("--plot", default=os.path.join(HERE, "quality.png"))
    args = parser.parse_args()
    losses = [loss.strip() for loss in args.losses.split(",") if loss.strip()]
    requested = [m.strip() for m in args.baselines.split(",") if m.strip()]
    unknown = [m for m in requested if m not in METHODS or m == "activeft"]
    if unknown:
        parser.error(f"--baselines: unknown method(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(m for m in METHODS if m != 'activeft')}")

    (pool_x, pool_y), (val_x, val_y), (test_x, test_y) = load_split(args.features, args.quick)
    budgets = [b.strip() for b in args.budgets.split(",") if b.strip()]
    seeds = (0,) if args.quick else tuple(range(args.seeds))
    started = time.perf_counter()

    log = []
    if args.no_tuning:
        probe_c, chosen = 1.0, {loss: (0.07, 1.0) for loss in losses}
        log.append("- No tuning: C = 1, τ = 0.07 and λ = 1 (paper).")
    else:
        tau_grid = tuple(float(t) for t in args.taus.split(","))
        balance_grid = tuple(float(b) for b in args.balances.split(","))
        given = {}
        for item in args.chosen:
            loss, tau, lam = item.split(":")
            given[loss] = (float(tau), float(lam))
        probe_c, chosen = choose_on_validation(pool_x, pool_y, val_x, val_y, budgets, log, args.quick, tau_grid,
                                               balance_grid, [loss for loss in losses if loss not in given],
                                               args.validation_seeds, args.center, args.probe_c)
        for loss, setting in given.items():
            chosen[loss] = setting
            log.append(f"- ActiveFT (τ, λ) ({loss} loss): {setting}, given with --chosen (not searched in this run)")
        searched = [loss for loss in losses if loss not in given]
        if len(tau_grid) * len(balance_grid) == 1 and searched:
            log.append(f"- ActiveFT τ = {tau_grid[0]}, λ = {balance_grid[0]} for the {' and '.join(searched)} "
                       f"form(s) (not tuned in this run)")
    for line in log:
        print(line, flush=True)

    iterations = 30 if args.quick else 300
    baselines = [] if args.only_activeft else requested
    plain = [m for m in baselines if m != "bilaf"]
    trials = run_trials(pool_x, pool_y, test_x, test_y, budgets, plain, seeds=seeds, probe_c=probe_c,
                        center=args.center, progress=print) if plain else []
    if "bilaf" in baselines:
        # BiLAF's core stage is ActiveFT with the paper's defaults (released loss, τ = 0.07), run for as many
        # iterations as the ActiveFT rows; one row per --cores value.
        from activeft_label.budget import parse_budget
        from activeft_label.selection.bilaf import parse_cores

        specs = [c.strip() for c in args.cores.split(",") if c.strip()] or [None]
        bilaf_labels = []
        for spec in specs:
            cores = parse_cores(spec, pool_x.shape[0])
            fitting = [b for b in budgets if cores is None or parse_budget(b, pool_x.shape[0]) >= cores]
            if len(fitting) < len(budgets):
                print(f"bilaf cores={spec}: skipped at budget(s) below its {cores} cores: "
                      f"{', '.join(b for b in budgets if b not in fitting)}", flush=True)
            found = run_trials(pool_x, pool_y, test_x, test_y, fitting, ["bilaf"], seeds=seeds, probe_c=probe_c,
                               method_params={"bilaf": {"cores": spec}} if spec else None, iterations=iterations,
                               center=args.center, progress=print) if fitting else []
            for trial in found:
                trial.params["cores_spec"] = spec
            trials += found
            if found:
                bilaf_labels.append(label_of(found[0]))
        position = baselines.index("bilaf")
        baselines = baselines[:position] + bilaf_labels + baselines[position + 1:]
    tuned_labels, default_labels = [], []
    for loss in losses:
        tau, lam = chosen[loss]
        tuned = run_trials(pool_x, pool_y, test_x, test_y, budgets, ["activeft"], seeds=seeds, probe_c=probe_c,
                           method_params={"activeft": {"balance": lam}}, loss=loss, temperature=tau,
                           iterations=iterations, center=args.center, progress=print)
        name = loss if (tau, lam) == (0.07, 1.0) else f"{loss}, τ={tau}, λ={lam}"
        for trial in tuned:
            trial.params["loss"] = name
        trials += tuned
        tuned_labels.append(f"activeft ({name})")
        given_here = any(item.startswith(f"{loss}:") for item in args.chosen)
        # --only-activeft: the full run has the default rows; --chosen: that form's default row is not wanted.
        if (tau, lam) != (0.07, 1.0) and not args.only_activeft and not given_here:
            defaults = run_trials(pool_x, pool_y, test_x, test_y, budgets, ["activeft"], seeds=seeds,
                                  probe_c=probe_c, loss=loss, temperature=0.07, iterations=iterations,
                                  center=args.center, progress=print)
            trials += defaults
            default_labels.append(f"activeft ({loss})")

    summary = summarize(trials, label_of)
    counts = sorted({t.budget for t in trials})
    labels = baselines + default_labels + tuned_labels
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
        f"{iterations} ActiveFT iterations." + (" Every method selected on centred features (center=True); "
                                                "coverage is measured in that space." if args.center else "") +
        " Linear-probe top-1 accuracy (%), mean ± std over seeds:\n",
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
        cells = [(x, summary[(b, name)]) for x, b in zip(xs, counts) if (b, name) in summary]   # bilaf: not below
        means = [100 * cell["accuracy_mean"] for _, cell in cells]                               # its core count
        stds = [100 * cell["accuracy_std"] for _, cell in cells]
        ax.errorbar([x for x, _ in cells], means, yerr=stds, marker="o", capsize=3, label=name,
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
    from activeft_label.devices import process_tuning

    with process_tuning():       # this script owns its process: tune it as the command line does
        main()

"""`activeft evaluate`: compare selection methods on your own labeled subset."""

import click
import numpy as np

from ..errors import InputError
from .options import CONTEXT, friendly_errors, say


def _load_labels(path, expected, what):
    """Labels from .npy (one array), .npz (its 'labels' array) or a UTF-8 text file (one label per line)."""
    from ..files.sources import numpy_read_errors

    fix = "give a .npy array, a .npz with 'labels', or a text file with one label per line"
    if str(path).endswith((".npy", ".npz")):
        with numpy_read_errors(lambda reason: f"{what} {path!r} could not be read ({reason}); {fix}"):
            labels = np.load(path, allow_pickle=False)
            if str(path).endswith(".npz"):
                with labels as archive:
                    if "labels" not in archive.files:
                        raise InputError(f"{what} {path!r} has no 'labels' array (it has "
                                         f"{', '.join(archive.files) or 'none'}); {fix}")
                    labels = archive["labels"]
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                labels = np.array([line.strip() for line in handle if line.strip()])
        except (UnicodeDecodeError, OSError) as exc:
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise InputError(f"{what} {path!r} could not be read ({reason}); {fix}") from None
    if labels.ndim != 1 or labels.shape[0] != expected:
        raise InputError(f"{what} {path!r} has {labels.shape[0] if labels.ndim else 0} labels for {expected} "
                         f"feature rows; give one label per row")
    return labels


@click.command(context_settings=CONTEXT)
@click.option("--features", "features_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Pool features: .npy, or .npz with 'features' (as for `activeft select`).")
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="True labels of the pool rows: .npy, .npz with 'labels', or a text file with one label per line.")
@click.option("--test-features", type=click.Path(exists=True, dir_okay=False),
              help="Held-out features to score on (default: a seeded --test-fraction of the pool).")
@click.option("--test-labels", type=click.Path(exists=True, dir_okay=False), help="Labels of --test-features.")
@click.option("--test-fraction", type=click.FloatRange(0.05, 0.9), default=0.2, show_default=True,
              help="Share of the pool held out for scoring when no test set is given.")
@click.option("--budget", "-b", "budgets", multiple=True, required=True, metavar="N|P%",
              help="Budget(s) to compare at; repeat the option for several.")
@click.option("--methods", default="activeft,random,kmeans,coreset,probcover,typiclust", show_default=True,
              help="Comma-separated methods.")
@click.option("--seeds", type=click.IntRange(1), default=3, show_default=True, help="Seeds per cell.")
@click.option("--iters", "iterations", type=click.IntRange(0), default=300, show_default=True,
              help="ActiveFT steps (also of bilaf's core stage).")
@click.option("--cores", metavar="K|P%",
              help="bilaf: core samples, a count or a percentage of the pool (default: 0.5% of the pool, at most "
                   "half the budget).")
@click.option("--center/--no-center", default=False, show_default=True,
              help="Every method compares items after subtracting the pool's mean direction (the probe always "
                   "sees the features as given).")
@click.option("--device", default="auto", show_default=True, envvar="ACTIVEFT_DEVICE")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write every trial as CSV.")
@friendly_errors
def evaluate(features_path, labels_path, test_features, test_labels, test_fraction, budgets, methods, seeds,
             iterations, cores, center, device, out):
    """Compare selection methods on a labeled pool with a linear probe.

    Each method selects from the pool without seeing labels; a logistic
    regression is trained on the picks with their true labels and scored on
    the test items (top-1 accuracy).  The table shows mean ± std over seeds,
    like Table 1 of the ActiveFT paper, plus each selection's coverage.
    """
    from ..evaluation.probe import markdown_table, run_trials, summarize
    from ..files.output import check_output_path, write_atomic
    from ..devices import resolve_device
    from ..files.sources import load_features
    from ..selection import check_features

    if out:
        check_output_path(out, (".csv",))
    if bool(test_features) != bool(test_labels):
        raise click.UsageError("give both --test-features and --test-labels, or neither")
    resolve_device(device)
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    if cores is not None and "bilaf" not in method_list:
        raise click.UsageError("--cores applies to the bilaf method only; add bilaf to --methods")
    features, _ = load_features(features_path)
    # Before the held-out split shuffles the rows, so that bad rows are reported by their row in the file.
    check_features(features)
    labels = _load_labels(labels_path, features.shape[0], "--labels")
    if test_features:
        test_x, _ = load_features(test_features)
        test_y = _load_labels(test_labels, test_x.shape[0], "--test-labels")
        pool_x, pool_y = features, labels
    else:
        rng = np.random.default_rng(0)
        order = rng.permutation(features.shape[0])
        cut = int(round(features.shape[0] * test_fraction))
        if cut == 0 or cut == features.shape[0]:
            raise InputError(f"{features.shape[0]} items are too few to hold out {test_fraction:g} of them for "
                             f"scoring; give --test-features/--test-labels, or more items")
        test_x, test_y = features[order[:cut]], labels[order[:cut]]
        pool_x, pool_y = features[order[cut:]], labels[order[cut:]]

    trials = run_trials(pool_x, pool_y, test_x, test_y, list(budgets), method_list, seeds=range(seeds),
                        iterations=iterations, device=device, center=center,
                        method_params={"bilaf": {"cores": cores}} if cores is not None else None,
                        progress=lambda line: say(line, err=True))
    summary = summarize(trials)
    counts = sorted({t.budget for t in trials})
    say(f"Linear-probe accuracy (%) on {test_x.shape[0]} test items, pool of {pool_x.shape[0]}, "
        f"{seeds} seed(s):")
    say(markdown_table(summary, counts, method_list, pool_x.shape[0]))
    if out:
        rows = ["method,budget,seed,accuracy,coverage,classes,seconds"] + [
            f"{t.method},{t.budget},{t.seed},{t.accuracy:.6f},{t.coverage:.6f},{t.classes},{t.seconds:.3f}"
            for t in trials]
        write_atomic(out, "\n".join(rows) + "\n")
        say(f"Wrote {out}.")

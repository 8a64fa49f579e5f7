"""Compare selection methods on a labeled pool, the way the paper's Table 1 does.

Each method selects B items of the pool (without looking at labels); a linear
classifier (logistic regression on the L2-normalised features) is trained on
those B items with their true labels and scored on held-out items.  The
score is top-1 accuracy; the coverage figure of each selection is reported
too.  Used by ``activeft evaluate`` and ``bench/selection_quality.py``.
"""

import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..budget import parse_budget
from ..errors import InputError
from ..selection import ACTIVEFT_METHODS, METHODS, check_features, select, unit_rows


@dataclass
class Trial:
    method: str
    budget: int
    seed: int
    accuracy: float
    coverage: float
    classes: int
    seconds: float
    params: dict


def linear_probe_accuracy(train_x, train_y, test_x, test_y, c=1.0):
    """Top-1 accuracy of logistic regression trained on (train_x, train_y), tested on (test_x, test_y)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    train_x = unit_rows(train_x)
    test_x = unit_rows(test_x)
    classes = np.unique(train_y)
    if classes.size == 1:
        return float(np.mean(test_y == classes[0]))
    model = LogisticRegression(C=c, max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_x, train_y)
    return float(np.mean(model.predict(test_x) == test_y))


def run_trials(features, labels, test_features, test_labels, budgets, methods=METHODS, seeds=(0, 1, 2),
               probe_c=1.0, method_params=None, progress=None, center=False, **select_kwargs):
    """Every (budget, method, seed): select on ``features``, train on the picks, score on the test set.

    Parameters
    ----------
    features : array (N, C), labels : array (N,)
        The pool and its true labels (labels are used only to train the probe on the picks).
    test_features : array (M, C), test_labels : array (M,)
    budgets : list of int or str (counts or percentages of N)
    methods : list of str
    seeds : list of int
    probe_c : float, regularisation of the logistic regression
    method_params : dict of method name -> dict of extra select() parameters (e.g. ``{"bilaf": {"cores": 50}}``)
    progress : callable(str) or None, told about each finished trial
    center : bool, passed to :func:`select` for every method (the probe always sees the features as given)
    **select_kwargs : further :func:`select` arguments (``iterations``, ``loss``, ``device``, ...), for the methods
        that run ActiveFT (``activeft``, and ``bilaf`` for its core stage) only

    Returns
    -------
    list of Trial
    """
    check_features(features)                      # NaN, empty or all-zero rows: one message, before any work
    features = np.asarray(features, dtype=np.float32)
    labels = _checked_labels(labels, "labels")
    if labels.shape != (features.shape[0],):
        raise InputError(f"labels must be one per feature row: got {labels.shape} for {features.shape[0]} rows")
    if np.ndim(test_features) == 2 and np.shape(test_features)[0] == 0:
        raise InputError("the test set is empty; give more held-out items to score on")
    try:
        check_features(test_features)
    except InputError as exc:
        raise InputError(f"test {exc}") from None      # every message of check_features starts with "features"
    if np.shape(test_features)[1] != features.shape[1]:
        raise InputError(f"test features have {np.shape(test_features)[1]} dimensions, the pool's have "
                         f"{features.shape[1]}; embed both with the same model")
    test_labels = _checked_labels(test_labels, "test labels")
    if test_labels.shape != (np.shape(test_features)[0],):
        raise InputError("test labels must be one per test feature row")
    if not list(methods):
        raise InputError(f"no methods given; choose from {', '.join(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    counts = [parse_budget(b, features.shape[0]) for b in budgets]
    method_params = method_params or {}
    trials = []
    for count in counts:
        for method in methods:
            for seed in seeds:
                started = time.perf_counter()
                extra = dict(select_kwargs) if method in ACTIVEFT_METHODS else {}   # bilaf: its core stage
                extra.update(method_params.get(method, {}))
                result = select(features, count, method, seed=seed, center=center, **extra)
                seconds = time.perf_counter() - started
                picks = result.indices
                accuracy = linear_probe_accuracy(features[picks], labels[picks], test_features, test_labels, probe_c)
                trial = Trial(method, count, seed, accuracy, result.coverage, int(np.unique(labels[picks]).size),
                              seconds, dict(result.params))
                trials.append(trial)
                if progress is not None:
                    progress(f"B={count} {method:<10} seed={seed} accuracy={accuracy:.4f} "
                             f"coverage={result.coverage:.4f} ({seconds:.1f} s)")
    return trials


def _checked_labels(labels, what):
    """Labels as a 1-D array of class ids or names; numbers must be whole (a float array of 0.0, 1.0, ... is)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"{what} must be one label per row (a 1-D list), got an array of shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise InputError(f"{what} contain NaN or infinite values; every item needs its class")
        if not np.array_equal(labels, np.round(labels)):
            raise InputError(f"{what} contain fractional numbers (e.g. {labels[labels != np.round(labels)][0]}); "
                             f"give class ids (whole numbers) or class names")
    elif labels.dtype.kind not in "biuUS":
        raise InputError(f"{what} must be class ids (whole numbers) or class names, got {labels.dtype} values")
    return labels


def summarize(trials, label=lambda t: t.method):
    """Mean ± std of accuracy and coverage per (budget, label): a dict keyed by (budget, label)."""
    table = {}
    for trial in trials:
        table.setdefault((trial.budget, label(trial)), []).append(trial)
    out = {}
    for key, group in table.items():
        acc = np.array([t.accuracy for t in group])
        cov = np.array([t.coverage for t in group])
        out[key] = {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
                    "coverage_mean": float(cov.mean()), "coverage_std": float(cov.std()), "runs": len(group),
                    "seconds": float(np.mean([t.seconds for t in group]))}
    return out


def markdown_table(summary, budgets, labels, pool_size):
    """Accuracy (%) mean ± std, one row per method, one column per budget (like the paper's Table 1)."""
    header = "| method | " + " | ".join(f"B = {b} ({100 * b / pool_size:.1f}%)" for b in budgets) + " |"
    lines = [header, "|---|" + "---|" * len(budgets)]
    for name in labels:
        cells = []
        for b in budgets:
            cell = summary.get((b, name))
            cells.append("—" if cell is None else
                         f"{100 * cell['accuracy_mean']:.1f} ± {100 * cell['accuracy_std']:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

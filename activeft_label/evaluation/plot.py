"""A 2-D map of the pool with the selection highlighted (as in the paper's Fig. 4)."""

import io
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files.output import write_atomic
from ..selection import unit_rows

PLOT_SUFFIXES = (".png", ".pdf", ".svg")
PROJECTIONS = ("pca", "tsne")
#: Pool points drawn at most (a seeded sample; selected items are always drawn).
MAX_POINTS = 20000


def check_plottable(n_items, n_dims, projection="pca"):
    """Raise :class:`InputError` unless a 2-D map of ``n_items`` rows of ``n_dims`` features can be drawn."""
    if projection not in PROJECTIONS:
        raise InputError(f"unknown projection {projection!r}; choose one of {', '.join(PROJECTIONS)}")
    if n_items < 3 or n_dims < 2:
        raise InputError(f"--plot needs at least 3 items with at least 2 feature dimensions to project to 2-D, got "
                         f"{n_items} item(s) × {n_dims} dimension(s); leave out --plot")


def plot_selection(features, result, path, *, projection="pca", labels=None, title=None, seed=0):
    """Save a scatter plot of the pool (grey) with the selected items marked by rank.

    Parameters
    ----------
    features : array (N, C)
    result : SelectionResult
    path : str or Path, ending in .png, .pdf or .svg
    projection : {"pca", "tsne"}, default="pca"
    labels : array (N,) or None
        Optional class labels to colour the pool by.
    """
    check_plottable(*np.shape(features), projection)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = unit_rows(features)
    rng = np.random.default_rng(seed)
    chosen = result.ranked_indices
    shown = np.arange(x.shape[0])
    if shown.size > MAX_POINTS:
        shown = np.union1d(rng.choice(shown, MAX_POINTS, replace=False), chosen)
    if projection == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(x[shown])
    else:
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, random_state=seed, init="pca",
                  perplexity=min(30.0, max(2.0, (shown.size - 1) / 3))).fit_transform(x[shown])
    position = {int(row): k for k, row in enumerate(shown)}
    sel_xy = xy[[position[int(i)] for i in chosen]]

    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    if labels is not None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, c=np.asarray(labels)[shown], cmap="tab10", alpha=0.35, linewidths=0)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, c="#b0b0b0", alpha=0.5, linewidths=0, label="pool")
    marks = ax.scatter(sel_xy[:, 0], sel_xy[:, 1], s=28, c=np.arange(1, chosen.size + 1), cmap="viridis_r",
                       edgecolors="black", linewidths=0.6, label=f"selected ({chosen.size})")
    fig.colorbar(marks, ax=ax, label="annotation rank (1 = first)")
    ax.set_title(title or f"{result.method}: {chosen.size} of {x.shape[0]} items, coverage {result.coverage:.3f}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lower().lstrip("."))
    plt.close(fig)
    write_atomic(path, buffer.getvalue(), mode="wb")

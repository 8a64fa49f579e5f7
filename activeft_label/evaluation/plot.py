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


#: Classes named in the legend at most; a map of more classes is coloured without one.
MAX_LEGEND_CLASSES = 20


def plot_selection(features, result, path, *, projection="pca", labels=None, title=None, seed=0):
    """Save a scatter plot of the pool (grey) with the selected items marked by rank.

    Parameters
    ----------
    features : array (N, C)
    result : SelectionResult
    path : str or Path, ending in .png, .pdf or .svg
    projection : {"pca", "tsne"}, default="pca"
    labels : array (N,) or None
        Optional class labels (ids or names) to colour the pool by, named in a legend.
    """
    fig = selection_figure(features, result, projection=projection, labels=labels, title=title, seed=seed)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lower().lstrip("."))
    write_atomic(path, buffer.getvalue(), mode="wb")


def selection_figure(features, result, *, projection="pca", labels=None, title=None, seed=0):
    """The figure :func:`plot_selection` saves, as a :class:`matplotlib.figure.Figure` (parameters alike).

    The selected items are drawn in reverse rank order, so rank 1 is on top where marks overlap; the axes are
    the projection's two components; the colour bar shows whole ranks; with ``labels``, a legend names each class
    (up to :data:`MAX_LEGEND_CLASSES`).
    """
    check_plottable(*np.shape(features), projection)
    # A Figure of its own, not pyplot: no figure registry and no backend switch in the host's process.
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    x = unit_rows(features)
    rng = np.random.default_rng(seed)
    chosen = result.ranked_indices
    shown = np.arange(x.shape[0])
    if shown.size > MAX_POINTS:
        shown = np.union1d(rng.choice(shown, MAX_POINTS, replace=False), chosen)
    if projection == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(x[shown])
        axis = "PCA"
    else:
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, random_state=seed, init="pca",
                  perplexity=min(30.0, max(2.0, (shown.size - 1) / 3))).fit_transform(x[shown])
        axis = "t-SNE"
    position = {int(row): k for k, row in enumerate(shown)}
    sel_xy = xy[[position[int(i)] for i in chosen]]

    fig = Figure(figsize=(7, 6), dpi=120)
    ax = fig.add_subplot()
    handles = []
    if labels is not None:
        classes, codes = np.unique(np.asarray(labels)[shown], return_inverse=True)
        cmap = colormaps["tab10" if classes.size <= 10 else "tab20" if classes.size <= 20 else "turbo"]
        colours = cmap(np.linspace(0, 1, classes.size) if classes.size > 20 else np.arange(classes.size))
        ax.scatter(xy[:, 0], xy[:, 1], s=3, c=colours[codes.ravel()], alpha=0.35, linewidths=0)
        if classes.size <= MAX_LEGEND_CLASSES:
            handles = [Line2D([], [], marker="o", linestyle="", markersize=5, markeredgewidth=0, color=colours[k],
                              label=str(name)) for k, name in enumerate(classes.tolist())]
    else:
        handles = [ax.scatter(xy[:, 0], xy[:, 1], s=3, c="#b0b0b0", alpha=0.5, linewidths=0, label="pool")]
    ranks = np.arange(1, chosen.size + 1)
    marks = ax.scatter(sel_xy[::-1, 0], sel_xy[::-1, 1], s=28, c=ranks[::-1], cmap="viridis_r",
                       edgecolors="black", linewidths=0.6, label=f"selected ({chosen.size})")
    handles.append(marks)
    fig.colorbar(marks, ax=ax, label="annotation rank (1 = first)", ticks=MaxNLocator(integer=True))
    ax.set_title(title or f"{result.method}: {chosen.size} of {x.shape[0]} items, coverage {result.coverage:.3f}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.legend(handles=handles, loc="best", fontsize=8)
    fig.tight_layout()
    return fig

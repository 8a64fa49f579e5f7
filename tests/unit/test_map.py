"""The 2-D map: rank 1 on top, named axes, whole-rank ticks, a legend of classes (issue 24, item 9)."""

import numpy as np
import pytest

from activeft_label import select
from activeft_label.evaluation.plot import plot_selection, selection_figure


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(3, 10))
    classes = rng.integers(0, 3, 240)
    x = (centers[classes] + 0.5 * rng.normal(size=(240, 10))).astype(np.float32)
    return x, np.array(["cat", "dog", "bird"])[classes], select(x, 7, "kmeans", seed=0)


def _selected(fig):
    ax = fig.axes[0]
    (marks,) = [c for c in ax.collections if str(c.get_label()).startswith("selected")]
    return ax, marks


@pytest.mark.parametrize("projection, name", [("pca", "PCA"), ("tsne", "t-SNE")])
def test_rank_one_is_drawn_last_and_the_axes_are_named(pool, projection, name):
    x, _, result = pool
    fig = selection_figure(x, result, projection=projection)
    ax, marks = _selected(fig)
    assert marks.get_array().tolist() == list(range(7, 0, -1))          # drawn from rank 7 to rank 1
    assert ax.collections[-1] is marks                                   # above the pool
    assert ax.get_xlabel() == f"{name} 1" and ax.get_ylabel() == f"{name} 2"


def test_the_rank_colour_bar_has_whole_ticks(pool):
    x, _, result = pool
    for budget in (3, 7):
        fig = selection_figure(x, select(x, budget, "random", seed=1))
        ticks = fig.axes[1].get_yticks()
        shown = ticks[(ticks >= 1) & (ticks <= budget)]
        assert shown.size >= 2 and np.array_equal(shown, np.round(shown)), ticks


def test_classes_get_a_legend_when_labels_are_given(pool):
    x, labels, result = pool
    texts = [t.get_text() for t in selection_figure(x, result, labels=labels).axes[0].get_legend().get_texts()]
    assert texts == ["bird", "cat", "dog", "selected (7)"]
    plain = [t.get_text() for t in selection_figure(x, result).axes[0].get_legend().get_texts()]
    assert plain == ["pool", "selected (7)"]


def test_plot_selection_still_writes_the_file(pool, tmp_path):
    x, labels, result = pool
    assert plot_selection(x, result, tmp_path / "map.png", labels=labels) is None
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

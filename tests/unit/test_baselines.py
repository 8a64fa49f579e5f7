"""Tests of the baseline selection methods (activeft_label.selection.baselines)."""

import math

import numpy as np
import pytest
import torch

from activeft_label.errors import InputError
from activeft_label.selection.baselines import (BASELINES, probcover_delta, select_coreset, select_kmeans,
                                                select_probcover, select_random, select_typiclust)

METHODS = sorted(BASELINES)


# --------------------------------------------------------------------------- data

def unit(array):
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    return torch.nn.functional.normalize(tensor, dim=1)


def clustered(sizes, dim=16, spread=0.02, seed=0, shuffle=True):
    """Tight, well-separated clusters on the unit sphere.

    Returns (points (N, dim) unit rows, labels (N,) numpy, centers (K, dim) unit rows).
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    data = centers[labels] + spread * rng.normal(size=(labels.size, dim))
    if shuffle:
        order = rng.permutation(labels.size)
        data, labels = data[order], labels[order]
    return unit(data), labels, unit(centers)


def with_duplicates(n=200, n_same=150, dim=8, seed=1):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, dim))
    data[rng.choice(n, n_same, replace=False)] = rng.normal(size=dim)
    return unit(data)


def run(method, points, budget, fixed=None, seed=0, **kw):
    if fixed is None:
        fixed = torch.zeros(0, dtype=torch.long)
    return BASELINES[method](points, budget, fixed=torch.as_tensor(fixed, dtype=torch.long), seed=seed, **kw)


def check_selection(picked, points, budget, fixed=()):
    assert isinstance(picked, torch.Tensor)
    assert picked.dtype == torch.long
    assert picked.shape == (budget,)
    assert picked.device == points.device
    values = picked.tolist()
    assert len(set(values)) == budget, "indices are not unique"
    assert all(0 <= v < points.shape[0] for v in values)
    assert not set(values) & set(int(f) for f in fixed), "a fixed row was picked"


def kcenter_radius(points, centers_idx):
    """max over items of the Euclidean distance to the nearest chosen item."""
    sims = (points @ points[centers_idx].T).max(dim=1).values
    return float(torch.sqrt(torch.clamp(2 - 2 * sims, min=0)).max())


# --------------------------------------------------------------------------- every method

def test_registry_has_the_five_methods():
    assert set(BASELINES) == {"random", "kmeans", "coreset", "probcover", "typiclust"}
    assert all(callable(f) for f in BASELINES.values())


@pytest.mark.parametrize("method", METHODS)
def test_exact_unique_budget_without_fixed(method):
    points, _, _ = clustered([30, 25, 20, 15, 10], seed=3)
    picked = run(method, points, 12)
    check_selection(picked, points, 12)


@pytest.mark.parametrize("method", METHODS)
def test_fixed_rows_never_picked(method):
    points, _, _ = clustered([30, 25, 20, 15, 10], seed=4)
    fixed = [0, 5, 17, 33, 64, 99]
    picked = run(method, points, 15, fixed=fixed)
    check_selection(picked, points, 15, fixed)


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_for_a_seed(method):
    points, _, _ = clustered([40, 30, 20, 10], seed=5)
    first = run(method, points, 10, fixed=[1, 2], seed=7)
    second = run(method, points, 10, fixed=[1, 2], seed=7)
    assert torch.equal(first, second)


@pytest.mark.parametrize("method", ["random", "kmeans"])
def test_different_seeds_usually_differ(method):
    rng = np.random.default_rng(0)
    points = unit(rng.normal(size=(300, 8)))      # no structure: the seed decides
    results = {tuple(sorted(run(method, points, 20, seed=s).tolist())) for s in range(4)}
    assert len(results) >= 3


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fixed", [[], [3, 4, 5]])
def test_many_duplicate_rows(method, fixed):
    points = with_duplicates()
    assert torch.unique(points, dim=0).shape[0] <= 51
    picked = run(method, points, 30, fixed=fixed)
    check_selection(picked, points, 30, fixed)


@pytest.mark.parametrize("method", METHODS)
def test_duplicates_beyond_distinct_rows(method):
    # 40 rows, only 4 distinct: picking 30 still needs 30 distinct rows.
    rng = np.random.default_rng(2)
    points = unit(rng.normal(size=(4, 6))[np.arange(40) % 4])
    picked = run(method, points, 30, fixed=[0, 1])
    check_selection(picked, points, 30, [0, 1])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fixed", [[], [2, 9, 40]])
def test_select_everything_available(method, fixed):
    points, _, _ = clustered([20, 15, 10, 5], seed=6)
    budget = points.shape[0] - len(fixed)
    picked = run(method, points, budget, fixed=fixed)
    check_selection(picked, points, budget, fixed)
    assert set(picked.tolist()) | set(fixed) == set(range(points.shape[0]))


@pytest.mark.parametrize("method", METHODS)
def test_budget_of_one(method):
    points, _, _ = clustered([10, 10], seed=7)
    picked = run(method, points, 1, fixed=[0])
    check_selection(picked, points, 1, [0])


@pytest.mark.parametrize("method", METHODS)
def test_progress_ends_at_budget(method):
    points, _, _ = clustered([30, 20, 10], seed=8)
    calls = []
    run(method, points, 9, progress=lambda done, total: calls.append((done, total)))
    assert calls, "progress was never called"
    assert calls[-1] == (9, 9)
    assert all(total == 9 for _, total in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


@pytest.mark.parametrize("method", METHODS)
def test_small_memory_budget_gives_the_same_picks(method):
    # Forces several chunks everywhere; the result must not depend on the chunking.
    points, _, _ = clustered([20] * 10, seed=9)
    kw = {"delta": 0.3} if method == "probcover" else {}
    fixed = [3, 50]
    big = run(method, points, 12, fixed=fixed, **kw)
    small = run(method, points, 12, fixed=fixed, memory_budget=150_000, **kw)
    assert torch.equal(big, small)


@pytest.mark.parametrize("method", METHODS)
def test_unknown_parameter_is_an_input_error(method):
    points, _, _ = clustered([10, 10], seed=10)
    with pytest.raises(InputError, match="no parameter"):
        run(method, points, 2, bogus=1)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", [0, 19, 2.5])
def test_bad_budget_is_an_input_error(method, budget):
    points, _, _ = clustered([10, 10], seed=10)
    with pytest.raises(InputError, match="budget"):
        run(method, points, budget, fixed=[0, 1])


# --------------------------------------------------------------------------- random

def test_random_is_roughly_uniform():
    points = unit(np.random.default_rng(0).normal(size=(50, 4)))
    counts = np.zeros(50)
    for seed in range(400):
        counts[run("random", points, 5, fixed=[0, 1], seed=seed).numpy()] += 1
    assert counts[:2].sum() == 0
    expected = 400 * 5 / 48
    assert counts[2:].min() > expected * 0.4 and counts[2:].max() < expected * 1.8


# --------------------------------------------------------------------------- kmeans

def test_kmeans_one_pick_per_well_separated_cluster():
    points, labels, _ = clustered([30, 25, 40, 20, 35, 15, 30, 45, 25, 30], seed=11)
    picked = select_kmeans(points, 10, fixed=torch.zeros(0, dtype=torch.long), seed=0)
    assert sorted(labels[picked.numpy()].tolist()) == list(range(10))


def test_kmeans_respects_fixed_in_a_cluster():
    points, labels, _ = clustered([30, 25, 40, 20, 35], seed=12)
    fixed = torch.as_tensor(np.flatnonzero(labels == 2)[:35])   # most of cluster 2 labeled
    picked = select_kmeans(points, 5, fixed=fixed, seed=0)
    check_selection(picked, points, 5, fixed.tolist())
    assert sorted(labels[picked.numpy()].tolist()) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- coreset

def dense_kcenter(points, budget, fixed, first):
    """Straightforward k-center greedy on the full distance matrix."""
    dist = torch.cdist(points.double(), points.double())
    chosen = list(fixed) if fixed else [first]
    picks = [] if fixed else [first]
    while len(picks) < budget:
        nearest = dist[:, chosen].min(dim=1).values
        nearest[chosen] = -1
        pick = int(torch.argmax(nearest))
        picks.append(pick)
        chosen.append(pick)
    return picks


@pytest.mark.parametrize("fixed", [[], [4, 77, 150]])
def test_coreset_matches_dense_greedy(fixed):
    rng = np.random.default_rng(13)
    points = unit(rng.normal(size=(200, 5)))          # continuous data: no distance ties
    picked = select_coreset(points, 25, fixed=torch.as_tensor(fixed, dtype=torch.long), seed=3)
    first = int(np.random.default_rng(3).integers(200))
    assert picked.tolist() == dense_kcenter(points, 25, fixed, first)


def test_coreset_beats_random_on_kcenter_objective():
    points, _, _ = clustered([150, 80, 40, 20, 10, 5, 5, 3, 3, 2], seed=14, spread=0.05)
    empty = torch.zeros(0, dtype=torch.long)
    core = kcenter_radius(points, select_coreset(points, 10, fixed=empty, seed=0))
    for seed in range(5):
        rand = kcenter_radius(points, select_random(points, 10, fixed=empty, seed=seed))
        assert core < rand
    assert core < 0.5                                   # every cluster got a center


def test_coreset_starts_far_from_fixed():
    points, labels, _ = clustered([40, 40, 40], seed=15)
    fixed = np.concatenate([np.flatnonzero(labels == 0)[:2], np.flatnonzero(labels == 1)[:2]])
    picked = select_coreset(points, 1, fixed=torch.as_tensor(fixed), seed=0)
    assert labels[int(picked[0])] == 2


# --------------------------------------------------------------------------- probcover

def dense_probcover(points, budget, delta, fixed):
    """Straightforward greedy max coverage on the dense δ-ball adjacency."""
    adj = (points @ points.T) > 1 - delta ** 2 / 2
    adj.fill_diagonal_(True)
    covered = adj[list(fixed)].any(dim=0) if fixed else torch.zeros(points.shape[0], dtype=torch.bool)
    picks = []
    while len(picks) < budget:
        gain = (adj & ~covered).sum(dim=1)
        best = int(torch.argmax(gain))
        if gain[best] == 0:
            break
        picks.append(best)
        covered |= adj[best]
    return picks


@pytest.mark.parametrize("fixed", [[], [0, 10, 20]])
def test_probcover_matches_dense_greedy(fixed):
    rng = np.random.default_rng(16)
    points = unit(rng.normal(size=(300, 3)))
    picked = select_probcover(points, 20, fixed=torch.as_tensor(fixed, dtype=torch.long), seed=0, delta=0.4)
    expected = dense_probcover(points, 20, 0.4, fixed)
    assert len(expected) == 20                           # δ small enough that greedy never runs out
    assert picked.tolist() == expected


def test_probcover_covers_every_cluster():
    points, labels, _ = clustered([40, 10, 30, 25, 50, 15, 20, 35], seed=17)
    picked = select_probcover(points, 8, fixed=torch.zeros(0, dtype=torch.long), seed=0, delta=0.5)
    assert sorted(labels[picked.numpy()].tolist()) == list(range(8))


def test_probcover_fixed_cluster_is_already_covered():
    points, labels, _ = clustered([40, 30, 30, 20, 20], seed=18)
    fixed = np.flatnonzero(labels == 0)[:1]              # one labeled item covers cluster 0
    picked = select_probcover(points, 4, fixed=torch.as_tensor(fixed), seed=0, delta=0.5)
    assert sorted(labels[picked.numpy()].tolist()) == [1, 2, 3, 4]


def test_probcover_fills_with_random_once_covered():
    points, labels, _ = clustered([30, 30, 30], seed=19)
    picked = select_probcover(points, 10, fixed=torch.zeros(0, dtype=torch.long), seed=0, delta=0.5)
    check_selection(picked, points, 10)
    assert sorted(labels[picked[:3].numpy()].tolist()) == [0, 1, 2]
    other = select_probcover(points, 10, fixed=torch.zeros(0, dtype=torch.long), seed=1, delta=0.5)
    assert torch.equal(picked[:3], other[:3])            # the greedy part does not depend on the seed
    assert not torch.equal(picked[3:], other[3:])        # the random fill does


def test_probcover_automatic_delta_separates_clusters():
    points, labels, _ = clustered([30] * 10, seed=20)
    delta = probcover_delta(points, 10, seed=0)
    sims = points @ points.T
    same = torch.as_tensor(labels[:, None] == labels[None, :])
    within = torch.sqrt(torch.clamp(2 - 2 * sims[same], min=0)).max()
    between = torch.sqrt(torch.clamp(2 - 2 * sims[~same], min=0)).min()
    assert 0 < delta < between
    assert delta > 0.3 * within                          # not degenerate either
    picked = select_probcover(points, 10, fixed=torch.zeros(0, dtype=torch.long), seed=0)
    assert sorted(labels[picked.numpy()].tolist()) == list(range(10))


def test_probcover_automatic_delta_with_duplicates_is_positive():
    points = with_duplicates()
    assert probcover_delta(points, 30, seed=0) > 0


@pytest.mark.parametrize("delta", [0, -0.1, 2.5, float("nan"), "0.3", True])
def test_probcover_rejects_bad_delta(delta):
    points, _, _ = clustered([10, 10], seed=21)
    with pytest.raises(InputError, match="delta"):
        select_probcover(points, 2, fixed=torch.zeros(0, dtype=torch.long), seed=0, delta=delta)


def test_probcover_too_many_edges_is_an_input_error():
    points, _, _ = clustered([100, 100], seed=22)
    with pytest.raises(InputError, match="smaller delta"):
        select_probcover(points, 5, fixed=torch.zeros(0, dtype=torch.long), seed=0, delta=2.0,
                         memory_budget=100_000)


# --------------------------------------------------------------------------- typiclust

def cluster_of(labels, picked):
    return labels[picked.numpy()].tolist()


def near_middle(points, labels, centers, row, quantile=0.25):
    """True when ``row`` is among the ``quantile`` of its cluster closest to the cluster's middle."""
    members = np.flatnonzero(labels == labels[row])
    middle = torch.nn.functional.normalize(points[members].mean(dim=0), dim=0)
    dist = 1 - points[members] @ middle
    return float(1 - points[row] @ middle) <= float(torch.quantile(dist, quantile))


def test_typiclust_largest_clusters_first_and_typical_points():
    sizes = [20, 60, 10, 40, 50, 30]
    points, labels, centers = clustered(sizes, seed=23, spread=0.05)
    picked = select_typiclust(points, 6, fixed=torch.zeros(0, dtype=torch.long), seed=0)
    assert [sizes[c] for c in cluster_of(labels, picked)] == sorted(sizes, reverse=True)
    for row in picked.tolist():
        assert near_middle(points, labels, centers, row)


def test_typiclust_prefers_clusters_without_labels():
    sizes = [60, 50, 40, 30, 20, 10]
    points, labels, _ = clustered(sizes, seed=24, spread=0.05)
    fixed = np.flatnonzero(labels == 0)[:1]
    picked = select_typiclust(points, 5, fixed=torch.as_tensor(fixed), seed=0)
    assert cluster_of(labels, picked) == [1, 2, 3, 4, 5]


def test_typiclust_skips_tiny_clusters():
    sizes = [50, 40, 30, 20, 10, 3]
    points, labels, _ = clustered(sizes, seed=25, spread=0.03)
    picked = select_typiclust(points, 6, fixed=torch.zeros(0, dtype=torch.long), seed=0)
    clusters = cluster_of(labels, picked)
    assert 5 not in clusters                             # the 3-item cluster is never chosen
    assert clusters == [0, 1, 2, 3, 4, 0]                # then the largest cluster again


def test_typiclust_typicality_matches_brute_force():
    # One cluster (B = 1, no labels): the pick is the row with the smallest mean distance
    # to its 20 nearest neighbours in the whole pool.
    rng = np.random.default_rng(26)
    points = unit(rng.normal(size=(120, 4)) + np.array([2.0, 0, 0, 0]))
    picked = select_typiclust(points, 1, fixed=torch.zeros(0, dtype=torch.long), seed=0)
    dist = torch.cdist(points.double(), points.double())
    knn = dist.topk(21, dim=1, largest=False).values[:, 1:]
    assert int(picked[0]) == int(torch.argmin(knn.mean(dim=1)))
    picked5 = select_typiclust(points, 1, fixed=torch.zeros(0, dtype=torch.long), seed=0, k_neighbors=5)
    knn5 = dist.topk(6, dim=1, largest=False).values[:, 1:]
    assert int(picked5[0]) == int(torch.argmin(knn5.mean(dim=1)))


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_typiclust_rejects_bad_k_neighbors(k):
    points, _, _ = clustered([10, 10], seed=27)
    with pytest.raises(InputError, match="k_neighbors"):
        select_typiclust(points, 2, fixed=torch.zeros(0, dtype=torch.long), seed=0, k_neighbors=k)


def test_module_level_names():
    assert BASELINES["random"] is select_random
    assert BASELINES["kmeans"] is select_kmeans
    assert BASELINES["coreset"] is select_coreset
    assert BASELINES["probcover"] is select_probcover
    assert BASELINES["typiclust"] is select_typiclust
    assert math.isclose(probcover_delta(unit(np.eye(3)), 1, seed=0), math.sqrt(2), rel_tol=1e-5)


@pytest.mark.parametrize("method", ["kmeans", "typiclust"])
def test_minibatch_kmeans_path(method, monkeypatch):
    from activeft_label.selection import baselines

    monkeypatch.setattr(baselines, "MINIBATCH_THRESHOLD", 100)
    points, labels, _ = clustered([60, 50, 40, 30, 20], seed=28)
    picked = run(method, points, 5, fixed=[0])
    check_selection(picked, points, 5, [0])
    assert torch.equal(picked, run(method, points, 5, fixed=[0]))

"""Properties of the ActiveFT optimizer, its unique assignment and its ranking (pure code, small arrays)."""

import numpy as np
import pytest
import torch

from activeft_label import InputError, select
from activeft_label.selection._common import check_features, normalize, power_of_two_scaled, unique_nearest
from reference import dense_optimize
from activeft_label.selection.activeft import optimize_centroids
from activeft_label.selection.ranking import priority_order

# Many tiny selections: one torch thread (tests/conftest.py).  Library calls no longer switch to one thread for small
# problems (only the command line does, devices.process_tuning), and on a busy 2-core machine two threads made this
# module 124 s instead of 19 s.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clustered(n_clusters=8, per_cluster=60, dim=16, spread=0.25, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    x = np.repeat(centers, per_cluster, axis=0) + spread * rng.normal(size=(n_clusters * per_cluster, dim))
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    return x.astype(np.float32), labels


@pytest.mark.parametrize("loss", ["released", "paper"])
@pytest.mark.parametrize("with_fixed", [False, True])
@pytest.mark.parametrize("balance", [1.0, 0.3])
@pytest.mark.parametrize("memory_budget", [512, 1 << 20])  # many chunks of the centroid terms; all in one
@pytest.mark.parametrize("temperature", [0.07, 0.02])      # 0.02: exp((s - 1)/τ) could underflow, other path
def test_fast_gradients_follow_the_dense_autograd_reference(loss, with_fixed, balance, memory_budget, temperature):
    x, _ = clustered(seed=1)
    points = normalize(x, torch.device("cpu"))
    fixed = torch.tensor([0, 61, 200]) if with_fixed else None
    fast, fast_history = optimize_centroids(points, 12, fixed=fixed, loss=loss, iterations=40, balance=balance,
                                            memory_budget=memory_budget, temperature=temperature)
    dense, dense_history = dense_optimize(points, 12, fixed=fixed, loss=loss, iterations=40, balance=balance,
                                          temperature=temperature)
    assert torch.allclose(fast, dense, atol=1e-5)
    np.testing.assert_allclose(fast_history, dense_history, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["released", "paper"])
def test_loss_falls_and_the_selection_is_exactly_b_unique_items(loss):
    x, _ = clustered(seed=2)
    result = select(x, 24, loss=loss, iterations=150)
    assert result.loss_history[-1] < result.loss_history[0]
    assert result.loss <= result.loss_history[-1] + 1e-6
    assert len(result.loss_history) == 150
    assert result.indices.shape == (24,) and np.unique(result.indices).size == 24
    assert sorted(result.ranks.tolist()) == list(range(1, 25))
    assert result.cluster_sizes.sum() == x.shape[0]


def test_same_seed_same_selection_other_seed_other_selection():
    x, _ = clustered(seed=3)
    a = select(x, 20, iterations=50, seed=7)
    b = select(x, 20, iterations=50, seed=7)
    c = select(x, 20, iterations=50, seed=8)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.ranks, b.ranks)
    assert a.loss_history == b.loss_history
    assert not np.array_equal(np.sort(a.indices), np.sort(c.indices))


def test_chunked_path_equals_unchunked_path():
    x, _ = clustered(seed=4)
    small = select(x, 16, iterations=60, memory_budget=2048)
    large = select(x, 16, iterations=60, memory_budget=1 << 30)
    assert np.array_equal(small.indices, large.indices)
    assert np.array_equal(small.ranks, large.ranks)
    np.testing.assert_allclose(small.loss_history, large.loss_history, rtol=1e-6)


def test_activeft_covers_the_pool_better_than_random():
    x, labels = clustered(n_clusters=10, per_cluster=50, seed=5)
    chosen = select(x, 10, iterations=300)
    randoms = [select(x, 10, "random", seed=s).coverage for s in range(5)]
    assert chosen.coverage < min(randoms)
    assert len(np.unique(labels[chosen.indices])) >= 9


def test_fixed_items_are_never_selected_and_steer_the_new_round():
    x, labels = clustered(n_clusters=6, per_cluster=40, seed=6)
    fixed = np.flatnonzero(labels < 3)[::4]           # clusters 0-2 already well labeled
    result = select(x, 6, iterations=200, fixed=fixed)
    assert not np.isin(result.indices, fixed).any()
    assert np.unique(result.indices).size == 6
    new_clusters = labels[result.indices]
    assert (new_clusters >= 3).sum() >= 4            # most new picks go where nothing is labeled
    assert result.params["fixed"] == fixed.size


def test_many_identical_rows_still_give_b_unique_items():
    rng = np.random.default_rng(0)
    x = np.vstack([np.tile(rng.normal(size=(1, 8)), (250, 1)), rng.normal(size=(50, 8))]).astype(np.float32)
    for method in ["activeft", "random"]:
        result = select(x, 80, method, iterations=20)
        assert np.unique(result.indices).size == 80


def test_centring_removes_the_shared_direction_and_keeps_rows_unit():
    rng = np.random.default_rng(3)
    x = np.abs(rng.normal(size=(400, 12))).astype(np.float32)    # ReLU-like: all cosines positive
    plain = normalize(x, torch.device("cpu"))
    centred = normalize(x, torch.device("cpu"), center=True)
    assert float((plain @ plain.T).mean()) > 0.5
    assert abs(float(centred.mean(dim=0).norm())) < 0.05 * abs(float(plain.mean(dim=0).norm()))
    torch.testing.assert_close(torch.linalg.vector_norm(centred, dim=1), torch.ones(400))
    # Centring is a property of the pool, not of the scale of each row.
    scaled = normalize(x * rng.uniform(0.1, 10, size=(400, 1)).astype(np.float32), torch.device("cpu"), center=True)
    torch.testing.assert_close(scaled, centred, atol=1e-5, rtol=0)


def test_centring_a_pool_that_points_one_way_changes_nothing():
    x = np.tile(np.array([[1.0, 2.0, 3.0]], dtype=np.float32), (30, 1)) * np.arange(1, 31, dtype=np.float32)[:, None]
    torch.testing.assert_close(normalize(x, torch.device("cpu"), center=True), normalize(x, torch.device("cpu")))
    result = select(x, 5, iterations=5, center=True)
    assert np.unique(result.indices).size == 5


@pytest.mark.parametrize("method", ["activeft", "kmeans", "typiclust", "coreset", "probcover"])
def test_centring_is_applied_to_every_method_and_recorded(method):
    shared = 3.0 * np.ones(16, dtype=np.float32)               # a direction every item shares
    x, _ = clustered(n_clusters=6, per_cluster=40, dim=16, seed=4)
    x = x + shared
    plain = select(x, 12, method, iterations=30, seed=1)
    centred = select(x, 12, method, iterations=30, seed=1, center=True)
    by_hand = select(x / np.linalg.norm(x, axis=1, keepdims=True)
                     - (x / np.linalg.norm(x, axis=1, keepdims=True)).mean(axis=0), 12, method, iterations=30,
                     seed=1)
    assert centred.params["center"] is True and plain.params["center"] is False
    assert sorted(centred.indices.tolist()) == sorted(by_hand.indices.tolist())
    assert np.unique(centred.indices).size == 12


def test_select_all_available_items():
    x, _ = clustered(n_clusters=2, per_cluster=10, seed=7)
    result = select(x, 17, iterations=10, fixed=[0, 1, 2])
    assert sorted(result.indices.tolist()) == list(range(3, 20))


def test_unique_nearest_never_skips_a_free_point():
    """Each center gets its most similar point that no more-similar center holds."""
    rng = np.random.default_rng(8)
    for trial in range(20):
        x = rng.normal(size=(40, 5)).astype(np.float32)
        x[10:20] = x[10]                                # duplicates force conflicts
        points = normalize(x, torch.device("cpu"))
        centers = normalize(rng.normal(size=(15, 5)).astype(np.float32), torch.device("cpu"))
        excluded = torch.zeros(40, dtype=torch.bool)
        excluded[[0, 5]] = True
        picked = unique_nearest(points, centers, excluded=excluded, k=2, memory_budget=256)
        assert picked.unique().numel() == 15 and not excluded[picked].any()
        sims = (centers @ points.T).numpy()
        owner = {int(p): j for j, p in enumerate(picked)}
        for j in range(15):
            better = np.flatnonzero(sims[j] > sims[j, int(picked[j])] + 1e-6)
            for q in better:
                assert excluded[q] or q in owner, f"center {j} skipped free point {q}"
                if not excluded[q]:
                    assert sims[owner[q], q] >= sims[j, q] - 1e-6
        # Other chunking and candidate depth: the same picks, up to which of identical rows is taken.
        again = unique_nearest(points, centers, excluded=excluded, k=64, memory_budget=1 << 20)
        assert torch.equal(points[picked], points[again])


def test_every_prefix_of_the_ranking_is_a_good_selection():
    x, labels = clustered(n_clusters=5, per_cluster=40, spread=0.1, seed=9)
    points = normalize(x, torch.device("cpu"))
    # Three items from cluster 0 (big mass), one from each of the others.
    picks = np.array([0, 1, 2, 40, 80, 120, 160])
    mass = np.array([40, 40, 40, 40, 40, 40, 40])
    order = priority_order(points[picks], mass)
    assert sorted(order.tolist()) == list(range(7))
    first_five = labels[picks[order[:5]]]
    assert len(np.unique(first_five)) == 5            # the first five cover all five clusters


def test_ranking_prefers_what_labeled_items_do_not_cover():
    x, labels = clustered(n_clusters=3, per_cluster=30, spread=0.1, seed=10)
    points = normalize(x, torch.device("cpu"))
    picks = np.array([1, 31, 61])
    baseline = np.array([0.99, -1.0, -1.0])           # cluster 0 is already labeled
    order = priority_order(points[picks], np.array([30, 30, 30]), baseline)
    assert order[-1] == 0


@pytest.mark.parametrize("features, message", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or infinite"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or infinite"),
    (np.array([[0.0, 0.0], [0.0, 1.0]]), "all-zero"),
    (np.zeros((2, 3, 4)), "2-D"),
    (np.zeros(5), "2-D"),
    (np.zeros((0, 4)), "empty"),
    (np.array([["a", "b"]]), "numbers"),
])
def test_bad_features_are_rejected_with_a_clear_message(features, message):
    with pytest.raises(InputError, match=message):
        select(features, 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 0}, "at least 1"),
    ({"budget": -3}, "at least 1"),
    ({"budget": 21}, "larger than the 20"),
    ({"budget": "0%"}, "above 0"),
    ({"budget": "1%"}, "rounds to 0"),
    ({"budget": "abc"}, "neither a count"),
    ({"budget": 2, "method": "magic"}, "unknown method"),
    ({"budget": 2, "loss": "other"}, "unknown loss"),
    ({"budget": 2, "temperature": 0}, "temperature"),
    ({"budget": 2, "fixed": [25]}, "0..19"),
    ({"budget": 19, "fixed": [1, 2]}, "already labeled"),
    ({"budget": 2, "delta": 0.3}, "no parameter"),
    ({"budget": 2, "minibatch": 0}, "minibatch"),
    ({"budget": 2, "minibatch": 2.5}, "minibatch"),
    ({"budget": 2, "center": "yes"}, "center must be True or False"),
])
def test_bad_parameters_are_rejected_up_front(kwargs, message):
    x, _ = clustered(n_clusters=2, per_cluster=10)
    with pytest.raises(InputError, match=message):
        select(x, **kwargs)


@pytest.mark.parametrize("loss", ["released", "paper"])
def test_minibatch_is_approximate_but_close_and_deterministic(loss):
    x, labels = clustered(n_clusters=10, per_cluster=80, seed=9)
    exact = select(x, 20, loss=loss, iterations=200)
    a = select(x, 20, loss=loss, iterations=200, minibatch=200)
    b = select(x, 20, loss=loss, iterations=200, minibatch=200)
    assert np.array_equal(a.indices, b.indices) and a.loss_history == b.loss_history
    assert a.params["minibatch"] == 200 and "minibatch" not in exact.params
    assert np.unique(a.indices).size == 20
    # The final loss is measured on the whole pool: close to the exact run's, far below the start.
    start = exact.loss_history[0]
    assert a.loss - exact.loss < 0.1 * (start - exact.loss)
    randoms = [select(x, 20, "random", seed=s).coverage for s in range(3)]
    assert a.coverage < min(randoms)


def test_minibatch_of_the_whole_pool_is_the_exact_run():
    x, _ = clustered(seed=10)
    exact = select(x, 12, iterations=40)
    whole = select(x, 12, iterations=40, minibatch=x.shape[0])
    assert np.array_equal(exact.indices, whole.indices) and exact.loss_history == whole.loss_history


def test_small_problems_run_on_one_thread_and_restore_the_setting():
    """Inside devices.process_tuning (the command line's process) only; a library call keeps the caller's count."""
    from activeft_label.devices import process_tuning, threads_for

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads_for(torch.device("cpu"), 1e6):
            assert torch.get_num_threads() == 2                 # a library call: torch's setting is the caller's
        with process_tuning():
            with threads_for(torch.device("cpu"), 1e6):
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 2
            with threads_for(torch.device("cpu"), 1e12):
                assert torch.get_num_threads() == 2
            x, _ = clustered(seed=11)
            select(x, 8, iterations=20)
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_power_of_two_scaling_keeps_every_direction_bit_for_bit():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 24)).astype(np.float32) * rng.uniform(1e-3, 1e3, size=(500, 1)).astype(np.float32)
    assert power_of_two_scaled(x) is x                        # ordinary rows: no copy, nothing changed
    extreme = x.copy()
    extreme[:10] *= np.float32(1e30)
    extreme[10:20] *= np.float32(1e-30)
    scaled = power_of_two_scaled(extreme)
    peaks = np.abs(scaled).max(axis=1)
    assert ((peaks >= 0.5) & (peaks < 1.0)).all()
    ratio = extreme / scaled                                   # exact powers of two, so the rows are exact multiples
    assert (np.frexp(ratio)[0] == 0.5).all() and (ratio == ratio[:, :1]).all()
    cpu = torch.device("cpu")
    assert torch.allclose(normalize(check_features(extreme), cpu), normalize(x, cpu), atol=2e-7)
    assert torch.equal(normalize(check_features(x), cpu), normalize(x, cpu))

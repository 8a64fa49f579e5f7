"""The fast optimizer paths equal the dense ones: bounded assignment, chunking, memory budget."""

import numpy as np
import pytest
import torch

from activeft_label.selection._common import normalize, rows_per_chunk
from activeft_label.selection.activeft import optimize_centroids, symmetric_blocks
from activeft_label.selection.assign import BoundedAssigner, DenseAssigner, group_centroids


def pool(kind, seed, n=400, dim=12):
    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.normal(size=(n, dim))
    elif kind == "clustered":
        centers = rng.normal(size=(12, dim))
        x = centers[rng.integers(0, 12, n)] + 0.2 * rng.normal(size=(n, dim))
    elif kind == "duplicates":
        x = rng.normal(size=(n, dim))
        x[: n // 2] = x[rng.integers(0, 10, n // 2)]          # half the pool is 10 repeated rows
    else:                                                      # near-ties: tiny perturbations of few rows
        base = rng.normal(size=(20, dim))
        x = base[rng.integers(0, 20, n)] + 1e-4 * rng.normal(size=(n, dim))
    return normalize(x.astype(np.float32), torch.device("cpu"))


# Rechecked rows are compared group by group, or with every centroid in one product when they need
# more than ``full_share`` of them: 0 forces the one-product form, 2 the per-group form.
SHARES = [0.0, BoundedAssigner.full_share, 2.0]


@pytest.mark.parametrize("kind", ["random", "clustered", "duplicates", "near-ties"])
@pytest.mark.parametrize("loss", ["released", "paper"])
@pytest.mark.parametrize("seed", [0, 2])
@pytest.mark.parametrize("full_share", SHARES)
def test_bounded_assignment_gives_the_same_optimisation_as_dense(kind, loss, seed, full_share, monkeypatch):
    monkeypatch.setattr(BoundedAssigner, "full_share", full_share)
    points = pool(kind, seed)
    fixed = torch.tensor([3, 100, 250]) if seed == 2 else None  # rounds too
    stats = {}
    fast, fast_history = optimize_centroids(points, 30, loss=loss, iterations=50, seed=seed, fixed=fixed,
                                            assignment="bounded", stats=stats)
    dense, dense_history = optimize_centroids(points, 30, loss=loss, iterations=50, seed=seed, fixed=fixed,
                                              assignment="dense")
    assert torch.equal(fast, dense)
    assert fast_history == dense_history
    assert stats["kept"] > 0                                   # the bounds did skip work
    if full_share == 0.0:
        assert stats["wide_rows"] == stats["full_rows"] - points.shape[0]    # all but the first pass
    elif full_share > 1.0:
        assert stats["wide_rows"] == 0


@pytest.mark.parametrize("full_share", SHARES)
def test_bounded_assigner_is_exact_under_arbitrary_moves(full_share, monkeypatch):
    monkeypatch.setattr(BoundedAssigner, "full_share", full_share)
    rng = np.random.default_rng(5)
    points = pool("clustered", 5, n=800)
    centers = points[torch.as_tensor(rng.choice(800, 40, replace=False))].clone()
    bounded, dense = BoundedAssigner(points, memory_budget=8192), DenseAssigner(points)
    for step in range(60):
        scale = 0.002 if step % 10 else 0.2                    # mostly small moves, sometimes a big jump
        centers = torch.nn.functional.normalize(centers + scale * torch.randn(centers.shape), dim=1)
        a_fast, s_fast = bounded(centers)
        a_dense, s_dense = dense(centers)
        truth = torch.argmax(points @ centers.T, dim=1)
        assert torch.equal(a_fast, truth) and torch.equal(a_dense, truth)
        assert torch.equal(s_fast, s_dense)
    assert bounded.stats["kept"] > 0.5 * bounded.stats["steps"] * 800 * 0.5


def test_centroid_groups_cover_every_centroid():
    points = pool("clustered", 7)
    label = group_centroids(points[:100], 10)
    assert label.shape == (100,) and int(label.min()) >= 0 and int(label.max()) < 10
    assert torch.equal(label, group_centroids(points[:100], 10))   # deterministic


@pytest.mark.parametrize("columns, budget, copies", [(10, 4096, 2), (2500, 512 * 2**20, 3), (10**6, 1024, 2)])
def test_chunks_respect_the_memory_budget(columns, budget, copies):
    rows = rows_per_chunk(columns, budget, copies)
    assert rows >= 1
    if rows > 1:
        assert rows * columns * 4 * copies <= budget


@pytest.mark.parametrize("m, budget", [(1, 1 << 20), (13, 1 << 20), (13, 512), (2500, 512 * 2**20), (50000, 512 * 2**20)])
def test_symmetric_blocks_cover_the_upper_triangle_once_within_the_memory_budget(m, budget):
    blocks = symmetric_blocks(m, budget, copies=2)
    side = blocks[0][0].stop - blocks[0][0].start
    if side > 1:
        assert side * side * 4 * 2 <= budget
    if m <= 2500:                     # each block and its mirror image: every (j, k) exactly once
        covered = np.zeros((m, m), dtype=int)
        for rows, cols in blocks:
            assert rows.start <= cols.start
            covered[rows, cols] += 1
            if rows != cols:
                covered[cols, rows] += 1
        assert (covered == 1).all()

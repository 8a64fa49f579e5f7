"""The ranking holds its similarities within the memory budget and ranks the same whatever the budget (issue 24,
item 7)."""

import numpy as np
import pytest
import torch

from activeft_label.selection.ranking import BLOCK_COPIES, priority_order, ranking_plan

DEFAULT_MEMORY_BUDGET = 512 * 1024**2


def _points(b, c, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, c)).astype(np.float32)
    x[b // 2:b // 2 + 10] = x[:10]                      # identical rows: exact ties to break the same way
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return torch.from_numpy(x), rng.integers(1, 40, b)


@pytest.mark.parametrize("b, c, seed", [(300, 16, 0), (700, 48, 1)])
def test_a_small_budget_ranks_exactly_as_the_default(b, c, seed):
    points, mass = _points(b, c, seed)
    baseline = np.where(np.arange(b) % 7 == 0, 0.5, -1.0)
    for base in (None, baseline):
        expected = priority_order(points, mass, base)
        assert ranking_plan(b)[0]                        # the default keeps the matrix at these sizes
        for budget in (4 * b * b + 4 * BLOCK_COPIES * b,   # the matrix and one row beside it
                       4 * BLOCK_COPIES * b * 3,            # no matrix, three rows a block
                       1):                                  # one row at a time
            got = priority_order(points, mass, base, memory_budget=budget)
            assert np.array_equal(got, expected), budget


@pytest.mark.parametrize("b, budget", [(16384, DEFAULT_MEMORY_BUDGET), (11000, DEFAULT_MEMORY_BUDGET),
                                       (5000, DEFAULT_MEMORY_BUDGET), (5000, 1 << 20), (300, 4 * 300 * 300)])
def test_the_matrix_and_one_block_stay_within_the_budget(b, budget):
    keep, rows = ranking_plan(b, budget)
    peak = (4 * b * b if keep else 0) + rows * b * 4 * BLOCK_COPIES
    assert 1 <= rows <= b and peak <= budget


def test_the_matrix_that_took_a_gib_is_no_longer_kept():
    keep, rows = ranking_plan(16384)
    assert not keep                                      # 16384² float32 = 1 GiB against 512 MiB
    assert ranking_plan(10000)[0]                        # 400 MB still fits beside its blocks

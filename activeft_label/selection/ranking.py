"""Priority order for annotation: every prefix of the ranking is itself a good selection.

The selected items are ranked by greedy facility location on the pool, with
each selected item standing for the pool samples nearest to it (its cluster
mass).  Rank 1 is the item whose cluster, placed alone, covers the pool best;
each next rank adds the item that most raises Σ_k m_k max_{j ∈ prefix} sim(x_k, x_j),
where k runs over the selected items and m_k is the mass of k's cluster.  The
objective is submodular, so a lazy greedy (stale upper bounds in a heap) gives
the same order as the plain greedy while evaluating few gains per pick.
"""

import heapq

import numpy as np
import torch

from ._common import DEFAULT_MEMORY_BUDGET, rows_per_chunk

#: float32-sized copies of one B-wide row that a block of similarities needs at once: its float64 product (two)
#: and the rounded similarities, or later the similarities, their excess over the best so far and its float64
#: weighting (two).
BLOCK_COPIES = 4


def ranking_plan(b, memory_budget=DEFAULT_MEMORY_BUDGET):
    """How :func:`priority_order` fits ``memory_budget`` bytes for ``b`` selected items.

    Returns ``(keep_matrix, rows)``: whether the B×B float32 similarity matrix is kept (when one block of rows fits
    beside it), and how many rows one block computes at once, so that the matrix, if kept, plus one block with its
    temporaries stay within the budget (one row at least, whatever the budget).
    """
    matrix = 4 * b * b
    keep = matrix + 4 * BLOCK_COPIES * b <= memory_budget
    return keep, min(b, rows_per_chunk(b, memory_budget - matrix if keep else memory_budget, copies=BLOCK_COPIES))


def priority_order(selected_points, mass, baseline=None, memory_budget=DEFAULT_MEMORY_BUDGET):
    """Rank selected items so that every prefix covers the pool well.

    Parameters
    ----------
    selected_points : Tensor (B, C), unit rows of the selected items
    mass : array (B,), how many pool samples each selected item stands for
    baseline : array (B,) or None
        Similarity of each selected item to its nearest already labeled item
        (earlier rounds); the ranking then favours what those do not cover.
    memory_budget : int, bytes of similarities held at once (see :func:`ranking_plan`);
        the order does not depend on it.

    Returns
    -------
    np.ndarray (B,) of positions into ``selected_points``, rank 1 first.
    """
    x = selected_points.detach().to("cpu", torch.float32).numpy()
    b = x.shape[0]
    # Products in float64 rounded to float32, and gains summed by numpy (pairwise), not BLAS in float32: BLAS sums
    # a dot product in an order that depends on the shape of the product, so float32 products differ in the last
    # bit between a kept matrix, a block and a single row, and a smaller memory budget could then break a tie the
    # other way; float64's noise vanishes in the rounding.
    x64 = x.astype(np.float64)
    weights = np.asarray(mass, dtype=np.float64)
    best = np.full(b, -1.0, np.float32) if baseline is None else \
        np.maximum(np.asarray(baseline, np.float32), np.float32(-1.0))
    keep, step = ranking_plan(b, memory_budget)

    def rows(start, stop):
        return (x64[start:stop] @ x64.T).astype(np.float32)

    matrix = np.empty((b, b), dtype=np.float32) if keep else None
    first = np.empty(b, dtype=np.float64)
    for start in range(0, b, step):
        block = rows(start, start + step)
        if matrix is not None:
            matrix[start:start + step] = block
        first[start:start + step] = _gains(block, best, weights)

    def column(j):
        # The matrix is symmetric: row j is column j, computed as part of a block.
        return matrix[j] if matrix is not None else rows(j, j + 1)[0]

    # Heap of (-upper bound on gain, index); ties go to the lower index.
    heap = [(-float(g), j) for j, g in enumerate(first)]
    heapq.heapify(heap)
    order = []
    while heap:
        _, j = heapq.heappop(heap)
        similarity = column(j)
        fresh = float(_gains(similarity[None, :], best, weights)[0])
        if heap and fresh < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-fresh, j))
            continue
        order.append(j)
        np.maximum(best, similarity, out=best)
    return np.asarray(order, dtype=np.int64)


def _gains(block, best, weights):
    """Σ_k m_k max(sim(j, k) − best_k, 0) for each row j of ``block``."""
    excess = block - best[None, :]
    np.maximum(excess, np.float32(0.0), out=excess)
    return np.sum(excess * weights[None, :], axis=1)

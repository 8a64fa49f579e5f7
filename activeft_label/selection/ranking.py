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

#: Above this many selected items the item×item similarity matrix is not kept in memory.
_MATRIX_LIMIT = 16384


def priority_order(selected_points, mass, baseline=None):
    """Rank selected items so that every prefix covers the pool well.

    Parameters
    ----------
    selected_points : Tensor (B, C), unit rows of the selected items
    mass : array (B,), how many pool samples each selected item stands for
    baseline : array (B,) or None
        Similarity of each selected item to its nearest already labeled item
        (earlier rounds); the ranking then favours what those do not cover.

    Returns
    -------
    np.ndarray (B,) of positions into ``selected_points``, rank 1 first.
    """
    x = selected_points.detach().to("cpu", torch.float32).numpy()
    b = x.shape[0]
    mass = np.asarray(mass, dtype=np.float32)
    best = np.full(b, -1.0, np.float32) if baseline is None else \
        np.maximum(np.asarray(baseline, np.float32), np.float32(-1.0))
    matrix = x @ x.T if b <= _MATRIX_LIMIT else None

    def column(j):
        return matrix[:, j] if matrix is not None else x @ x[j]

    def gain(j):
        return float(mass @ np.maximum(column(j) - best, 0.0))

    # First gains all at once, in row blocks (the matrix is symmetric).
    first = np.empty(b, dtype=np.float64)
    step = max(1, (64 * 1024**2) // (4 * b))
    for start in range(0, b, step):
        block = matrix[start:start + step] if matrix is not None else x[start:start + step] @ x.T
        first[start:start + step] = np.maximum(block - best[None, :], 0.0) @ mass
    # Heap of (-upper bound on gain, index); ties go to the lower index.
    heap = [(-float(g), j) for j, g in enumerate(first)]
    heapq.heapify(heap)
    order = []
    while heap:
        _, j = heapq.heappop(heap)
        fresh = gain(j)
        if heap and fresh < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-fresh, j))
            continue
        order.append(j)
        np.maximum(best, column(j), out=best)
    return np.asarray(order, dtype=np.int64)

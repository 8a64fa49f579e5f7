"""Nearest-centroid assignment for the ActiveFT steps: a dense pass and an
exact bounded pass that skips most of the work.

Both return, for every sample, the index of its most similar centroid and
that similarity computed the same way (a row-wise dot product), so when they
agree on the assignment the optimizer's trajectory is bit-for-bit the same.

The bounded pass (in the style of Hamerly's k-means) keeps per sample an
upper bound on its similarity to every centroid but its own.  A centroid that
moved by δ changes a unit sample's similarity by at most δ, so after a step
the bound grows by the largest centroid move; summed over steps this is a
path length, kept as one running total so that each sample's bound stays
valid whenever it was last refreshed.  Each step computes every sample's
exact similarity to its current centroid (one dot product per sample); where
that beats the bound the assignment provably stands, and only the other
samples are compared with all centroids (which refreshes their bound).

The result is exact: equal to the dense pass up to floating-point ties.

(A middle level that rechecks a short per-sample candidate list was measured
on this project's 2-core AVX2 CPU: gathering the candidates cost as much per
row as the full GEMM row, so it was left out.)
"""

import torch

from ._common import DEFAULT_MEMORY_BUDGET, rows_per_chunk

# Slack on every bound comparison, well above float32 rounding of unit dot products.
_SLACK = 1e-5


def rowwise_similarity(points, centers, assign, memory_budget=DEFAULT_MEMORY_BUDGET):
    """f_i · θ_{assign_i} for every row, in chunks."""
    out = torch.empty(points.shape[0], dtype=points.dtype, device=points.device)
    step = rows_per_chunk(points.shape[1], memory_budget, copies=2)
    for start in range(0, points.shape[0], step):
        rows = slice(start, start + step)
        out[rows] = torch.einsum("nc,nc->n", points[rows], centers.index_select(0, assign[rows]))
    return out


class DenseAssigner:
    """Every sample against every centroid, each step (chunked under the memory budget)."""

    def __init__(self, points, memory_budget=DEFAULT_MEMORY_BUDGET):
        self.points = points
        self.memory_budget = memory_budget
        self.stats = {"steps": 0, "full_rows": 0}

    def __call__(self, centers):
        n = self.points.shape[0]
        assign = torch.empty(n, dtype=torch.long, device=self.points.device)
        step = rows_per_chunk(centers.shape[0], self.memory_budget, copies=2)
        for start in range(0, n, step):
            assign[start:start + step] = torch.argmax(self.points[start:start + step] @ centers.T, dim=1)
        self.stats["steps"] += 1
        self.stats["full_rows"] += n
        return assign, rowwise_similarity(self.points, centers, assign, self.memory_budget)


class BoundedAssigner:
    """Exact nearest centroids that skip samples whose bounds prove nothing changed."""

    def __init__(self, points, memory_budget=DEFAULT_MEMORY_BUDGET):
        self.points = points
        self.memory_budget = memory_budget
        self.previous = None
        self.path = 0.0                    # Σ over steps of the largest centroid move (+ slack)
        n = points.shape[0]
        self.assign = torch.zeros(n, dtype=torch.long, device=points.device)
        self.second = torch.zeros(n, dtype=points.dtype, device=points.device)  # 2nd-best bound minus path
        self.stats = {"steps": 0, "kept": 0, "full_rows": 0}

    def __call__(self, centers):
        n = self.points.shape[0]
        if self.previous is None or self.previous.shape != centers.shape:
            self._refresh(torch.arange(n, device=self.points.device), centers)
            sim = rowwise_similarity(self.points, centers, self.assign, self.memory_budget)
        else:
            move = torch.linalg.vector_norm(centers - self.previous, dim=1).max()
            self.path += float(move) + _SLACK
            sim = rowwise_similarity(self.points, centers, self.assign, self.memory_budget)
            doubt = torch.nonzero(sim <= self.second + self.path).squeeze(1)
            self.stats["kept"] += n - doubt.numel()
            if doubt.numel():
                before = self.assign[doubt]
                self._refresh(doubt, centers)
                moved = doubt[self.assign[doubt] != before]
                if moved.numel():
                    sim[moved] = rowwise_similarity(self.points[moved], centers, self.assign[moved],
                                                    self.memory_budget)
        self.previous = centers.clone()
        self.stats["steps"] += 1
        return self.assign, sim

    def _refresh(self, rows, centers):
        """All centroids for ``rows``: their nearest centroid and a fresh second-best bound."""
        self.stats["full_rows"] += rows.numel()
        m = centers.shape[0]
        step = rows_per_chunk(m, self.memory_budget, copies=2)
        for start in range(0, rows.numel(), step):
            part = rows[start:start + step]
            block = self.points[part] @ centers.T
            if m > 1:
                top, idx = block.topk(2, dim=1)
                self.assign[part], self.second[part] = idx[:, 0], top[:, 1] - self.path
            else:
                self.assign[part] = 0
                self.second[part] = -2.0 - self.path

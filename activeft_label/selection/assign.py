"""Nearest-centroid assignment for the ActiveFT steps: a dense pass and an
exact bounded pass that skips most of the work.

Both return, for every sample, the index of its most similar centroid and
that similarity computed the same way (a row-wise dot product), so when they
agree on the assignment the optimizer's trajectory is bit-for-bit the same.

The bounded pass (in the style of Hamerly's and Yinyang k-means) keeps per
sample and per group of centroids an upper bound on its similarity to the
group's centroids other than its own.  A centroid that moved by δ changes a
unit sample's similarity by at most δ, so after a step a group's bounds grow
by the group's largest move; summed over steps this is a path length, kept as
one running total per group so that each sample's bounds stay valid
whenever it was last refreshed.  Each step computes every sample's exact
similarity to its current centroid (one dot product per sample); where that
beats all its group bounds the assignment provably stands, and only the
other samples are compared with all centroids (which refreshes their bounds).

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


def group_centroids(centers, groups, iterations=5):
    """Deterministic spherical k-means of the centroids into ``groups`` groups: (group index per centroid)."""
    m = centers.shape[0]
    groups = max(1, min(groups, m))
    seeds = torch.linspace(0, m - 1, groups, device=centers.device).round().long()
    means = centers[seeds].clone()
    label = torch.zeros(m, dtype=torch.long, device=centers.device)
    for _ in range(iterations):
        label = torch.argmax(centers @ means.T, dim=1)
        sums = torch.zeros_like(means).index_add_(0, label, centers)
        empty = torch.linalg.vector_norm(sums, dim=1) == 0
        sums[empty] = means[empty]
        means = torch.nn.functional.normalize(sums, dim=1)
    return label


class BoundedAssigner:
    """Exact nearest centroids that skip samples whose bounds prove nothing changed.

    The centroids are split once into ``groups`` spatial groups (Yinyang
    k-means style).  Per sample and group it keeps an upper bound on the
    similarity to the group's centroids (its own excluded); a group's bounds
    grow by that group's largest move, so far or calm groups keep their slack
    while one fast centroid elsewhere would stall a single global bound.
    """

    def __init__(self, points, memory_budget=DEFAULT_MEMORY_BUDGET, groups=None):
        self.points = points
        self.memory_budget = memory_budget
        self.groups = groups
        self.previous = None
        self.label = None                  # group of each centroid
        self.path = None                   # per group: Σ over steps of its largest move (+ slack)
        n = points.shape[0]
        self.assign = torch.zeros(n, dtype=torch.long, device=points.device)
        self.bound = None                  # (N, G): bound on other centroids of each group, minus path
        self.stats = {"steps": 0, "kept": 0, "full_rows": 0}

    def __call__(self, centers):
        n = self.points.shape[0]
        if self.previous is None or self.previous.shape != centers.shape:
            m = centers.shape[0]
            g = self.groups or max(1, min(64, m // 10))
            self.label = group_centroids(centers, g)
            g = int(self.label.max()) + 1
            self.path = torch.zeros(g, dtype=self.points.dtype, device=self.points.device)
            self.bound = torch.empty((n, g), dtype=self.points.dtype, device=self.points.device)
            self._refresh(torch.arange(n, device=self.points.device), centers)
            sim = rowwise_similarity(self.points, centers, self.assign, self.memory_budget)
        else:
            move = torch.linalg.vector_norm(centers - self.previous, dim=1)
            group_move = torch.zeros_like(self.path).scatter_reduce_(0, self.label, move, reduce="amax")
            self.path += group_move + _SLACK
            sim = rowwise_similarity(self.points, centers, self.assign, self.memory_budget)
            doubt = torch.nonzero(sim <= self._others_bound()).squeeze(1)
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

    def _others_bound(self):
        """Upper bound on every sample's similarity to any centroid but its own, in row chunks."""
        n = self.points.shape[0]
        out = torch.empty(n, dtype=self.points.dtype, device=self.points.device)
        step = rows_per_chunk(self.bound.shape[1], self.memory_budget, copies=2)
        for start in range(0, n, step):
            out[start:start + step] = (self.bound[start:start + step] + self.path).max(dim=1).values
        return out

    def _refresh(self, rows, centers):
        """All centroids for ``rows``: their nearest centroid and fresh per-group bounds."""
        self.stats["full_rows"] += rows.numel()
        m, g = centers.shape[0], self.path.shape[0]
        step = rows_per_chunk(m, self.memory_budget, copies=3)
        for start in range(0, rows.numel(), step):
            part = rows[start:start + step]
            block = self.points[part] @ centers.T
            best = torch.argmax(block, dim=1)
            self.assign[part] = best
            block[torch.arange(part.numel(), device=block.device), best] = -2.0
            per_group = torch.full((part.numel(), g), -2.0, dtype=block.dtype, device=block.device)
            per_group.scatter_reduce_(1, self.label.expand(part.numel(), m), block, reduce="amax")
            self.bound[part] = per_group - self.path

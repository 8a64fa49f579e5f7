"""Nearest-centroid assignment for the ActiveFT steps: a dense pass and an
exact bounded pass that skips most of the work.

Both return, for every sample, the index of its most similar centroid and
that similarity computed the same way (a row-wise dot product), so when they
agree on the assignment the optimizer's trajectory is bit-for-bit the same.

Which centroid is "most similar" is decided the same way by both, and does
not depend on how a matrix product was blocked: a product screens the
candidates (every centroid within the float32 rounding bound of the best),
and where more than one survives, their row-wise dot products decide, the
lowest index winning exact ties.  (MKL's products of different shapes round
the same dot product differently for small C, so "argmax of whatever block
was computed" would let ties fall differently in the two passes.)

The bounded pass (in the style of Hamerly's and Yinyang k-means) keeps per
sample and per group of centroids an upper bound on its similarity to the
group's centroids other than its own.  A centroid that moved by δ changes a
unit sample's similarity by at most δ, so after a step a group's bounds grow
by the group's largest move; summed over steps this is a path length, kept as
one running total per group so that each sample's bounds stay valid
whenever it was last refreshed.  Each step computes every sample's exact
similarity to its current centroid (one dot product per sample); where that
beats all its group bounds the assignment provably stands.  The other
samples are compared only with the groups whose bound reaches that
similarity, plus their own group (Yinyang's local filter), which refreshes
those groups' bounds.

(A middle level that rechecks a short per-sample candidate list was measured
on this project's 2-core AVX2 CPU: gathering the candidates cost as much per
row as the full GEMM row, so it was left out.)
"""

import numpy as np
import torch

from ._common import DEFAULT_MEMORY_BUDGET, rows_of, rows_per_chunk

# Slack added to a bound's growth each step, for the rounding of the measured moves.
_SLACK = 1e-5
_UNIT_ROUNDOFF = 2.0 ** -24


def dot_error(dim):
    """Bound on the float32 rounding error of one dot product of two (near-)unit vectors of length ``dim``.

    γ_C = C·u/(1 - C·u) for any summation order, times |a|·|b| ≤ 1 (a little
    room for norms that are 1 only up to rounding).
    """
    return 1.05 * dim * _UNIT_ROUNDOFF / (1.0 - dim * _UNIT_ROUNDOFF)


def tie_window(dim):
    """Products this close to a row's best may be the true best after rounding: 4× :func:`dot_error`.

    (A product and a row-wise dot product each err by at most ``dot_error``,
    on both sides of the comparison.)
    """
    return 4.0 * dot_error(dim)


def rowwise_similarity(points, centers, assign, memory_budget=DEFAULT_MEMORY_BUDGET):
    """f_i · θ_{assign_i} for every row, in chunks (float32, whatever the storage of ``points``)."""
    out = torch.empty(points.shape[0], dtype=centers.dtype, device=points.device)
    # Small blocks: the gathered centroid rows are still in cache when multiplied (3× faster
    # than one N×C gather, measured here); each row's result does not depend on the block.
    step = min(2048, rows_per_chunk(points.shape[1], memory_budget, copies=2))
    for start in range(0, points.shape[0], step):
        rows = slice(start, start + step)
        out[rows] = torch.einsum("nc,nc->n", rows_of(points, rows), centers.index_select(0, assign[rows]))
    return out


def settled_argmax(points, centers, block):
    """Most similar center of each row of ``points``, given ``block = points @ centers.T``.

    Centers within :func:`tie_window` of a row's best product are the
    candidates; a single candidate wins outright, several are compared by
    their row-wise dot products (the lowest index wins exact ties).  The
    answer is then independent of how ``block`` was computed.
    """
    top = block.max(dim=1)
    close = block >= (top.values - tie_window(points.shape[1])).unsqueeze(1)
    winner = top.indices.clone()
    several = torch.nonzero(close.sum(dim=1) > 1).squeeze(1)
    if several.numel():
        row, col = torch.nonzero(close[several], as_tuple=True)
        value = torch.einsum("nc,nc->n", points[several[row]], centers[col])
        best = torch.full((several.numel(),), -float("inf"), dtype=value.dtype, device=value.device)
        best.scatter_reduce_(0, row, value, reduce="amax")
        tied = value == best[row]
        first = torch.full((several.numel(),), centers.shape[0], dtype=torch.long, device=value.device)
        first.scatter_reduce_(0, row[tied], col[tied], reduce="amin")
        winner[several] = first
    return winner


class DenseAssigner:
    """Every sample against every centroid, each step (chunked under the memory budget)."""

    def __init__(self, points, memory_budget=DEFAULT_MEMORY_BUDGET):
        self.points = points
        self.memory_budget = memory_budget
        self.stats = {"steps": 0, "full_rows": 0}

    def __call__(self, centers):
        n = self.points.shape[0]
        assign = torch.empty(n, dtype=torch.long, device=self.points.device)
        step = rows_per_chunk(centers.shape[0], self.memory_budget, copies=3)
        for start in range(0, n, step):
            rows = rows_of(self.points, slice(start, start + step))
            assign[start:start + step] = settled_argmax(rows, centers, rows @ centers.T)
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

    A sample whose bounds fail is compared only with the groups whose bound
    reaches its current similarity, plus its own group (Yinyang's local
    filter): typically a few groups, not all B centroids.  Rows with more
    than one candidate within the rounding bound of their best product are
    settled by :func:`settled_argmax` over all centroids, as the dense pass
    settles them, so both passes assign every row alike.
    """

    #: A rechecked row needing more than this share of the centroids gets one full product instead of
    #: per-group ones (per-group products cost ~5× more per similarity here: measured on 1,280-d
    #: EfficientNet features, where they were slower than the dense pass when ~17% of B was needed per row).
    full_share = 0.2

    def __init__(self, points, memory_budget=DEFAULT_MEMORY_BUDGET, groups=None):
        self.points = points
        self.memory_budget = memory_budget
        self.groups = groups
        self.previous = None
        self.label = None                  # group of each centroid
        self.members = None                # per group: its centroid indices, ascending
        self.path = None                   # per group: Σ over steps of its largest move (+ slack)
        n = points.shape[0]
        self.assign = torch.zeros(n, dtype=torch.long, device=points.device)
        self.bound = None                  # (N, G): bound on other centroids of each group, minus path
        self.stats = {"steps": 0, "kept": 0, "full_rows": 0, "wide_rows": 0, "products": 0}

    def __call__(self, centers):
        n = self.points.shape[0]
        if self.previous is None or self.previous.shape != centers.shape:
            m = centers.shape[0]
            # ~20 centroids a group, at most 32 groups: fewer, larger groups recheck more similarities but
            # pay the per-group gathers and small products less often (bench/RESULTS.md, 2026-11-30: 7-28%
            # faster than min(64, B // 10) at B = 540-5,000, the same centroids).
            g = self.groups or max(1, min(32, m // 20))
            self.label = group_centroids(centers, g)
            g = int(self.label.max()) + 1
            self.members = [torch.nonzero(self.label == k).squeeze(1) for k in range(g)]
            self.members_total = m
            self.order = torch.cat(self.members)         # centroids sorted by group: contiguous spans
            ends = np.cumsum([members.numel() for members in self.members]).tolist()
            self.spans = list(zip([0] + ends[:-1], ends))
            self.path = torch.zeros(g, dtype=centers.dtype, device=self.points.device)
            self.bound = torch.empty((n, g), dtype=centers.dtype, device=self.points.device)
            self._recheck(torch.arange(n, device=self.points.device), None, centers)
            sim = rowwise_similarity(self.points, centers, self.assign, self.memory_budget)
        else:
            move = torch.linalg.vector_norm(centers - self.previous, dim=1)
            group_move = torch.zeros_like(self.path).scatter_reduce_(0, self.label, move, reduce="amax")
            self.path += group_move + _SLACK
            sim = rowwise_similarity(self.points, centers, self.assign, self.memory_budget)
            doubt, need = self._doubtful_groups(sim)
            self.stats["kept"] += n - doubt.numel()
            if doubt.numel():
                before = self.assign[doubt]
                self._recheck(doubt, need, centers)
                moved = doubt[self.assign[doubt] != before]
                if moved.numel():
                    sim[moved] = rowwise_similarity(self.points[moved], centers, self.assign[moved],
                                                    self.memory_budget)
        self.previous = centers.clone()
        self.stats["steps"] += 1
        return self.assign, sim

    def _doubtful_groups(self, sim):
        """Rows whose bounds fail, and for each of them the groups to compare (own group always)."""
        n = self.points.shape[0]
        rows, needs = [], []
        step = rows_per_chunk(self.bound.shape[1], self.memory_budget, copies=2)
        for start in range(0, n, step):
            need = (self.bound[start:start + step] + self.path) >= sim[start:start + step].unsqueeze(1)
            hit = torch.nonzero(need.any(dim=1)).squeeze(1)
            rows.append(hit + start)
            needs.append(need[hit])
        doubt, need = torch.cat(rows), torch.cat(needs)
        need[torch.arange(doubt.numel(), device=need.device), self.label[self.assign[doubt]]] = True
        return doubt, need

    def _recheck(self, rows, need, centers):
        """Nearest centroid and fresh bounds for ``rows``, comparing each with the groups ``need`` marks.

        ``need`` is (len(rows), G) bool, or None for every group.  Groups left
        out keep their bounds: they provably hold nothing above the row's own
        centroid, whose group is always compared.

        A row that needs more than :attr:`full_share` of the centroids is
        compared with all of them in one product instead (which refreshes all
        its bounds): per-group products gather the row once per group and
        multiply it by a handful of centroids, several times slower per
        similarity than one wide product.  Rows go in chunks so that the
        per-row, per-group temporaries and the similarity blocks stay within
        the memory budget.
        """
        self.stats["full_rows"] += rows.numel()
        if need is not None:
            sizes = torch.tensor([m.numel() for m in self.members], dtype=centers.dtype,
                                 device=self.points.device)
            step = rows_per_chunk(self.path.shape[0], self.memory_budget, copies=2)
            wide = torch.cat([need[start:start + step].to(sizes.dtype) @ sizes
                              for start in range(0, rows.numel(), step)]) > self.full_share * self.members_total
            if wide.any():
                self.stats["wide_rows"] += int(wide.sum())
                self._recheck_all_groups(rows[wide], centers)
                rows, need = rows[~wide], need[~wide]
            if not rows.numel():
                return
            widest = max(m.numel() for m in self.members)
            step = rows_per_chunk(max(4 * self.path.shape[0], widest), self.memory_budget, copies=3)
            for start in range(0, rows.numel(), step):
                part = slice(start, start + step)
                self._recheck_chunk(rows[part], need[part], centers)
        else:
            self._recheck_all_groups(rows, centers)

    def _recheck_all_groups(self, rows, centers):
        """:meth:`_recheck` of ``rows`` against every centroid: one product per chunk of rows."""
        ordered = centers[self.order]
        step = rows_per_chunk(ordered.shape[0] + 4 * self.path.shape[0], self.memory_budget, copies=2)
        for start in range(0, rows.numel(), step):
            part = rows[start:start + step]
            block = rows_of(self.points, part) @ ordered.T
            self.stats["products"] += block.numel()
            k, g = part.numel(), self.path.shape[0]
            top_val = torch.empty((k, g), dtype=block.dtype, device=block.device)
            top_idx = torch.empty((k, g), dtype=torch.long, device=block.device)
            second = torch.full((k, g), -2.0, dtype=block.dtype, device=block.device)
            for group, (lo, hi) in enumerate(self.spans):
                if hi - lo > 1:
                    top = torch.topk(block[:, lo:hi], 2, dim=1)
                    top_val[:, group], second[:, group] = top.values[:, 0], top.values[:, 1]
                    top_idx[:, group] = self.order[lo + top.indices[:, 0]]
                elif hi - lo == 1:
                    top_val[:, group] = block[:, lo]
                    top_idx[:, group] = self.order[lo]
                else:                                    # an empty group bounds nothing
                    top_val[:, group] = -float("inf")
                    top_idx[:, group] = centers.shape[0]
            self._settle(part, None, centers, top_val, top_idx, second)

    def _recheck_chunk(self, rows, need, centers):
        k, g = rows.numel(), self.path.shape[0]
        device, dtype = self.points.device, centers.dtype
        top_val = torch.full((k, g), -float("inf"), dtype=dtype, device=device)
        top_idx = torch.full((k, g), centers.shape[0], dtype=torch.long, device=device)
        second = torch.full((k, g), -2.0, dtype=dtype, device=device)
        by_group = need.T.contiguous()      # a contiguous row per group
        for group, members in enumerate(self.members):
            sel = torch.nonzero(by_group[group]).squeeze(1)
            if not sel.numel() or not members.numel():
                continue
            self.stats["products"] += sel.numel() * members.numel()
            block = rows_of(self.points, rows[sel]) @ centers[members].T
            best = torch.argmax(block, dim=1)
            top_val[sel, group] = block.gather(1, best.unsqueeze(1)).squeeze(1)
            top_idx[sel, group] = members[best]
            if members.numel() > 1:
                block.scatter_(1, best.unsqueeze(1), -float("inf"))
                second[sel, group] = block.max(dim=1).values
        self._settle(rows, need, centers, top_val, top_idx, second)

    def _settle(self, rows, need, centers, top_val, top_idx, second):
        """Assignment and bounds of ``rows`` from each compared group's best and second-best product."""
        best_val = top_val.max(dim=1, keepdim=True).values
        winner = top_idx.gather(1, torch.argmax(top_val, dim=1, keepdim=True)).squeeze(1)
        # Several candidates within the rounding bound of the best: settle them as the dense pass does.
        margin = best_val - tie_window(self.points.shape[1])
        tied = torch.nonzero(((top_val >= margin).sum(dim=1) > 1) | (second >= margin).any(dim=1)).squeeze(1)
        if tied.numel():
            tied_points = rows_of(self.points, rows[tied])
            winner[tied] = settled_argmax(tied_points, centers, tied_points @ centers.T)
        self.assign[rows] = winner
        # A group's bound: its best product other than the winner, plus room for the rounding of
        # that product and of the row-wise similarity it will be compared with.
        fresh = torch.where(top_idx == winner.unsqueeze(1), second, top_val) + 2.0 * dot_error(self.points.shape[1])
        if need is None:
            self.bound[rows] = fresh - self.path
        else:
            self.bound[rows] = torch.where(need, fresh - self.path, self.bound[rows])

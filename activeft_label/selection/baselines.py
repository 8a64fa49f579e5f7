"""Baseline selection methods that ActiveFT is compared against.

Every method has the same interface::

    select_xxx(points, budget, *, fixed, seed, memory_budget=DEFAULT_MEMORY_BUDGET,
               progress=None, **params) -> LongTensor (budget,)

``points`` are unit rows (N×C, float32, any device), ``budget`` is B with
``1 <= B <= N - len(fixed)``, ``fixed`` the rows labeled in earlier rounds
(never returned, and treated by each method as already chosen), ``seed`` makes
every random choice reproducible and ``progress(done, total)``, when given, is
called with ``total = B``.  The result is B distinct row indices on
``points.device``, in the method's own pick order.

``random``     uniform without replacement.
``kmeans``     k-means with B clusters, the item nearest each center.
``coreset``    k-center greedy (Sener & Savarese, ICLR 2018).
``probcover``  greedy max coverage of δ-balls (Yehuda et al., NeurIPS 2022).
``typiclust``  TPC_RP: the most typical item of the least covered, largest
               cluster (Hacohen et al., ICML 2022).

No method builds an N×N matrix: similarities are formed in row chunks sized
by :func:`._common.rows_per_chunk` under ``memory_budget`` bytes.
"""

import math
import numbers
import warnings

import numpy as np
import torch

from ..errors import InputError
from ._common import DEFAULT_MEMORY_BUDGET, nearest, rows_per_chunk, unique_nearest

#: Pools larger than this are clustered with MiniBatchKMeans instead of KMeans.
MINIBATCH_THRESHOLD = 50_000
#: Batch size of MiniBatchKMeans.
MINIBATCH_SIZE = 4096
#: Clusters smaller than this are skipped by TypiClust while larger ones remain.
TYPICLUST_MIN_CLUSTER = 5
#: Rows sampled to choose ProbCover's δ automatically.
PROBCOVER_DELTA_SAMPLE = 2000
#: Neighbour rank k used by the automatic δ is clamped to this range.
PROBCOVER_K_RANGE = (1, 50)
#: Smallest automatic δ (pools dominated by identical rows give a median of 0).
PROBCOVER_MIN_DELTA = 1e-3
#: Peak bytes per edge of the δ-ball graph: row and column lists, a sort
#: permutation and the column-sorted copy, all int64.
PROBCOVER_BYTES_PER_EDGE = 32

__all__ = ["BASELINES", "select_random", "select_kmeans", "select_coreset", "select_probcover",
           "select_typiclust", "probcover_delta"]


# --------------------------------------------------------------------------- random

def select_random(points, budget, *, fixed, seed, memory_budget=DEFAULT_MEMORY_BUDGET, progress=None, **params):
    """Uniform random selection without replacement.

    Parameters
    ----------
    points : Tensor (N, C)
        Unit-norm features of the pool; only N and the device are used.
    budget : int
        Number of items B to select, ``1 <= B <= N - F``.
    fixed : LongTensor (F,) or None
        Rows already labeled; never selected.
    seed : int
        Seed of ``numpy.random.default_rng``.
    memory_budget : int, default=DEFAULT_MEMORY_BUDGET
        Unused; accepted for a uniform interface.
    progress : callable(done, total) or None, default=None
        Called once with ``(B, B)`` at the end.

    Returns
    -------
    LongTensor (B,)
        Distinct rows not in ``fixed``, in draw order.
    """
    _reject_params("random", params, ())
    n, fixed, excluded = _prepare(points, budget, fixed)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(_free_rows(n, fixed), size=budget, replace=False)
    _report(progress, budget, budget)
    return torch.as_tensor(chosen, dtype=torch.long, device=points.device)


# --------------------------------------------------------------------------- k-means

def select_kmeans(points, budget, *, fixed, seed, memory_budget=DEFAULT_MEMORY_BUDGET, progress=None, **params):
    """The item nearest each of B k-means centers.

    k-means with B clusters runs on the unit features (scikit-learn
    ``KMeans(n_init=1)``; ``MiniBatchKMeans`` with batches of
    ``MINIBATCH_SIZE`` rows when N exceeds ``MINIBATCH_THRESHOLD``).  The
    centers are L2-normalised and each gets its most similar free item, no
    item twice (:func:`._common.unique_nearest`).  Labeled rows take part in
    the clustering but are never picked.

    Parameters
    ----------
    points : Tensor (N, C)
        Unit-norm features of the pool.
    budget : int
        Number of items B (= clusters) to select, ``1 <= B <= N - F``.
    fixed : LongTensor (F,) or None
        Rows already labeled; excluded from the picks.
    seed : int
        ``random_state`` of the clustering.
    memory_budget : int, default=DEFAULT_MEMORY_BUDGET
        Bytes of similarity blocks held at once when matching centers to items.
    progress : callable(done, total) or None, default=None
        Called once with ``(B, B)`` at the end.

    Returns
    -------
    LongTensor (B,)
        The item picked for each center, in center order.
    """
    _reject_params("kmeans", params, ())
    n, fixed, excluded = _prepare(points, budget, fixed)
    _, centers = _kmeans(points, budget, seed)
    centers = torch.nn.functional.normalize(torch.as_tensor(centers, device=points.device, dtype=points.dtype), dim=1)
    picked = unique_nearest(points, centers, excluded=excluded if fixed.numel() else None,
                            memory_budget=memory_budget)
    _report(progress, budget, budget)
    return picked


# --------------------------------------------------------------------------- coreset

def select_coreset(points, budget, *, fixed, seed, memory_budget=DEFAULT_MEMORY_BUDGET, progress=None, **params):
    """k-center greedy (Sener & Savarese, ICLR 2018).

    Starts from the labeled rows as centers (with none, the first pick is one
    seeded random row), then repeatedly picks the item farthest (Euclidean
    distance ``sqrt(2 - 2·sim)`` between unit vectors) from its nearest
    center.  Each pick costs one N-vector matvec.  Ties go to the lowest row.

    Parameters
    ----------
    points : Tensor (N, C)
        Unit-norm features of the pool.
    budget : int
        Number of items B to select, ``1 <= B <= N - F``.
    fixed : LongTensor (F,) or None
        Rows already labeled: the initial centers, never picked.
    seed : int
        Seed of the first random pick when ``fixed`` is empty.
    memory_budget : int, default=DEFAULT_MEMORY_BUDGET
        Bytes of similarity blocks held at once (distances to the labeled rows).
    progress : callable(done, total) or None, default=None
        Called after every pick with ``(picks so far, B)``.

    Returns
    -------
    LongTensor (B,)
        Rows in pick order.
    """
    _reject_params("coreset", params, ())
    n, fixed, excluded = _prepare(points, budget, fixed)
    device = points.device
    picks = torch.empty(budget, dtype=torch.long, device=device)
    # best[i] = similarity of item i to its nearest center; +inf marks centers.
    if fixed.numel():
        best = nearest(points, points[fixed], memory_budget)[1].clone()
        best[fixed] = math.inf
        start = 0
    else:
        first = int(np.random.default_rng(seed).integers(n))
        picks[0] = first
        best = points @ points[first]
        best[first] = math.inf
        start = 1
        _report(progress, 1, budget)
    for step in range(start, budget):
        pick = torch.argmin(best)          # farthest from every center = least similar
        picks[step] = pick
        torch.maximum(best, points @ points[pick], out=best)
        best[pick] = math.inf
        _report(progress, step + 1, budget)
    return picks


# --------------------------------------------------------------------------- probcover

def select_probcover(points, budget, *, fixed, seed, memory_budget=DEFAULT_MEMORY_BUDGET, progress=None,
                     delta=None, **params):
    """ProbCover: greedy maximum coverage of δ-balls (Yehuda et al., NeurIPS 2022).

    The δ-ball graph links item i to item j when ``‖x_i - x_j‖ < δ``, i.e.
    ``sim > 1 - δ²/2`` (every item is in its own ball).  It is built in row
    chunks as a sparse edge list.  The balls of the labeled rows are covered
    first; then each pick is the item whose ball holds the most items not yet
    covered (ties to the lowest row), and those items become covered.  Once
    everything is covered, the remaining picks are seeded random draws among
    the rows not yet picked, as in the paper.

    Parameters
    ----------
    points : Tensor (N, C)
        Unit-norm features of the pool.
    budget : int
        Number of items B to select, ``1 <= B <= N - F``.
    fixed : LongTensor (F,) or None
        Rows already labeled: their balls count as covered, never picked.
    seed : int
        Seed of the δ estimate's sample and of the random fill.
    memory_budget : int, default=DEFAULT_MEMORY_BUDGET
        Bytes of similarity blocks held at once; the edge list may take at most
        this much too (``PROBCOVER_BYTES_PER_EDGE`` bytes per edge at its peak).
    progress : callable(done, total) or None, default=None
        Called after every pick with ``(picks so far, B)``.
    delta : float in (0, 2] or None, default=None
        Ball radius (Euclidean distance between unit vectors).  ``None``
        chooses it with :func:`probcover_delta`: the median, over up to
        ``PROBCOVER_DELTA_SAMPLE`` seeded sample rows, of the distance to their
        k-th nearest neighbour in the pool, ``k = round(N / (F + B)) - 1``
        clamped to ``PROBCOVER_K_RANGE`` -- the radius at which a typical ball
        holds (itself included) the N / (F + B) items that one labeled or
        selected item has to stand for.

    Returns
    -------
    LongTensor (B,)
        Rows in pick order.

    Raises
    ------
    InputError
        If ``delta`` is outside (0, 2], or the graph would have more edges
        than ``memory_budget`` allows (use a smaller ``delta``).
    """
    _reject_params("probcover", params, ("delta",))
    n, fixed, excluded = _prepare(points, budget, fixed)
    device = points.device
    automatic = delta is None
    if automatic:
        delta = probcover_delta(points, budget + fixed.numel(), seed=seed, memory_budget=memory_budget)
    elif (not isinstance(delta, numbers.Real) or isinstance(delta, bool) or not math.isfinite(delta)
          or not 0 < delta <= 2):
        raise InputError(f"delta must be a number in (0, 2] (a distance between unit vectors), got {delta!r}; "
                         f"leave it unset to choose it automatically")
    row_ptr, col_by_row, col_ptr, row_by_col = _ball_graph(points, float(delta), memory_budget, automatic)

    # uncovered[i] = items in i's ball that are not covered yet.
    uncovered = (row_ptr[1:] - row_ptr[:-1]).clone()
    covered = torch.zeros(n, dtype=torch.bool, device=device)

    def cover(items):
        items = items[~covered[items]]
        if items.numel():
            covered[items] = True
            holders = _segments(col_ptr, row_by_col, items)
            uncovered.index_add_(0, holders, torch.full_like(holders, -1))

    if fixed.numel():
        cover(torch.unique(_segments(row_ptr, col_by_row, fixed)))
    picks = torch.empty(budget, dtype=torch.long, device=device)
    done = 0
    while done < budget:
        best = int(torch.argmax(uncovered))
        if int(uncovered[best]) == 0:
            break                          # everything is covered
        picks[done] = best
        cover(col_by_row[int(row_ptr[best]):int(row_ptr[best + 1])])
        done += 1
        _report(progress, done, budget)
    if done < budget:
        taken = excluded.clone()
        taken[picks[:done]] = True
        free = torch.nonzero(~taken).squeeze(1).cpu().numpy()
        fill = np.random.default_rng(seed).choice(free, size=budget - done, replace=False)
        picks[done:] = torch.as_tensor(fill, dtype=torch.long, device=device)
        _report(progress, budget, budget)
    return picks


def probcover_delta(points, n_centers, *, seed=0, memory_budget=DEFAULT_MEMORY_BUDGET):
    """ProbCover's automatic ball radius δ.

    The median, over up to ``PROBCOVER_DELTA_SAMPLE`` rows drawn with
    ``seed``, of the Euclidean distance to each row's k-th nearest neighbour
    in the whole pool (the row itself not counted), with
    ``k = round(N / n_centers) - 1`` clamped to ``PROBCOVER_K_RANGE``, so a
    typical ball holds about ``N / n_centers`` items, itself included.  Results
    below ``PROBCOVER_MIN_DELTA`` (pools dominated by identical rows) are
    raised to it; the result is at most 2.

    Parameters
    ----------
    points : Tensor (N, C)
        Unit-norm features of the pool.
    n_centers : int
        Number of balls that will cover the pool (labeled plus selected items).
    seed : int, default=0
        Seed of the row sample.
    memory_budget : int, default=DEFAULT_MEMORY_BUDGET
        Bytes of similarity blocks held at once.

    Returns
    -------
    float
    """
    n = points.shape[0]
    k = int(min(max(round(n / max(1, n_centers)) - 1, PROBCOVER_K_RANGE[0]), PROBCOVER_K_RANGE[1]))
    k = min(k, n - 1)
    if k < 1:
        return 2.0
    rng = np.random.default_rng(seed)
    m = min(n, PROBCOVER_DELTA_SAMPLE)
    rows = torch.as_tensor(np.sort(rng.choice(n, size=m, replace=False)), device=points.device)
    sample = points[rows]
    # Running top-(k+1) similarities of each sample row over column chunks of the pool.
    top = torch.full((m, k + 1), -math.inf, dtype=points.dtype, device=points.device)
    step = rows_per_chunk(m, memory_budget, copies=2)
    for start in range(0, n, step):
        block = sample @ points[start:start + step].T
        merged = torch.cat([top, block.topk(min(k + 1, block.shape[1]), dim=1).values], dim=1)
        top = merged.topk(k + 1, dim=1).values
    # Column k is the (k+1)-th most similar item, the row itself being (tied for) the first.
    dist = torch.sqrt(torch.clamp(2.0 - 2.0 * top[:, k], min=0.0))
    delta = float(dist.median())
    return float(min(2.0, max(delta, PROBCOVER_MIN_DELTA)))


def _ball_graph(points, delta, memory_budget, automatic):
    """Sparse δ-ball graph in CSR (by row) and CSC (by column) form, self loops included."""
    n = points.shape[0]
    device = points.device
    threshold = 1.0 - delta * delta / 2.0
    max_edges = max(n, int(memory_budget // PROBCOVER_BYTES_PER_EDGE))
    rows, cols = [], []
    total = 0
    step = rows_per_chunk(n, memory_budget, copies=2)
    for start in range(0, n, step):
        stop = min(start + step, n)
        linked = (points[start:stop] @ points.T) > threshold
        local = torch.arange(stop - start, device=device)
        linked[local, local + start] = True
        edges = torch.nonzero(linked)            # row-major: sorted by row, then column
        del linked
        total += edges.shape[0]
        if total > max_edges:
            hint = ("the automatic delta was too large for this pool; pass a smaller delta explicitly"
                    if automatic else "use a smaller delta")
            raise InputError(
                f"the probcover graph at delta={delta:.4g} links more than {max_edges:,} pairs of items, "
                f"which does not fit the memory budget of {memory_budget:,} bytes; {hint} "
                f"(or raise the memory budget)")
        rows.append(edges[:, 0] + start)
        cols.append(edges[:, 1])
        del edges
    rows = torch.cat(rows)
    col_by_row = torch.cat(cols)
    del cols
    row_ptr = _pointers(rows, n)
    order = torch.argsort(col_by_row, stable=True)
    row_by_col = rows[order]
    del rows, order
    col_ptr = _pointers(col_by_row, n)
    return row_ptr, col_by_row, col_ptr, row_by_col


def _pointers(keys, n):
    """CSR pointer array (n + 1,) from the key of every entry."""
    counts = torch.bincount(keys, minlength=n)
    ptr = torch.zeros(n + 1, dtype=torch.long, device=counts.device)
    torch.cumsum(counts, dim=0, out=ptr[1:])
    return ptr


def _segments(ptr, values, ids):
    """Concatenation of ``values[ptr[i]:ptr[i+1]]`` for every i in ``ids`` (vectorised)."""
    starts = ptr[ids]
    lengths = ptr[ids + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return values[:0]
    offsets = torch.cumsum(lengths, dim=0) - lengths
    position = torch.arange(total, device=values.device)
    position += torch.repeat_interleave(starts - offsets, lengths)
    return values[position]


# --------------------------------------------------------------------------- typiclust

def select_typiclust(points, budget, *, fixed, seed, memory_budget=DEFAULT_MEMORY_BUDGET, progress=None,
                     k_neighbors=20, **params):
    """TypiClust, TPC_RP variant (Hacohen et al., ICML 2022).

    The pool (labeled rows included) is clustered into F + B clusters with
    k-means (``KMeans(n_init=1)``, or ``MiniBatchKMeans`` above
    ``MINIBATCH_THRESHOLD`` rows).  Then B times: take the cluster with the
    fewest labeled-or-selected items, ties to the largest cluster (then the
    lowest cluster number), skipping clusters with fewer than
    ``TYPICLUST_MIN_CLUSTER`` items unless no other cluster has a free item;
    pick its most typical free item.  Typicality is
    ``1 / mean distance to the K = min(k_neighbors, size - 1)`` nearest other
    items of the same cluster (Euclidean between unit vectors); it is computed
    for a cluster only when the cluster is first chosen, in row chunks under
    ``memory_budget``.

    Parameters
    ----------
    points : Tensor (N, C)
        Unit-norm features of the pool.
    budget : int
        Number of items B to select, ``1 <= B <= N - F``.
    fixed : LongTensor (F,) or None
        Rows already labeled: they count in their clusters, never picked.
    seed : int
        ``random_state`` of the clustering.
    memory_budget : int, default=DEFAULT_MEMORY_BUDGET
        Bytes of similarity blocks held at once.
    progress : callable(done, total) or None, default=None
        Called after every pick with ``(picks so far, B)``.
    k_neighbors : int, default=20
        Neighbours used for typicality (the paper's 20).

    Returns
    -------
    LongTensor (B,)
        Rows in pick order.
    """
    _reject_params("typiclust", params, ("k_neighbors",))
    if (not isinstance(k_neighbors, numbers.Integral) or isinstance(k_neighbors, bool)) or k_neighbors < 1:
        raise InputError(f"k_neighbors must be a whole number >= 1 (the paper uses 20), got {k_neighbors!r}")
    n, fixed, excluded = _prepare(points, budget, fixed)
    device = points.device
    n_clusters = budget + fixed.numel()
    labels, _ = _kmeans(points, n_clusters, seed)
    labels = torch.as_tensor(labels, dtype=torch.long, device=device)

    member_order = torch.argsort(labels, stable=True)         # members of cluster c: ptr[c]:ptr[c+1]
    ptr = _pointers(labels, n_clusters)
    sizes = ptr[1:] - ptr[:-1]
    chosen = torch.bincount(labels[fixed], minlength=n_clusters) if fixed.numel() else torch.zeros_like(sizes)
    free = sizes - chosen                                       # fixed rows are unique
    queues = {}                                                 # cluster -> free members, most typical first
    cursor = {}
    picks = torch.empty(budget, dtype=torch.long, device=device)
    big = sizes >= TYPICLUST_MIN_CLUSTER
    key_scale = n + 1
    done = 0
    while done < budget:
        # One round: every eligible cluster at the lowest count gets one pick, largest first.
        # This is exactly the one-at-a-time greedy order, since a picked cluster's count rises.
        available = free > 0
        eligible = available & big
        if not bool(eligible.any()):
            eligible = available
        lowest = chosen[eligible].min()
        in_round = torch.nonzero(eligible & (chosen == lowest)).squeeze(1)
        key = -sizes[in_round] * key_scale + in_round             # size descending, then cluster number
        in_round = in_round[torch.argsort(key)][: budget - done]
        for cluster in in_round.tolist():
            if cluster not in queues:
                members = member_order[int(ptr[cluster]):int(ptr[cluster + 1])]
                queues[cluster] = _typical_first(points, members, excluded, k_neighbors, memory_budget)
                cursor[cluster] = 0
            picks[done] = queues[cluster][cursor[cluster]]
            cursor[cluster] += 1
            done += 1
            _report(progress, done, budget)
        chosen[in_round] += 1
        free[in_round] -= 1
    return picks


def _typical_first(points, members, excluded, k_neighbors, memory_budget):
    """Free ``members`` sorted by typicality, highest first (ties to the lower row)."""
    size = members.numel()
    k = min(k_neighbors, size - 1)
    cluster = points[members]
    if k == 0:
        mean_dist = torch.zeros(size, dtype=points.dtype, device=points.device)
    else:
        mean_dist = torch.empty(size, dtype=points.dtype, device=points.device)
        step = rows_per_chunk(size, memory_budget, copies=2)
        for start in range(0, size, step):
            sims = (cluster[start:start + step] @ cluster.T).topk(k + 1, dim=1).values[:, 1:]
            mean_dist[start:start + step] = torch.sqrt(torch.clamp(2.0 - 2.0 * sims, min=0.0)).mean(dim=1)
    # typicality = 1 / mean_dist: most typical = smallest mean distance.  members are
    # ascending rows, so a stable sort breaks ties toward the lower row.
    order = torch.argsort(mean_dist, stable=True)
    ranked = members[order]
    return ranked[~excluded[ranked]]


# --------------------------------------------------------------------------- shared

BASELINES = {
    "random": select_random,
    "kmeans": select_kmeans,
    "coreset": select_coreset,
    "probcover": select_probcover,
    "typiclust": select_typiclust,
}


def _prepare(points, budget, fixed):
    """Check the common arguments; return N, the sorted unique fixed rows and their mask."""
    if not isinstance(points, torch.Tensor) or points.ndim != 2:
        raise InputError("points must be a 2-D torch tensor of unit-norm features (items × dimensions)")
    n = points.shape[0]
    device = points.device
    if fixed is None:
        fixed = torch.zeros(0, dtype=torch.long, device=device)
    fixed = torch.unique(torch.as_tensor(fixed, dtype=torch.long, device=device).reshape(-1))
    if fixed.numel() and (int(fixed[0]) < 0 or int(fixed[-1]) >= n):
        raise InputError(f"fixed row numbers must lie in 0..{n - 1}")
    available = n - fixed.numel()
    if not isinstance(budget, numbers.Integral) or isinstance(budget, bool) or not 1 <= budget <= available:
        raise InputError(f"budget must be a whole number from 1 to {available} (items not yet labeled), "
                         f"got {budget!r}")
    excluded = torch.zeros(n, dtype=torch.bool, device=device)
    excluded[fixed] = True
    return n, fixed, excluded


def _free_rows(n, fixed):
    rows = np.arange(n)
    if fixed.numel():
        rows = np.setdiff1d(rows, fixed.cpu().numpy(), assume_unique=True)
    return rows


def _reject_params(method, params, accepted):
    if params:
        known = ", ".join(accepted) if accepted else "none"
        raise InputError(f"method {method!r} has no parameter(s) {', '.join(sorted(params))} "
                         f"(its parameters: {known})")


def _report(progress, done, total):
    if progress is not None:
        progress(done, total)


def _kmeans(points, n_clusters, seed):
    """Cluster unit rows with scikit-learn; return (labels (N,) int64, centers (K, C) float32)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    data = points.detach().to("cpu", torch.float32).numpy()
    n = data.shape[0]
    if n > MINIBATCH_THRESHOLD:
        model = MiniBatchKMeans(n_clusters=n_clusters, batch_size=MINIBATCH_SIZE, n_init=1,
                                init_size=min(n, max(3 * MINIBATCH_SIZE, 3 * n_clusters)), random_state=seed)
    else:
        model = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed)
    with warnings.catch_warnings():
        # Fewer distinct rows than clusters: duplicate centers, resolved by unique picks later.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(data)
    return labels.astype(np.int64), model.cluster_centers_.astype(np.float32)

"""Pieces shared by every selection method: feature checks, chunked
nearest-neighbour search on the unit sphere, unique assignment, coverage.

Everything here works on L2-normalised float32 torch tensors and never holds
more than ``memory_budget`` bytes of similarities at once.
"""

import numpy as np
import torch

from ..errors import InputError

#: Default cap, in bytes, on the similarity blocks held in memory at once.
DEFAULT_MEMORY_BUDGET = 512 * 1024**2


def check_features(features):
    """Validate a feature matrix and return it as a float32 numpy array (N×C).

    Raises :class:`InputError` for anything that is not a finite 2-D array
    without all-zero rows.
    """
    array = feature_matrix(features)
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad = RowProblems()
    bad.add(array, 0)
    bad.raise_if_any()
    return power_of_two_scaled(array)


def feature_matrix(features):
    """``features`` as a 2-D numeric numpy array, without copying it (a memory-mapped file stays mapped).

    Raises :class:`InputError` for what is not a non-empty 2-D array of numbers.
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    try:
        array = features if isinstance(features, np.ndarray) else np.asarray(features)
    except (TypeError, ValueError) as exc:
        raise InputError(f"features could not be read as a numeric array: {exc}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InputError(f"features must be numbers, got an array of {array.dtype}")
    if np.iscomplexobj(array):
        raise InputError("features are complex numbers; expected real numbers")
    if array.ndim != 2:
        raise InputError(
            f"features must be a 2-D array (items × dimensions), got shape {array.shape}; "
            f"reshape it so that each row is one item"
        )
    n, c = array.shape
    if n == 0 or c == 0:
        raise InputError(f"features are empty (shape {array.shape}); there is nothing to select from")
    return array


class RowProblems:
    """Rows with NaN/infinite values or all zeros, gathered chunk by chunk; one error naming both kinds' first rows."""

    def __init__(self):
        self.not_finite, self.zero = [], []

    def add(self, chunk, start):
        """Note the bad rows of a float32 ``chunk`` whose first row is row ``start``; True when it has none."""
        finite = np.isfinite(chunk).all(axis=1)
        zero = ~np.abs(np.where(finite[:, None], chunk, 1.0)).max(axis=1).astype(bool)
        if not finite.all():
            self.not_finite.append(np.flatnonzero(~finite) + start)
        if zero.any():
            self.zero.append(np.flatnonzero(zero) + start)
        return finite.all() and not zero.any()

    def raise_if_any(self):
        if self.not_finite:
            bad = np.concatenate(self.not_finite)
            raise InputError(
                f"features contain NaN or infinite values in {bad.size} row(s) (first: {_first(bad)}); "
                f"re-embed those items or drop them"
            )
        if self.zero:
            bad = np.concatenate(self.zero)
            raise InputError(
                f"features contain {bad.size} all-zero row(s) (first: {_first(bad)}), which have no direction "
                f"to compare; re-embed those items or drop them"
            )


def unit_rows(array):
    """Rows of a float32 array scaled to unit L2 length in numpy, whatever their magnitude (all-zero rows stay zero)."""
    x = power_of_two_scaled(np.asarray(array, dtype=np.float32))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def power_of_two_scaled(array):
    """Each row of a float array times the power of two that brings its largest magnitude into [0.5, 1).

    Only directions matter here, and L2 norms of rows with huge (or tiny) entries over- (or under-) flow in
    float32: 1e20 squared is infinite, and a row of 1e-25 would look all-zero.  Multiplying by a power of two is
    exact, so every row normalises to the unit vector it had.  All-zero rows stay zero.  Arrays whose rows all
    peak between 2^-40 and 2^40 (squared sums stay normal floats) are returned as they are, without a copy.
    """
    array = np.asarray(array)
    peak = np.abs(array).max(axis=1, keepdims=True)
    nonzero = peak[peak > 0]
    if nonzero.size == 0 or (nonzero.min() >= 2.0**-40 and nonzero.max() <= 2.0**40):
        return array
    exponent = np.frexp(peak)[1]
    return np.ldexp(array, -exponent).astype(array.dtype, copy=False)


def _first(indices, k=5):
    shown = ", ".join(str(int(i)) for i in indices[:k])
    return shown + (", ..." if len(indices) > k else "")


#: ``center``: pools whose unit rows average to a vector this close to unit length point (nearly) one way; centring
#: them would only spread rounding noise, so they are left as they are.
_COLLINEAR = 1e-4


def normalize(features, device, center=False):
    """L2-normalise rows of a float32 array and move them to ``device`` (float32 storage of :func:`prepare_points`).

    With ``center``, the mean of the unit rows is then subtracted and the rows
    normalised again, so that similarities measure where an item sits relative
    to the pool rather than the direction every item shares (pretrained
    features after a ReLU are all non-negative: their cosine similarities
    crowd around a positive mean).  A unit row minus the mean m has length at
    least 1 − |m|, so no row can collapse to zero unless the whole pool points
    one way; such a pool is left uncentred.
    """
    return prepare_points(features, device, storage="float32", center=center)


#: How :func:`prepare_points` stores the pool's unit rows: ``auto`` keeps float16 features in float16 and stores
#: everything else in float32.
STORAGES = ("auto", "float32", "float16")

#: Rows converted per chunk while preparing the pool (float32 temporaries of at most ~25 MB at C = 384).
_PREPARE_ROWS = 16384


def storage_dtype(storage, array_dtype):
    """The torch dtype :func:`prepare_points` stores rows in, for ``storage`` and the features' numpy dtype."""
    if storage not in STORAGES:
        raise InputError(f"unknown storage {storage!r}; choose one of: {', '.join(STORAGES)}")
    if storage == "auto":
        return torch.float16 if np.dtype(array_dtype) == np.float16 else torch.float32
    return torch.float16 if storage == "float16" else torch.float32


def prepare_points(features, device, *, storage="auto", center=False):
    """Check a feature matrix and return its unit rows on ``device``, chunk by chunk.

    Parameters
    ----------
    features : array-like (N, C)
        Any numeric array, a ``np.memmap`` included: it is read in chunks of
        rows, and the pages of a memory-mapped file already read are handed
        back to the operating system, so the pool is never held twice.
    device : torch.device
    storage : {"auto", "float32", "float16"}, default="auto"
        dtype of the returned tensor.  ``float16`` halves the memory of the
        pool (10M × 384: 7.7 GB instead of 15.4 GB); every computation still
        runs in float32 on chunks of rows (see :func:`rows_of`).  ``auto``:
        float16 for float16 features, float32 otherwise.
    center : bool, default=False
        Subtract the mean of the unit rows and normalise again (see :func:`normalize`).

    Returns
    -------
    Tensor (N, C) of unit rows (float16 rows are unit up to their rounding).

    Raises :class:`InputError`, naming the first rows, for NaN, infinite or
    all-zero rows, before anything else is done with the features.
    """
    array = feature_matrix(features)
    n, c = array.shape
    dtype = storage_dtype(storage, array.dtype)
    points = torch.empty((n, c), dtype=dtype, device=device)
    problems = RowProblems()
    clean = True
    for start in range(0, n, _PREPARE_ROWS):
        stop = min(start + _PREPARE_ROWS, n)
        chunk = np.array(array[start:stop], dtype=np.float32, order="C", copy=True)   # a copy: the pages go next
        release_mapped_rows(array, start, stop)
        clean = problems.add(chunk, start) and clean
        if clean:  # after a bad row only the checks go on, to name every bad row in one message
            rows = torch.from_numpy(power_of_two_scaled(chunk)).to(device)
            points[start:stop] = torch.nn.functional.normalize(rows, dim=1)
    problems.raise_if_any()
    if center:
        _center_in_place(points)
    return points


def _center_in_place(points):
    """:func:`normalize`'s centring on stored unit rows, chunk by chunk (float64 sums, as there)."""
    n = points.shape[0]
    wide = torch.float32 if points.device.type == "mps" else torch.float64
    total = torch.zeros(points.shape[1], dtype=wide, device=points.device)
    for start in range(0, n, _PREPARE_ROWS):
        total += rows_of(points, slice(start, start + _PREPARE_ROWS)).sum(dim=0, dtype=wide)
    mean = (total / n).to(torch.float32)
    if 1.0 - float(torch.linalg.vector_norm(mean)) <= _COLLINEAR:
        return
    for start in range(0, n, _PREPARE_ROWS):
        part = slice(start, start + _PREPARE_ROWS)
        points[part] = torch.nn.functional.normalize(rows_of(points, part) - mean, dim=1)


_HALF = (torch.float16, torch.bfloat16)


def rows_of(points, index):
    """Rows ``points[index]`` as float32 unit vectors, whatever the pool's storage.

    float32 (or float64) pools are returned as indexed (a view for a slice: no copy);
    float16 rows are widened and normalised again, so every computation sees
    unit rows in float32 and the same row always gives the same vector.
    """
    block = points[index]
    if block.dtype not in _HALF:
        return block
    return torch.nn.functional.normalize(block.to(torch.float32), dim=-1)


def compute_dtype(points):
    """The dtype similarities of ``points`` are computed in: float32 for float16 storage, else the points' own."""
    return torch.float32 if points.dtype in _HALF else points.dtype


def release_mapped_rows(array, start, stop):
    """Hand back to the OS the pages of a memory-mapped array's rows ``start:stop``, once they have been read.

    The pages are clean copies of the file (the map is read-only), so dropping them loses nothing: they would be
    read again if needed.  Without this a 7.7 GB features file stays resident beside the tensor made from it.
    """
    import mmap

    base = getattr(array, "_mmap", None)
    # Only a whole read-only map: in a copy-on-write map ("c") dropped pages would lose the caller's changes, and
    # a slice's rows do not start where the map's offset says.
    if (base is None or array.base is not base or getattr(array, "mode", None) != "r"
            or not hasattr(base, "madvise") or not hasattr(mmap, "MADV_DONTNEED")):
        return
    try:
        # The ndarray's first byte inside the mapping: np.memmap maps from an allocation-granularity boundary.
        begin = array.offset % mmap.ALLOCATIONGRANULARITY
        row_bytes = array.strides[0]
        first = begin + start * row_bytes
        last = begin + stop * row_bytes
        page = mmap.PAGESIZE
        first -= first % page
        base.madvise(mmap.MADV_DONTNEED, first, max(0, min(last, len(base)) - first))
    except (AttributeError, ValueError, OSError):  # a view or slice of a memmap: nothing to hand back
        pass


def rows_per_chunk(n_columns, memory_budget=DEFAULT_MEMORY_BUDGET, copies=3):
    """How many rows of an (rows × n_columns) float32 block fit the memory budget.

    ``copies`` counts the temporaries made from one block (similarities,
    masks, exponentials), so the true peak stays under the budget.
    """
    per_row = max(1, n_columns) * 4 * copies
    return max(1, int(memory_budget // per_row))


def nearest(points, centers, memory_budget=DEFAULT_MEMORY_BUDGET):
    """Nearest center of every point by cosine similarity (unit vectors).

    Parameters
    ----------
    points : Tensor (N, C), unit rows (float32, or float16 storage: see :func:`rows_of`)
    centers : Tensor (M, C), float32 unit rows

    Returns
    -------
    index : LongTensor (N,)   index of the most similar center
    similarity : Tensor (N,)  that similarity (float32)
    """
    n = points.shape[0]
    index = torch.empty(n, dtype=torch.long, device=points.device)
    similarity = torch.empty(n, dtype=centers.dtype, device=points.device)
    step = rows_per_chunk(centers.shape[0], memory_budget, copies=2)
    for start in range(0, n, step):
        block = rows_of(points, slice(start, start + step)) @ centers.T
        similarity[start:start + step], index[start:start + step] = block.max(dim=1)
    return index, similarity


def coverage_distance(similarity):
    """Mean Euclidean distance sqrt(2 - 2·sim) between unit vectors, from similarities."""
    return float(torch.sqrt(torch.clamp(2.0 - 2.0 * similarity, min=0.0)).mean())


def unique_nearest(points, centers, excluded=None, memory_budget=DEFAULT_MEMORY_BUDGET, k=8):
    """Give every center its most similar point, no point twice.

    Pairs are settled greedily from the most similar (center, point) pair
    down: each center takes its most similar point that no more similar
    center took first.  It runs in rounds without a loop per center: every
    open center proposes its best free point, and a proposal is settled when
    that center is also the point's most similar open center (a locally
    dominant pair, which the global greedy order would settle the same way).
    Each center keeps a short top-``k`` candidate list, refilled (twice as
    long) only when it runs out, so the N×M similarity matrix is never sorted.

    Parameters
    ----------
    points : Tensor (N, C), unit rows
    centers : Tensor (M, C), unit rows, M <= number of points not excluded
    excluded : BoolTensor (N,) or None
        Points that must not be picked (already labeled).
    memory_budget : int
        Bytes of similarity blocks held at once.
    k : int, default=8
        Initial length of each center's candidate list.

    Returns
    -------
    LongTensor (M,): the point picked by each center.
    """
    device = points.device
    n, m = points.shape[0], centers.shape[0]
    taken = torch.zeros(n, dtype=torch.bool, device=device)
    if excluded is not None:
        taken |= excluded.to(device)
    if int((~taken).sum()) < m:
        raise InputError(f"cannot pick {m} distinct items from {int((~taken).sum())} available ones")
    picked = torch.full((m,), -1, dtype=torch.long, device=device)
    pending = torch.arange(m, device=device)
    depth = min(k, n)
    cand_idx, cand_sim = _topk_free(points, centers, taken, depth, memory_budget)
    while pending.numel():
        free = ~taken[cand_idx] & torch.isfinite(cand_sim)          # (P, depth)
        has_free = free.any(dim=1)
        if not bool(has_free.all()):
            # Candidates exhausted for some centers: refill those rows from the free points.
            empty = torch.nonzero(~has_free).squeeze(1)
            depth = min(depth * 2, n)
            refill_idx, refill_sim = _topk_free(points, centers[pending[empty]], taken, depth, memory_budget)
            cand_idx, cand_sim = _widen(cand_idx, depth), _widen(cand_sim, depth, fill=-float("inf"))
            cand_idx[empty], cand_sim[empty] = refill_idx, refill_sim
            free = ~taken[cand_idx] & torch.isfinite(cand_sim)
        first = torch.argmax(free.to(torch.int8), dim=1)            # first free candidate per center
        rows = torch.arange(pending.numel(), device=device)
        proposal = cand_idx[rows, first]
        score = cand_sim[rows, first]
        wins = _locally_dominant(points, centers[pending], proposal, memory_budget)
        if not bool(wins.any()):
            # Only exact ties can leave every proposal unsettled: settle the most similar pair.
            wins[torch.argmax(score)] = True
        # Two winners never share a point: each point has one most similar open center.
        picked[pending[wins]] = proposal[wins]
        taken[proposal[wins]] = True
        keep = ~wins
        pending, cand_idx, cand_sim = pending[keep], cand_idx[keep], cand_sim[keep]
    return picked


def _locally_dominant(points, open_centers, proposal, memory_budget):
    """Which proposals come from the proposed point's most similar open center (first one on ties)."""
    unique, inverse = torch.unique(proposal, return_inverse=True)
    best_center = torch.empty(unique.numel(), dtype=torch.long, device=points.device)
    step = rows_per_chunk(open_centers.shape[0], memory_budget, copies=2)
    for start in range(0, unique.numel(), step):
        block = rows_of(points, unique[start:start + step]) @ open_centers.T   # (U, P)
        best_center[start:start + step] = torch.argmax(block, dim=1)
    return best_center[inverse] == torch.arange(proposal.numel(), device=points.device)


def _widen(tensor, width, fill=0):
    if tensor.shape[1] >= width:
        return tensor
    pad = torch.full((tensor.shape[0], width - tensor.shape[1]), fill, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor, pad], dim=1)


def _topk_free(points, centers, taken, depth, memory_budget):
    """Top-``depth`` most similar free points of each center, scanning points in chunks."""
    m = centers.shape[0]
    best_sim = torch.full((m, depth), -float("inf"), dtype=centers.dtype, device=points.device)
    best_idx = torch.zeros((m, depth), dtype=torch.long, device=points.device)
    step = rows_per_chunk(m, memory_budget, copies=2)
    for start in range(0, points.shape[0], step):
        block = centers @ rows_of(points, slice(start, start + step)).T   # (M, chunk)
        block.masked_fill_(taken[start:start + step].unsqueeze(0), -float("inf"))
        kk = min(depth, block.shape[1])
        sim, idx = block.topk(kk, dim=1)
        merged_sim = torch.cat([best_sim, sim], dim=1)
        merged_idx = torch.cat([best_idx, idx + start], dim=1)
        top_sim, pos = merged_sim.topk(depth, dim=1)
        best_sim, best_idx = top_sim, torch.gather(merged_idx, 1, pos)
    return best_idx, best_sim

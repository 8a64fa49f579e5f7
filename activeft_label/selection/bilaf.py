"""BiLAF: ActiveFT core samples plus boundary samples (Lu et al., *Boundary Matters: A Bi-Level Active
Finetuning Framework*, NeurIPS 2024), written from the paper's description.

Three stages:

1. **Core samples.**  K core samples by ActiveFT (:func:`.activeft.optimize_centroids` then
   :func:`.activeft.centroids_to_samples`, with the loss form, τ, lr, iterations, λ and update of the
   caller).  Rows labeled in earlier rounds (``fixed``) are anchors of that optimisation, as for
   ActiveFT, and are cores too: the cluster centres are the K new cores followed by the F fixed rows.
   Every pool sample joins its most similar centre (each centre its own cluster).
2. **Denoising** each cluster (iterative density-based clustering): the cluster starts as its centre;
   each round adds the ⌈P_in · r⌉ of the r remaining members with the smallest mean distance to their
   min(k, included) nearest already included members, until only the last ⌊P_rm · (n_i − 1)⌋ members
   are left (the last round adds fewer where needed, so exactly that many remain): those are the
   cluster's outliers, never boundary candidates while inliers are left.
3. **Boundary samples.**  Cluster i gets a quota B_i ∝ n_i (its centre is its first pick: a new core,
   or a labeled row already chosen).  Then B_i − 1 times: every candidate x (the cluster's inliers but
   its centre) scores

       BS(x) = min_{l ≠ i} (δ^{t_l} · D(x, c_l) − d_intra(x)) / max(D(x, c_l), d_intra(x)),

   the lowest score is picked, t_l of the cluster l that gave its score is incremented, and the pick
   and its ⌊n_i / B_i⌋ nearest remaining candidates leave the candidates.

Choices the paper's summary leaves open, made here:

* **Distance**: Euclidean distance between the L2-normalised rows, D(a, b) = sqrt(2 − 2·aᵀb) (as the
  coverage figure and TypiClust use), everywhere (denoising, d_intra, D, the neighbours removed).
  Products are formed in float64 and rounded to float32 (float32 on MPS, which has no float64), so the
  picks do not depend on how a memory budget blocks them.
* **D(x, c_l)**: the distance to the *core sample* of cluster l (the selected row, or the labeled row),
  not to the continuous ActiveFT centroid nor to a cluster mean; l runs over every other cluster.
* **d_intra(x)**: the mean distance from x to the cluster's inliers (its centre included, x itself
  excluded), computed once per cluster after denoising.
* **t_l**: counted per cluster (each cluster's boundary loop starts with every t_l = 0); the cluster
  incremented is the one that attained the pick's minimum (its nearest opponent once the δ^{t_l}
  penalty is applied).  BS is 0 where both distances are 0.
* **Quotas**: T = B + F picks in all (the F labeled centres count as their clusters' picks).  Each
  cluster gets ⌊T · n_i / N⌋, raised to 1 (its centre) and capped at n_i; then, largest remainder
  first (ties to the lower cluster number), one is added to clusters below their share, or taken from
  clusters above it (never below 1), until the quotas sum to exactly T, so exactly B new rows come out.
* **Tiny clusters**: a cluster of one row keeps only its centre (its share moves to the others by the
  largest-remainder step).  Where removing neighbours leaves no candidate before the quota is met, the
  removed inliers come back as candidates (scores recomputed), then the outliers: the quota is always
  met, since it never exceeds the cluster's size.
* **Ties** (scores, denoising order) go to the lower row.
* **Default K** (``cores=None``): the paper uses 0.1% of the pool on CIFAR-10 and 0.5% on CIFAR-100 and
  ImageNet, with budgets of at least twice that; here K = min(⌈0.5% · N⌉ − F, ⌊B / 2⌋) (at least 0), and
  at least 2 clusters where the budget allows (K ≥ min(B, 2 − F)).  Labeled rows thus count toward the
  core share.  The paper's "rate of return" knee would need ActiveFT runs at several K: pass ``cores``
  for that.
* Without labeled rows, BiLAF needs K ≥ 2 to have a boundary (one cluster has no opponent): asking for
  boundary picks with fewer clusters is an :class:`InputError`, as a budget below the core count is.

Memory: the cluster being processed is copied (float64), and every block of distances (candidates ×
new members while denoising, candidates × inliers for d_intra, candidates × centres for BS) is formed
in row chunks under ``memory_budget`` bytes; no N × N (nor n_i × n_i) matrix is held.
"""

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import InputError
from ._common import DEFAULT_MEMORY_BUDGET, rows_per_chunk
from .activeft import centroids_to_samples, loss_value, optimize_centroids
from .assign import DenseAssigner

#: Default core share of the pool (the paper's CIFAR-100 and ImageNet setting).
DEFAULT_CORE_SHARE = 0.005
DEFAULT_K_NEIGHBORS = 10
DEFAULT_P_IN = 0.1
DEFAULT_P_RM = 0.1
DEFAULT_DELTA = 1.1
#: BiLAF's own parameters (the core stage also takes ActiveFT's).
PARAMS = ("cores", "k_neighbors", "p_in", "p_rm", "delta")
#: Slack for ⌈p·r⌉ and ⌊p·r⌋ (0.1 · 30 is 3.0000000000000004 in floating point).
_ROUNDING = 1e-9

__all__ = ["select_bilaf", "check_params", "parse_cores", "default_cores", "allocate", "denoise",
           "intra_distances", "boundary_picks", "BilafResult", "DEFAULT_CORE_SHARE", "PARAMS"]


@dataclass
class BilafResult:
    """What :func:`select_bilaf` produced: B new rows (cores first), the cores and the core stage's loss."""

    picks: torch.Tensor
    cores: torch.Tensor
    history: list = field(default_factory=list)
    loss: object = None
    quotas: np.ndarray = None


# --------------------------------------------------------------------------- parameters

def parse_cores(cores, pool_size):
    """The explicit core count of ``cores`` (a count, a fraction of the pool in (0, 1), or a percentage
    string like ``"0.5%"``), or None for the default.  Raises :class:`InputError` for anything else."""
    if cores is None:
        return None
    fix = "give a count like 50, a fraction like 0.005 or a percentage like '0.5%'"
    if isinstance(cores, bool):
        raise InputError(f"cores must be a count or a share of the pool, not {cores!r}; {fix}")
    if isinstance(cores, str):
        text = cores.strip()
        if text.endswith("%"):
            try:
                percent = float(text[:-1])
            except ValueError:
                raise InputError(f"cores {cores!r} is not a percentage; {fix}") from None
            if not math.isfinite(percent) or not 0 < percent <= 100:
                raise InputError(f"cores {cores!r} must be a percentage above 0 and at most 100%")
            return math.floor(pool_size * percent / 100.0 + 0.5)
        try:
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise InputError(f"cores {cores!r} is neither a count nor a share of the pool; {fix}") from None
        return parse_cores(value, pool_size)
    if isinstance(cores, numbers.Integral):
        if cores < 0:
            raise InputError(f"cores must be at least 0, got {cores!r}")
        return int(cores)
    if isinstance(cores, numbers.Real):
        value = float(cores)
        if math.isfinite(value) and 0 < value < 1:
            return math.floor(pool_size * value + 0.5)
        if math.isfinite(value) and value >= 0 and value == int(value):
            return int(value)
        raise InputError(f"cores {cores!r} is neither a whole count nor a fraction between 0 and 1; {fix}")
    raise InputError(f"cores must be a count or a share of the pool, not {cores!r}; {fix}")


def default_cores(pool_size, budget, n_fixed=0):
    """K when ``cores`` is not given: min(⌈0.5% · N⌉ − F, ⌊B/2⌋), at least 0, and ≥ min(B, 2 − F)."""
    share = math.ceil(DEFAULT_CORE_SHARE * pool_size - _ROUNDING)
    count = min(max(share - n_fixed, 0), budget // 2)
    return max(count, min(budget, max(0, 2 - n_fixed)))


def check_params(params, pool_size, budget, n_fixed=0):
    """Validate BiLAF's parameters against the pool and the budget, before any work.

    Returns a dict with ``cores`` (the resolved count K), ``k_neighbors``, ``p_in``, ``p_rm`` and
    ``delta``; raises :class:`InputError` naming the fix.
    """
    unknown = set(params) - set(PARAMS)
    if unknown:
        raise InputError(f"BiLAF has no parameter(s) {', '.join(sorted(unknown))}")
    explicit = parse_cores(params.get("cores"), pool_size)
    k_neighbors = params.get("k_neighbors", DEFAULT_K_NEIGHBORS)
    if not isinstance(k_neighbors, numbers.Integral) or isinstance(k_neighbors, bool) or k_neighbors < 1:
        raise InputError(f"k_neighbors must be a whole number >= 1 (the paper uses 10), got {k_neighbors!r}")
    p_in = _real(params.get("p_in", DEFAULT_P_IN), "p_in")
    if not 0 < p_in <= 1:
        raise InputError(f"p_in must lie in (0, 1] (share of the remaining members added per round; the paper "
                         f"uses 0.1), got {p_in!r}")
    p_rm = _real(params.get("p_rm", DEFAULT_P_RM), "p_rm")
    if not 0 <= p_rm < 1:
        raise InputError(f"p_rm must lie in [0, 1) (share of each cluster dropped as outliers; the paper uses "
                         f"0.1), got {p_rm!r}")
    delta = _real(params.get("delta", DEFAULT_DELTA), "delta")
    if not delta >= 1:
        raise InputError(f"delta must be at least 1 (penalty for an opponent cluster already used; the paper "
                         f"uses 1.1), got {delta!r}")
    if explicit is None:
        cores = default_cores(pool_size, budget, n_fixed)
    else:
        cores = explicit
        if cores == 0 and n_fixed == 0:
            raise InputError(f"cores {params.get('cores')!r} gives 0 core samples for a pool of {pool_size}; "
                             f"BiLAF needs at least 2 (or labeled rows as cores)")
        if cores > budget:
            raise InputError(f"budget {budget} is below the {cores} core samples BiLAF needs (cores="
                             f"{params.get('cores')!r}); raise the budget or lower cores")
    if budget > cores and cores + n_fixed < 2:
        raise InputError(f"BiLAF needs at least 2 clusters (core samples plus labeled rows) to find boundaries, "
                         f"got {cores + n_fixed}; give cores >= 2")
    return {"cores": int(cores), "k_neighbors": int(k_neighbors), "p_in": p_in, "p_rm": p_rm, "delta": delta}


def _real(value, name):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- selection

def select_bilaf(points, budget, *, fixed, seed, memory_budget=DEFAULT_MEMORY_BUDGET, cores, k_neighbors=10,
                 p_in=0.1, p_rm=0.1, delta=1.1, loss="released", temperature=0.07, lr=1e-3, iterations=300,
                 balance=1.0, update="projected", minibatch=None, progress=None):
    """BiLAF on unit rows ``points``: B distinct new rows, none of them ``fixed``.

    Parameters
    ----------
    points : Tensor (N, C), unit rows
    budget : int
        B, with ``cores <= B <= N - F``.
    fixed : LongTensor (F,) or None
        Rows labeled in earlier rounds: anchors of the core stage, then centres of their own clusters
        whose share of the quota they already fill.  Never returned.
    seed : int
        Seed of the core stage (its initial centroids); the rest is deterministic.
    memory_budget : int
        Bytes of similarity/distance blocks held at once.
    cores : int
        K, the new core samples (checked by :func:`check_params`).
    k_neighbors, p_in, p_rm, delta
        Denoising's k, P_in and P_rm; the opponent penalty δ.
    loss, temperature, lr, iterations, balance, update, minibatch
        The core stage's ActiveFT settings (:func:`.activeft.optimize_centroids`).
    progress : callable(step, loss) or None
        Called after every step of the core stage.

    Returns
    -------
    BilafResult
        ``picks`` (B,): the K cores, then each cluster's boundary picks in cluster order.
    """
    device = points.device
    fixed = torch.zeros(0, dtype=torch.long, device=device) if fixed is None else \
        torch.unique(torch.as_tensor(fixed, dtype=torch.long, device=device).reshape(-1))
    history, core_loss = [], None
    if cores:
        theta, history = optimize_centroids(
            points, cores, fixed=fixed, loss=loss, temperature=temperature, lr=lr, iterations=iterations,
            balance=balance, seed=seed, memory_budget=memory_budget, minibatch=minibatch, progress=progress,
            update=update)
        core_rows = centroids_to_samples(points, theta, fixed=fixed, memory_budget=memory_budget)
        anchored = torch.cat([theta, points[fixed]]) if fixed.numel() else theta
        core_loss = loss_value(points, anchored, cores, loss, temperature, balance, memory_budget)
    else:
        core_rows = torch.zeros(0, dtype=torch.long, device=device)
    if budget == cores:
        return BilafResult(core_rows, core_rows, history, core_loss, np.ones(cores, dtype=np.int64))

    centres = torch.cat([core_rows, fixed])
    m = centres.numel()
    centre_points = points[centres]
    assign, _ = DenseAssigner(points, memory_budget)(centre_points)
    assign[centres] = torch.arange(m, device=device)          # duplicates of a centre: it keeps its own row
    order = torch.argsort(assign, stable=True)                # members of cluster i, ascending rows
    sizes = torch.bincount(assign, minlength=m).cpu().numpy()
    ends = np.cumsum(sizes)
    quotas = allocate(sizes, budget + fixed.numel())

    wide = _wide_dtype(device)
    centres_wide = centre_points.to(wide)
    picks = [core_rows]
    for i in range(m):
        if quotas[i] <= 1:
            continue
        members = order[ends[i] - sizes[i]:ends[i]]
        members = torch.cat([centres[i:i + 1], members[members != centres[i]]])   # the centre first
        x = points[members].to(wide)
        inlier = denoise(x, k_neighbors, p_in, p_rm, memory_budget)
        d_intra = intra_distances(x, inlier, memory_budget)
        claim = int(sizes[i]) // int(quotas[i])
        chosen = boundary_picks(x, d_intra, inlier, centres_wide, i, int(quotas[i]) - 1, claim, delta,
                                memory_budget)
        picks.append(members[chosen])
    return BilafResult(torch.cat(picks), core_rows, history, core_loss, quotas)


def allocate(sizes, total):
    """Quotas B_i ∝ n_i summing to exactly ``total``, each in [1, n_i] (largest remainder; see the module)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    m = sizes.size
    if not m <= total <= sizes.sum():
        raise ValueError(f"cannot share {total} picks among {m} clusters of {sizes.sum()} rows")
    share = total * sizes.astype(np.float64) / sizes.sum()
    quotas = np.clip(np.floor(share + _ROUNDING).astype(np.int64), 1, sizes)
    clusters = np.arange(m)
    while quotas.sum() != total:
        if quotas.sum() < total:
            room = np.flatnonzero(quotas < sizes)
            gap = share[room] - quotas[room]
            ranked = room[np.lexsort((clusters[room], -gap))]
            quotas[ranked[:total - quotas.sum()]] += 1
        else:
            room = np.flatnonzero(quotas > 1)
            excess = quotas[room] - share[room]
            ranked = room[np.lexsort((clusters[room], -excess))]
            quotas[ranked[:quotas.sum() - total]] -= 1
    return quotas


def denoise(x, k_neighbors=10, p_in=0.1, p_rm=0.1, memory_budget=DEFAULT_MEMORY_BUDGET):
    """Inliers of one cluster (row 0 of ``x`` is its centre) by iterative density-based growth.

    Parameters
    ----------
    x : Tensor (n, C), unit rows of the cluster, its centre first
    k_neighbors, p_in, p_rm : see the module docstring

    Returns
    -------
    BoolTensor (n,): True for the centre and the members added before the last ⌊p_rm · (n − 1)⌋.
    """
    n = x.shape[0]
    inlier = torch.zeros(n, dtype=torch.bool, device=x.device)
    inlier[0] = True
    outliers = math.floor(p_rm * (n - 1) + _ROUNDING)
    remaining = torch.arange(1, n, device=x.device)
    # The k smallest distances of each remaining member to the included ones, ascending (inf: none yet).
    best = torch.full((n - 1, k_neighbors), float("inf"), dtype=torch.float32, device=x.device)
    new = torch.zeros(1, dtype=torch.long, device=x.device)
    included = 0
    while remaining.numel() > outliers:
        # float64 products (2 float32-sized copies), their float32 rounding, distances, the concatenation.
        step = rows_per_chunk(k_neighbors + new.numel(), memory_budget, copies=5)
        for start in range(0, remaining.numel(), step):
            rows = slice(start, start + step)
            block = torch.cat([best[rows], distances(x[remaining[rows]], x[new])], dim=1)
            best[rows] = block.topk(k_neighbors, dim=1, largest=False, sorted=True).values
        included += new.numel()
        score = best[:, :min(k_neighbors, included)].mean(dim=1)
        count = remaining.numel()
        add = min(max(1, math.ceil(p_in * count - _ROUNDING)), count - outliers)
        taken = torch.argsort(score, stable=True)[:add]          # ties: the lower row (remaining is ascending)
        keep = torch.ones(count, dtype=torch.bool, device=x.device)
        keep[taken] = False
        new = remaining[taken]
        inlier[new] = True
        remaining, best = remaining[keep], best[keep]
    return inlier


def intra_distances(x, inlier, memory_budget=DEFAULT_MEMORY_BUDGET):
    """d_intra of every row of the cluster: its mean distance to the inliers other than itself (Tensor (n,))."""
    n = x.shape[0]
    inliers = x[inlier]
    count = inliers.shape[0]
    out = torch.empty(n, dtype=torch.float32, device=x.device)
    step = rows_per_chunk(count, memory_budget, copies=6)     # float64 products and sums, float32 distances
    for start in range(0, n, step):
        rows = slice(start, start + step)
        total = distances(x[rows], inliers).to(_wide_dtype(x.device)).sum(dim=1)
        others = count - inlier[rows].to(total.dtype)
        out[rows] = torch.where(others > 0, total / others.clamp(min=1), torch.zeros_like(total)).float()
    return out


def boundary_picks(x, d_intra, inlier, centres, own, count, claim, delta=1.1,
                   memory_budget=DEFAULT_MEMORY_BUDGET):
    """``count`` boundary picks of one cluster, as positions into its rows (row 0, its centre, never).

    Parameters
    ----------
    x : Tensor (n, C), the cluster's unit rows, centre first
    d_intra : Tensor (n,), from :func:`intra_distances`
    inlier : BoolTensor (n,), from :func:`denoise`
    centres : Tensor (M, C), every cluster's centre row (same dtype as ``x``)
    own : int, this cluster's position among ``centres``
    count : int, picks to make (at most n − 1)
    claim : int, candidates removed around each pick besides itself (⌊n_i / B_i⌋)
    delta : float, the opponent penalty δ
    """
    device = x.device
    cand = torch.arange(1, x.shape[0], device=device)
    inl = inlier[cand]
    alive = inl.clone()
    picked = torch.zeros_like(alive)
    uses = torch.zeros(centres.shape[0], dtype=torch.float64, device=device)
    factor = torch.ones(centres.shape[0], dtype=torch.float32, device=device)
    score = torch.full((cand.numel(),), float("inf"), dtype=torch.float32, device=device)
    opponent = torch.full((cand.numel(),), -1, dtype=torch.long, device=device)
    step = rows_per_chunk(centres.shape[0], memory_budget, copies=7)      # products, distances, the score terms

    def rescore(rows):
        for start in range(0, rows.numel(), step):
            chunk = rows[start:start + step]
            inter = distances(x[cand[chunk]], centres)                       # (rows, M)
            intra = d_intra[cand[chunk]].unsqueeze(1)
            top = factor.unsqueeze(0) * inter - intra
            bottom = torch.maximum(inter, intra)
            value = torch.where(bottom > 0, top / bottom.clamp(min=1e-30), torch.zeros_like(top))
            value[:, own] = float("inf")
            score[chunk], opponent[chunk] = value.min(dim=1)

    rescore(torch.arange(cand.numel(), device=device))
    chosen = []
    for _ in range(count):
        if not bool(alive.any()):
            # Every candidate was removed around earlier picks: the removed inliers come back, then outliers.
            alive = inl & ~picked
            if not bool(alive.any()):
                alive = ~picked
            rescore(torch.nonzero(alive).squeeze(1))
        j = int(torch.argmin(torch.where(alive, score, torch.full_like(score, float("inf")))))
        chosen.append(j)
        picked[j] = True
        alive[j] = False
        rival = int(opponent[j])
        uses[rival] += 1
        factor[rival] = float(delta ** float(uses[rival]))
        if claim > 0 and bool(alive.any()):
            rest = torch.nonzero(alive).squeeze(1)
            near = distances(x[cand[j]].unsqueeze(0), x[cand[rest]])[0]
            alive[rest[torch.argsort(near, stable=True)[:claim]]] = False
        stale = torch.nonzero(alive & (opponent == rival)).squeeze(1)
        if stale.numel():
            rescore(stale)          # only scores whose minimum came from the penalised cluster can change
    return cand[torch.as_tensor(chosen, dtype=torch.long, device=device)]


def distances(a, b):
    """Euclidean distances sqrt(2 − 2·aᵀb) between unit rows, as float32 (products in ``a``'s dtype)."""
    sim = (a @ b.T).to(torch.float32)
    return torch.sqrt(torch.clamp(2.0 - 2.0 * sim, min=0.0))


def _wide_dtype(device):
    return torch.float32 if device.type == "mps" else torch.float64


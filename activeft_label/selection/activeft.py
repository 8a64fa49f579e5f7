"""The ActiveFT optimizer (Xie et al., CVPR 2023, Algorithm 1).

B continuous centroids θ on the unit sphere are optimised with Adam so that
the selection matches the pool's distribution (every sample close to some
centroid) while the centroids stay apart.  Two loss forms:

``paper``
    L = -1/N Σ_i max_j f_iᵀθ_j/τ + λ/B Σ_j log Σ_{k≠j} exp(θ_jᵀθ_k/τ)
    (λ = 1 in the paper; ``balance`` sets it)

``released`` (the authors' released code)
    J = -1/N Σ_i log( p_i / (p_i + λ R_{c_i}) ),  p_i = exp(f_iᵀθ_{c_i}/τ),
    R_j = Σ_k exp(θ̄_kᵀθ_j/τ) over all k (j included), θ̄ without gradient.

Neither loss needs an N×B autograd graph.  The first term only reaches θ
through each sample's nearest centroid c_i, so its gradient is a per-cluster
weighted sum of features:

* paper:    ∂/∂θ_j = -1/(Nτ) Σ_{i: c_i=j} f_i
* released: ∂/∂θ_j = 1/(Nτ) [ -Σ_{i: c_i=j} w_i f_i + (Σ_{i: c_i=j} w_i) A_j ],
  with w_i = 1 - q_i, q_i = p_i/(p_i + λR_{c_i}), A_j = Σ_k softmax_k(θ̄_kᵀθ_j/τ) θ̄_k

The nearest centroids are found in chunks under a memory budget, the
gradients formed directly (the M×M centroid terms too: they are symmetric, so
only the blocks of their upper triangle are computed, each serving its mirror
image as well), and the gradient taken through the normalisation θ/‖θ‖ as the released code does
(for unit θ this projects it on the sphere's tangent plane).

Two updates of θ (``update``), for either loss form:

``projected`` (default)
    θ is kept on the sphere: the gradient at unit θ is projected on the tangent
    plane, Adam steps, then θ is renormalised (Algorithm 1 of the paper).
``released`` (the authors' released code, exactly)
    θ is a raw, unconstrained parameter; the loss is computed on u = θ/‖θ‖
    (θ̄ = u without gradient in R), and Adam steps on θ itself, which is never
    renormalised.  The chain rule through the normalisation gives
    ∂J/∂θ_j = (I − u_j u_jᵀ) ∂J/∂u_j / ‖θ_j‖: the same tangent projection,
    divided by the current norm (Adam's per-coordinate scaling then makes the
    two trajectories differ as the norms drift from 1).

``tests/unit/test_activeft.py`` checks these gradients against plain autograd on
the dense loss; ``tests/unit/test_released_update.py`` checks the released
update's gradient (raw θ) against autograd and finite differences in float64.
"""

import math

import numpy as np
import torch

from . import LOSS_FORMS, UPDATE_FORMS
from ._common import DEFAULT_MEMORY_BUDGET, compute_dtype, nearest, rows_of, rows_per_chunk, unique_nearest
from .assign import BoundedAssigner, DenseAssigner

ASSIGNERS = {"bounded": BoundedAssigner, "dense": DenseAssigner}

#: exp(-x) stays a normal float32 for x below this (the smallest normal is e^-87.3).
_EXP_RANGE = 80.0


def optimize_centroids(
    points,
    budget,
    *,
    fixed=None,
    loss="released",
    temperature=0.07,
    lr=1e-3,
    iterations=300,
    balance=1.0,
    seed=0,
    memory_budget=DEFAULT_MEMORY_BUDGET,
    assignment="bounded",
    minibatch=None,
    progress=None,
    stats=None,
    update="projected",
):
    """Run the ActiveFT optimisation and return the final centroids.

    Parameters
    ----------
    points : Tensor (N, C)
        Unit-norm features of the whole pool: float32, or float16 storage
        (widened to float32 a chunk of rows at a time; θ and every
        similarity stay float32).
    budget : int
        Number of centroids B to optimise.
    fixed : LongTensor (F,) or None
        Rows of ``points`` that are already labeled: they act as centroids
        that do not move.
    loss : {"released", "paper"}
    temperature, lr, iterations, balance, seed
        τ, Adam's learning rate, number of Adam steps, λ (released form: the
        weight of R in the denominator; paper form: the weight of the
        diversity term; 1 in both sources) and the seed of the random
        initialisation.
    memory_budget : int
        Bytes of similarity blocks held at once.
    assignment : {"bounded", "dense"}, default="bounded"
        How each step finds every sample's nearest centroid: ``bounded``
        skips samples whose bounds prove the assignment unchanged (exact,
        see :mod:`.assign`); ``dense`` compares every sample with every
        centroid.  Both give the same result up to floating-point ties.
    minibatch : int or None
        Approximate mode for very large pools: each step uses a fresh random
        subset of this many rows (drawn with ``seed``; compared densely, the
        bounds do not apply to changing subsets) instead of the whole pool,
        as the authors' ImageNet script does.  The loss is then a stochastic
        estimate; the final mapping to samples still uses the whole pool.
        None (default) or a value ≥ N: the exact full-pool optimisation.
    progress : callable(step, loss) or None
        Called after every step.
    stats : dict or None
        Filled with the assigner's work counters (rows kept by the bounds, rows rechecked,
        similarities computed).
    update : {"projected", "released"}, default="projected"
        ``projected``: θ renormalised after every Adam step (Algorithm 1);
        ``released``: θ a raw parameter, normalised only inside the loss, as
        the authors' released code does (see the module docstring).

    Returns
    -------
    theta : Tensor (B, C), unit rows (θ/‖θ‖ for the ``released`` update)
    history : list of float, the loss before each step (length ``iterations``)
    """
    if loss not in LOSS_FORMS:
        raise ValueError(f"loss must be one of {LOSS_FORMS}, got {loss!r}")
    if update not in UPDATE_FORMS:
        raise ValueError(f"update must be one of {UPDATE_FORMS}, got {update!r}")
    raw = update == "released"
    device = points.device
    fixed = _as_index(fixed, device)
    anchors = rows_of(points, fixed)

    theta = rows_of(points, initial_centroids(points, budget, fixed, seed, memory_budget)).clone()
    theta.requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    grad_fn = _released_gradient if loss == "released" else _paper_gradient
    n = points.shape[0]
    sampled = minibatch is not None and int(minibatch) < n
    if sampled:
        generator = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
        assigner = None
    else:
        assigner = ASSIGNERS[assignment](points, memory_budget)

    history = []
    for step in range(iterations):
        with torch.no_grad():
            unit, norms = unit_centroids(theta.detach(), raw)
            centers = torch.cat([unit, anchors]) if anchors.numel() else unit
            if sampled:
                rows = torch.randperm(n, generator=generator)[: int(minibatch)].to(device)
                batch = rows_of(points, rows)
                assign, sim = DenseAssigner(batch, memory_budget)(centers)
            else:
                batch = points
                assign, sim = assigner(centers)
            value, grad = grad_fn(batch, centers, assign, sim, budget, temperature, balance, memory_budget)
            grad = through_normalisation(grad, unit, norms)
        theta.grad = grad
        optimizer.step()
        if not raw:
            with torch.no_grad():
                theta.copy_(torch.nn.functional.normalize(theta, dim=1))
        history.append(value)
        if progress is not None:
            progress(step, value)
    if stats is not None and assigner is not None:
        stats.update(assigner.stats)
    if raw:
        return torch.nn.functional.normalize(theta.detach(), dim=1), history
    return theta.detach(), history


def unit_centroids(theta, raw):
    """(θ/‖θ‖, ‖θ‖) for the ``released`` update (``raw``); (θ, None) for unit θ kept on the sphere."""
    if not raw:
        return theta, None
    norms = torch.linalg.vector_norm(theta, dim=1, keepdim=True)
    return theta / norms, norms


def through_normalisation(grad, unit, norms=None):
    """Gradient with respect to θ from the gradient with respect to u = θ/‖θ‖: (I − u uᵀ) g / ‖θ‖.

    ``norms`` None: θ is unit (the ``projected`` update), only the radial part is dropped.  Modifies
    ``grad`` in place and returns it.
    """
    grad -= (grad * unit).sum(dim=1, keepdim=True) * unit
    if norms is not None:
        grad /= norms
    return grad


def loss_and_gradient(points, theta, fixed=None, loss="released", temperature=0.07, balance=1.0,
                      update="projected", memory_budget=DEFAULT_MEMORY_BUDGET):
    """The loss at ``theta`` and its gradient with respect to ``theta``, as one optimisation step forms them.

    ``theta`` (B, C) is the optimised parameter: unit rows for the ``projected`` update, raw rows for the
    ``released`` one (the loss is then computed on θ/‖θ‖).  Every sample is compared with every centroid
    (the dense assignment).  For tests and for inspecting a step; returns ``(value, grad)``.
    """
    if loss not in LOSS_FORMS:
        raise ValueError(f"loss must be one of {LOSS_FORMS}, got {loss!r}")
    if update not in UPDATE_FORMS:
        raise ValueError(f"update must be one of {UPDATE_FORMS}, got {update!r}")
    grad_fn = _released_gradient if loss == "released" else _paper_gradient
    fixed = _as_index(fixed, points.device)
    budget = theta.shape[0]
    with torch.no_grad():
        unit, norms = unit_centroids(theta.detach(), update == "released")
        centers = torch.cat([unit, rows_of(points, fixed)]) if fixed.numel() else unit
        assign, sim = DenseAssigner(points, memory_budget)(centers)
        value, grad = grad_fn(points, centers, assign, sim, budget, temperature, balance, memory_budget)
        return value, through_normalisation(grad, unit, norms)


def initial_centroids(points, budget, fixed, seed, memory_budget=DEFAULT_MEMORY_BUDGET):
    """B distinct random pool rows (never a fixed one), drawn with ``seed``.

    Without fixed rows the draw is uniform, as in the paper.  With fixed rows
    (a later round) each row is drawn with probability proportional to its
    squared distance to the nearest fixed row (k-means++ style): Adam moves
    each centroid only a little, so centroids started inside well-labeled
    regions would otherwise mostly stay there.
    """
    n = points.shape[0]
    rng = np.random.default_rng(seed)
    if not fixed.numel():
        chosen = rng.choice(n, size=budget, replace=False)
    else:
        _, sim = nearest(points, rows_of(points, fixed), memory_budget)
        weight = torch.clamp(2.0 - 2.0 * sim, min=0.0).double().cpu().numpy()
        weight += 1e-12                       # every free row stays possible (duplicates of fixed ones too)
        weight[fixed.cpu().numpy()] = 0.0
        chosen = rng.choice(n, size=budget, replace=False, p=weight / weight.sum())
    return torch.as_tensor(chosen, dtype=torch.long, device=points.device)


def centroids_to_samples(points, theta, fixed=None, memory_budget=DEFAULT_MEMORY_BUDGET):
    """Map each centroid to its most similar sample not already taken (B unique rows)."""
    excluded = None
    fixed = _as_index(fixed, points.device)
    if fixed.numel():
        excluded = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
        excluded[fixed] = True
    return unique_nearest(points, theta, excluded=excluded, memory_budget=memory_budget)


def loss_value(points, centers, budget, loss="released", temperature=0.07, balance=1.0,
               memory_budget=DEFAULT_MEMORY_BUDGET):
    """The loss of centroids ``centers`` (free ones first, then fixed) without a step."""
    grad_fn = _released_gradient if loss == "released" else _paper_gradient
    with torch.no_grad():
        assign, sim = DenseAssigner(points, memory_budget)(centers)
        return grad_fn(points, centers, assign, sim, budget, temperature, balance, memory_budget)[0]


def _as_index(fixed, device):
    if fixed is None:
        return torch.zeros(0, dtype=torch.long, device=device)
    return torch.as_tensor(fixed, dtype=torch.long, device=device).reshape(-1)


def symmetric_blocks(m, memory_budget=DEFAULT_MEMORY_BUDGET, copies=2):
    """(rows, cols) slice pairs with rows ≤ cols covering the upper block triangle of an M×M matrix.

    Blocks are a quarter of M on a side (fewer would recompute more of the mirror image; smaller ones
    multiply less efficiently: 3 to 6 blocks a side measured alike here), or less where ``copies``
    float32 blocks would exceed the memory budget.
    """
    side = min(-(-m // 4), max(1, math.isqrt(int(memory_budget // (4 * copies)))))
    starts = range(0, m, side)
    return [(slice(a, min(a + side, m)), slice(b, min(b + side, m))) for a in starts for b in starts if b >= a]


def _cluster_sums(points, assign, m, weights, memory_budget):
    """Σ_{i: c_i=j} w_i f_i and Σ_{i: c_i=j} w_i for every center j (w = 1 when ``weights`` is None).

    Written as a sparse (M×N, one entry per column) times dense product: it
    reads the features once without an N×C temporary, ~5× faster on CPU than
    index_add of scaled rows.  MPS has no sparse kernels: index_add there.
    A float16 pool goes through the same product a chunk of rows at a time,
    widened to float32 (:func:`.rows_of`).
    """
    n = points.shape[0]
    dtype = compute_dtype(points)
    w = torch.ones(n, dtype=dtype, device=points.device) if weights is None else weights
    mass = torch.zeros(m, dtype=dtype, device=points.device).index_add_(0, assign, w)
    if points.device.type == "mps":
        weighted = torch.zeros((m, points.shape[1]), dtype=dtype, device=points.device)
        step = rows_per_chunk(points.shape[1], memory_budget, copies=2)
        for start in range(0, n, step):
            rows = slice(start, start + step)
            weighted.index_add_(0, assign[rows], rows_of(points, rows) * w[rows].unsqueeze(1))
        return weighted, mass
    if points.dtype == dtype:
        pairs = torch.stack([assign, torch.arange(n, device=points.device)])
        selector = torch.sparse_coo_tensor(pairs, w, (m, n), check_invariants=False)
        return torch.sparse.mm(selector, points), mass
    weighted = torch.zeros((m, points.shape[1]), dtype=dtype, device=points.device)
    step = rows_per_chunk(points.shape[1], memory_budget, copies=2)
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        size = rows.stop - rows.start
        pairs = torch.stack([assign[rows], torch.arange(size, device=points.device)])
        selector = torch.sparse_coo_tensor(pairs, w[rows], (m, size), check_invariants=False)
        weighted += torch.sparse.mm(selector, rows_of(points, rows))
    return weighted, mass


def _paper_gradient(points, centers, assign, sim, budget, temperature, balance, memory_budget):
    n = points.shape[0]
    tau = temperature
    weighted, _ = _cluster_sums(points, assign, centers.shape[0], None, memory_budget)
    grad = -weighted[:budget] / (n * tau)
    value = -float(sim.sum(dtype=torch.float64)) / (n * tau)

    # Regulariser 1/B Σ_j logsumexp_{k≠j}(θ_jᵀθ_k/τ) over free j, all k (fixed included).
    # ∂/∂θ_j = 1/(Bτ) [ Σ_k P_jk θ_k + Σ_{l free} P_lj θ_l ],  P = row softmax without the diagonal.
    reg = 0.0
    m = centers.shape[0]
    scaled = centers[:budget] / tau                     # 1/τ on B×C numbers instead of B×M
    if m > 1 and budget <= rows_per_chunk(m, memory_budget, copies=2) and 2.0 / tau < _EXP_RANGE:
        # All of P fits, and every exp((θ_jᵀθ_k - 1)/τ) is a normal float (unit θ: the shift by 1/τ
        # bounds them by 1 from above and e^(-2/τ) from below), so no max pass is needed.
        # E is symmetric on the free block, and so is (P + P_freeᵀ)_jk = E_jk (1/d_j + 1/d_k): only
        # its upper block triangle is computed, each block serving both of its mirror images.
        shift = torch.tensor(-1.0 / tau, dtype=centers.dtype, device=centers.device)
        blocks = []
        total = torch.zeros(budget, dtype=centers.dtype, device=centers.device)
        for rows, cols in symmetric_blocks(budget, memory_budget):
            weights = torch.addmm(shift, scaled[rows], centers[cols].T).exp_()
            if rows == cols:
                weights.fill_diagonal_(0.0)
            total[rows] += weights.sum(dim=1)
            if rows != cols:
                total[cols] += weights.sum(dim=0)
            blocks.append((rows, cols, weights))
        if m > budget:
            anchored = torch.addmm(shift, scaled, centers[budget:].T).exp_()
            total += anchored.sum(dim=1)
        reg = float((total.log() + 1.0 / tau).sum(dtype=torch.float64))
        inverse = total.reciprocal()
        pull = torch.zeros_like(grad)
        for rows, cols, weights in blocks:
            weights *= inverse[rows].unsqueeze(1) + inverse[cols].unsqueeze(0)
            pull[rows] += weights @ centers[cols]
            if rows != cols:
                pull[cols] += weights.T @ centers[rows]
        if m > budget:
            pull += (anchored * inverse.unsqueeze(1)) @ centers[budget:]
        grad += balance * pull / (budget * tau)
    elif m > 1:
        step = rows_per_chunk(m, memory_budget, copies=3)
        for start in range(0, budget, step):
            stop = min(start + step, budget)
            logits = scaled[start:stop] @ centers.T
            rows = torch.arange(start, stop, device=points.device)
            logits[rows - start, rows] = -float("inf")
            lse = torch.logsumexp(logits, dim=1)
            reg += float(lse.sum(dtype=torch.float64))
            prob = logits.sub_(lse.unsqueeze(1)).exp_()
            grad[start:stop] += balance * (prob @ centers) / (budget * tau)
            grad += balance * (prob[:, :budget].T @ centers[start:stop]) / (budget * tau)
    value += balance * reg / budget
    return value, grad


def _released_gradient(points, centers, assign, sim, budget, temperature, balance, memory_budget):
    n = points.shape[0]
    tau = temperature
    m = centers.shape[0]
    # log R_j and A_j = Σ_k softmax_k(θ_kᵀθ_j/τ) θ_k for every center (R is needed for fixed ones too).
    # R_j includes k = j, whose term exp(1/τ) is the largest (unit θ): with the shift by 1/τ every
    # term is exp((θ_jᵀθ_k - 1)/τ) ≤ 1 and the row sum is ≥ 1, so no max pass is needed.
    # E_jk = exp((θ_jᵀθ_k - 1)/τ) is symmetric: only its upper block triangle is computed, each block
    # adding to the row sums and to A's numerator of both its row and its column centroids (~20% less
    # time than the full M×M product at B = 2,500 here).
    total = torch.zeros(m, dtype=centers.dtype, device=points.device)
    pull = torch.zeros((budget, centers.shape[1]), dtype=centers.dtype, device=points.device)
    scaled = centers / tau
    shift = torch.tensor(-1.0 / tau, dtype=centers.dtype, device=points.device)
    for rows, cols in symmetric_blocks(m, memory_budget):
        weights = torch.addmm(shift, scaled[rows], centers[cols].T).exp_()
        total[rows] += weights.sum(dim=1)
        free = min(rows.stop, budget) - rows.start
        if free > 0:
            pull[rows.start:rows.start + free] += weights[:free] @ centers[cols]
        if rows != cols:
            total[cols] += weights.sum(dim=0)
            free = min(cols.stop, budget) - cols.start
            if free > 0:
                pull[cols.start:cols.start + free] += weights[:, :free].T @ centers[rows]
    log_r = total.log() + 1.0 / tau
    attract = pull / total[:budget].unsqueeze(1)
    # J_i = -(s_i/τ - log(exp(s_i/τ) + λR_c)) = softplus(log λR_c - s_i/τ);  w_i = 1 - q_i = sigmoid(same).
    margin = math.log(balance) + log_r[assign] - sim / tau
    weighted, mass = _cluster_sums(points, assign, m, torch.sigmoid(margin), memory_budget)
    grad = (-weighted[:budget] + mass[:budget].unsqueeze(1) * attract) / (n * tau)
    value = float(torch.nn.functional.softplus(margin).sum(dtype=torch.float64)) / n
    return value, grad

"""The ActiveFT optimizer (Xie et al., CVPR 2023, Algorithm 1).

B continuous centroids θ on the unit sphere are optimised with Adam so that
the selection matches the pool's distribution (every sample close to some
centroid) while the centroids stay apart.  Two loss forms:

``paper``
    L = -1/N Σ_i max_j f_iᵀθ_j/τ + 1/B Σ_j log Σ_{k≠j} exp(θ_jᵀθ_k/τ)

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
gradients formed directly (the M×M centroid terms too, in row chunks), and the
gradient taken through the normalisation θ/‖θ‖ as the released code does
(for unit θ this projects it on the sphere's tangent plane).  Adam steps, then
θ is renormalised.  ``tests/test_activeft.py`` checks these gradients against
plain autograd on the dense loss.
"""

import math
import time

import numpy as np
import torch

from ._common import DEFAULT_MEMORY_BUDGET, nearest, rows_per_chunk, unique_nearest

LOSS_FORMS = ("released", "paper")


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
    progress=None,
):
    """Run the ActiveFT optimisation and return the final centroids.

    Parameters
    ----------
    points : Tensor (N, C)
        Unit-norm features of the whole pool.
    budget : int
        Number of centroids B to optimise.
    fixed : LongTensor (F,) or None
        Rows of ``points`` that are already labeled: they act as centroids
        that do not move.
    loss : {"released", "paper"}
    temperature, lr, iterations, balance, seed
        τ, Adam's learning rate, number of Adam steps, λ (released form only)
        and the seed of the random initialisation.
    memory_budget : int
        Bytes of similarity blocks held at once.
    progress : callable(step, loss) or None
        Called after every step.

    Returns
    -------
    theta : Tensor (B, C), unit rows
    history : list of float, the loss before each step (length ``iterations``)
    """
    if loss not in LOSS_FORMS:
        raise ValueError(f"loss must be one of {LOSS_FORMS}, got {loss!r}")
    n = points.shape[0]
    device = points.device
    fixed = _as_index(fixed, device)
    anchors = points[fixed]

    theta = points[initial_centroids(points, budget, fixed, seed, memory_budget)].clone()
    theta.requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    grad_fn = _released_gradient if loss == "released" else _paper_gradient

    history = []
    for step in range(iterations):
        with torch.no_grad():
            centers = torch.cat([theta.detach(), anchors]) if anchors.numel() else theta.detach()
            value, grad = grad_fn(points, centers, budget, temperature, balance, memory_budget)
            # Gradient through θ/‖θ‖ at unit norm: drop the radial part.
            grad -= (grad * centers[:budget]).sum(dim=1, keepdim=True) * centers[:budget]
        theta.grad = grad
        optimizer.step()
        with torch.no_grad():
            theta.copy_(torch.nn.functional.normalize(theta, dim=1))
        history.append(value)
        if progress is not None:
            progress(step, value)
    return theta.detach(), history


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
        _, sim = nearest(points, points[fixed], memory_budget)
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
        return grad_fn(points, centers, budget, temperature, balance, memory_budget)[0]


def _as_index(fixed, device):
    if fixed is None:
        return torch.zeros(0, dtype=torch.long, device=device)
    return torch.as_tensor(fixed, dtype=torch.long, device=device).reshape(-1)


def _cluster_sums(points, centers, weights_fn, memory_budget):
    """Σ_{i: c_i=j} w_i f_i and Σ_{i: c_i=j} w_i per center, plus Σ_i of a per-sample loss term.

    ``weights_fn(similarity, assignment) -> (w, loss_terms)`` turns a chunk's
    nearest-center similarities into per-sample weights and loss terms.
    """
    m, c = centers.shape
    weighted = torch.zeros((m, c), dtype=points.dtype, device=points.device)
    mass = torch.zeros(m, dtype=points.dtype, device=points.device)
    total = torch.zeros((), dtype=torch.float64, device=points.device)
    step = rows_per_chunk(m, memory_budget, copies=2)
    for start in range(0, points.shape[0], step):
        chunk = points[start:start + step]
        assign, sim = nearest(chunk, centers, memory_budget)
        w, terms = weights_fn(sim, assign)
        weighted.index_add_(0, assign, chunk * w.unsqueeze(1) if w is not None else chunk)
        mass.index_add_(0, assign, w if w is not None else torch.ones_like(sim))
        total += terms.sum(dtype=torch.float64)
    return weighted, mass, total


def _paper_gradient(points, centers, budget, temperature, balance, memory_budget):
    n = points.shape[0]
    tau = temperature
    weighted, _, total = _cluster_sums(points, centers, lambda sim, a: (None, sim), memory_budget)
    grad = -weighted[:budget] / (n * tau)
    value = -float(total) / (n * tau)

    # Regulariser 1/B Σ_j logsumexp_{k≠j}(θ_jᵀθ_k/τ) over free j, all k (fixed included).
    # ∂/∂θ_j = 1/(Bτ) [ Σ_k P_jk θ_k + Σ_{l free} P_lj θ_l ],  P = row softmax without the diagonal.
    reg = 0.0
    m = centers.shape[0]
    if m > 1:
        step = rows_per_chunk(m, memory_budget, copies=3)
        for start in range(0, budget, step):
            stop = min(start + step, budget)
            logits = centers[start:stop] @ centers.T / tau
            rows = torch.arange(start, stop, device=points.device)
            logits[rows - start, rows] = -float("inf")
            lse = torch.logsumexp(logits, dim=1)
            reg += float(lse.sum(dtype=torch.float64))
            prob = torch.exp(logits - lse.unsqueeze(1))
            grad[start:stop] += prob @ centers / (budget * tau)
            grad += prob[:, :budget].T @ centers[start:stop] / (budget * tau)
        value += reg / budget
    return value, grad


def _released_gradient(points, centers, budget, temperature, balance, memory_budget):
    n = points.shape[0]
    tau = temperature
    m = centers.shape[0]
    # log R_j and A_j = Σ_k softmax_k(θ_kᵀθ_j/τ) θ_k for every center (R is needed for fixed ones too).
    log_r = torch.empty(m, dtype=points.dtype, device=points.device)
    attract = torch.empty((budget, centers.shape[1]), dtype=points.dtype, device=points.device)
    step = rows_per_chunk(m, memory_budget, copies=3)
    for start in range(0, m, step):
        logits = centers[start:start + step] @ centers.T / tau
        lse = torch.logsumexp(logits, dim=1)
        log_r[start:start + step] = lse
        if start < budget:
            stop = min(start + step, budget)
            prob = torch.exp(logits[: stop - start] - lse[: stop - start].unsqueeze(1))
            attract[start:stop] = prob @ centers
    log_balance = math.log(balance)

    def weights(sim, assign):
        # J_i = -(s_i/τ - log(exp(s_i/τ) + λR_c)) = softplus(log λR_c - s_i/τ);  w_i = 1 - q_i.
        margin = log_balance + log_r[assign] - sim / tau
        return torch.sigmoid(margin), torch.nn.functional.softplus(margin)

    weighted, mass, total = _cluster_sums(points, centers, weights, memory_budget)
    grad = (-weighted[:budget] + mass[:budget].unsqueeze(1) * attract) / (n * tau)
    return float(total) / n, grad

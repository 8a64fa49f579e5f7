"""A straightforward dense ActiveFT implementation: the full N×M similarity
matrix and plain autograd every step.

It exists only as the yardstick that tests and ``bench/selection_speed.py``
hold the fast optimizer against (same loss, same initialisation, same Adam
steps); it needs O(N·B) memory, so never use it on real pools.
"""

import torch

from activeft_label.selection.activeft import initial_centroids


def dense_loss(points, theta, anchors, loss="released", temperature=0.07, balance=1.0):
    """The loss as the paper (``paper``) or the released code (``released``) writes it."""
    theta = torch.nn.functional.normalize(theta, dim=1)
    centers = torch.cat([theta, anchors]) if anchors.numel() else theta
    sims = points @ centers.T
    best, assign = sims.max(dim=1)
    if loss == "paper":
        logits = theta @ centers.T / temperature
        budget = theta.shape[0]
        mask = torch.zeros_like(logits, dtype=torch.bool)
        mask[torch.arange(budget), torch.arange(budget)] = True
        logits = logits.masked_fill(mask, -float("inf"))
        return -best.mean() / temperature + balance * torch.logsumexp(logits, dim=1).mean()
    scaled = best / temperature
    r = torch.exp(centers.detach() @ centers.T / temperature).sum(dim=0)
    return -(scaled - torch.log(torch.exp(scaled) + balance * r[assign])).mean()


def dense_optimize(points, budget, *, fixed=None, loss="released", temperature=0.07, lr=1e-3,
                   iterations=300, balance=1.0, seed=0):
    """Optimise centroids with the dense loss; returns (theta, history) like the fast path."""
    device = points.device
    fixed = torch.zeros(0, dtype=torch.long, device=device) if fixed is None else \
        torch.as_tensor(fixed, dtype=torch.long, device=device)
    anchors = points[fixed]
    theta = points[initial_centroids(points, budget, fixed, seed)].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    history = []
    for _ in range(iterations):
        value = dense_loss(points, theta, anchors, loss, temperature, balance)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        with torch.no_grad():
            theta.copy_(torch.nn.functional.normalize(theta, dim=1))
        history.append(float(value.detach()))
    return theta.detach(), history

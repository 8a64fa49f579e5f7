"""The released code's update of θ (raw parameter, normalised only inside the loss): gradients against autograd
and finite differences in float64, the trajectory against plain autograd + Adam, and the option's plumbing."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from activeft_label import InputError, SelectionOptions, select
from activeft_label.cli import main
from activeft_label.selection.activeft import initial_centroids, loss_and_gradient, optimize_centroids
from reference import dense_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pool(n=60, dim=6, seed=0, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, dim))
    x = centers[rng.integers(0, 4, n)] + 0.5 * rng.normal(size=(n, dim))
    return torch.nn.functional.normalize(torch.as_tensor(x, dtype=dtype), dim=1)


def raw_theta(points, budget, seed=1):
    """Centroids off the sphere: pool rows scaled by 0.5..2 and moved a little, as raw Adam steps leave them."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(points.shape[0], size=budget, replace=False)
    scale = torch.as_tensor(rng.uniform(0.5, 2.0, size=(budget, 1)), dtype=points.dtype)
    noise = torch.as_tensor(0.05 * rng.normal(size=(budget, points.shape[1])), dtype=points.dtype)
    return points[rows] * scale + noise


def frozen_released_loss(points, theta, bar, anchors, temperature=0.07, balance=1.0):
    """The released loss with θ̄ (the detached centroids inside R) held at ``bar``: the function whose true
    gradient the code's autograd gradient is (the code detaches θ̄, so its gradient is not that of J(θ))."""
    unit = torch.nn.functional.normalize(theta, dim=1)
    centers = torch.cat([unit, anchors]) if anchors.numel() else unit
    frozen = torch.cat([bar, anchors]) if anchors.numel() else bar
    best, assign = (points @ centers.T).max(dim=1)
    scaled = best / temperature
    r = torch.exp(frozen @ centers.T / temperature).sum(dim=0)
    return -(scaled - torch.log(torch.exp(scaled) + balance * r[assign])).mean()


@pytest.mark.parametrize("loss", ["released", "paper"])
@pytest.mark.parametrize("with_fixed", [False, True])
@pytest.mark.parametrize("balance", [1.0, 0.3])
def test_released_update_gradient_is_autograd_through_the_normalisation(loss, with_fixed, balance):
    points = pool()
    fixed = torch.tensor([3, 17]) if with_fixed else torch.zeros(0, dtype=torch.long)
    theta = raw_theta(points, 5)
    value, grad = loss_and_gradient(points, theta, fixed=fixed, loss=loss, balance=balance, update="released",
                                    memory_budget=256)
    leaf = theta.clone().requires_grad_(True)
    expected = dense_loss(points, leaf, points[fixed], loss, 0.07, balance)     # normalises θ inside, as the code
    expected.backward()
    assert value == pytest.approx(float(expected.detach()), rel=1e-10)
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-8, atol=1e-10)
    # The gradient is tangent to the sphere at θ/‖θ‖ and scales as 1/‖θ‖: doubling θ halves it.
    unit = torch.nn.functional.normalize(theta, dim=1)
    assert float((grad * unit).sum(dim=1).abs().max()) < 1e-12
    _, half = loss_and_gradient(points, 2 * theta, fixed=fixed, loss=loss, balance=balance, update="released")
    torch.testing.assert_close(half, grad / 2, rtol=1e-8, atol=1e-12)


def test_projected_update_gradient_is_the_tangent_part_at_unit_theta():
    points = pool(seed=2)
    theta = torch.nn.functional.normalize(raw_theta(points, 4, seed=3), dim=1)
    projected = loss_and_gradient(points, theta, update="projected")[1]
    released = loss_and_gradient(points, theta, update="released")[1]
    torch.testing.assert_close(projected, released, rtol=1e-12, atol=1e-14)     # identical on the sphere


def test_gradients_agree_with_finite_differences_in_float64():
    """gradcheck: autograd of the frozen-θ̄ loss against finite differences; then the fast gradient against it."""
    points = pool(n=24, dim=4, seed=4)
    anchors = points[[5]]
    theta0 = raw_theta(points, 3, seed=5)
    bar = torch.nn.functional.normalize(theta0, dim=1)
    torch.autograd.gradcheck(lambda t: frozen_released_loss(points, t, bar, anchors),
                             (theta0.clone().requires_grad_(True),), eps=1e-6, atol=1e-6, rtol=1e-5)
    _, grad = loss_and_gradient(points, theta0, fixed=torch.tensor([5]), update="released")
    numeric = torch.zeros_like(theta0)
    eps = 1e-6
    for index in np.ndindex(*theta0.shape):
        up, down = theta0.clone(), theta0.clone()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (frozen_released_loss(points, up, bar, anchors)
                          - frozen_released_loss(points, down, bar, anchors)) / (2 * eps)
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-7)
    # The paper form has no detached term: its gradient is the plain derivative of the loss.
    torch.autograd.gradcheck(lambda t: dense_loss(points, t, anchors, "paper"),
                             (theta0.clone().requires_grad_(True),), eps=1e-6, atol=1e-6, rtol=1e-5)
    _, paper = loss_and_gradient(points, theta0, fixed=torch.tensor([5]), loss="paper", update="released")
    leaf = theta0.clone().requires_grad_(True)
    dense_loss(points, leaf, anchors, "paper").backward()
    torch.testing.assert_close(paper, leaf.grad, rtol=1e-8, atol=1e-10)


def dense_released_optimize(points, budget, fixed, loss, iterations, lr, seed=0):
    """The released code's loop: Adam on a raw θ, the loss normalising it inside, never renormalised."""
    anchors = points[fixed]
    theta = points[initial_centroids(points, budget, fixed, seed)].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    history = []
    for _ in range(iterations):
        value = dense_loss(points, theta, anchors, loss)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        history.append(float(value.detach()))
    return theta.detach(), history


@pytest.mark.parametrize("loss", ["released", "paper"])
@pytest.mark.parametrize("with_fixed", [False, True])
def test_released_trajectory_follows_plain_autograd_adam_on_a_raw_parameter(loss, with_fixed):
    points = pool(n=80, dim=8, seed=6)
    fixed = torch.tensor([0, 41]) if with_fixed else torch.zeros(0, dtype=torch.long)
    fast, history = optimize_centroids(points, 6, fixed=fixed, loss=loss, iterations=40, lr=1e-2,
                                       update="released", memory_budget=1024)
    raw, dense_history = dense_released_optimize(points, 6, fixed, loss, 40, 1e-2)
    assert float(raw.norm(dim=1).sub(1).abs().max()) > 1e-3          # the raw parameter did leave the sphere
    torch.testing.assert_close(fast, torch.nn.functional.normalize(raw, dim=1), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(history, dense_history, rtol=1e-10)
    projected, _ = optimize_centroids(points, 6, fixed=fixed, loss=loss, iterations=40, lr=1e-2)
    assert float((projected - fast).abs().max()) > 1e-4               # a different update, a different path


def test_select_takes_the_update_checks_it_and_records_it():
    points = pool(n=120, dim=8, seed=7, dtype=torch.float32).numpy()
    result = select(points, 10, update="released", iterations=40)
    assert result.params["update"] == "released" and np.unique(result.indices).size == 10
    assert select(points, 10, iterations=5).params["update"] == "projected"
    again = select(points, 10, update="released", iterations=40)
    assert np.array_equal(result.indices, again.indices)
    with pytest.raises(InputError, match="unknown update"):
        select(points, 10, update="raw")
    with pytest.raises(InputError, match="unknown update"):
        select(points, 10, "random", update="raw")
    assert SelectionOptions(update="released").as_kwargs()["update"] == "released"
    assert "update" not in SelectionOptions().as_kwargs()


def test_cli_update_option(tmp_path):
    np.save(tmp_path / "f.npy", pool(n=100, dim=8, seed=8, dtype=torch.float32).numpy())
    runner = CliRunner()
    ok = runner.invoke(main, ["select", str(tmp_path / "f.npy"), "-b", "6", "--iters", "20", "--update",
                              "released", "--out", str(tmp_path / "s.json"), "-q"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    refused = runner.invoke(main, ["select", str(tmp_path / "f.npy"), "-b", "6", "--method", "kmeans",
                                   "--update", "released", "--out", str(tmp_path / "k.csv"), "-q"])
    assert refused.exit_code == 2 and "--update applies to --method activeft and bilaf only" in refused.output
    assert not (tmp_path / "k.csv").exists()

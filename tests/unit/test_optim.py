"""companion.optim: hand-written updates equal torch.optim; trajectories behave as the chapter says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from companion import optim
from companion.optim import ILL_CONDITIONED_BOWL, ROSENBROCK, SADDLE, TEST_FUNCTIONS


def random_quadratic(dim=6, seed=0):
    """f(p) = 0.5·pᵀAp - bᵀp with A symmetric positive definite, and a start point."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    a = m @ m.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)
    b = torch.randn(dim, generator=g, dtype=torch.float64)
    p0 = torch.randn(dim, generator=g, dtype=torch.float64)
    return (lambda p: 0.5 * p @ a @ p - b @ p), p0


def run_ours(step_fn, steps=50, **hyper):
    f, p = random_quadratic()
    state = {}
    for _ in range(steps):
        q = p.clone().requires_grad_()
        (grad,) = torch.autograd.grad(f(q), q)
        p = step_fn(p, grad, state, **hyper)
    return p


def run_torch(make_optimizer, steps=50):
    f, p0 = random_quadratic()
    p = p0.clone().requires_grad_()
    opt = make_optimizer([p])
    for _ in range(steps):
        opt.zero_grad()
        f(p).backward()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_step_equals_torch_sgd(momentum, nesterov):
    ours = run_ours(optim.sgd_step, lr=0.05, momentum=momentum, nesterov=nesterov)
    ref = run_torch(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=momentum, nesterov=nesterov))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_step_equals_torch_adamw(weight_decay):
    hyper = dict(lr=0.03, betas=(0.8, 0.99), eps=1e-8, weight_decay=weight_decay)
    ours = run_ours(optim.adamw_step, **hyper)
    ref = run_torch(lambda ps: torch.optim.AdamW(ps, **hyper))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_update_rules_reject_bad_inputs():
    p = torch.zeros(3)
    with pytest.raises(ValueError, match=r"p has shape \(3,\) but grad has shape \(2,\)"):
        optim.sgd_step(p, torch.zeros(2), {}, lr=0.1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        optim.sgd_step(p, p, {}, lr=0.0)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\)"):
        optim.sgd_step(p, p, {}, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        optim.sgd_step(p, p, {}, lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="state must be a dict"):
        optim.adamw_step(p, p, None, lr=0.1)
    with pytest.raises(ValueError, match=r"betas must both be in \[0, 1\)"):
        optim.adamw_step(p, p, {}, lr=0.1, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="weight_decay must be a number >= 0"):
        optim.adamw_step(p, p, {}, lr=0.1, weight_decay=-0.1)
    with pytest.raises(TypeError, match="grad must be a floating point torch.Tensor"):
        optim.adamw_step(p, [0.0, 0.0, 0.0], {}, lr=0.1)


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize(
    "make, per_param_bytes, counter_bytes",
    [
        (lambda ps: torch.optim.SGD(ps, lr=0.1), 0, 0),
        (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), 4, 0),
        (lambda ps: torch.optim.Adam(ps, lr=0.1), 8, 4),
        (lambda ps: torch.optim.AdamW(ps, lr=0.1), 8, 4),
    ],
)
def test_state_bytes_after_one_step(make, per_param_bytes, counter_bytes):
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    opt = make(params)
    assert optim.state_bytes(opt) == 0  # nothing before the first step
    model(torch.randn(5, 10)).sum().backward()
    opt.step()
    assert optim.state_bytes(opt) == per_param_bytes * n_params + counter_bytes * len(params)


def test_state_bytes_rejects_non_optimizers():
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        optim.state_bytes({})


# ----------------------------------------------------------------------------- test functions


def test_test_functions_are_registered_and_minimal_where_claimed():
    assert set(TEST_FUNCTIONS) == {"saddle", "rosenbrock", "bowl"}
    for fn in (ROSENBROCK, ILL_CONDITIONED_BOWL):
        xy = torch.tensor(fn.minimum, dtype=torch.float64, requires_grad=True)
        value = fn(xy)
        (grad,) = torch.autograd.grad(value, xy)
        assert value.item() == pytest.approx(0.0) and torch.allclose(grad, torch.zeros(2, dtype=torch.float64))
    assert SADDLE(torch.tensor([0.0, 2**0.5])).item() == pytest.approx(-1.0)  # the saddle's valleys
    batch = torch.zeros(4, 5, 2)
    assert ROSENBROCK(batch).shape == (4, 5)


def test_bowl_is_ill_conditioned_by_kappa():
    hessian = torch.autograd.functional.hessian(ILL_CONDITIONED_BOWL, torch.zeros(2, dtype=torch.float64))
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert eigenvalues.tolist() == pytest.approx([1.0, 50.0])


def test_surface_rejects_bad_points():
    with pytest.raises(ValueError, match=r"xy must have shape \(\.\.\., 2\), got \(3,\)"):
        SADDLE(torch.zeros(3))
    with pytest.raises(TypeError, match="xy must be a torch.Tensor"):
        SADDLE((0.0, 0.0))


# ----------------------------------------------------------------------------- trajectories


def test_trajectory_shape_and_start():
    path = optim.trajectory(SADDLE, "sgd", lr=0.01, steps=25)
    assert path.shape == (26, 2) and path.dtype == np.float64
    assert tuple(path[0]) == SADDLE.start
    assert tuple(optim.trajectory(SADDLE, "adam", 0.01, 3, start=(0.5, 0.5))[0]) == (0.5, 0.5)


def test_adam_reaches_the_bottom_of_the_bowl():
    path = optim.trajectory(ILL_CONDITIONED_BOWL, "adam", lr=0.05, steps=300)
    assert np.linalg.norm(path[-1] - np.array(ILL_CONDITIONED_BOWL.minimum)) < 1e-2


def test_momentum_beats_plain_sgd_in_the_rosenbrock_valley():
    distance = {
        name: np.linalg.norm(optim.trajectory(ROSENBROCK, name, lr=1e-3, steps=500)[-1] - np.array([1.0, 1.0]))
        for name in ("sgd", "momentum")
    }
    assert distance["momentum"] < 0.2 < 1.0 < distance["sgd"]  # measured: 0.09 vs 1.68


def test_gradient_descent_escapes_the_saddle_along_y():
    path = optim.trajectory(SADDLE, "sgd", lr=0.01, steps=1000)
    assert abs(path[-1, 0]) < 1e-6 and path[-1, 1] == pytest.approx(2**0.5, rel=1e-6)


def test_divergent_path_stops_at_the_last_finite_point():
    # lr = 1 is far above the stable 2/50 for the bowl: each step multiplies the error by ~49.
    path = optim.trajectory(ILL_CONDITIONED_BOWL, "sgd", lr=1.0, steps=1000)
    assert 2 < len(path) < 1001
    assert np.isfinite(path).all()


def test_trajectory_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adam', 'momentum', 'sgd'\], got 'rmsprop'"):
        optim.trajectory(SADDLE, "rmsprop", 0.1, 10)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        optim.trajectory(SADDLE, "sgd", -0.1, 10)
    for steps in (0, 100_001, 2.5):
        with pytest.raises(ValueError, match=r"steps must be an int in \[1, 100000\]"):
            optim.trajectory(SADDLE, "sgd", 0.1, steps)
    with pytest.raises(TypeError, match="fn must be a Surface2D"):
        optim.trajectory(lambda xy: xy.sum(), "sgd", 0.1, 10)
    with pytest.raises(ValueError, match="start must be two finite numbers"):
        optim.trajectory(SADDLE, "sgd", 0.1, 10, start=(0.0, float("nan")))


def test_grid_layout_matches_contour_convention():
    xs, ys, z = optim.grid(ROSENBROCK, n=30)
    assert xs.shape == (30,) and ys.shape == (30,) and z.shape == (30, 30)
    assert (xs[0], xs[-1]) == ROSENBROCK.bounds[0] and (ys[0], ys[-1]) == ROSENBROCK.bounds[1]
    i, j = 7, 21
    expected = ROSENBROCK(torch.tensor([xs[j], ys[i]], dtype=torch.float64)).item()
    assert z[i, j] == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"n must be an int in \[2, 2000\]"):
        optim.grid(ROSENBROCK, n=1)


def test_adamw_step_leaves_the_callers_tensor_alone():
    p, grad, state = torch.ones(5), torch.full((5,), 0.5), {}
    new_p = optim.adamw_step(p, grad, state, lr=0.1, weight_decay=0.1)
    assert torch.equal(p, torch.ones(5)) and not torch.equal(new_p, p)
    assert torch.allclose(state["exp_avg"], 0.1 * grad), "the moments live in state and are updated in place"

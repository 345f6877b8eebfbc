"""companion.landscape: filter-normalized directions and a loss surface that leaves the model intact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion.landscape import loss_surface, random_direction


def small_net(seed=0):
    torch.manual_seed(seed)
    conv = [nn.Conv1d(2, 4, 3), nn.Flatten()]
    return nn.Sequential(*conv, nn.Linear(24, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 1))


@pytest.fixture(scope="module")
def trained():
    """A tiny regression network trained to (near) its minimum, with its loss function."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, generator=g)
    y = torch.sin(x @ torch.tensor([1.0, -2.0, 0.5]))[:, None]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(400):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    return model, lambda m: F.mse_loss(m(x), y).item()


def test_direction_filters_have_the_weights_filter_norms():
    model = small_net()
    direction = random_direction(model, torch.Generator().manual_seed(0))
    for p, d in zip(model.parameters(), direction):
        assert d.shape == p.shape
        if p.dim() >= 2:
            torch.testing.assert_close(d.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))
        else:  # biases and LayerNorm gains stay put
            assert torch.count_nonzero(d) == 0


def test_direction_is_reproducible_from_the_generator():
    model = small_net()
    a = random_direction(model, torch.Generator().manual_seed(3))
    b = random_direction(model, torch.Generator().manual_seed(3))
    c = random_direction(model, torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_center_of_the_surface_is_the_model_loss(trained):
    model, loss_fn = trained
    z = loss_surface(model, loss_fn, alphas=[-0.5, 0.0, 0.5], betas=[0.0, 0.25])
    assert z.shape == (2, 3)
    assert z[0, 1] == loss_fn(model)


def test_weights_are_restored_bit_for_bit_also_on_error(trained):
    model, loss_fn = trained
    before = [p.detach().clone() for p in model.parameters()]
    loss_surface(model, loss_fn, alphas=np.linspace(-1, 1, 3), betas=np.linspace(-1, 1, 3), seed=1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))

    calls = []

    def failing_loss(m):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return loss_fn(m)

    with pytest.raises(RuntimeError, match="boom"):
        loss_surface(model, failing_loss, alphas=[0.3, 0.6], betas=[0.9])
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_trained_model_sits_at_the_bottom_of_its_surface(trained):
    model, loss_fn = trained
    offsets = np.linspace(-1, 1, 7)
    z = loss_surface(model, loss_fn, offsets, offsets)
    assert np.unravel_index(np.argmin(z), z.shape) == (3, 3)
    assert z.max() > 2 * z[3, 3]


def test_loss_surface_rejects_bad_inputs(trained):
    model, loss_fn = trained
    with pytest.raises(ValueError, match="alphas must not be empty"):
        loss_surface(model, loss_fn, [], [0.0])
    with pytest.raises(ValueError, match="betas must be finite"):
        loss_surface(model, loss_fn, [0.0], [0.0, float("inf")])
    with pytest.raises(TypeError, match="alphas must be a sequence of numbers"):
        loss_surface(model, loss_fn, ["left"], [0.0])
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        loss_surface(model, 3.0, [0.0], [0.0])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        loss_surface("net", loss_fn, [0.0], [0.0])
    with pytest.raises(ValueError, match="model has no parameters"):
        loss_surface(nn.ReLU(), lambda m: 0.0, [0.0], [0.0])
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        random_direction(model, 0)

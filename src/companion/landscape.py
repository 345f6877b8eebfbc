"""The loss surface of a trained network, on the plane spanned by two random directions.

A network has millions of weights, so we look at a 2-D slice: L(θ + α·d1 + β·d2) for two
random directions d1, d2. Raw Gaussian directions mislead, because a network whose weights are
scaled up looks flatter to the same step. Filter normalization fixes that: every filter of a
direction gets the norm of the matching filter of the weights, so α = 1 means "a step as large
as the weights themselves" in every layer alike.

    >>> z = loss_surface(model, lambda m: loss(m(x), y).item(), alphas, betas)  # (len(betas), len(alphas))

References:
- Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss Landscape of Neural Nets" (NeurIPS 2018),
  Section 4 (filter normalization).
- Goodfellow, Vinyals & Saxe, "Qualitatively characterizing neural network optimization
  problems" (ICLR 2015): 1-D interpolation plots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

MAX_POINTS = 1_000_000  # a guard against an accidental (10^4 x 10^4) grid of forward passes


def random_direction(model: nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
    """A filter-normalized Gaussian direction: one tensor per parameter, same shapes.

    For a parameter with dim >= 2, each filter (slice along dim 0: an output channel of a conv,
    a row of a linear layer) is drawn from N(0, I) and rescaled to the norm of the matching
    filter of the weights. Parameters with dim <= 1 (biases, norm gains) get a zero direction:
    the paper's setting of leaving biases and batch-norm parameters unperturbed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    params = list(model.parameters())
    if not params:
        raise ValueError("model has no parameters to perturb")
    return [_filter_normalized(p.detach(), generator) for p in params]


def _filter_normalized(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if weight.dim() <= 1:
        return torch.zeros_like(weight)
    noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype, device=generator.device)
    noise = noise.to(weight.device)
    return noise * _filter_norms(weight) / (_filter_norms(noise) + 1e-10)


def _filter_norms(t: torch.Tensor) -> torch.Tensor:
    """The norm of each slice t[i], shaped (n_filters, 1, 1, ...) to broadcast against t."""
    return t.flatten(1).norm(dim=1).view(-1, *[1] * (t.dim() - 1))


def loss_surface(
    model: nn.Module,
    loss_fn: Callable[[nn.Module], float],
    alphas: Sequence[float],
    betas: Sequence[float],
    seed: int = 0,
) -> np.ndarray:
    """Loss on the plane θ + α·d1 + β·d2: array (len(betas), len(alphas)), ``Z[i, j]`` at (alphas[j], betas[i]).

    ``loss_fn(model)`` returns the loss of the model as it currently is (a float or a 0-d
    tensor); put the model in eval mode first if it has dropout or batch norm. d1, d2 come from
    ``random_direction`` with a generator seeded by ``seed``. Evaluation runs under
    ``torch.no_grad`` and the weights are restored bit for bit afterwards, also when
    ``loss_fn`` raises. Non-finite losses (a blown-up corner of the plane) are kept as they are.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(model) -> float, got {type(loss_fn).__name__}")
    alphas, betas = _as_offsets("alphas", alphas), _as_offsets("betas", betas)
    if len(alphas) * len(betas) > MAX_POINTS:
        raise ValueError(f"len(alphas) * len(betas) must be <= {MAX_POINTS}, got {len(alphas) * len(betas)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    generator = torch.Generator().manual_seed(seed)
    d1, d2 = random_direction(model, generator), random_direction(model, generator)

    params = list(model.parameters())
    original = [p.detach().clone() for p in params]
    surface = np.empty((len(betas), len(alphas)))
    try:
        with torch.no_grad():
            for i, beta in enumerate(betas):
                for j, alpha in enumerate(alphas):
                    for p, p0, u, v in zip(params, original, d1, d2):
                        p.copy_(p0 + alpha * u + beta * v)
                    surface[i, j] = float(loss_fn(model))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, original):
                p.copy_(p0)
    return surface


def _as_offsets(name: str, values: Sequence[float]) -> list[float]:
    try:
        offsets = [float(v) for v in values]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if not offsets:
        raise ValueError(f"{name} must not be empty")
    if not all(math.isfinite(v) for v in offsets):
        raise ValueError(f"{name} must be finite, got {offsets}")
    return offsets

"""Optimizers from scratch, what they cost in memory, and the 2-D surfaces that show how they move.

Three ideas, read top to bottom:
1. ``sgd_step`` and ``adamw_step``: one update of one tensor, with the optimizer state held in
   a plain dict, equal to ``torch.optim.SGD`` and ``torch.optim.AdamW`` step for step.
2. ``state_bytes``: how much memory a real torch optimizer keeps (Adam: two extra copies of
   the parameters).
3. Small 2-D test functions (a saddle, Rosenbrock's valley, an ill-conditioned bowl) with
   ``trajectory`` (the path a real torch optimizer takes on them) and ``grid`` (for contours).

    >>> path = trajectory(TEST_FUNCTIONS["bowl"], "adam", lr=0.05, steps=200)  # (201, 2)

References:
- PyTorch docs, ``torch.optim.SGD`` and ``torch.optim.AdamW`` (the exact update rules used).
- Polyak, "Some methods of speeding up the convergence of iteration methods" (1964): momentum.
- Nesterov, "A method for solving the convex programming problem with convergence rate
  O(1/k^2)" (1983); Sutskever et al., "On the importance of initialization and momentum in
  deep learning" (2013).
- Kingma & Ba, "Adam: A Method for Stochastic Optimization" (2015).
- Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (2019): AdamW.
- Rosenbrock, "An Automatic Method for Finding the Greatest or Least Value of a Function" (1960).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

# ----------------------------------------------------------------------------- update rules


def _check_step_inputs(p, grad, state, lr) -> None:
    for name, t in (("p", p), ("grad", grad)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating point torch.Tensor, got {type(t).__name__}")
    if grad.shape != p.shape:
        raise ValueError(f"p has shape {tuple(p.shape)} but grad has shape {tuple(grad.shape)}; they must match")
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict (empty before the first step), got {type(state).__name__}")
    _check_positive("lr", lr)


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def sgd_step(
    p: torch.Tensor, grad: torch.Tensor, state: dict, lr: float, momentum: float = 0.0, nesterov: bool = False
) -> torch.Tensor:
    """One SGD step, as ``torch.optim.SGD`` (no dampening, no weight decay). Returns the new p.

    With momentum μ the velocity is ``v ← μ·v + g`` (v = g on the first step) and the update
    is ``p ← p - lr·v``, or ``p ← p - lr·(g + μ·v)`` with Nesterov. ``state`` holds v under
    ``"momentum_buffer"`` and is updated in place; start with ``{}``. p may have any shape.

        >>> state = {}; p = sgd_step(p, grad, state, lr=0.1, momentum=0.9)
    """
    _check_step_inputs(p, grad, state, lr)
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    if momentum == 0:
        return p - lr * grad
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = grad.clone()
    else:
        state["momentum_buffer"] = momentum * state["momentum_buffer"] + grad
    velocity = state["momentum_buffer"]
    direction = grad + momentum * velocity if nesterov else velocity
    return p - lr * direction


def adamw_step(
    p: torch.Tensor,
    grad: torch.Tensor,
    state: dict,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.Tensor:
    """One AdamW step, as ``torch.optim.AdamW``. Returns the new p.

    Decoupled weight decay shrinks the weights directly, ``p ← p·(1 - lr·λ)``, instead of
    adding λ·p to the gradient (which Adam would then rescale). Then, with t the step count,
        m ← β1·m + (1-β1)·g        v ← β2·v + (1-β2)·g²
        p ← p - lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)
    ``state`` holds ``step``, ``exp_avg`` (m) and ``exp_avg_sq`` (v); start with ``{}``.
    """
    _check_step_inputs(p, grad, state, lr)
    beta1, beta2 = betas
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError(f"betas must both be in [0, 1), got {betas}")
    _check_positive("eps", eps)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    if not state:
        state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
    state["step"] += 1
    t = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.lerp_(grad, 1 - beta1)  # m ← β1·m + (1-β1)·g, in place as production optimizers do
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v ← β2·v + (1-β2)·g²
    denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
    new_p = p * (1 - lr * weight_decay)  # a new tensor: the caller's p is left as it was
    return new_p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))


# ----------------------------------------------------------------------------- memory


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by every tensor in ``optimizer.state``.

    After one step, for P float32 parameters held in n tensors: SGD without momentum keeps
    nothing (0), SGD with momentum one buffer (4·P), Adam and AdamW two moments (8·P) plus one
    step counter per parameter tensor. torch stores that counter as a 0-d float32 tensor, so it
    is counted too: 4·n bytes, negligible next to 8·P. Python numbers in the state (none in
    today's torch optimizers) are not counted.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return sum(
        value.numel() * value.element_size()
        for per_param in optimizer.state.values()
        for value in per_param.values()
        if isinstance(value, torch.Tensor)
    )


# ----------------------------------------------------------------------------- 2-D test functions

Box = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Surface2D:
    """A differentiable f(x, y) with where to start, where to plot and where the minimum is.

    ``surface(xy)`` takes a tensor of shape (..., 2) and returns shape (...).
    """

    name: str
    formula: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    bounds: Box  # ((xmin, xmax), (ymin, ymax)) for plotting
    minimum: tuple[float, float] | None  # None when there is no single global minimum

    def __call__(self, xy: torch.Tensor) -> torch.Tensor:
        if not isinstance(xy, torch.Tensor):
            raise TypeError(f"xy must be a torch.Tensor of shape (..., 2), got {type(xy).__name__}")
        if xy.dim() == 0 or xy.shape[-1] != 2:
            raise ValueError(f"xy must have shape (..., 2), got {tuple(xy.shape)}")
        return self.formula(xy[..., 0], xy[..., 1])


def _saddle(x, y):
    return x**2 - y**2 + 0.25 * y**4


def _rosenbrock(x, y, a=1.0, b=100.0):
    return (a - x) ** 2 + b * (y - x**2) ** 2


BOWL_CONDITION, _ANGLE = 50.0, math.radians(30)  # the bowl's Hessian has eigenvalues 1 and 50


def _ill_conditioned_bowl(x, y):
    u = math.cos(_ANGLE) * x + math.sin(_ANGLE) * y  # coordinates along the bowl's axes
    v = -math.sin(_ANGLE) * x + math.cos(_ANGLE) * y
    return 0.5 * (u**2 + BOWL_CONDITION * v**2)


# x² - y² is a saddle at the origin; the y⁴/4 term keeps it bounded below, with two valleys at
# (0, ±√2) where f = -1. Starting a hair off the ridge (y = 1e-3) lets gradient methods escape.
SADDLE = Surface2D("saddle", _saddle, start=(-1.5, 1e-3), bounds=((-2.0, 2.0), (-2.0, 2.0)), minimum=None)
# The classic banana valley and the classic start (-1.2, 1).
ROSENBROCK = Surface2D(
    "rosenbrock", _rosenbrock, start=(-1.2, 1.0), bounds=((-2.0, 2.0), (-1.0, 3.0)), minimum=(1.0, 1.0)
)
# 0.5·(u² + 50·v²) in axes rotated by 30°: curvature 50 times larger across the valley than along it.
ILL_CONDITIONED_BOWL = Surface2D(
    "bowl", _ill_conditioned_bowl, start=(-1.5, 1.5), bounds=((-2.0, 2.0), (-2.0, 2.0)), minimum=(0.0, 0.0)
)
TEST_FUNCTIONS: dict[str, Surface2D] = {f.name: f for f in (SADDLE, ROSENBROCK, ILL_CONDITIONED_BOWL)}


# ----------------------------------------------------------------------------- trajectories

OPTIMIZERS: dict[str, Callable[[list[torch.Tensor], float], torch.optim.Optimizer]] = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "momentum": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
}
MAX_STEPS = 100_000


def trajectory(
    fn: Surface2D, optimizer: str, lr: float, steps: int, start: tuple[float, float] | None = None
) -> np.ndarray:
    """The path of a real torch optimizer on a 2-D surface: array (steps + 1, 2), start first.

    ``optimizer`` is "sgd", "momentum" (SGD with momentum 0.9) or "adam". The point is kept in
    float64. If the path diverges, the run stops at the last finite point, so the result then
    has fewer than steps + 1 rows; check ``len(path)``.
    """
    if not isinstance(fn, Surface2D):
        raise TypeError(f"fn must be a Surface2D such as TEST_FUNCTIONS['bowl'], got {type(fn).__name__}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    _check_positive("lr", lr)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an int in [1, {MAX_STEPS}], got {steps!r}")
    start = fn.start if start is None else start
    if len(start) != 2 or not all(math.isfinite(v) for v in start):
        raise ValueError(f"start must be two finite numbers (x, y), got {start!r}")

    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = OPTIMIZERS[optimizer]([point], lr)
    path = [point.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        fn(point).backward()
        opt.step()
        if not torch.isfinite(point).all():
            break
        path.append(point.detach().clone())
    return torch.stack(path).numpy()


def grid(fn: Surface2D, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f on an n×n grid over ``fn.bounds``: ``xs (n,), ys (n,), Z (n, n)`` with ``Z[i, j] = f(xs[j], ys[i])``.

    That is the layout of ``plotly.graph_objects.Contour(x=xs, y=ys, z=Z)`` and ``plt.contour``.
    """
    if not isinstance(fn, Surface2D):
        raise TypeError(f"fn must be a Surface2D, got {type(fn).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 2000:
        raise ValueError(f"n must be an int in [2, 2000], got {n!r}")
    (x_min, x_max), (y_min, y_max) = fn.bounds
    xs = torch.linspace(x_min, x_max, n, dtype=torch.float64)
    ys = torch.linspace(y_min, y_max, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        z = fn(torch.stack([xx, yy], dim=-1))
    return xs.numpy(), ys.numpy(), z.numpy()

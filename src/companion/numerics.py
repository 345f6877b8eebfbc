"""Floating point facts that decide whether training works, measured rather than asserted.

- softmax and logsumexp overflow unless you subtract the max first;
- each format (fp32, fp16, bf16, fp8) trades range for precision, and the numbers are in
  ``float_formats``;
- summing many small numbers in fp16 stalls once the running sum's spacing exceeds them;
  pairwise and Kahan summation fix most of it;
- small gradients underflow in fp16, which is why mixed precision scales the loss
  (``DynamicLossScaler``, the rule of ``torch.amp.GradScaler``).

References:
- Goldberg, "What Every Computer Scientist Should Know About Floating-Point Arithmetic" (1991).
- Higham, "The Accuracy of Floating Point Summation" (SIAM J. Sci. Comput., 1993); Kahan,
  "Further remarks on reducing truncation errors" (CACM, 1965).
- Micikevicius et al., "Mixed Precision Training" (ICLR 2018): loss scaling.
- Micikevicius et al., "FP8 Formats for Deep Learning" (2022): E4M3 and E5M2.
- PyTorch docs: ``torch.finfo``, ``torch.amp.GradScaler``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

# ----------------------------------------------------------------------------- softmax, logsumexp


def _check_float_tensor(name: str, x) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}")


def softmax_naive(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``exp(x) / sum(exp(x))`` in x's dtype. In fp32, exp(89) is already inf, and inf/inf = nan.

        >>> softmax_naive(torch.tensor([0.0, 100.0]))
        tensor([0., nan])
    """
    _check_float_tensor("x", x)
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_stable(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax with the max subtracted first, so exp only sees numbers <= 0. Same shape as x."""
    _check_float_tensor("x", x)
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def logsumexp_naive(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log(sum(exp(x)))`` as written: inf once any exp overflows. Reduces ``dim``."""
    _check_float_tensor("x", x)
    return torch.log(torch.exp(x).sum(dim=dim))


def logsumexp_stable(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``m + log(sum(exp(x - m)))`` with m the max along ``dim``; -inf rows stay -inf."""
    _check_float_tensor("x", x)
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # an all -inf row would give nan
    return (m + torch.log(torch.exp(x - m).sum(dim=dim, keepdim=True))).squeeze(dim)


def exp_overflow_threshold(dtype: torch.dtype) -> float:
    """The x above which exp(x) overflows to inf in ``dtype``: log(finfo(dtype).max).

    About 88.72 for fp32 and bf16 (same exponent range), 11.09 for fp16.
    """
    _check_float_dtype(dtype)
    return math.log(torch.finfo(dtype).max)


def _check_float_dtype(dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a torch floating point dtype such as torch.float16, got {dtype!r}")


# ----------------------------------------------------------------------------- formats


def float_formats() -> list[dict]:
    """One dict per format: name, bits, exponent_bits, mantissa_bits, max, smallest_normal,
    smallest_subnormal, eps. fp32, fp16, bf16, and fp8 E4M3 / E5M2 when this torch has them.

    eps is the gap between 1 and the next number, 2^-mantissa_bits; the smallest subnormal is
    smallest_normal·eps. Exponent bits are what is left after the sign and the mantissa.
    """
    names = ["float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"]
    formats = []
    for name in names:
        dtype = getattr(torch, name, None)
        if dtype is None:
            continue
        info = torch.finfo(dtype)
        mantissa_bits = round(-math.log2(info.eps))
        formats.append(
            dict(
                name=name,
                bits=info.bits,
                exponent_bits=info.bits - 1 - mantissa_bits,
                mantissa_bits=mantissa_bits,
                max=float(info.max),
                smallest_normal=float(info.smallest_normal),
                smallest_subnormal=float(info.smallest_normal) * float(info.eps),
                eps=float(info.eps),
            )
        )
    return formats


# ----------------------------------------------------------------------------- summation

SUM_METHODS = ("sequential", "pairwise", "kahan")
ACCUMULATOR_DTYPES = (np.float16, np.float32, np.float64)
MAX_SUM_LENGTH = 1_000_000


def accumulate(x: np.ndarray, dtype, method: str = "sequential") -> float:
    """Sum the 1-D array x with every addition rounded to ``dtype`` (np.float16/32/64).

    - "sequential": left to right, one rounding per element (``np.add.accumulate``); the error
      grows like n·eps, and in fp16 the sum stalls once its spacing exceeds twice the addends.
    - "pairwise": a balanced tree of additions, error ~ log2(n)·eps. Written out because
      ``np.sum`` on float16 quietly accumulates in float32 and would hide the effect.
    - "kahan": compensated summation, a second variable carries the rounding error; ~ 2·eps.
    In fp16 the last two end up limited by the rounding of the result itself (spacing 4 near 5000).
    """
    x, dtype = _check_sum_inputs(x, dtype, method)
    values = x.astype(dtype)
    if values.size == 0:
        return 0.0
    if method == "sequential":
        return float(np.add.accumulate(values, dtype=dtype)[-1])
    if method == "pairwise":
        return float(_pairwise_sum(values))
    return float(_kahan_sum(values))


def _check_sum_inputs(x, dtype, method):
    if not isinstance(x, np.ndarray) or x.ndim != 1:
        raise TypeError(f"x must be a 1-D numpy array, got {type(x).__name__} with shape {getattr(x, 'shape', None)}")
    if len(x) > MAX_SUM_LENGTH:
        raise ValueError(f"x may hold at most {MAX_SUM_LENGTH} values, got {len(x)}")
    try:
        dtype = np.dtype(dtype).type
    except TypeError:
        dtype = None
    if dtype not in ACCUMULATOR_DTYPES:
        raise TypeError("dtype must be np.float16, np.float32 or np.float64")
    if method not in SUM_METHODS:
        raise ValueError(f"method must be one of {SUM_METHODS}, got {method!r}")
    return x, dtype


def _pairwise_sum(values: np.ndarray) -> np.generic:
    """Add neighbours level by level (the array stays in its dtype, so each addition rounds)."""
    while len(values) > 1:
        if len(values) % 2:
            values = np.append(values, values.dtype.type(0))
        values = values[0::2] + values[1::2]
    return values[0]


def _kahan_sum(values: np.ndarray) -> np.generic:
    total = compensation = values.dtype.type(0)
    for v in values:
        corrected = v - compensation
        new_total = total + corrected
        compensation = (new_total - total) - corrected  # what the addition just lost
        total = new_total
    return total


def relative_sum_error(n: int, acc_dtype, method: str = "sequential", seed: int = 0) -> float:
    """|sum - exact| / exact for n uniform(0, 1) values stored in fp16, summed in ``acc_dtype``.

    The reference is ``math.fsum`` of the same fp16 values (exact), so only the accumulation is
    measured, not the rounding of the inputs.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SUM_LENGTH:
        raise ValueError(f"n must be an int in [1, {MAX_SUM_LENGTH}], got {n!r}")
    x = np.random.default_rng(seed).uniform(0, 1, n).astype(np.float16)
    exact = math.fsum(x.astype(np.float64))
    return abs(accumulate(x, acc_dtype, method) - exact) / exact


# ----------------------------------------------------------------------------- loss scaling


class DynamicLossScaler:
    """Dynamic loss scaling for fp16 training, with the rule of ``torch.amp.GradScaler``.

    Multiply the loss by ``scale`` before backward so that small gradients survive fp16;
    divide the gradients by it before the step. If any gradient is inf/nan, skip the step and
    multiply the scale by ``backoff_factor``; after ``growth_interval`` good steps in a row,
    multiply it by ``growth_factor``.

        scaler.scale_loss(loss).backward()
        found_inf = scaler.unscale_and_check([p.grad for p in model.parameters()])
        if not found_inf: optimizer.step()
        scaler.update(found_inf)
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ):
        if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be a finite number > 0, got {init_scale!r}")
        if not (isinstance(growth_factor, (int, float)) and growth_factor > 1):
            raise ValueError(f"growth_factor must be > 1, got {growth_factor!r}")
        if not (isinstance(backoff_factor, (int, float)) and 0 < backoff_factor < 1):
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"growth_interval must be an int >= 1, got {growth_interval!r}")
        self.scale = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self.good_steps = 0  # consecutive steps without inf/nan

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss * scale``, to call ``.backward()`` on."""
        _check_float_tensor("loss", loss)
        return loss * self.scale

    def unscale_and_check(self, grads: Iterable[torch.Tensor | None]) -> bool:
        """Divide every gradient by the scale, in place; return True if any is inf or nan.

        ``None`` entries (parameters without a gradient) are skipped.
        """
        found_inf = False
        inv_scale = 1.0 / self.scale
        with torch.no_grad():
            for i, g in enumerate(grads):
                if g is None:
                    continue
                _check_float_tensor(f"grads[{i}]", g)
                g.mul_(inv_scale)
                found_inf = found_inf or not bool(torch.isfinite(g).all())
        return found_inf

    def update(self, found_inf: bool) -> float:
        """Back off after an overflow, grow after ``growth_interval`` clean steps. Returns the new scale."""
        if not isinstance(found_inf, bool):
            raise TypeError(f"found_inf must be a bool, got {type(found_inf).__name__}")
        if found_inf:
            self.scale *= self.backoff_factor
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps == self.growth_interval:
                self.scale *= self.growth_factor
                self.good_steps = 0
        return self.scale


def cast_fractions(grads: torch.Tensor, dtype: torch.dtype = torch.float16, scale: float = 1.0) -> dict[str, float]:
    """What casting ``grads·scale`` to dtype does to the nonzero values of ``grads``, as shares of them.

    ``underflow``: became exactly 0; ``subnormal``: nonzero but below the smallest normal number
    (only a few significant bits left); ``overflow``: became ±inf. The product is formed in
    float32. A tensor with no nonzero values has nothing to lose: all three are 0.0.

        >>> cast_fractions(torch.tensor([1e-8, 1e-6, 1.0, 1e5]))
        {'underflow': 0.25, 'subnormal': 0.25, 'overflow': 0.25}
    """
    _check_float_tensor("grads", grads)
    _check_float_dtype(dtype)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    nonzero = grads != 0
    n_nonzero = int(nonzero.sum())
    if n_nonzero == 0:
        return {"underflow": 0.0, "subnormal": 0.0, "overflow": 0.0}
    cast = (grads.float() * scale).to(dtype)
    subnormal = (cast != 0) & (cast.abs() < torch.finfo(dtype).smallest_normal)
    return {name: int((nonzero & hit).sum()) / n_nonzero
            for name, hit in (("underflow", cast == 0), ("subnormal", subnormal), ("overflow", torch.isinf(cast)))}


def underflow_fraction(grads: torch.Tensor, dtype: torch.dtype = torch.float16, scale: float = 1.0) -> float:
    """Share of the nonzero values of ``grads`` that become exactly 0 when ``grads·scale`` is cast to dtype.

        >>> underflow_fraction(torch.full((10,), 1e-8))  # below fp16's smallest subnormal, 6e-8
        1.0
        >>> underflow_fraction(torch.full((10,), 1e-8), scale=2**16)
        0.0
    """
    return cast_fractions(grads, dtype, scale)["underflow"]

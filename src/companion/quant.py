"""Quantization: store numbers in few bits, and put the rounding error where it does least harm.

A float tensor x becomes integer *codes* q and a few floats that map them back:

    symmetric (absmax):  s = max|x| / (2^(b-1) - 1),      q = round(x / s),           x ≈ q · s
    asymmetric (affine): s = (max - min) / (2^b - 1),     q = round(x / s) + z,       x ≈ (q - z) · s

Round-to-nearest leaves every value within s / 2 of where it started, so the whole game is making
s small: one scale for the whole tensor (**per tensor**), one per output row (**per channel**), or
one per run of ``group_size`` consecutive inputs (**group-wise**, e.g. 128 as in GPTQ/AWQ
checkpoints). Four-bit codes live in int8 tensors here for arithmetic, and ``pack_int4`` stores
them two to a byte for the memory accounting.

Beyond uniform grids:

- **NF4** (Dettmers et al., 2023, "QLoRA"): 16 levels at quantiles of N(0, 1), so that normally
  distributed weights fill every level equally often; absmax scales per block of 64, and *double
  quantization* of those scales (8 bits, blocks of 256, after subtracting their mean):
  4 + 32/64 = 4.5 bits per parameter becomes 4 + 8/64 + 32/(64·256) ≈ 4.127.
- **LLM.int8()** (Dettmers et al., 2022): activations of large transformers carry a few feature
  dimensions with magnitudes far above the rest. Those columns (|x| > 6) run in floating point; the
  rest run as int8 × int8 with int32 accumulation, with a scale per row of X and per output of W.
- **SmoothQuant** (Xiao et al., 2023): divide activation channel j by
  s_j = max|X_j|^α / max|W_j|^(1-α) and multiply the weight's input channel j by it — the product is
  unchanged, the outliers move into the weights, and plain per-tensor int8 works on both.

``QuantLinear`` replaces an ``nn.Linear`` with one of these schemes (``SCHEMES``) and dequantizes on
the fly (weight-only, "W4A16"); ``quantize_model`` swaps every linear layer of a model.
``model_memory_gb`` is the calculator: 70B parameters in fp16 are 140 GB.

    >>> qt = quantize_tensor(w, bits=4, group_size=128)        # w (out, in): a scale per row and group
    >>> w_hat = qt.dequantize()                                 # (out, in), |w - w_hat| <= scale / 2
    >>> nf = quantize_nf4(w, double_quant=True); nf.bits_per_param()   # ≈ 4.127

References: Jacob et al. (2018) for affine integer quantization; Dettmers et al. (2022) LLM.int8();
Dettmers et al. (2023) QLoRA; Xiao et al. (2023) SmoothQuant; Frantar et al. (2023) GPTQ and
Lin et al. (2024) AWQ for group-wise int4 checkpoints.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# Checks shared by every entry point
# ---------------------------------------------------------------------------------------------


def _check_float(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinity; quantization needs finite values")


def _check_bits(bits: int, low: int = 2, high: int = 8) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= high:
        raise ValueError(f"bits must be an int in [{low}, {high}], got {bits!r}")


def _check_size(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _axis(x: torch.Tensor, axis: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis must be an int in [{-x.dim()}, {x.dim() - 1}] for a tensor of shape "
                         f"{tuple(x.shape)}, got {axis!r}")
    return axis % x.dim()


def qrange(bits: int, symmetric: bool = True) -> tuple[int, int]:
    """The integer codes of ``bits`` bits: [-(2^(b-1) - 1), 2^(b-1) - 1] symmetric, [-2^(b-1), 2^(b-1) - 1] affine.

    The symmetric range drops -2^(b-1) so that it is the same on both sides of zero (int8: ±127).

    >>> qrange(8), qrange(4, symmetric=False)
    ((-127, 127), (-8, 7))
    """
    _check_bits(bits)
    top = 2 ** (bits - 1) - 1
    return (-top if symmetric else -top - 1), top


# ---------------------------------------------------------------------------------------------
# Scales, codes and back: the primitives (the int8 KV cache uses these)
# ---------------------------------------------------------------------------------------------


def absmax_scale(x: torch.Tensor, dim: int | tuple[int, ...] | None = None, bits: int = 8) -> torch.Tensor:
    """Symmetric scale: max |x| over ``dim`` / (2^(bits-1) - 1), kept as size-1 dims; a zero range gets scale 1.

    ``dim=None`` reduces over everything (one scale per tensor).

    >>> absmax_scale(torch.tensor([[1.0, -2.54], [0.0, 0.0]]), dim=-1)   # (2, 2) -> (2, 1)
    tensor([[0.0200],
            [1.0000]])
    """
    _check_float(x)
    _, top = qrange(bits)
    dims = tuple(range(x.dim())) if dim is None else dim
    scale = x.abs().amax(dim=dims, keepdim=True).float() / top
    return torch.where(scale > 0, scale, torch.ones_like(scale))  # all zeros quantize to 0 at any scale


def affine_params(x: torch.Tensor, dim: int | tuple[int, ...] | None = None, bits: int = 8,
                  round_zero_point: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric (min-max) scale and zero point over ``dim``: x ≈ (q - z) · s with q in ``qrange(bits, False)``.

    By default z is a float, z = q_min - min / s, so the smallest and the largest value are both
    reconstructed exactly. ``round_zero_point=True`` is the convention of PyTorch and of integer
    hardware: the range is widened to include 0 and z is rounded to an integer, so that 0 is exact.
    """
    _check_float(x)
    lo_q, hi_q = qrange(bits, symmetric=False)
    dims = tuple(range(x.dim())) if dim is None else dim
    lo, hi = x.amin(dim=dims, keepdim=True).float(), x.amax(dim=dims, keepdim=True).float()
    if round_zero_point:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = (hi - lo) / (hi_q - lo_q)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = lo_q - lo / scale
    return scale, (zero.round().clamp(lo_q, hi_q) if round_zero_point else zero)


def quantize(x: torch.Tensor, scale: torch.Tensor, bits: int = 8,
             zero_point: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """round(x / scale) (+ zero_point) as int8 codes, clamped to ``qrange(bits)``; also how many values the clamp changed.

    Symmetric when ``zero_point`` is None (int8: [-127, 127]), affine otherwise ([-128, 127]).
    An unclipped value comes back from ``dequantize`` within scale / 2 of where it started.
    """
    _check_float(x)
    lo, hi = qrange(bits, symmetric=zero_point is None)
    q = x.float() * (1.0 / scale)  # times the reciprocal, as PyTorch's quantizer does: the same codes at ties
    q = torch.round(q if zero_point is None else q + zero_point)
    clipped = int(((q < lo) | (q > hi)).sum())
    return q.clamp(lo, hi).to(torch.int8), clipped


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32,
               zero_point: torch.Tensor | None = None) -> torch.Tensor:
    """(q - zero_point) · scale, broadcast, in ``dtype``."""
    q = q.float() if zero_point is None else q.float() - zero_point
    return (q * scale).to(dtype)


# ---------------------------------------------------------------------------------------------
# Granularity: per tensor, per channel, per group
# ---------------------------------------------------------------------------------------------


def _grouped(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """(..., K) -> (..., ceil(K / g), g). A ragged last group is padded by repeating its last value,
    which changes neither its absmax nor its min and max."""
    k = x.shape[-1]
    pad = -k % group_size
    if pad:
        x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], pad)], dim=-1)
    return x.reshape(*x.shape[:-1], -1, group_size)


@dataclass
class QTensor:
    """Integer codes of a tensor and what maps them back to floats.

    ``codes``: int8, the original shape (4-bit and lower codes use part of each byte; ``nbytes``
    counts them packed). ``scale`` (and ``zero_point`` when affine) broadcast against ``codes``;
    for group-wise quantization they are (..., n_groups, 1), the codes grouped along the last dim.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor | None
    bits: int
    group_size: int | None = None

    TENSORS = ("codes", "scale", "zero_point")  # the fields that hold tensors (or None)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float tensor the codes stand for, in the original shape."""
        if self.group_size is None:
            return dequantize(self.codes, self.scale, dtype, self.zero_point)
        k = self.codes.shape[-1]
        grouped = dequantize(_grouped(self.codes, self.group_size), self.scale, dtype, self.zero_point)
        return grouped.flatten(-2)[..., :k]

    @property
    def step(self) -> torch.Tensor:
        """The spacing between levels for every element (scale broadcast to the original shape)."""
        if self.group_size is None:
            return self.scale.expand_as(self.codes)
        k = self.codes.shape[-1]
        return self.scale.expand(*self.scale.shape[:-1], self.group_size).flatten(-2)[..., :k]

    def nbytes(self) -> int:
        """Storage: codes packed at ``bits`` bits each, plus the scales (and zero points) as stored (fp32)."""
        total = math.ceil(self.codes.numel() * self.bits / 8) + self.scale.numel() * self.scale.element_size()
        if self.zero_point is not None:
            total += self.zero_point.numel() * self.zero_point.element_size()
        return total

    def bits_per_param(self) -> float:
        return 8 * self.nbytes() / self.codes.numel()


def quantize_tensor(x: torch.Tensor, bits: int = 8, *, axis: int | None = None, group_size: int | None = None,
                    symmetric: bool = True) -> QTensor:
    """Round-to-nearest quantization of ``x`` to ``bits`` bits with one scale per tensor, channel or group.

    - ``axis=None, group_size=None``: one scale for the whole tensor;
    - ``axis=a``: one scale per index along ``a`` (per channel; for an ``nn.Linear`` weight (out, in),
      ``axis=0`` is per output row);
    - ``group_size=g``: one scale per run of g consecutive elements along the last dim (the input
      dim of a linear weight), per row; a ragged last group (192 = 128 + 64) gets its own scale.
    """
    _check_float(x)
    _check_bits(bits)
    if axis is not None and group_size is not None:
        raise ValueError("give axis (per channel) or group_size (group-wise along the last dim), not both")
    if group_size is not None:
        _check_size(group_size, "group_size")
        if x.dim() < 1:
            raise ValueError("group-wise quantization needs a tensor with at least one dimension")
        data, dims = _grouped(x, group_size), -1
    elif axis is not None:
        a = _axis(x, axis)
        data, dims = x, tuple(d for d in range(x.dim()) if d != a)
    else:
        data, dims = x, None
    if symmetric:
        scale, zero = absmax_scale(data, dims, bits), None
    else:
        scale, zero = affine_params(data, dims, bits)
    codes, _ = quantize(data, scale, bits, zero)
    if group_size is not None:
        codes = codes.flatten(-2)[..., :x.shape[-1]]
    return QTensor(codes, scale, zero, bits, group_size)


def fake_quantize(x: torch.Tensor, bits: int = 8, **options) -> torch.Tensor:
    """``quantize_tensor(x, bits, **options).dequantize()`` in x's dtype: the values a quantized model computes with."""
    return quantize_tensor(x, bits, **options).dequantize(x.dtype)


# ---------------------------------------------------------------------------------------------
# Two 4-bit codes per byte
# ---------------------------------------------------------------------------------------------


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Signed 4-bit codes in [-8, 7] (any shape) -> uint8 (ceil(n / 2),): element 2i in the low nibble, 2i+1 in the high.

    >>> pack_int4(torch.tensor([1, -1, 7], dtype=torch.int8))     # 0x1 | 0xF << 4, 0x7
    tensor([241,   7], dtype=torch.uint8)
    """
    if not isinstance(codes, torch.Tensor) or codes.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64):
        raise ValueError(f"codes must be an integer tensor, got {getattr(codes, 'dtype', type(codes).__name__)}")
    flat = codes.flatten()
    if flat.numel() and (int(flat.min()) < -8 or int(flat.max()) > 7):
        raise ValueError(f"4-bit codes must lie in [-8, 7], got [{int(flat.min())}, {int(flat.max())}]")
    nibbles = (flat.to(torch.int16) & 0xF).to(torch.uint8)  # two's complement in 4 bits
    if nibbles.numel() % 2:
        nibbles = torch.cat([nibbles, nibbles.new_zeros(1)])
    return nibbles[0::2] | (nibbles[1::2] << 4)


def unpack_int4(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """The inverse of ``pack_int4``: uint8 (ceil(numel / 2),) -> int8 (numel,) codes in [-8, 7]."""
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError(f"packed must be a 1-D uint8 tensor, got {getattr(packed, 'dtype', type(packed).__name__)}")
    if isinstance(numel, bool) or not isinstance(numel, int) or not 2 * len(packed) - 1 <= numel <= 2 * len(packed):
        raise ValueError(f"numel must be {2 * len(packed) - 1} or {2 * len(packed)} for {len(packed)} bytes, got {numel!r}")
    nibbles = torch.stack([packed & 0xF, packed >> 4], dim=1).flatten()[:numel].to(torch.int8)
    return torch.where(nibbles > 7, nibbles - 16, nibbles)


# ---------------------------------------------------------------------------------------------
# NF4: 16 levels at the quantiles of a normal distribution (QLoRA)
# ---------------------------------------------------------------------------------------------


def nf4_levels(offset: float = 0.9677083) -> torch.Tensor:
    """The 16 NormalFloat levels in [-1, 1], ascending, exactly one of them 0.

    Quantiles of N(0, 1) at evenly spaced probabilities: 8 for the positive half and 7 for the
    negative half (so that 0 is a level and the code is asymmetric by one level), normalized to
    [-1, 1]. The outermost probability ``offset`` = 1 - (1/32 + 1/30) / 2 stops short of 1, where
    the quantile is infinite (Dettmers et al., 2023, Appendix E; bitsandbytes ``create_normal_map``).
    """
    if not 0.5 < offset < 1:
        raise ValueError(f"offset must be in (0.5, 1), got {offset!r}")
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])  # 8 levels > 0
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])  # 7 levels < 0
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (levels / levels.abs().max()).float()


NF4 = nf4_levels()


def nearest_level(v: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index of the closest of the ascending ``levels`` for every value of ``v`` (long, v's shape)."""
    midpoints = (levels[1:] + levels[:-1]) / 2
    return torch.bucketize(v.contiguous(), midpoints.to(v.dtype))


@dataclass
class NF4Tensor:
    """NF4 codes (level indices 0..15, uint8, flattened) with one absmax per block of ``block_size`` values.

    With double quantization the absmax constants are themselves stored as int8 codes
    (``absmax_codes``) with one fp32 scale per ``dq_block_size`` constants and their mean
    (``absmax_mean``); otherwise ``absmax`` holds them in fp32.
    """

    codes: torch.Tensor
    absmax: torch.Tensor | None
    absmax_codes: torch.Tensor | None
    absmax_scale: torch.Tensor | None
    absmax_mean: torch.Tensor | None
    shape: tuple[int, ...]
    block_size: int = 64
    dq_block_size: int = 256

    TENSORS = ("codes", "absmax", "absmax_codes", "absmax_scale", "absmax_mean")

    @property
    def double_quant(self) -> bool:
        return self.absmax_codes is not None

    def constants(self) -> torch.Tensor:
        """The per-block absmax (n_blocks,), dequantized when double-quantized."""
        if not self.double_quant:
            return self.absmax
        n = self.absmax_codes.numel()
        grouped = dequantize(_grouped(self.absmax_codes, self.dq_block_size), self.absmax_scale)
        return grouped.flatten()[:n] + self.absmax_mean

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """NF4[code] · absmax of its block, in the original shape."""
        n = math.prod(self.shape)
        values = NF4.to(self.codes.device)[self.codes.long()]
        blocks = _grouped(values, self.block_size) * self.constants()[:, None]
        return blocks.flatten()[:n].reshape(self.shape).to(dtype)

    def nbytes(self) -> int:
        """Storage: two codes per byte plus the constants (fp32, or int8 + fp32 per dq block + the mean)."""
        total = math.ceil(self.codes.numel() / 2)
        for t in (self.absmax, self.absmax_codes, self.absmax_scale, self.absmax_mean):
            if t is not None:
                total += t.numel() * t.element_size()
        return total

    def bits_per_param(self) -> float:
        return 8 * self.nbytes() / math.prod(self.shape)


def quantize_nf4(x: torch.Tensor, block_size: int = 64, double_quant: bool = False,
                 dq_block_size: int = 256) -> NF4Tensor:
    """NF4 with blockwise absmax (blocks of ``block_size`` consecutive values of the flattened tensor).

    ``double_quant``: the fp32 absmax constants, minus their mean, are quantized to symmetric int8
    with one scale per ``dq_block_size`` of them. (bitsandbytes stores them in its 8-bit "dynamic"
    float code instead of int8; the storage, 8 bits per constant, is the same.)
    """
    _check_float(x)
    _check_size(block_size, "block_size")
    _check_size(dq_block_size, "dq_block_size")
    if x.numel() == 0:
        raise ValueError("x must hold at least one value")
    blocks = _grouped(x.detach().flatten().float(), block_size)  # (n_blocks, block_size)
    absmax = blocks.abs().amax(dim=1)
    absmax = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    codes = nearest_level(blocks / absmax[:, None], NF4.to(x.device)).to(torch.uint8).flatten()[:x.numel()]
    out = NF4Tensor(codes, absmax, None, None, None, tuple(x.shape), block_size, dq_block_size)
    if double_quant:
        mean = absmax.mean()
        centred = _grouped(absmax - mean, dq_block_size)  # (n_dq_blocks, dq_block_size)
        scale = absmax_scale(centred, dim=1)
        q, _ = quantize(centred, scale)
        out = replace(out, absmax=None, absmax_codes=q.flatten()[:absmax.numel()], absmax_scale=scale,
                      absmax_mean=mean.reshape(1))
    return out


def nf4_bits_per_param(block_size: int = 64, double_quant: bool = False, dq_block_size: int = 256) -> float:
    """Bits per parameter of NF4 in the limit of a large tensor: 4 + 32/64 = 4.5; 4 + 8/64 + 32/(64·256) ≈ 4.127 with double quant."""
    _check_size(block_size, "block_size")
    _check_size(dq_block_size, "dq_block_size")
    if double_quant:
        return 4 + 8 / block_size + 32 / (block_size * dq_block_size)
    return 4 + 32 / block_size


# ---------------------------------------------------------------------------------------------
# Quantizing activations too: int8 matmul, LLM.int8() and SmoothQuant
# ---------------------------------------------------------------------------------------------


def _check_matmul(x: torch.Tensor, w: torch.Tensor) -> None:
    _check_float(x, "x")
    _check_float(w, "w")
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"x must be (tokens, K) and w (N, K) with the same K, got {tuple(x.shape)} and {tuple(w.shape)}")


def int8_matmul(x: torch.Tensor, w: torch.Tensor, granularity: str = "vector") -> torch.Tensor:
    """x (M, K) @ w (N, K).T with both operands in int8: int32 accumulation, then one rescale. (M, N) fp32.

    ``granularity="vector"``: a scale per row of x (per token) and per row of w (per output), as in
    LLM.int8(); ``"tensor"``: one scale each, the simplest W8A8. Since the scales factor out of the
    sum over K, y[m, n] = s_x[m] · s_w[n] · Σ_k q_x[m, k] q_w[n, k] is exact integer arithmetic plus one multiply.
    """
    _check_matmul(x, w)
    if granularity not in ("vector", "tensor"):
        raise ValueError(f"granularity must be 'vector' or 'tensor', got {granularity!r}")
    dim = 1 if granularity == "vector" else None
    s_x, s_w = absmax_scale(x, dim), absmax_scale(w, dim)  # (M, 1), (N, 1) or (1, 1) each
    q_x, _ = quantize(x, s_x)
    q_w, _ = quantize(w, s_w)
    acc = q_x.to(torch.int32) @ q_w.to(torch.int32).T  # (M, N) int32: exact, |acc| <= K · 127²
    return acc.float() * s_x * s_w.T


def outlier_columns(x: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    """Feature dimensions (columns of x (M, K)) where any |value| exceeds ``threshold``: bool (K,)."""
    _check_float(x, "x")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a number > 0, got {threshold!r}")
    return (x.abs() > threshold).flatten(0, -2).any(dim=0)


def llm_int8_matmul(x: torch.Tensor, w: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    """LLM.int8(): x (M, K) @ w (N, K).T with outlier feature columns in fp32 and the rest vector-wise int8. (M, N)."""
    _check_matmul(x, w)
    outliers = outlier_columns(x, threshold)
    y = x[:, outliers] @ w[:, outliers].T  # the few large features, in full precision
    if bool((~outliers).any()):
        y = y + int8_matmul(x[:, ~outliers], w[:, ~outliers], "vector")
    return y


def smooth_scales(x_absmax: torch.Tensor, w: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """SmoothQuant's per-input-channel factors s_j = max|X_j|^α / max_i |W_ij|^(1-α): (K,).

    ``x_absmax`` (K,) is the largest |activation| of each input channel over calibration data;
    ``w`` is (N, K). α = 0 leaves activations alone, α = 1 moves all of their range into the weights.
    """
    _check_float(x_absmax, "x_absmax")
    _check_float(w, "w")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if x_absmax.dim() != 1 or w.dim() != 2 or w.shape[1] != x_absmax.shape[0]:
        raise ValueError(f"x_absmax must be (K,) and w (N, K), got {tuple(x_absmax.shape)} and {tuple(w.shape)}")
    w_absmax = w.abs().amax(dim=0).clamp(min=1e-5)
    return (x_absmax.clamp(min=1e-5) ** alpha / w_absmax ** (1 - alpha)).float()


def smoothquant_matmul(x: torch.Tensor, w: torch.Tensor, alpha: float = 0.5,
                       x_absmax: torch.Tensor | None = None) -> torch.Tensor:
    """(x / s) @ (w · s).T with per-tensor int8 on both operands; ``x_absmax`` defaults to x's own per-channel max."""
    _check_matmul(x, w)
    s = smooth_scales(x.abs().amax(dim=0) if x_absmax is None else x_absmax, w, alpha)
    return int8_matmul(x / s, w * s, "tensor")


# ---------------------------------------------------------------------------------------------
# Quantized layers and models
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheme:
    """How to quantize a linear layer's weight.

    ``kind``: "int" (uniform, ``bits`` / ``axis`` / ``group_size`` / ``symmetric`` as in
    ``quantize_tensor``), "nf4" (``block_size``, ``double_quant``) or "llm.int8" (int8 rows of W,
    activations split at ``threshold`` at run time). "int" and "nf4" are weight-only: the layer
    dequantizes and multiplies in floating point.
    """

    kind: str = "int"
    bits: int = 8
    axis: int | None = 0
    group_size: int | None = None
    symmetric: bool = True
    block_size: int = 64
    double_quant: bool = False
    threshold: float = 6.0

    def __post_init__(self) -> None:
        if self.kind not in ("int", "nf4", "llm.int8"):
            raise ValueError(f"kind must be 'int', 'nf4' or 'llm.int8', got {self.kind!r}")
        if self.kind == "int":
            _check_bits(self.bits)
            if self.group_size is not None:
                _check_size(self.group_size, "group_size")
                if self.axis is not None:
                    raise ValueError("a group-wise scheme groups along the input dim; set axis=None")
        _check_size(self.block_size, "block_size")

    @property
    def name(self) -> str:
        if self.kind == "nf4":
            return "nf4" + ("-dq" if self.double_quant else "")
        if self.kind == "llm.int8":
            return "llm.int8"
        where = f"g{self.group_size}" if self.group_size else ("channel" if self.axis is not None else "tensor")
        return f"int{self.bits}-{where}" + ("" if self.symmetric else "-asym")


SCHEMES = {
    "int8": Scheme(bits=8, axis=0),
    "int8-tensor": Scheme(bits=8, axis=None),
    "int4": Scheme(bits=4, axis=0),
    "int4-g128": Scheme(bits=4, axis=None, group_size=128),
    "int4-g128-asym": Scheme(bits=4, axis=None, group_size=128, symmetric=False),
    "int4-g32": Scheme(bits=4, axis=None, group_size=32),
    "nf4": Scheme(kind="nf4"),
    "nf4-dq": Scheme(kind="nf4", double_quant=True),
    "llm.int8": Scheme(kind="llm.int8", bits=8, axis=0),
}


def as_scheme(scheme: str | Scheme) -> Scheme:
    """A ``Scheme`` from itself or from a name in ``SCHEMES``."""
    if isinstance(scheme, Scheme):
        return scheme
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be a Scheme or one of {sorted(SCHEMES)}, got {scheme!r}")
    return SCHEMES[scheme]


def quantize_weight(w: torch.Tensor, scheme: str | Scheme) -> QTensor | NF4Tensor:
    """A weight (out, in) quantized by ``scheme``."""
    s = as_scheme(scheme)
    if s.kind == "nf4":
        return quantize_nf4(w, s.block_size, s.double_quant)
    if s.kind == "llm.int8":
        return quantize_tensor(w, 8, axis=0)
    return quantize_tensor(w, s.bits, axis=s.axis, group_size=s.group_size, symmetric=s.symmetric)


class QuantLinear(nn.Module):
    """A drop-in for ``nn.Linear`` whose weight is stored quantized: (..., in) -> (..., out).

    The codes and scales are buffers (they move with ``.to`` and live in the state dict); ``forward``
    dequantizes the weight and calls ``F.linear`` — what weight-only kernels do in registers, here
    in memory, so it saves bytes but not time on a CPU. Scheme "llm.int8" quantizes the activations
    too (``llm_int8_matmul``).
    """

    def __init__(self, linear: nn.Linear, scheme: str | Scheme):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.scheme = as_scheme(scheme)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q = quantize_weight(linear.weight.detach().float(), self.scheme)
        self._kind = type(q)
        self._meta = {f.name: getattr(q, f.name) for f in fields(q) if f.name not in q.TENSORS}  # ints, shapes
        for name in q.TENSORS:
            self.register_buffer("q_" + name, getattr(q, name))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    @property
    def qweight(self) -> QTensor | NF4Tensor:
        """The quantized weight as a ``QTensor`` or ``NF4Tensor`` view of this module's buffers."""
        return self._kind(**self._meta, **{name: getattr(self, "q_" + name) for name in self._kind.TENSORS})

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dequantized weight (out, in)."""
        return self.qweight.dequantize(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scheme.kind == "llm.int8":
            flat = x.reshape(-1, self.in_features).float()
            y = llm_int8_matmul(flat, self.dequantized_weight(), self.scheme.threshold).reshape(*x.shape[:-1], self.out_features)
            y = y.to(x.dtype)
            return y if self.bias is None else y + self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def nbytes(self) -> int:
        """Bytes of the stored weight (codes packed) plus the bias."""
        bias = 0 if self.bias is None else self.bias.numel() * self.bias.element_size()
        return self.qweight.nbytes() + bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scheme={self.scheme.name}"


def quantize_model(model: nn.Module, scheme: str | Scheme, include_lm_head: bool = False,
                   skip: tuple[str, ...] = ()) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by a ``QuantLinear`` of ``scheme``.

    Embeddings stay in floating point; the output head (a module named ``lm_head``) too unless
    ``include_lm_head`` — in MiniGPT it is tied to the token embedding, so quantizing it stores a
    quantized copy next to the fp embedding. ``skip``: qualified module names to leave alone.
    """
    as_scheme(scheme)
    out = copy.deepcopy(model)
    targets = [(name, m) for name, m in out.named_modules() if isinstance(m, nn.Linear) and name not in skip
               and (include_lm_head or name.split(".")[-1] != "lm_head")]
    if not targets:
        raise ValueError("the model has no nn.Linear layer left to quantize")
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, QuantLinear(linear, scheme))
    return out


def model_weight_bytes(model: nn.Module) -> int:
    """Bytes of a model's weights as stored: ``QuantLinear`` layers packed, every other tensor at its dtype, shared ones once."""
    total, seen = 0, set()
    for module in model.modules():
        if isinstance(module, QuantLinear):
            total += module.nbytes()
    for module in model.modules():
        if isinstance(module, QuantLinear):
            continue
        for p in module.parameters(recurse=False):
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                total += p.numel() * p.element_size()
    return total


# ---------------------------------------------------------------------------------------------
# The memory calculator
# ---------------------------------------------------------------------------------------------

# Bits per parameter of the weights. Group-wise int4 stores an fp16 scale per 128 weights
# (GPTQ/AWQ checkpoints); NF4 an fp32 absmax per 64; double quantization as in QLoRA.
FORMAT_BITS = {
    "fp32": 32.0,
    "fp16": 16.0,
    "bf16": 16.0,
    "int8": 8.0,
    "int4": 4.0,
    "int4-g128": 4 + 16 / 128,
    "nf4": nf4_bits_per_param(64),
    "nf4-dq": nf4_bits_per_param(64, double_quant=True),
}


def model_memory_gb(n_params: float, fmt: str) -> float:
    """Weight memory in GB (10^9 bytes) of ``n_params`` parameters stored as ``fmt``.

    >>> model_memory_gb(70e9, "fp16")
    140.0
    """
    if fmt not in FORMAT_BITS:
        raise ValueError(f"fmt must be one of {sorted(FORMAT_BITS)}, got {fmt!r}")
    if isinstance(n_params, bool) or not isinstance(n_params, (int, float)) or not n_params > 0:
        raise ValueError(f"n_params must be a number > 0, got {n_params!r}")
    return n_params * FORMAT_BITS[fmt] / 8 / 1e9


__all__ = ["FORMAT_BITS", "NF4", "NF4Tensor", "QTensor", "QuantLinear", "SCHEMES", "Scheme", "absmax_scale",
           "affine_params", "as_scheme", "dequantize", "fake_quantize", "int8_matmul", "llm_int8_matmul",
           "model_memory_gb", "model_weight_bytes", "nearest_level", "nf4_bits_per_param", "nf4_levels",
           "outlier_columns", "pack_int4", "qrange", "quantize", "quantize_model", "quantize_nf4", "quantize_tensor",
           "quantize_weight", "smooth_scales", "smoothquant_matmul", "unpack_int4"]

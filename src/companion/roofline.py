"""The roofline model, measured: how fast an operation can run on a machine, from two numbers.

A processor does at most ``peak_flops`` floating-point operations per second and moves at most
``bandwidth`` bytes per second between memory and its cores. An operation that does F FLOPs on B
bytes has **arithmetic intensity** I = F / B, and cannot run faster than

    attainable(I) = min(peak_flops, bandwidth · I)        (FLOP/s)

— the slanted roof (bandwidth-bound) below the **ridge point** I* = peak_flops / bandwidth, the
flat roof (compute-bound) above it (Williams, Waterman and Patterson, 2009).

This module gives the three ingredients:

- **the roofs of this machine**, measured: ``measure_peak_flops`` (a large fp32 matmul in torch)
  and ``stream`` (McCalpin's STREAM copy / scale / add / triad on arrays far larger than the
  last-level cache, bytes counted the STREAM way: each array read or written once, write-allocate
  traffic not counted). ``bandwidth_sweep`` repeats a triad over working sets from KBs to 100s of
  MB, which shows each level of the memory hierarchy as a step. Datasheet roofs of GPUs come from
  ``companion.batchsim.GPUS`` (``Roofline.from_gpu``).
- **FLOPs and bytes of the operations** of a transformer: ``matmul_cost``, ``gemv_cost`` (decode's
  matrix-vector product), ``softmax_cost``, ``layernorm_cost``, ``gelu_cost``, ``attention_cost``
  (naive, materializing the T × T scores, or fused as FlashAttention). Bytes are the compulsory
  traffic — each input read once, each output written once — so intensity is an upper bound.
- **where they land**: ``standard_ops`` builds runnable instances and ``measure_op`` times one,
  giving achieved GFLOP/s and GB/s to place on the measured roofline.

    >>> roof = Roofline("A100 fp16", 312e12, 2.039e12)
    >>> roof.ridge_point                                  # ≈ 153 FLOP/byte
    >>> gemv_cost(4096, 4096, batch=1, dtype="fp16").intensity   # ≈ 1 FLOP/byte: bandwidth-bound
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit

from .batchsim import GPUS
from .kvcache import DTYPE_BYTES
from .matmul import best_seconds, threads

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
STREAM_ARRAYS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}  # arrays moved per element: the STREAM count
SOFTMAX_FLOPS, LAYERNORM_FLOPS, GELU_FLOPS = 5, 7, 9  # per element; see the cost functions


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _dtype_bytes(dtype: str) -> int:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    return DTYPE_BYTES[dtype]


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roofline:
    """A machine's two roofs: ``peak_flops`` (FLOP/s) and ``bandwidth`` (bytes/s)."""

    name: str
    peak_flops: float
    bandwidth: float

    def __post_init__(self):
        for field in ("peak_flops", "bandwidth"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, Real) or not 0 < v < math.inf:
                raise ValueError(f"{field} must be a finite number > 0, got {v!r}")

    @property
    def ridge_point(self) -> float:
        """FLOP/byte where the roofs meet: below it an operation is bandwidth-bound, above it compute-bound."""
        return self.peak_flops / self.bandwidth

    def attainable(self, intensity):
        """min(peak_flops, bandwidth · intensity) in FLOP/s; ``intensity`` a number or an array (FLOP/byte)."""
        x = np.asarray(intensity, dtype=np.float64)
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            raise ValueError(f"intensity must be finite and >= 0 FLOP/byte, got {intensity!r}")
        out = np.minimum(self.peak_flops, self.bandwidth * x)
        return float(out) if out.ndim == 0 else out

    def bound(self, intensity: float) -> str:
        """"memory" below the ridge point, "compute" at or above it."""
        self.attainable(intensity)  # validates
        return "memory" if intensity < self.ridge_point else "compute"

    def seconds(self, costs: Sequence[OpCost]) -> float:
        """Lower bound on the time of ``costs`` run one after another: Σ max(F / peak, B / bandwidth)."""
        return sum(max(c.flops / self.peak_flops, c.bytes / self.bandwidth) for c in costs)

    def scaled(self, flops: float = 1.0, bandwidth: float = 1.0, name: str | None = None) -> Roofline:
        """The same machine with its peak multiplied by ``flops`` and its bandwidth by ``bandwidth``."""
        return Roofline(name or f"{self.name} ×{flops:g} FLOP/s ×{bandwidth:g} B/s", self.peak_flops * flops,
                        self.bandwidth * bandwidth)

    @staticmethod
    def from_gpu(gpu: str, dtype: str = "fp16") -> Roofline:
        """A datasheet roofline from ``companion.batchsim.GPUS``: dense peak in ``dtype`` and HBM bandwidth."""
        if gpu not in GPUS:
            raise ValueError(f"gpu must be one of {sorted(GPUS)}, got {gpu!r}")
        peaks, bandwidth = GPUS[gpu]
        if dtype not in peaks:
            raise ValueError(f"dtype must be one of {sorted(peaks)} for {gpu}, got {dtype!r}")
        return Roofline(f"{gpu} {dtype}", peaks[dtype], bandwidth)


# ---------------------------------------------------------------------------------------------
# FLOPs and bytes of the operations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpCost:
    """An operation's FLOPs and compulsory bytes (inputs read once, outputs written once)."""

    name: str
    shape: str
    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        """FLOPs per byte."""
        return self.flops / self.bytes


def matmul_cost(m: int, n: int, k: int, dtype: str = "fp32") -> OpCost:
    """(m, k) @ (k, n): 2·m·n·k FLOPs (a multiply and an add each), (m·k + k·n + m·n) elements moved.

    >>> matmul_cost(2, 3, 4).flops, matmul_cost(2, 3, 4).bytes     # 48 FLOPs; (8 + 12 + 6) · 4 = 104 bytes
    """
    m, n, k = (_positive_int(name, v) for name, v in (("m", m), ("n", n), ("k", k)))
    nbytes = _dtype_bytes(dtype)
    return OpCost("matmul", f"{m}×{k} @ {k}×{n} {dtype}", 2.0 * m * n * k, float((m * k + k * n + m * n) * nbytes))


def gemv_cost(d_in: int, d_out: int, batch: int = 1, dtype: str = "fp32") -> OpCost:
    """A linear layer at decode: ``batch`` vectors of d_in through a (d_in, d_out) weight.

    FLOPs 2·batch·d_in·d_out; bytes (d_in·d_out + batch·(d_in + d_out)) · dtype bytes. At batch 1
    every weight is read to do 2 FLOPs, so intensity ≈ 2 / bytes per weight: ≈ 1 in fp16.
    """
    d_in, d_out, batch = (_positive_int(name, v) for name, v in (("d_in", d_in), ("d_out", d_out), ("batch", batch)))
    cost = matmul_cost(batch, d_out, d_in, dtype)
    return OpCost("decode matvec" if batch == 1 else "batched matvec", f"batch {batch} · {d_in}→{d_out} {dtype}",
                  cost.flops, cost.bytes)


def softmax_cost(rows: int, cols: int, dtype: str = "fp32") -> OpCost:
    """Row softmax: 5 FLOPs per element (max, subtract, exp, sum, divide); read once, write once."""
    rows, cols = _positive_int("rows", rows), _positive_int("cols", cols)
    n = rows * cols
    return OpCost("softmax", f"{rows}×{cols} {dtype}", float(SOFTMAX_FLOPS * n), float(2 * n * _dtype_bytes(dtype)))


def layernorm_cost(rows: int, d: int, dtype: str = "fp32") -> OpCost:
    """LayerNorm over the last dimension: 7 FLOPs per element (mean: add; centre: subtract; variance:
    multiply, add; normalize: multiply; affine: multiply, add); x read, y written, γ and β read."""
    rows, d = _positive_int("rows", rows), _positive_int("d", d)
    n = rows * d
    return OpCost("layernorm", f"{rows}×{d} {dtype}", float(LAYERNORM_FLOPS * n), float((2 * n + 2 * d) * _dtype_bytes(dtype)))


def gelu_cost(n: int, dtype: str = "fp32") -> OpCost:
    """GELU, tanh form 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): 9 FLOPs per element, tanh counted
    as one (it costs a dozen or more instructions: FLOP counts undercount transcendental functions)."""
    n = _positive_int("n", n)
    return OpCost("gelu", f"{n:,} {dtype}", float(GELU_FLOPS * n), float(2 * n * _dtype_bytes(dtype)))


def attention_cost(seq_len: int, head_dim: int, heads: int = 1, batch: int = 1, dtype: str = "fp32",
                   fused: bool = False) -> OpCost:
    """Softmax attention over ``seq_len`` tokens (no mask), per head: 4·T²·d + 5·T² FLOPs (QKᵀ, PV, softmax).

    naive: three kernels, the T × T scores S and probabilities P written to memory and read back:
    QKᵀ reads Q, K and writes S; softmax reads S and writes P; PV reads P, V and writes O — 4·T·d + 4·T²
    elements per head. fused (FlashAttention): S and P live in on-chip tiles; Q, K, V read and O
    written once — 4·T·d elements (the minimum; FlashAttention re-reads K and V once per query tile).
    """
    t, d, h, b = (_positive_int(name, v) for name, v in
                  (("seq_len", seq_len), ("head_dim", head_dim), ("heads", heads), ("batch", batch)))
    nbytes = _dtype_bytes(dtype)
    flops = b * h * (4.0 * t * t * d + SOFTMAX_FLOPS * t * t)
    elements = b * h * (4 * t * d + (0 if fused else 4 * t * t))
    return OpCost("attention, fused" if fused else "attention, naive", f"T={t}, d={d}, heads={h}, batch={b} {dtype}",
                  flops, float(elements * nbytes))


# ---------------------------------------------------------------------------------------------
# Measuring this machine's roofs
# ---------------------------------------------------------------------------------------------


def measure_peak_flops(n: int = 2048, n_threads: int = 1, repeat: int = 5, dtype: str = "fp32") -> float:
    """FLOP/s of the fastest of ``repeat`` n×n @ n×n products in torch: the compute roof in practice."""
    n = _positive_int("n", n)
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(TORCH_DTYPES)}, got {dtype!r}")
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(TORCH_DTYPES[dtype]) for _ in range(2))
    with threads(n_threads):
        seconds = best_seconds(lambda: torch.mm(a, b), repeat)
    return 2.0 * n**3 / seconds


def stream(n: int = 2**25, n_threads: int = 1, repeat: int = 5) -> dict[str, float]:
    """STREAM in torch on three fp32 arrays of ``n`` elements: bytes/s of copy, scale, add and triad.

    copy c = a; scale b = s·c; add c = a + b; triad a = b + s·c. Bytes per kernel are
    ``STREAM_ARRAYS[kernel] · 4 · n``; the best of ``repeat`` runs is reported, as STREAM does.
    For a memory (not cache) bandwidth, 4·n bytes should be several times the last-level cache.
    """
    n = _positive_int("n", n)
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.rand(n, generator=g) for _ in range(3))
    s = 3.0
    kernels = {
        "copy": lambda: c.copy_(a),
        "scale": lambda: torch.mul(c, s, out=b),
        "add": lambda: torch.add(a, b, out=c),
        "triad": lambda: torch.add(b, c, alpha=s, out=a),
    }
    with threads(n_threads):
        return {name: STREAM_ARRAYS[name] * 4.0 * n / best_seconds(fn, repeat) for name, fn in kernels.items()}


@njit(cache=True, fastmath=True)
def _triad_passes(a, b, c, passes):
    for p in range(passes):
        s = np.float32(1.0 + p * 1e-6)  # a new scalar each pass: no pass can be skipped as a repeat
        for i in range(a.size):
            a[i] = b[i] + s * c[i]


def bandwidth_sweep(working_sets: Sequence[int], bytes_per_point: int = 2**28, repeat: int = 3) -> list[tuple[int, float]]:
    """Triad bandwidth (bytes/s, one thread) for each working set (bytes, three fp32 arrays in all).

    Each point repeats the triad inside compiled code until about ``bytes_per_point`` bytes have
    moved, so a 12 KB working set measures the L1 cache and not Python's call overhead.
    Returns [(working set bytes, bytes/s)].
    """
    bytes_per_point, repeat = _positive_int("bytes_per_point", bytes_per_point), _positive_int("repeat", repeat)
    out = []
    for ws in working_sets:
        n = _positive_int("working set", ws) // 12
        if n < 16:
            raise ValueError(f"each working set must be at least 192 bytes (three arrays of 16 floats), got {ws}")
        a, b, c = (np.full(n, v, dtype=np.float32) for v in (0.0, 1.0, 2.0))
        passes = max(1, bytes_per_point // (12 * n))
        _triad_passes(a, b, c, 1)  # compile, and touch every page
        seconds = best_seconds(lambda: _triad_passes(a, b, c, passes), repeat, warmup=0)
        out.append((12 * n, 12.0 * n * passes / seconds))
    return out


def measure_roofline(n_threads: int = 1, matmul_n: int = 2048, stream_n: int = 2**25, repeat: int = 5) -> Roofline:
    """This machine's roofline: torch's best fp32 matmul rate and STREAM triad bandwidth."""
    peak = measure_peak_flops(matmul_n, n_threads, repeat)
    bandwidth = stream(stream_n, n_threads, repeat)["triad"]
    return Roofline(f"this CPU, {n_threads} thread{'s' * (n_threads > 1)}, fp32", peak, bandwidth)


# ---------------------------------------------------------------------------------------------
# Placing operations on it
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """An operation's cost and its best measured time: achieved FLOP/s and bytes/s."""

    cost: OpCost
    seconds: float

    @property
    def flops_per_s(self) -> float:
        return self.cost.flops / self.seconds

    @property
    def bytes_per_s(self) -> float:
        return self.cost.bytes / self.seconds


def measure_op(cost: OpCost, fn: Callable[[], object], repeat: int = 5, n_threads: int = 1) -> Measured:
    """Time ``fn`` (best of ``repeat``, after a warm-up) with ``n_threads`` threads; pair it with its cost."""
    if not isinstance(cost, OpCost):
        raise ValueError(f"cost must be an OpCost, got {type(cost).__name__}")
    with threads(n_threads):
        return Measured(cost, best_seconds(fn, repeat))


def standard_ops(d: int = 1024, rows: int = 2048, seq_lens: Sequence[int] = (256, 1024), head_dim: int = 64,
                 heads: int = 4, gemv_d: int = 4096, seed: int = 0) -> list[tuple[OpCost, Callable[[], torch.Tensor]]]:
    """Runnable fp32 instances of the operations, each with its cost: [(OpCost, fn)].

    matmul d×d×d; decode matvec (a gemv_d × gemv_d weight — 64 MB at 4096, more than a CPU's
    last-level cache — at batch 1) and the same layer at batch 64; softmax, LayerNorm and GELU on
    (rows, d); naive and fused (``scaled_dot_product_attention``) attention at each of ``seq_lens``
    with ``heads`` heads of ``head_dim``.
    """
    d, rows, head_dim, heads, gemv_d = (_positive_int(k, v) for k, v in (("d", d), ("rows", rows), (
        "head_dim", head_dim), ("heads", heads), ("gemv_d", gemv_d)))
    g = torch.Generator().manual_seed(seed)
    a, w, big = torch.randn(d, d, generator=g), torch.randn(d, d, generator=g), torch.randn(gemv_d, gemv_d, generator=g)
    x1, x64 = torch.randn(1, gemv_d, generator=g), torch.randn(64, gemv_d, generator=g)
    x = torch.randn(rows, d, generator=g)
    gamma, beta = torch.ones(d), torch.zeros(d)
    ops = [
        (matmul_cost(d, d, d), lambda: a @ w),
        (gemv_cost(gemv_d, gemv_d, 1), lambda: x1 @ big),
        (gemv_cost(gemv_d, gemv_d, 64), lambda: x64 @ big),
        (softmax_cost(rows, d), lambda: torch.softmax(x, -1)),
        (layernorm_cost(rows, d), lambda: F.layer_norm(x, (d,), gamma, beta)),
        (gelu_cost(rows * d), lambda: F.gelu(x, approximate="tanh")),
    ]
    for t in seq_lens:
        t = _positive_int("seq_len", t)
        q, k, v = (torch.randn(1, heads, t, head_dim, generator=g) for _ in range(3))
        qs = q / math.sqrt(head_dim)  # the scale folded into q, so the naive path is exactly three kernels
        ops.append((attention_cost(t, head_dim, heads), lambda qs=qs, k=k, v=v:
                    torch.softmax(qs @ k.transpose(-2, -1), -1) @ v))
        ops.append((attention_cost(t, head_dim, heads, fused=True), lambda q=q, k=k, v=v:
                    F.scaled_dot_product_attention(q, k, v)))
    return ops


__all__ = ["GELU_FLOPS", "LAYERNORM_FLOPS", "Measured", "OpCost", "Roofline", "SOFTMAX_FLOPS", "STREAM_ARRAYS",
           "TORCH_DTYPES", "attention_cost", "bandwidth_sweep", "gelu_cost", "gemv_cost", "layernorm_cost",
           "matmul_cost", "measure_op", "measure_peak_flops", "measure_roofline", "softmax_cost", "standard_ops",
           "stream"]

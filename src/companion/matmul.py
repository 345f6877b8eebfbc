"""A CPU matrix-multiply ladder: the same C = A @ B five ways, from a Python triple loop to BLAS.

Every rung does the same 2·M·N·K floating-point operations; they differ in how often each number
travels from memory and how many of those operations run per instruction:

1. ``matmul_python``: three nested Python loops. Every multiply-add is a dozen interpreter steps.
2. ``matmul_numba_naive``: the same loops compiled by numba. Machine code, but the inner loop walks
   down a *column* of B (a stride of N floats), so nearly every load misses the cache, and the
   scalar accumulator leaves no room for SIMD.
3. ``matmul_numba_tiled``: cache blocking. B is cut into ``bk × bn`` tiles copied to a contiguous
   buffer (packed) that stays in cache while every row tile of A streams past it; each tile of A
   is packed too, zero-padded, so the micro-kernel needs no bounds checks. The micro-kernel updates
   two rows of a local accumulator with four k-steps at a time, and its innermost loop runs over
   contiguous columns, which LLVM turns into SIMD fused multiply-adds (``fastmath`` lets it).
   Row tiles are independent, so they run under ``prange`` across threads.
4. ``numpy.matmul`` and 5. ``torch.matmul``: BLAS (OpenBLAS, oneDNN/MKL), whose hand-written
   micro-kernels hold a register tile of C and are tuned per CPU.

``ladder`` times all of them and returns GFLOP/s per rung, with numba's compilation excluded.

    >>> a, b = np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)
    >>> matmul_numba_tiled(a, b)          # [[4, 4], [4, 4], [4, 4]]

References: Goto and van de Geijn, "Anatomy of High-Performance Matrix Multiplication" (2008);
Lam, Rothberg and Wolf, "The Cache Performance and Optimizations of Blocked Algorithms" (1991).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import njit, prange
from threadpoolctl import threadpool_limits

DTYPES = (np.float32, np.float64)
TILE = (64, 512, 128)  # (bm, bn, bk): a 128×512 fp32 tile of B is 256 KB, at home in a 1 MB L2


def _check(a: np.ndarray, b: np.ndarray) -> None:
    """Both 2-D numpy arrays of one float dtype with matching inner dimensions."""
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(x).__name__}")
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-D (rows, cols), got shape {x.shape}")
        if x.dtype not in DTYPES:
            raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    if a.dtype != b.dtype:
        raise ValueError(f"a and b must share a dtype, got {a.dtype} and {b.dtype}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}; a's columns must equal b's rows")


# ---------------------------------------------------------------------------------------------
# Rungs 1 and 2: the triple loop, interpreted and compiled
# ---------------------------------------------------------------------------------------------


def matmul_python(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N) with three Python loops over lists. For sizes up to ~100 only."""
    _check(a, b)
    m, k = a.shape
    n = b.shape[1]
    al, bl = a.tolist(), b.tolist()
    out = [[0.0] * n for _ in range(m)]
    for i in range(m):
        for j in range(n):
            s = 0.0
            for p in range(k):
                s += al[i][p] * bl[p][j]
            out[i][j] = s
    return np.array(out, dtype=a.dtype)


@njit(cache=True)
def _naive_kernel(a, b, out):
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        for j in range(n):
            s = 0.0
            for p in range(k):  # b[p, j]: a stride of n elements per step
                s += a[i, p] * b[p, j]
            out[i, j] = s


def matmul_numba_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N): the triple loop (i, j, k), compiled, no blocking."""
    _check(a, b)
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    _naive_kernel(a, b, out)
    return out


# ---------------------------------------------------------------------------------------------
# Rung 3: cache blocking, packing and a vectorizable micro-kernel
# ---------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=True)
def _pack(x, r0, c0, rows, cols):
    """x[r0:r0+rows, c0:c0+cols] copied to a contiguous (rows, cols) buffer, zero-padded past x's edge."""
    out = np.zeros((rows, cols), dtype=x.dtype)
    for r in range(min(rows, x.shape[0] - r0)):
        for c in range(min(cols, x.shape[1] - c0)):
            out[r, c] = x[r0 + r, c0 + c]
    return out


@njit(cache=True, fastmath=True)
def _micro_kernel(at, bt, out, i0, j0):
    """out[i0:i0+bm, j0:j0+bn] += at @ bt, two rows and four k-steps at a time.

    at: (bm, bk) packed tile of A (bm even, bk a multiple of 4); bt: (bk, bn) packed tile of B.
    The j loop reads bt and acc contiguously: LLVM vectorizes it into SIMD FMAs.
    """
    bm, bk = at.shape
    bn = bt.shape[1]
    m, n = out.shape
    width = min(bn, n - j0)
    acc = np.empty((2, bn), dtype=at.dtype)  # two rows of C: 2 · bn floats, stays in L1
    for i in range(0, min(bm, m - i0), 2):
        acc[:] = 0.0
        for p in range(0, bk, 4):
            a00, a01, a02, a03 = at[i, p], at[i, p + 1], at[i, p + 2], at[i, p + 3]
            a10, a11, a12, a13 = at[i + 1, p], at[i + 1, p + 1], at[i + 1, p + 2], at[i + 1, p + 3]
            for j in range(bn):  # contiguous: the vectorized loop
                b0, b1, b2, b3 = bt[p, j], bt[p + 1, j], bt[p + 2, j], bt[p + 3, j]
                acc[0, j] += a00 * b0 + a01 * b1 + a02 * b2 + a03 * b3
                acc[1, j] += a10 * b0 + a11 * b1 + a12 * b2 + a13 * b3
        for j in range(width):
            out[i0 + i, j0 + j] += acc[0, j]
        if i0 + i + 1 < m:
            for j in range(width):
                out[i0 + i + 1, j0 + j] += acc[1, j]


@njit(cache=True, fastmath=True, parallel=True)
def _tiled_kernel(a, b, out, bm, bn, bk):
    m, k = a.shape
    n = b.shape[1]
    n_row_tiles = (m + bm - 1) // bm
    for j0 in range(0, n, bn):
        for p0 in range(0, k, bk):
            bt = _pack(b, p0, j0, bk, bn)  # (bk, bn): read by every row tile below
            for t in prange(n_row_tiles):  # row tiles write disjoint rows of out: safe in parallel
                at = _pack(a, t * bm, p0, bm, bk)  # (bm, bk)
                _micro_kernel(at, bt, out, t * bm, j0)


def matmul_numba_tiled(a: np.ndarray, b: np.ndarray, tile: tuple[int, int, int] = TILE) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N), cache-blocked with tiles ``(bm, bn, bk)``; numba's thread count applies.

    bm must be even and bk a multiple of 4 (the micro-kernel's unrolling); any M, N, K work.
    """
    _check(a, b)
    if len(tile) != 3 or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in tile):
        raise ValueError(f"tile must be three positive ints (bm, bn, bk), got {tile!r}")
    bm, bn, bk = tile
    if bm % 2 or bk % 4:
        raise ValueError(f"tile needs an even bm and a bk divisible by 4, got bm={bm}, bk={bk}")
    out = np.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)
    _tiled_kernel(np.ascontiguousarray(a), np.ascontiguousarray(b), out, bm, bn, bk)
    return out


# ---------------------------------------------------------------------------------------------
# Rungs 4 and 5: BLAS, and the ladder
# ---------------------------------------------------------------------------------------------


def matmul_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N) by numpy's BLAS."""
    _check(a, b)
    return a @ b


def matmul_torch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N) by torch (zero-copy views of the numpy arrays)."""
    _check(a, b)
    return (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()


RUNGS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Python loops": matmul_python,
    "numba naive": matmul_numba_naive,
    "numba tiled": matmul_numba_tiled,
    "numpy": matmul_numpy,
    "torch": matmul_torch,
}


@dataclass(frozen=True)
class Rung:
    """One rung of the ladder: a square n³ matmul took ``seconds`` (best of the repeats)."""

    name: str
    n: int
    seconds: float

    @property
    def gflops(self) -> float:
        return 2 * self.n**3 / self.seconds / 1e9


def best_seconds(fn: Callable[[], object], repeat: int = 3, warmup: int = 1) -> float:
    """The fastest of ``repeat`` timed calls of ``fn()``, after ``warmup`` untimed ones (compilation, caches)."""
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


class threads:
    """Context manager: torch, numba and numpy's BLAS use ``n`` threads inside, as many as before after."""

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"threads must be an int in [1, {numba.config.NUMBA_NUM_THREADS}], got {n!r}")
        self.n = n

    def __enter__(self):
        self.saved = torch.get_num_threads(), numba.get_num_threads()
        self.blas = threadpool_limits(self.n)  # OpenBLAS's pool spins against the others when oversubscribed
        torch.set_num_threads(self.n)
        numba.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved[0])
        numba.set_num_threads(self.saved[1])
        self.blas.restore_original_limits()


def ladder(n: int = 512, n_threads: int = 1, repeat: int = 3, python_n: int = 64, naive_n: int | None = None,
           seed: int = 0) -> list[Rung]:
    """Time every rung on square fp32 matrices; returns one ``Rung`` per entry of ``RUNGS``.

    The Python loop runs at ``python_n`` (a 512³ product would take minutes) and the compiled naive
    loop at ``naive_n`` (default ``n``); GFLOP/s are comparable across sizes, times are not. Every
    rung runs with ``n_threads`` threads (torch, numba and numpy's BLAS alike).
    """
    for name, v in (("n", n), ("python_n", python_n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    naive_n = n if naive_n is None else naive_n
    rng = np.random.default_rng(seed)
    sizes = {name: n for name in RUNGS} | {"Python loops": python_n, "numba naive": naive_n}
    rungs = []
    with threads(n_threads):
        for name, fn in RUNGS.items():
            a, b = (rng.standard_normal((sizes[name], sizes[name]), dtype=np.float32) for _ in range(2))
            slow = name == "Python loops"
            rungs.append(Rung(name, sizes[name], best_seconds(lambda: fn(a, b), 1 if slow else repeat,
                                                              0 if slow else 1)))
    return rungs


__all__ = ["DTYPES", "RUNGS", "Rung", "TILE", "best_seconds", "ladder", "matmul_numba_naive", "matmul_numba_tiled",
           "matmul_numpy", "matmul_python", "matmul_torch", "threads"]

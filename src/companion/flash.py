"""FlashAttention in PyTorch: exact attention, tile by tile, without the T×T score matrix.

Standard attention writes the scores S = q kᵀ · scale (T_q × T_k per head) to memory, reads them
back for the softmax, writes the probabilities P, and reads them again for P v. FlashAttention
(Dao et al., 2022) never stores S or P: it walks over key/value tiles for each query tile and keeps,
per query row, a running maximum m, a running sum l of exp(s − m) and an output accumulator acc,
rescaling both when the maximum grows (the online softmax of Milakov & Gimelshein, 2018):

    for each query tile q_i:                      m = −∞, l = 0, acc = 0          (per row)
        for each key tile k_j, v_j:
            s     = q_i k_jᵀ · scale                                             (B_q, B_k)
            m_new = max(m, rowmax(s))
            p     = exp(s − m_new)
            l     = l · exp(m − m_new) + rowsum(p)
            acc   = acc · exp(m − m_new) + p v_j
            m     = m_new
        o_i = acc / l ;  lse_i = m + log l        the log-sum-exp of the row, kept for backward

Extra memory is one tile of scores plus O(T) row statistics instead of O(T²). The backward pass
(FlashAttention-2, Dao 2023) recomputes each tile of P from q, k and the saved log-sum-exp,
P = exp(S − lse), and accumulates, with D = rowsum(dO ∘ O):

    dV += Pᵀ dO     dP = dO Vᵀ     dS = P ∘ (dP − D)     dQ += dS K · scale     dK += dSᵀ Q · scale

On a CPU the same idea pays for a different reason than on a GPU: a tile of scores that stays in
the L2 cache is cheaper than a T×T matrix that streams through DRAM. Big tiles keep each step a
large matrix multiply, so Python's per-call overhead stays small.

Shapes: q (B, H, T_q, d); k, v (B, H_kv, T_k, d) with H a multiple of H_kv (grouped-query
attention: query head h reads key/value head h // (H / H_kv)). ``causal`` aligns the queries with
the *last* T_q keys (query i sits at position T_k − T_q + i, as when decoding with a KV cache) and
skips the key tiles that lie entirely in a query tile's future.

    >>> q = k = v = torch.randn(1, 2, 100, 16)
    >>> out = flash_attention(q, k, v, causal=True, block_q=32, block_k=32)
    >>> torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)
    True

References:
- Dao, Fu, Ermon, Rudra, Ré, "FlashAttention: Fast and Memory-Efficient Exact Attention with
  IO-Awareness" (NeurIPS 2022).
- Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning" (2023).
- Milakov & Gimelshein, "Online normalizer calculation for softmax" (2018).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .attention import _check_qkv

BLOCK_Q, BLOCK_K = 512, 1024  # CPU defaults: a 2 MiB fp32 score tile per head, each step one large matmul

# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, block_q: int, block_k: int,
                  scale: float | None) -> None:
    _check_qkv(q, k, v)  # 4-D floats of one dtype, k and v alike, shared batch and head dim, GQA heads
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if min(q.shape[2], k.shape[2], q.shape[3]) < 1:
        raise ValueError(f"need at least one query, one key and one head dimension, got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")
    if causal and q.shape[2] > k.shape[2]:
        raise ValueError(f"causal attention needs T_q <= T_k (queries are the last T_q keys), got T_q={q.shape[2]}, "
                         f"T_k={k.shape[2]}")
    for name, b in (("block_q", block_q), ("block_k", block_k)):
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"{name} must be an int >= 1, got {b!r}")
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0 or None (1/sqrt(d)), got {scale!r}")


def _future_mask(q0: int, n: int, k0: int, w: int, offset: int, device: torch.device) -> torch.Tensor:
    """(n, w) bool, True where key k0 + c lies after query q0 + r (at position offset + q0 + r): masked out."""
    rows = torch.arange(offset + q0, offset + q0 + n, device=device)[:, None]
    cols = torch.arange(k0, k0 + w, device=device)[None, :]
    return cols > rows


# ---------------------------------------------------------------------------------------------
# Forward: online softmax over key tiles
# ---------------------------------------------------------------------------------------------


def flash_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, block_q: int = BLOCK_Q,
                  block_k: int = BLOCK_K, scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output (B, H, T_q, d) and log-sum-exp of each score row (B, H, T_q), one tile at a time.

    Only one (block_q, block_k) tile of scores exists at any moment. fp16/bf16 inputs are computed
    in fp32 and the output cast back; the log-sum-exp stays fp32.
    """
    _check_inputs(q, k, v, causal, block_q, block_k, scale)
    b, h, t_q, d = q.shape
    h_kv, t_k = k.shape[1], k.shape[2]
    group, offset = h // h_kv, t_k - t_q
    scale = 1 / math.sqrt(d) if scale is None else float(scale)
    acc_dtype = torch.promote_types(q.dtype, torch.float32)
    qf, kf, vf = (x.to(acc_dtype) for x in (q, k, v))  # no copy for fp32/fp64 inputs
    out = torch.empty(b, h, t_q, d, dtype=acc_dtype, device=q.device)
    lse = torch.empty(b, h, t_q, dtype=acc_dtype, device=q.device)
    s_buf = torch.empty(min(block_q, t_q), min(block_k, t_k), dtype=acc_dtype, device=q.device)  # the one score tile
    for bi in range(b):
        for hi in range(h):
            kt, vh = kf[bi, hi // group].t(), vf[bi, hi // group]  # (d, T_k), (T_k, d)
            for q0 in range(0, t_q, block_q):
                qi = qf[bi, hi, q0:q0 + block_q] * scale  # (n, d)
                n = qi.shape[0]
                m = torch.full((n, 1), -math.inf, dtype=acc_dtype, device=q.device)
                l = torch.zeros(n, 1, dtype=acc_dtype, device=q.device)
                acc = torch.zeros(n, d, dtype=acc_dtype, device=q.device)
                k_end = min(t_k, offset + q0 + n) if causal else t_k  # keys after the tile's last query: skipped
                for k0 in range(0, k_end, block_k):
                    w = min(block_k, k_end - k0)
                    s = torch.mm(qi, kt[:, k0:k0 + w], out=s_buf[:n, :w])  # (n, w) scores
                    if causal and k0 + w - 1 > offset + q0:  # the tile straddles the diagonal
                        s.masked_fill_(_future_mask(q0, n, k0, w, offset, q.device), -math.inf)
                    m_new = torch.maximum(m, s.amax(dim=1, keepdim=True))
                    p = s.sub_(m_new).exp_()  # in place: the tile of scores becomes the tile of exp(s − m_new)
                    alpha = (m - m_new).exp_()  # rescales what was summed under the old maximum
                    l.mul_(alpha).add_(p.sum(dim=1, keepdim=True))
                    acc.mul_(alpha).addmm_(p, vh[k0:k0 + w])
                    m = m_new
                out[bi, hi, q0:q0 + n] = acc.div_(l)
                lse[bi, hi, q0:q0 + n] = (m + l.log()).squeeze(1)
    return out.to(q.dtype), lse


# ---------------------------------------------------------------------------------------------
# Backward: recompute P from the log-sum-exp, tile by tile
# ---------------------------------------------------------------------------------------------


def flash_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                   grad_out: torch.Tensor, causal: bool = False, block_q: int = BLOCK_Q, block_k: int = BLOCK_K,
                   scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv) of attention from the forward's output and log-sum-exp, without the T×T matrix.

    Key tiles are the outer loop (dk_j, dv_j accumulate in registers on a GPU; here in one tile),
    query tiles the inner one; dq accumulates across key tiles. Under GQA the gradients of every
    query head in a group add into their shared key/value head.
    """
    b, h, t_q, d = q.shape
    h_kv, t_k = k.shape[1], k.shape[2]
    group, offset = h // h_kv, t_k - t_q
    scale = 1 / math.sqrt(d) if scale is None else float(scale)
    acc_dtype = torch.promote_types(q.dtype, torch.float32)
    qf, kf, vf, of, dof = (x.to(acc_dtype) for x in (q, k, v, out, grad_out))
    delta = (dof * of).sum(-1)  # (B, H, T_q): D = rowsum(dO ∘ O) = rowsum(P ∘ dP)
    dq = torch.zeros_like(qf)
    dk = torch.zeros_like(kf)
    dv = torch.zeros_like(vf)
    for bi in range(b):
        for hi in range(h):
            kv = hi // group
            qh = qf[bi, hi] * scale  # (T_q, d)
            for k0 in range(0, t_k, block_k):
                kj, vj = kf[bi, kv, k0:k0 + block_k], vf[bi, kv, k0:k0 + block_k]  # (w, d)
                w = kj.shape[0]
                dk_j, dv_j = dk[bi, kv, k0:k0 + w], dv[bi, kv, k0:k0 + w]  # views: accumulate in place
                q_start = max(0, k0 - offset) // block_q * block_q if causal else 0  # earlier queries see none of it
                for q0 in range(q_start, t_q, block_q):
                    qi, doi = qh[q0:q0 + block_q], dof[bi, hi, q0:q0 + block_q]
                    n = qi.shape[0]
                    s = qi @ kj.t()  # (n, w)
                    if causal and k0 + w - 1 > offset + q0:
                        s.masked_fill_(_future_mask(q0, n, k0, w, offset, q.device), -math.inf)
                    p = s.sub_(lse[bi, hi, q0:q0 + n, None]).exp_()  # P exactly as the forward had it
                    dv_j.addmm_(p.t(), doi)
                    ds = (doi @ vj.t()).sub_(delta[bi, hi, q0:q0 + n, None]).mul_(p)  # dS = P ∘ (dP − D)
                    dq[bi, hi, q0:q0 + n].addmm_(ds, kj, alpha=scale)
                    dk_j.addmm_(ds.t(), qi)  # qi already carries the scale
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class FlashAttention(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, the output and the log-sum-exp — O(T) beyond the inputs, no T×T."""

    @staticmethod
    def forward(ctx, q, k, v, causal=False, block_q=BLOCK_Q, block_k=BLOCK_K, scale=None):
        out, lse = flash_forward(q, k, v, causal, block_q, block_k, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.config = (causal, block_q, block_k, scale)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = flash_backward(q, k, v, out, lse, grad_out, *ctx.config)
        return dq, dk, dv, None, None, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, block_q: int = BLOCK_Q,
                    block_k: int = BLOCK_K, scale: float | None = None) -> torch.Tensor:
    """Exact attention (B, H, T_q, d) of q over k, v (B, H_kv, T_k, d), tiled, differentiable.

    Same result as ``F.scaled_dot_product_attention`` (with ``enable_gqa`` when H_kv < H; for
    causal with T_q < T_k, the bottom-right aligned mask), in O(T) extra memory.
    """
    return FlashAttention.apply(q, k, v, causal, block_q, block_k, scale)


def tile_trace(q: torch.Tensor, k: torch.Tensor, causal: bool, block_q: int, block_k: int) -> list[dict]:
    """The forward's tile schedule for one head, q (T_q, d), k (T_k, d), with the row statistics after each tile.

    One dict per computed tile, in loop order: ``qi``, ``kj`` (tile indices), ``diagonal`` (the tile
    is partly masked) and ``m``, ``l`` (block_q-or-fewer rows): the running max and sum of the
    query tile's rows after that key tile. Tiles absent from the list were skipped. The final m + log l
    of each row is its log-sum-exp (what ``flash_forward`` returns).
    """
    if q.dim() != 2 or k.dim() != 2 or q.shape[1] != k.shape[1]:
        raise ValueError(f"q and k must be (T, d) with the same d, got {tuple(q.shape)} and {tuple(k.shape)}")
    _check_inputs(q[None, None], k[None, None], k[None, None], causal, block_q, block_k, None)
    t_q, t_k, offset = q.shape[0], k.shape[0], k.shape[0] - q.shape[0]
    steps = []
    for qi, q0 in enumerate(range(0, t_q, block_q)):
        rows = q[q0:q0 + block_q] / math.sqrt(q.shape[1])
        m = torch.full((rows.shape[0],), -math.inf, dtype=q.dtype)
        l = torch.zeros(rows.shape[0], dtype=q.dtype)
        k_end = min(t_k, offset + q0 + rows.shape[0]) if causal else t_k
        for kj, k0 in enumerate(range(0, k_end, block_k)):
            s = rows @ k[k0:k0 + block_k].t()
            diagonal = causal and k0 + s.shape[1] - 1 > offset + q0
            if diagonal:
                s = s.masked_fill(_future_mask(q0, s.shape[0], k0, s.shape[1], offset, q.device), -math.inf)
            m_new = torch.maximum(m, s.amax(1))
            l = l * (m - m_new).exp() + (s - m_new[:, None]).exp().sum(1)
            m = m_new
            steps.append({"qi": qi, "kj": kj, "diagonal": diagonal, "m": m.clone(), "l": l.clone()})
    return steps


# ---------------------------------------------------------------------------------------------
# The baseline and a memory meter
# ---------------------------------------------------------------------------------------------


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Textbook attention for q, k, v (B, H, T, d) with equal heads: materializes the (B, H, T_q, T_k) scores."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T_q, T_k): the matrix FlashAttention avoids
    if causal:
        t_q, t_k = scores.shape[-2:]
        scores = scores.masked_fill(_future_mask(0, t_q, 0, t_k, t_k - t_q, q.device), -math.inf)
    return torch.softmax(scores, dim=-1) @ v


@contextlib.contextmanager
def _quiet_native_stderr():
    """Send file descriptor 2 to /dev/null: the profiler's C++ side logs each start and stop there."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved), os.close(devnull)


def peak_memory(fn: Callable[..., object], *args, **kwargs) -> int:
    """Peak bytes allocated by torch on the CPU while ``fn(*args, **kwargs)`` runs, above what was live before.

    ``tracemalloc`` does not see tensor storage, and the process's peak RSS never goes down, so
    this replays the allocator's own log: ``torch.profiler`` with ``profile_memory=True`` records
    every allocation and free with its size, and the peak is the maximum of their running sum.
    The result of ``fn`` counts (it is allocated during the call); it is dropped afterwards.
    """
    from torch.profiler import ProfilerActivity, profile

    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn(*args, **kwargs)
        del result
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.remove(path)
    sizes = sorted((e["ts"], e["args"]["Bytes"]) for e in events
                   if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == 0)
    live = peak = 0
    for _, nbytes in sizes:
        live += nbytes
        peak = max(peak, live)
    return peak


def io_bytes(n: int, d: int, block_q: int, bytes_per_el: int = 2) -> tuple[int, int]:
    """Main-memory traffic of one head's attention forward, (standard, tiled), in bytes.

    Standard attention (Dao et al., 2022, Algorithm 0) reads Q, K and writes S; reads S and writes
    P; reads P, V and writes O: 4·N·d + 4·N² elements, the N² terms dominating. A tiled kernel with
    the query tile outermost (FlashAttention-2's order) reads Q and writes O once and streams K and
    V once per query tile of ``block_q`` rows: 2·N·d + 2·N·d·⌈N / block_q⌉ elements — still
    quadratic in N, but smaller by about 2·block_q / d (and less again when a cache keeps K, V).

        >>> io_bytes(1024, 64, 128, bytes_per_el=1)
        (4456448, 1179648)
    """
    for name, x in (("n", n), ("d", d), ("block_q", block_q), ("bytes_per_el", bytes_per_el)):
        if isinstance(x, bool) or not isinstance(x, int) or x < 1:
            raise ValueError(f"{name} must be an int >= 1, got {x!r}")
    standard = 4 * n * d + 4 * n * n
    tiled = 2 * n * d + 2 * n * d * math.ceil(n / block_q)
    return standard * bytes_per_el, tiled * bytes_per_el


__all__ = ["BLOCK_K", "BLOCK_Q", "FlashAttention", "flash_attention", "flash_backward", "flash_forward", "io_bytes",
           "naive_attention", "peak_memory", "tile_trace"]

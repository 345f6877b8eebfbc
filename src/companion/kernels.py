"""The book's Triton kernels: fused softmax, tiled matmul, FlashAttention forward, paged decode attention.

Triton (Tillet et al., 2019) writes a GPU kernel as a Python function over *tiles*: each program
instance loads a block of a tensor with ``tl.load`` (masked at ragged edges), computes on it as a
whole — ``tl.dot`` for a tile matmul, ``tl.max``/``tl.sum`` for reductions — and stores a block
back. The compiler handles threads, shared memory and vector instructions. Four kernels, each with a
checked launcher:

- ``softmax``: one program per row; the row is read from memory once and written once (a fused
  kernel instead of torch's separate max, subtract, exp, sum and divide passes in eager code);
- ``matmul``: one program per (BLOCK_M, BLOCK_N) tile of C, accumulating ``tl.dot`` over K tiles;
- ``flash_attention``: one program per (query tile, batch·head); FlashAttention's online softmax
  over key tiles (as ``companion.flash`` does in PyTorch), causal or not, GQA;
- ``paged_decode``: one program per (sequence, query head) for one new token; K and V are read
  block by block through the sequence's block table from the paged pools of ``companion.paged``.

On CUDA the kernels compile and run natively. Without CUDA this module sets ``TRITON_INTERPRET=1``
*before* importing triton, so the same kernels run on CPU tensors under Triton's interpreter
(NumPy underneath): right for checking correctness, meaningless for timing.
``python -m companion.kernels`` checks every kernel against torch and, on a GPU, times both.

References: Tillet, Kung, Cox, "Triton: an intermediate language and compiler for tiled neural
network computations" (MAPL 2019); Dao et al. (2022) and Dao (2023) for FlashAttention; Kwon et
al. (2023) for paged attention.
"""

from __future__ import annotations

import math
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the import of triton to take effect

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
_GPU_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# ---------------------------------------------------------------------------------------------
# Fused row softmax
# ---------------------------------------------------------------------------------------------


@triton.jit
def _softmax_kernel(x_ptr, out_ptr, n_cols, stride_x, stride_out, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * stride_x + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
    x = x - tl.max(x, axis=0)  # padding stays −∞ and contributes exp(−∞) = 0
    e = tl.exp(x)
    y = e / tl.sum(e, axis=0)
    tl.store(out_ptr + row * stride_out + cols, y.to(out_ptr.dtype.element_ty), mask=cols < n_cols)


def softmax(x: torch.Tensor, num_warps: int | None = None) -> torch.Tensor:
    """Softmax over the last dimension of a 2-D tensor (rows, cols) in one pass per row.

    The whole row is one tile (BLOCK = next power of two ≥ cols), so cols is capped at 65,536.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a 2-D floating-point tensor (rows, cols), got {getattr(x, 'shape', type(x))}")
    rows, cols = x.shape
    if rows < 1 or not 1 <= cols <= 65_536:
        raise ValueError(f"x must have >= 1 row and 1..65536 columns, got {tuple(x.shape)}")
    _check_device(x)
    x = x if x.stride(1) == 1 else x.contiguous()
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    block = triton.next_power_of_2(cols)
    num_warps = num_warps or (4 if block <= 2048 else 8 if block <= 8192 else 16)
    _softmax_kernel[(rows,)](x, out, cols, x.stride(0), out.stride(0), BLOCK=block, num_warps=num_warps)
    return out


# ---------------------------------------------------------------------------------------------
# Tiled matrix multiply
# ---------------------------------------------------------------------------------------------


@triton.jit
def _matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        a = tl.load(a_ptr + rm[:, None] * stride_am + (k0 + rk)[None, :] * stride_ak,
                    mask=(rm[:, None] < M) & ((k0 + rk)[None, :] < K), other=0.0)  # (BLOCK_M, BLOCK_K)
        b = tl.load(b_ptr + (k0 + rk)[:, None] * stride_bk + rn[None, :] * stride_bn,
                    mask=((k0 + rk)[:, None] < K) & (rn[None, :] < N), other=0.0)  # (BLOCK_K, BLOCK_N)
        acc = tl.dot(a, b, acc)  # zeros at the ragged edges add nothing
    tl.store(c_ptr + rm[:, None] * stride_cm + rn[None, :] * stride_cn, acc.to(c_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


def matmul(a: torch.Tensor, b: torch.Tensor, block_m: int = 64, block_n: int = 64, block_k: int = 32,
           num_warps: int = 4, num_stages: int = 3) -> torch.Tensor:
    """C = A B for A (M, K) and B (K, N), accumulated in fp32 over K tiles and stored in A's dtype.

    Block sizes must be powers of two >= 16 (``tl.dot``'s minimum). Good GPU choices for fp16 are
    128×128×32 (8 warps) for large matrices; the defaults suit small ones and the interpreter.
    """
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            raise ValueError(f"{name} must be a 2-D floating-point tensor, got {getattr(t, 'shape', type(t))}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a is {tuple(a.shape)} and b is {tuple(b.shape)}; a's columns must equal b's rows")
    if a.dtype != b.dtype:
        raise ValueError(f"a and b must share a dtype, got {a.dtype} and {b.dtype}")
    if min(a.shape + b.shape) < 1:
        raise ValueError(f"a and b must be non-empty, got {tuple(a.shape)} and {tuple(b.shape)}")
    _check_blocks(block_m=block_m, block_n=block_n, block_k=block_k)
    _check_device(a, b)
    (m, k), n = a.shape, b.shape[1]
    c = torch.empty(m, n, dtype=a.dtype, device=a.device)
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _matmul_kernel[grid](a, b, c, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0),
                         c.stride(1), BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, **_launch(num_warps, num_stages))
    return c


# ---------------------------------------------------------------------------------------------
# FlashAttention forward
# ---------------------------------------------------------------------------------------------


@triton.jit
def _flash_kernel(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, T_Q, T_K, HEAD_DIM, H, GROUP, sm_scale,
                  sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sob, soh, sot,
                  CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_m, pid_bh = tl.program_id(0), tl.program_id(1)
    b, h = pid_bh // H, pid_bh % H
    kv = h // GROUP  # grouped-query attention: query heads share key/value head h // GROUP
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # query rows of this tile
    rn = tl.arange(0, BLOCK_N)
    rd = tl.arange(0, BLOCK_D)
    q = tl.load(q_ptr + b * sqb + h * sqh + rm[:, None] * sqt + rd[None, :],
                mask=(rm[:, None] < T_Q) & (rd[None, :] < HEAD_DIM), other=0.0)  # (BLOCK_M, BLOCK_D)
    qk_scale = sm_scale * 1.4426950408889634  # fold log2(e) in: exp(x) = exp2(x · log2 e)
    m_i = tl.full((BLOCK_M,), -float("inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    offset = T_K - T_Q  # queries are the last T_Q positions
    hi = T_K
    if CAUSAL:
        hi = tl.minimum(T_K, offset + (pid_m + 1) * BLOCK_M)  # key tiles past the last query: skipped
    for n0 in range(0, hi, BLOCK_N):
        cols = n0 + rn
        k = tl.load(k_ptr + b * skb + kv * skh + cols[:, None] * skt + rd[None, :],
                    mask=(cols[:, None] < T_K) & (rd[None, :] < HEAD_DIM), other=0.0)  # (BLOCK_N, BLOCK_D)
        s = tl.dot(q, tl.trans(k)) * qk_scale  # (BLOCK_M, BLOCK_N), in log2 units
        keep = cols[None, :] < T_K
        if CAUSAL:
            keep = keep & (cols[None, :] <= offset + rm[:, None])
        s = tl.where(keep, s, -float("inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_ptr + b * svb + kv * svh + cols[:, None] * svt + rd[None, :],
                    mask=(cols[:, None] < T_K) & (rd[None, :] < HEAD_DIM), other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    acc = acc / l_i[:, None]
    tl.store(o_ptr + b * sob + h * soh + rm[:, None] * sot + rd[None, :], acc.to(o_ptr.dtype.element_ty),
             mask=(rm[:, None] < T_Q) & (rd[None, :] < HEAD_DIM))
    lse = (m_i + tl.log2(l_i)) / 1.4426950408889634  # back to natural log
    tl.store(lse_ptr + pid_bh * T_Q + rm, lse, mask=rm < T_Q)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    block_m: int | None = None, block_n: int | None = None, num_warps: int | None = None,
                    num_stages: int | None = None, return_lse: bool = False):
    """FlashAttention forward of q (B, H, T_q, d) over k, v (B, H_kv, T_k, d); returns o (B, H, T_q, d).

    Same conventions as ``companion.flash``: scale 1/√d, GQA when H_kv divides H, causal with the
    queries at the last T_q key positions. ``return_lse`` also returns the log-sum-exp (B, H, T_q)
    in fp32. Defaults: 128×64 tiles with 8 warps on a GPU for d ≤ 64 (64×64, 4 warps above),
    16×16 under the interpreter.
    """
    from .flash import _check_inputs

    _check_inputs(q, k, v, causal, 1, 1, None)
    _check_device(q, k, v)
    b, h, t_q, d = q.shape
    h_kv, t_k = k.shape[1], k.shape[2]
    if d > 256:
        raise ValueError(f"head dim must be <= 256 for this kernel, got {d}")
    block_d = max(16, triton.next_power_of_2(d))
    if INTERPRETED:
        block_m, block_n = block_m or 16, block_n or 16
    else:
        block_m, block_n = block_m or (128 if d <= 64 else 64), block_n or 64
    _check_blocks(block_m=block_m, block_n=block_n)
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    out = torch.empty(b, h, t_q, d, dtype=q.dtype, device=q.device)
    lse = torch.empty(b, h, t_q, dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(t_q, block_m), b * h)
    _flash_kernel[grid](q, k, v, out, lse, t_q, t_k, d, h, h // h_kv, 1 / math.sqrt(d),
                        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
                        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2),
                        CAUSAL=bool(causal), BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
                        **_launch(num_warps or (8 if block_m >= 128 else 4), num_stages or 2))
    return (out, lse) if return_lse else out


# ---------------------------------------------------------------------------------------------
# Paged attention, decode: one new token per sequence, K and V read through block tables
# ---------------------------------------------------------------------------------------------


@triton.jit
def _paged_decode_kernel(q_ptr, k_pool, v_pool, tables_ptr, lens_ptr, o_ptr, HEAD_DIM, GROUP, BLOCK_SIZE, sm_scale,
                         sqb, sqh, skn, skt, skh, sob, soh, stb,
                         BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    b, h = tl.program_id(0), tl.program_id(1)
    kv = h // GROUP
    rd = tl.arange(0, BLOCK_D)
    rt = tl.arange(0, BLOCK_T)  # token slots within one KV block
    q = tl.load(q_ptr + b * sqb + h * sqh + rd, mask=rd < HEAD_DIM, other=0.0).to(tl.float32)  # (BLOCK_D,)
    ctx = tl.load(lens_ptr + b)  # tokens in this sequence's cache
    m_i = tl.full((1,), -float("inf"), dtype=tl.float32)
    l_i = tl.zeros((1,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for i in range(0, tl.cdiv(ctx, BLOCK_SIZE)):
        block = tl.load(tables_ptr + b * stb + i)  # logical block i -> physical block in the pool
        pos = i * BLOCK_SIZE + rt
        valid = (rt < BLOCK_SIZE) & (pos < ctx)
        offs = block * skn + rt[:, None] * skt + kv * skh + rd[None, :]  # (BLOCK_T, BLOCK_D)
        mask = valid[:, None] & (rd[None, :] < HEAD_DIM)
        k = tl.load(k_pool + offs, mask=mask, other=0.0).to(tl.float32)
        s = tl.sum(k * q[None, :], axis=1) * sm_scale  # (BLOCK_T,) one query: a matrix-vector product
        s = tl.where(valid, s, -float("inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        p = tl.exp(s - m_new)
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        v = tl.load(v_pool + offs, mask=mask, other=0.0).to(tl.float32)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        m_i = m_new
    tl.store(o_ptr + b * sob + h * soh + rd, (acc / l_i).to(o_ptr.dtype.element_ty), mask=rd < HEAD_DIM)


def paged_decode(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, block_tables: torch.Tensor,
                 context_lens: torch.Tensor, num_warps: int = 4) -> torch.Tensor:
    """Attention of one new token per sequence over its paged cache: q (B, H, d) -> (B, H, d).

    k_pool, v_pool (num_blocks, block_size, H_kv, d) — one layer of ``paged.PagedKVCache``;
    block_tables (B, n) int; context_lens (B,) int, the tokens cached for each sequence (the new
    token's own key included), at least 1. Equals ``paged.paged_attention(q[:, :, None], ...)``.
    """
    if not isinstance(q, torch.Tensor) or q.dim() != 3 or not q.is_floating_point():
        raise ValueError(f"q must be a floating-point tensor (B, H, d), got {getattr(q, 'shape', type(q))}")
    if k_pool.dim() != 4 or k_pool.shape != v_pool.shape or k_pool.shape[-1] != q.shape[-1]:
        raise ValueError(f"k_pool and v_pool must be equal (num_blocks, block_size, H_kv, d={q.shape[-1]}), got "
                         f"{tuple(k_pool.shape)} and {tuple(v_pool.shape)}")
    if k_pool.dtype != q.dtype or v_pool.dtype != q.dtype:
        raise ValueError(f"q and the pools must share a dtype, got {q.dtype}, {k_pool.dtype}, {v_pool.dtype}")
    b, h, d = q.shape
    num_blocks, block_size, h_kv, _ = k_pool.shape
    if h % h_kv:
        raise ValueError(f"query heads ({h}) must be a multiple of KV heads ({h_kv})")
    if block_tables.dim() != 2 or block_tables.shape[0] != b or block_tables.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"block_tables must be an int tensor (B={b}, n), got {block_tables.dtype} "
                         f"{tuple(block_tables.shape)}")
    if context_lens.shape != (b,) or context_lens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"context_lens must be an int tensor (B={b},), got {context_lens.dtype} "
                         f"{tuple(context_lens.shape)}")
    capacity = block_tables.shape[1] * block_size
    if bool((context_lens < 1).any()) or bool((context_lens > capacity).any()):
        raise ValueError(f"context_lens must lie in 1..{capacity} (the blocks in the tables), got {context_lens.tolist()}")
    if block_tables.numel() and (int(block_tables.min()) < 0 or int(block_tables.max()) >= num_blocks):
        raise ValueError(f"block_tables must hold block ids in 0..{num_blocks - 1}")
    _check_device(q, k_pool, v_pool, block_tables, context_lens)
    q = q.contiguous()
    k_pool, v_pool, block_tables = k_pool.contiguous(), v_pool.contiguous(), block_tables.contiguous()
    out = torch.empty_like(q)
    _paged_decode_kernel[(b, h)](q, k_pool, v_pool, block_tables, context_lens.contiguous(), out, d, h // h_kv,
                                 block_size, 1 / math.sqrt(d), q.stride(0), q.stride(1), k_pool.stride(0),
                                 k_pool.stride(1), k_pool.stride(2), out.stride(0), out.stride(1),
                                 block_tables.stride(0), BLOCK_T=triton.next_power_of_2(block_size),
                                 BLOCK_D=triton.next_power_of_2(d), **_launch(num_warps, 1))
    return out


# ---------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------


def _check_device(*tensors: torch.Tensor) -> None:
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    device = devices.pop()
    if INTERPRETED and device.type != "cpu":
        raise ValueError(f"under TRITON_INTERPRET=1 the kernels take CPU tensors, got {device}")
    if not INTERPRETED and device.type != "cuda":
        raise ValueError(f"compiled Triton kernels need CUDA tensors, got {device}; move them with .cuda()")
    if not INTERPRETED and any(t.is_floating_point() and t.dtype not in _GPU_DTYPES for t in tensors):
        raise ValueError(f"on a GPU the kernels take {_GPU_DTYPES}, got {[t.dtype for t in tensors]}")


def _check_blocks(**blocks: int) -> None:
    for name, size in blocks.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size & (size - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {size!r}")


def _launch(num_warps: int, num_stages: int) -> dict:
    """Launch options; the interpreter ignores them."""
    if isinstance(num_warps, bool) or not isinstance(num_warps, int) or num_warps < 1 or num_warps & (num_warps - 1):
        raise ValueError(f"num_warps must be a power of two >= 1, got {num_warps!r}")
    return {} if INTERPRETED else {"num_warps": num_warps, "num_stages": num_stages}


# ---------------------------------------------------------------------------------------------
# Check and time every kernel against torch: ``python -m companion.kernels``
# ---------------------------------------------------------------------------------------------


def _paged_case(b: int, h: int, h_kv: int, d: int, block_size: int, max_len: int, dtype, device, seed: int = 0):
    """A random paged cache: shuffled blocks, ragged lengths. Returns (q, k_pool, v_pool, tables, lens)."""
    g = torch.Generator().manual_seed(seed)
    per_seq = -(-max_len // block_size)
    num_blocks = b * per_seq + 3
    tables = torch.randperm(num_blocks, generator=g)[: b * per_seq].view(b, per_seq)
    lens = torch.randint(1, max_len + 1, (b,), generator=g)
    lens[0] = max_len  # one full-length sequence
    pools = torch.randn(2, num_blocks, block_size, h_kv, d, generator=g)
    q = torch.randn(b, h, d, generator=g)
    return (q.to(device, dtype), pools[0].to(device, dtype), pools[1].to(device, dtype), tables.to(device),
            lens.to(device))


def self_check(sizes: str = "auto", repeat: int = 20) -> list[dict]:
    """Each kernel against its torch reference: max |error| and, on CUDA, time in ms of both.

    ``sizes="auto"``: tiny problems under the interpreter (correctness only), realistic fp16 ones
    on a GPU. Returns one dict per kernel and prints a table.
    """
    import torch.nn.functional as F

    from .paged import paged_attention

    gpu = not INTERPRETED
    device, dtype = ("cuda", torch.float16) if gpu else ("cpu", torch.float32)
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    if gpu and sizes == "auto":
        x, a, bm = rand(4096, 4096), rand(4096, 4096), rand(4096, 4096)
        q, k, v = rand(4, 16, 4096, 64), rand(4, 16, 4096, 64), rand(4, 16, 4096, 64)
        paged = _paged_case(64, 32, 8, 128, 16, 2048, dtype, device)
    else:
        x, a, bm = rand(13, 100), rand(37, 45), rand(45, 29)
        q, k, v = rand(1, 2, 40, 16), rand(1, 2, 40, 16), rand(1, 2, 40, 16)
        paged = _paged_case(3, 4, 2, 16, 4, 19, dtype, device)
    qp, kp, vp, tables, lens = paged

    def paged_ref():
        return paged_attention(qp[:, :, None], kp, vp, tables, lens)[:, :, 0]

    cases = [
        ("softmax", lambda: softmax(x), lambda: torch.softmax(x.float(), -1).to(dtype), "torch.softmax"),
        ("matmul", lambda: matmul(a, bm, *((128, 128, 32, 8) if gpu else ())), lambda: a @ bm, "torch.matmul"),
        ("flash_attention (causal)", lambda: flash_attention(q, k, v, causal=True),
         lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), "F.scaled_dot_product_attention"),
        ("paged_decode", lambda: paged_decode(qp, kp, vp, tables, lens), paged_ref, "gather + SDPA (paged_attention)"),
    ]
    rows = []
    for name, ours, ref, ref_name in cases:
        err = (ours().float() - ref().float()).abs().max().item()
        row = {"kernel": name, "reference": ref_name, "max_abs_err": err}
        if gpu:
            row["ms_triton"] = triton.testing.do_bench(ours, rep=repeat * 5)
            row["ms_torch"] = triton.testing.do_bench(ref, rep=repeat * 5)
        rows.append(row)
    mode = f"CUDA ({torch.cuda.get_device_name()}, fp16)" if gpu else "Triton interpreter on CPU (fp32; timings meaningless)"
    print(f"companion.kernels self-check — {mode}")
    for r in rows:
        timing = (f"  triton {r['ms_triton']:8.3f} ms  torch {r['ms_torch']:8.3f} ms  speed-up "
                  f"{r['ms_torch'] / r['ms_triton']:5.2f}×") if gpu else ""
        print(f"  {r['kernel']:26s} vs {r['reference']:32s} max|err| {r['max_abs_err']:.2e}{timing}")
    return rows


__all__ = ["INTERPRETED", "flash_attention", "matmul", "paged_decode", "self_check", "softmax"]

if __name__ == "__main__":
    self_check()

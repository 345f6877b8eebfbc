"""companion.flash: tiled online-softmax attention against torch's scaled_dot_product_attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from companion.flash import flash_attention, flash_forward, io_bytes, naive_attention, peak_memory, tile_trace


def qkv(b=2, h=4, h_kv=4, t_q=37, t_k=53, d=16, dtype=torch.float32, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t_q, d, generator=g, dtype=dtype)
    k, v = (torch.randn(b, h_kv, t_k, d, generator=g, dtype=dtype) for _ in range(2))
    return tuple(x.requires_grad_(grad) for x in (q, k, v))


def sdpa(q, k, v, causal):
    """torch's attention with our conventions: GQA, and causal queries at the last T_q key positions."""
    t_q, t_k = q.shape[2], k.shape[2]
    mask = torch.ones(t_q, t_k, dtype=torch.bool).tril(t_k - t_q) if causal else None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


CASES = [  # (h, h_kv, t_q, t_k, block_q, block_k): ragged lengths, T_q != T_k, GQA, one tile, tiny tiles
    (4, 4, 37, 53, 8, 16),
    (4, 4, 53, 53, 16, 8),
    (4, 2, 29, 70, 7, 9),
    (2, 1, 1, 40, 4, 16),
    (2, 2, 30, 30, 512, 1024),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("h, h_kv, t_q, t_k, block_q, block_k", CASES)
def test_output_and_gradients_match_sdpa(causal, h, h_kv, t_q, t_k, block_q, block_k):
    q, k, v = qkv(h=h, h_kv=h_kv, t_q=t_q, t_k=t_k, grad=True)
    ours = flash_attention(q, k, v, causal, block_q, block_k)
    ref = sdpa(q, k, v, causal)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    grad_out = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ours, (q, k, v), grad_out), torch.autograd.grad(ref, (q, k, v), grad_out)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_lse_is_the_logsumexp_of_the_scores(causal):
    q, k, v = qkv(t_q=21, t_k=50)
    _, lse = flash_forward(q, k, v, causal, block_q=8, block_k=16)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~torch.ones(21, 50, dtype=torch.bool).tril(29), -math.inf)
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1), atol=1e-5, rtol=0)


def test_block_sizes_do_not_change_the_result():
    q, k, v = qkv(b=1, h=2, h_kv=2, t_q=40, t_k=40)
    outs = [flash_attention(q, k, v, True, bq, bk) for bq, bk in ((1, 1), (3, 40), (40, 5), (64, 64))]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-6, rtol=0)


def test_gradcheck_float64():
    q, k, v = qkv(b=1, h=2, h_kv=1, t_q=5, t_k=7, d=3, dtype=torch.float64, grad=True)
    for causal in (False, True):
        assert torch.autograd.gradcheck(lambda q, k, v: flash_attention(q, k, v, causal, 2, 3), (q, k, v))


def test_half_precision_inputs_compute_in_fp32():
    q, k, v = qkv(dtype=torch.bfloat16)
    out = flash_attention(q, k, v, True, 8, 16)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), sdpa(q.float(), k.float(), v.float(), True), atol=1e-2, rtol=0)


def test_naive_attention_matches_sdpa():
    q, k, v = qkv(t_q=20, t_k=33)
    for causal in (False, True):
        torch.testing.assert_close(naive_attention(q, k, v, causal), sdpa(q, k, v, causal), atol=1e-5, rtol=0)


def test_nan_propagates_to_its_own_row_only():
    q, k, v = qkv(b=1, h=1, h_kv=1, t_q=10, t_k=10)
    q[0, 0, 3, 0] = float("nan")
    out = flash_attention(q, k, v, False, 4, 4)
    assert out[0, 0, 3].isnan().all() and not out[0, 0, [0, 1, 2, 4, 5]].isnan().any()


def test_bad_inputs_are_named():
    q, k, v = qkv()
    bad = [
        (dict(q=q[0]), "q must be a 4-D tensor"),
        (dict(k=k.double()), "must share a dtype"),
        (dict(q=q.int()), "q must be a floating-point"),
        (dict(v=v[:, :, :5]), "k and v must have the same shape"),
        (dict(q=q[..., :8]), "share the batch size and the last"),
        (dict(q=q[:, :3]), "multiple of the key/value heads"),
        (dict(block_q=0), "block_q must be an int >= 1, got 0"),
        (dict(block_k=2.5), "block_k must be an int >= 1"),
        (dict(scale=-1.0), "scale must be a finite number > 0"),
        (dict(q=torch.randn(2, 4, 60, 16), causal=True), "causal attention needs T_q <= T_k"),
    ]
    for change, message in bad:
        args = dict(q=q, k=k, v=v, causal=False, block_q=8, block_k=8, scale=None) | change
        with pytest.raises(ValueError, match=message):
            flash_attention(**args)


def test_peak_memory_sees_tensor_allocations():
    n = 1 << 20

    def two_buffers():
        a = torch.ones(n)  # 4 MiB, alive while b is made
        b = torch.ones(2 * n)
        return a.sum() + b.sum()

    assert 3 * 4 * n <= peak_memory(two_buffers) < 3 * 4 * n + 4096
    with pytest.raises(ValueError, match="fn must be callable"):
        peak_memory(3)


def test_tiled_attention_uses_linear_memory():
    q, k, v = qkv(b=1, h=2, h_kv=2, t_q=1024, t_k=1024, d=32)
    naive, tiled = peak_memory(naive_attention, q, k, v), peak_memory(flash_forward, q, k, v, False, 128, 256)
    assert naive >= 2 * 1024 * 1024 * 4 * 2  # at least the scores and the probabilities, fp32
    out_bytes = q.numel() * 4
    assert tiled <= out_bytes + 2 * 128 * 256 * 4 + 64 * 1024  # the output, a tile or two and row statistics


def test_io_bytes_counts_the_quadratic_terms():
    standard, tiled = io_bytes(4096, 64, 128, bytes_per_el=2)
    assert standard == 2 * (4 * 4096 * 64 + 4 * 4096**2)
    assert tiled == 2 * (2 * 4096 * 64 + 2 * 4096 * 64 * 32)
    assert 3 < standard / tiled < 2 * 128 / 64 + 0.1  # about 2 * block_q / d
    with pytest.raises(ValueError, match="block_q must be an int >= 1"):
        io_bytes(10, 4, 0)


def test_tile_trace_skips_future_tiles_and_ends_at_the_lse():
    q, k, v = qkv(b=1, h=1, h_kv=1, t_q=20, t_k=20)
    steps = tile_trace(q[0, 0], k[0, 0], causal=True, block_q=8, block_k=8)
    assert [(s["qi"], s["kj"]) for s in steps] == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    assert [s["diagonal"] for s in steps] == [True, False, True, False, False, True]
    _, lse = flash_forward(q, k, v, True, 8, 8)
    final = torch.cat([s["m"] + s["l"].log() for s in steps if s["kj"] == s["qi"]])
    torch.testing.assert_close(final, lse[0, 0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="q and k must be"):
        tile_trace(q, k, True, 8, 8)

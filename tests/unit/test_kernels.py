"""companion.kernels: the Triton kernels against torch, under the interpreter on CPU (small sizes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from companion import kernels
from companion.paged import paged_attention

pytestmark = pytest.mark.skipif(not kernels.INTERPRETED, reason="these tests run the kernels on CPU tensors")
g = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.randn(*shape, generator=g)


def test_softmax_matches_torch_on_ragged_rows():
    for shape in ((3, 1), (5, 17), (2, 100)):  # widths that are not powers of two
        x = rand(*shape) * 5
        torch.testing.assert_close(kernels.softmax(x), torch.softmax(x, -1), atol=1e-6, rtol=0)
    x = rand(4, 20)[:, ::2]  # strided rows
    torch.testing.assert_close(kernels.softmax(x), torch.softmax(x, -1), atol=1e-6, rtol=0)


def test_matmul_masks_ragged_tiles():
    a, b = rand(37, 45), rand(45, 19)  # no dimension a multiple of 16
    torch.testing.assert_close(kernels.matmul(a, b, 16, 16, 16), a @ b, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(kernels.matmul(b.t(), a.t(), 32, 16, 16), b.t() @ a.t(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_matches_sdpa(causal):
    q, k, v = rand(1, 4, 21, 24), rand(1, 2, 37, 24), rand(1, 2, 37, 24)  # GQA, T_q != T_k, d not a power of two
    out, lse = kernels.flash_attention(q, k, v, causal=causal, return_lse=True)
    mask = torch.ones(21, 37, dtype=torch.bool).tril(16) if causal else None
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    scores = (q @ k.repeat_interleave(2, 1).transpose(-2, -1)) / 24**0.5
    if causal:
        scores = scores.masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(lse, torch.logsumexp(scores, -1), atol=1e-5, rtol=0)


def test_paged_decode_matches_paged_attention():
    q, k_pool, v_pool, tables, lens = kernels._paged_case(b=3, h=4, h_kv=2, d=16, block_size=4, max_len=19,
                                                          dtype=torch.float32, device="cpu")
    assert len(set(lens.tolist())) > 1 and bool((lens % 4 != 0).any())  # ragged, partly filled last blocks
    out = kernels.paged_decode(q, k_pool, v_pool, tables, lens)
    ref = paged_attention(q[:, :, None], k_pool, v_pool, tables, lens)[:, :, 0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # a block size that is not a power of two, and int32 tables
    q, k_pool, v_pool, tables, lens = kernels._paged_case(2, 2, 1, 8, 3, 10, torch.float32, "cpu", seed=1)
    out = kernels.paged_decode(q, k_pool, v_pool, tables.int(), lens.int())
    torch.testing.assert_close(out, paged_attention(q[:, :, None], k_pool, v_pool, tables, lens)[:, :, 0],
                               atol=1e-5, rtol=0)


def test_bad_inputs_are_named():
    x = rand(4, 8)
    with pytest.raises(ValueError, match="x must be a 2-D floating-point"):
        kernels.softmax(x[0])
    with pytest.raises(ValueError, match="a's columns must equal b's rows"):
        kernels.matmul(x, x)
    with pytest.raises(ValueError, match="must share a dtype"):
        kernels.matmul(x, x.t().double())
    with pytest.raises(ValueError, match="block_k must be a power of two >= 16"):
        kernels.matmul(x, x.t(), block_k=24)
    with pytest.raises(ValueError, match="multiple of the key/value heads"):
        kernels.flash_attention(rand(1, 3, 4, 8), rand(1, 2, 4, 8), rand(1, 2, 4, 8))
    q, k_pool, v_pool, tables, lens = kernels._paged_case(2, 2, 1, 8, 4, 8, torch.float32, "cpu")
    with pytest.raises(ValueError, match="context_lens must lie in 1..8"):
        kernels.paged_decode(q, k_pool, v_pool, tables, lens + 100)
    with pytest.raises(ValueError, match="block ids in 0.."):
        kernels.paged_decode(q, k_pool, v_pool, tables + 1000, lens)
    with pytest.raises(ValueError, match="q must be a floating-point tensor \\(B, H, d\\)"):
        kernels.paged_decode(q[:, :, None], k_pool, v_pool, tables, lens)
    with pytest.raises(ValueError, match="block_tables must be an int tensor"):
        kernels.paged_decode(q, k_pool, v_pool, tables.float(), lens)


def test_self_check_reports_every_kernel(capsys):
    rows = kernels.self_check()
    assert [r["kernel"].split()[0] for r in rows] == ["softmax", "matmul", "flash_attention", "paged_decode"]
    assert all(r["max_abs_err"] < 1e-4 for r in rows)
    assert "timings meaningless" in capsys.readouterr().out

"""companion.attention against torch's scaled_dot_product_attention and nn.MultiheadAttention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.attention import (
    AttentionConfig,
    MultiHeadAttention,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    attention_entropy,
    attention_mask,
    load_torch_mha,
    offset_score,
    rope_cache,
    scaled_dot_product_attention,
    uniform_causal_weights,
)


def qkv(b=2, h=4, h_kv=4, t_q=6, t_k=6, d=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t_q, d, generator=g, dtype=dtype)
    k = torch.randn(b, h_kv, t_k, d, generator=g, dtype=dtype)
    v = torch.randn(b, h_kv, t_k, d, generator=g, dtype=dtype)
    return q, k, v


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.sampled_from([(4, 4), (4, 2), (4, 1), (6, 3)]), st.integers(1, 9), st.integers(0, 4),
       st.booleans(), st.sampled_from([None, 0.3]))
def test_matches_torch_sdpa(b, heads, t_q, extra_keys, causal, scale):
    h, h_kv = heads
    q, k, v = qkv(b, h, h_kv, t_q, t_q + extra_keys, d=8)
    ours, weights = scaled_dot_product_attention(q, k, v, causal=causal, scale=scale)
    # torch's is_causal aligns queries to the *first* keys; ours to the last (KV-cache decoding), so
    # compare through an explicit mask, which both read the same way.
    mask = attention_mask(t_q, t_q + extra_keys, causal=causal)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=h != h_kv)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(weights.sum(-1), torch.ones(b, h, t_q, dtype=q.dtype))


def test_causal_square_case_equals_torch_is_causal():
    q, k, v = qkv()
    ours, _ = scaled_dot_product_attention(q, k, v, causal=True)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_padding_window_and_fully_masked_rows_match_torch():
    q, k, v = qkv(t_q=7, t_k=7)
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 4:] = True  # the second sequence has 4 real tokens
    ours, weights = scaled_dot_product_attention(q, k, v, causal=True, window=3, key_padding=padding)
    mask = attention_mask(7, 7, causal=True, window=3, key_padding=padding)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert (weights[1, :, :, 4:] == 0).all(), "padding keys get no weight"
    assert (weights[0, :, 6, :4] == 0).all() and (weights[0, :, 6, 4:] > 0).all(), "window of 3 keys"
    nobody = torch.zeros(7, 7, dtype=torch.bool)
    out, w = scaled_dot_product_attention(q, k, v, mask=nobody)
    assert (out == 0).all() and (w == 0).all(), "a query with no allowed key gets zeros, as torch gives"
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=nobody))


def test_attention_mask_examples():
    assert attention_mask(2, 4, causal=True).int().tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert attention_mask(4, 4, causal=True, window=2).int().tolist() == [
        [1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]


def test_matches_nn_multihead_attention():
    torch.manual_seed(0)
    theirs = nn_mha = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    ours = MultiHeadAttention(AttentionConfig(d_model=32, n_heads=4))
    load_torch_mha(ours, nn_mha)
    x = torch.randn(3, 10, 32)
    padding = torch.zeros(3, 10, dtype=torch.bool)
    padding[2, 7:] = True
    causal = torch.triu(torch.ones(10, 10, dtype=torch.bool), 1)  # torch: True = not allowed
    ref, ref_w = theirs(x, x, x, attn_mask=causal, key_padding_mask=padding, average_attn_weights=False)
    out, w = ours(x, causal=True, key_padding=padding)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)


def test_gqa_shrinks_the_kv_cache_not_the_output():
    mha = MultiHeadAttention(AttentionConfig(d_model=64, n_heads=8))
    gqa = MultiHeadAttention(AttentionConfig(d_model=64, n_heads=8, n_kv_heads=2))
    mqa = MultiHeadAttention(AttentionConfig(d_model=64, n_heads=8, n_kv_heads=1))
    x = torch.randn(2, 5, 64)
    assert gqa(x)[0].shape == mqa(x)[0].shape == (2, 5, 64)
    assert [m.kv_cache_bytes_per_token() for m in (mha, gqa, mqa)] == [256, 64, 32]


def test_rope_scores_depend_only_on_relative_position():
    cos, sin = rope_cache(16, 64)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(m, n):
        return (apply_rope(q, cos, sin, offset=m) * apply_rope(k, cos, sin, offset=n)).sum().item()

    assert score(5, 2) == pytest.approx(score(40, 37), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    norms = apply_rope(q.expand(1, 1, 64, 16), cos, sin).norm(dim=-1)
    torch.testing.assert_close(norms, q.norm().expand_as(norms), msg="rotations keep the norm")


def test_rope_scaling_stretches_positions():
    cos, sin = rope_cache(8, 32)
    cos_pi, sin_pi = rope_cache(8, 64, interpolation=2.0)
    torch.testing.assert_close(cos_pi[::2][:32], cos)  # position 2p after interpolation = position p before
    cos_ntk, _ = rope_cache(8, 32, ntk_factor=4.0)
    torch.testing.assert_close(cos_ntk[:, 0], cos[:, 0], msg="NTK scaling leaves the fastest pair alone")
    assert not torch.allclose(cos_ntk[:, -1], cos[:, -1])


def test_alibi_slopes_and_bias():
    assert alibi_slopes(8).tolist() == pytest.approx([2.0 ** -(i + 1) for i in range(8)])
    assert alibi_slopes(6).tolist() == pytest.approx([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])
    bias = alibi_bias(8, 4, 4)
    assert bias.shape == (8, 4, 4) and bias[0, 3, 0].item() == pytest.approx(-1.5)
    attn = MultiHeadAttention(AttentionConfig(d_model=32, n_heads=8, positions="alibi"))
    assert attn(torch.randn(1, 6, 32))[1].shape == (1, 8, 6, 6)


def test_default_scale_is_one_over_sqrt_d_and_keeps_scaled_scores_at_unit_variance():
    q, k, v = qkv(b=1, h=1, h_kv=1, t_q=512, t_k=512, d=256, dtype=torch.float32)
    default, w_default = scaled_dot_product_attention(q, k, v)
    explicit, _ = scaled_dot_product_attention(q, k, v, scale=1 / 16)
    torch.testing.assert_close(default, explicit)
    raw, _ = scaled_dot_product_attention(q, k, v, scale=1.0)
    scaled_scores = torch.log(w_default.clamp_min(1e-30))  # log-softmax of the scaled scores, up to a row constant
    assert (scaled_scores - scaled_scores.mean(-1, keepdim=True)).var().item() == pytest.approx(1, rel=0.15)
    assert not torch.allclose(raw, default), "without 1/sqrt(d) the softmax saturates differently"


def test_bad_inputs_are_named():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="q must be a 4-D tensor"):
        scaled_dot_product_attention(q[0], k, v)
    with pytest.raises(ValueError, match="share the batch size and the last"):
        scaled_dot_product_attention(q, k[..., :8], v[..., :8])
    with pytest.raises(ValueError, match="multiple of the key/value heads"):
        scaled_dot_product_attention(q, k[:, :3], v[:, :3])
    with pytest.raises(ValueError, match="share a dtype"):
        scaled_dot_product_attention(q.float(), k, v)
    with pytest.raises(ValueError, match="bool tensor"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(6, 6))
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(5, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding must be a bool tensor"):
        attention_mask(3, 3, key_padding=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="n_heads=6 must be a multiple of n_kv_heads=4"):
        AttentionConfig(d_model=48, n_heads=6, n_kv_heads=4)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        scaled_dot_product_attention(q, k, v, scale=0.0)
    with pytest.raises(ValueError, match="bias of shape"):
        scaled_dot_product_attention(q, k, v, bias=torch.zeros(3, 6, 6))
    with pytest.raises(ValueError, match="need 1 <= t_q <= t_k"):
        alibi_bias(4, 5, 3)
    with pytest.raises(ValueError, match="RoPE cache holds"):
        cos, sin = rope_cache(16, 4)
        apply_rope(q, cos, sin)


def test_bf16_attention_stays_close_to_fp32():
    q, k, v = qkv(dtype=torch.float32)
    ref, _ = scaled_dot_product_attention(q, k, v, causal=True)
    low, weights = scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True)
    assert low.dtype == weights.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("n_kv_heads", [8, 2, 1])
@pytest.mark.parametrize("positions", ["none", "rope"])
@pytest.mark.parametrize("causal", [True, False])
def test_fused_path_equals_the_reference_path(n_kv_heads, positions, causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(AttentionConfig(d_model=64, n_heads=8, n_kv_heads=n_kv_heads, positions=positions))
    x = torch.randn(2, 7, 64)
    reference, weights = mha(x, causal=causal, need_weights=True)
    fused, none = mha(x, causal=causal, need_weights=False)
    assert weights.shape == (2, 8, 7, 7) and none is None
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)


def test_alibi_and_masks_fall_back_to_the_reference_path_without_weights():
    torch.manual_seed(0)
    alibi = MultiHeadAttention(AttentionConfig(d_model=32, n_heads=4, positions="alibi"))
    x = torch.randn(1, 5, 32)
    out, weights = alibi(x, need_weights=False)
    torch.testing.assert_close(out, alibi(x)[0])
    assert weights is not None  # ALiBi's bias has no fused kernel here: the reference path ran


def test_attention_entropy_spans_zero_to_log_n():
    one_hot = torch.eye(5)
    spread = torch.full((5, 5), 0.2)
    assert attention_entropy(one_hot).item() == 0.0
    assert attention_entropy(spread).item() == pytest.approx(math.log(5))
    both = attention_entropy(torch.stack([one_hot, spread]))  # leading dims are kept
    assert both.shape == (2,) and both[1] > both[0]
    with pytest.raises(ValueError, match=r"\(\.\.\., T_q, T_k\)"):
        attention_entropy(torch.ones(3))


def test_offset_score_reads_the_diagonal_below():
    t = 6
    previous = torch.zeros(t, t)
    previous[0, 0] = 1.0
    previous[torch.arange(1, t), torch.arange(t - 1)] = 1.0  # every query looks one token back
    assert offset_score(previous, 1).item() == 1.0
    assert offset_score(previous, 0).item() == pytest.approx(1 / t)  # only the first query looks at itself
    assert offset_score(torch.eye(t), 0).item() == 1.0
    # queries as the last 2 of 6 keys (decoding with a cache): query 0 sits at position 4
    last_two = torch.zeros(2, t)
    last_two[0, 3] = last_two[1, 4] = 1.0
    assert offset_score(last_two, 1).item() == 1.0
    with pytest.raises(ValueError, match="offset must be an int in"):
        offset_score(previous, t)


def test_uniform_causal_weights_are_the_untrained_baseline():
    w = uniform_causal_weights(4)
    expected = torch.tensor([[1, 0, 0, 0], [1 / 2, 1 / 2, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [1 / 4] * 4])
    torch.testing.assert_close(w, expected)
    assert offset_score(w, 1).item() == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    assert attention_entropy(w).item() == pytest.approx(sum(math.log(n) for n in range(1, 5)) / 4)


def test_attention_analysis_rejects_what_is_not_softmax_output():
    with pytest.raises(ValueError, match="rows of weights must sum to 1|row of weights must sum to 1"):
        attention_entropy(torch.tensor([[3.0, 3.0]]))
    with pytest.raises(ValueError, match="finite and >= 0"):
        attention_entropy(torch.tensor([[1.5, -0.5]]))
    with pytest.raises(ValueError, match="finite and >= 0"):
        attention_entropy(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="float tensor"):
        offset_score(torch.eye(3, dtype=torch.long))
    with pytest.raises(ValueError, match="T_q <= T_k"):
        offset_score(torch.eye(5)[:, :3])
    with pytest.raises(ValueError, match="t must be an int >= 1"):
        uniform_causal_weights(0)
    with pytest.raises(ValueError, match="t must be an int >= 1"):
        uniform_causal_weights(2.5)


def test_rope_at_explicit_positions_equals_rope_at_an_offset():
    from companion.attention import apply_rope, rope_cache

    cos, sin = rope_cache(8, 32)
    x = torch.randn(1, 2, 5, 8)
    torch.testing.assert_close(apply_rope(x, cos, sin, torch.arange(7, 12)), apply_rope(x, cos, sin, 7))
    scattered = apply_rope(x, cos, sin, torch.tensor([3, 0, 9, 9, 1]))  # tokens of different sequences
    torch.testing.assert_close(scattered[:, :, 2], apply_rope(x[:, :, 2:3], cos, sin, 9)[:, :, 0])
    with pytest.raises(ValueError, match=r"long tensor \(T=5,\)"):
        apply_rope(x, cos, sin, torch.arange(4))
    with pytest.raises(ValueError, match="positions up to 40"):
        apply_rope(x, cos, sin, torch.tensor([0, 1, 2, 3, 40]))

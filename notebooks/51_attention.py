# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Attention from scratch
#
# Attention is the one operation every large language model is built around, and the one that sets
# its serving bill. Its (T × T) score matrix is why long prompts are slow; its keys and values are
# the KV cache that fills GPU memory during generation; the choice between multi-head, grouped-query
# and multi-query attention decides how many requests fit on one GPU; and the way positions enter
# the scores decides whether a model trained on 4k tokens can read 32k. Interviews go straight here:
# "why divide by √d_k", "what does GQA save, and by how much", "how does RoPE make attention
# relative", "how would you extend the context window". This chapter builds attention from the
# formula, checks it against PyTorch's fused kernel, measures each of those answers, and then opens
# up the book's own trained model to look at what its heads actually attend to.
#
# **You will learn**
# - scaled dot-product and multi-head attention line by line, checked against `torch`;
# - why the scores are divided by √d_k, from the measured variance and what it does to the softmax;
# - causal, padding and sliding-window masks, and what each one guarantees;
# - what MHA, GQA and MQA cost in parameters and KV-cache bytes for real model sizes;
# - how RoPE makes scores depend on relative position only, how context extension rescales it, and ALiBi;
# - how to read a trained model's attention maps: entropy per head and the previous-token head.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/51_attention.ipynb)
# · Runtime budget on 2 CPU cores: under 40 s with `SMOKE=True`, under 4 minutes in full mode
# (once the book's model is cached; training it the first time adds about 2 minutes).

# %% tags=["hide-input"]
# Setup: on Colab, install the companion package from the book's repository; locally a no-op.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("companion") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "companion @ git+https://github.com/ml-systems-book/ml-systems-notebook"])

# %% tags=["parameters"]
from companion.config import smoke_default

SMOKE = smoke_default()  # True: the tiny book model and fewer samples (≤ 40 s on 2 cores); False: the full chapter

# %%
import inspect
import math

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from IPython.display import Code, Markdown, display
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from companion import attention, kvcache, lm, viz, widgets
from companion.attention import (AttentionConfig, MultiHeadAttention, alibi_bias, alibi_slopes, apply_rope,
                                 attention_mask, rope_cache, scaled_dot_product_attention)
from companion.book import check, glue
from companion.config import pick, seed_everything
from companion.data import python_docs
from companion.model import MiniGPT

seed_everything(0)
print(f"SMOKE={SMOKE}, torch {torch.__version__}, {torch.get_num_threads()} threads")

# %% [markdown]
# ## 1. Attention, read top to bottom
#
# Each query asks a question, each key advertises what its token offers, and each value is what the
# token hands over when chosen. With the queries, keys and values of one head stacked into
# matrices $Q \in \mathbb{R}^{T_q \times d}$, $K, V \in \mathbb{R}^{T_k \times d}$, attention
# {cite}`vaswani2017attention` is
#
# $$ \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{QK^\top}{\sqrt{d}} + B + M\right) V, $$
#
# where $B$ is an optional bias on the scores (ALiBi, section 5) and $M$ is 0 where a query may look
# and $-\infty$ where it may not (section 3). Every row of the softmax is a probability distribution
# over keys, so each output is a weighted average of values. Here is the whole function as the book
# implements it; every faster kernel later in the book is checked against it.

# %%
display(Code(inspect.getsource(scaled_dot_product_attention), language="python"))

# %% [markdown]
# Three lines do the work — scores, softmax, weighted sum — and the rest handles the cases that
# production code meets: masks, a bias, grouped key/value heads, fp16 inputs, and queries that may
# see nothing at all. PyTorch ships the same operation as `F.scaled_dot_product_attention`, which
# dispatches to fused kernels (FlashAttention on GPUs) that never store the $(T_q \times T_k)$
# weights. Ours must agree with it, with and without a causal mask, with grouped key/value heads,
# and for a single query decoding against a cache of keys:

# %%
g = torch.Generator().manual_seed(0)
B, H, H_KV, T, D = 2, 8, 2, 24, 32
q = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
k = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
v = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
cases = {
    "no mask": (scaled_dot_product_attention(q, k, v)[0], F.scaled_dot_product_attention(q, k, v)),
    "causal": (scaled_dot_product_attention(q, k, v, causal=True)[0], F.scaled_dot_product_attention(q, k, v, is_causal=True)),
    "GQA, 8 query heads on 2 KV heads": (
        scaled_dot_product_attention(q, k[:, :H_KV], v[:, :H_KV], causal=True)[0],
        F.scaled_dot_product_attention(q, k[:, :H_KV], v[:, :H_KV], is_causal=True, enable_gqa=True)),
    "one new query against 24 cached keys": (
        scaled_dot_product_attention(q[:, :, -1:], k, v, causal=True)[0],
        F.scaled_dot_product_attention(q[:, :, -1:], k, v)),  # the last query may see every key
}
sdpa_err = 0.0
for name, (ours, ref) in cases.items():
    err = (ours - ref).abs().max().item()
    sdpa_err = max(sdpa_err, err)
    print(f"{name:38s} max |ours − torch| = {err:.1e}")
    torch.testing.assert_close(ours, ref)
glue("sdpa_err", sdpa_err)
assert sdpa_err < 1e-12, "float64 agreement"

# %% [markdown]
# The largest difference over all four cases is {glue:text}`sdpa_err:.1g`, rounding in float64.
#
# **Multi-head attention** runs $H$ such heads side by side on slices of the model width: the input
# $x$ (B, T, d_model) is projected to queries, keys and values, each reshaped into $H$ heads of
# size $d = d_\text{model}/H$; every head attends on its own; the heads are concatenated and mixed
# by an output projection. The reshapes are the part worth reading slowly, shapes in the comments:

# %%
display(Code(inspect.getsource(MultiHeadAttention.forward), language="python"))

# %% [markdown]
# The same weights loaded into `torch.nn.MultiheadAttention` must give the same outputs and the
# same per-head weights:

# %%
torch.manual_seed(0)
theirs = torch.nn.MultiheadAttention(64, 4, batch_first=True)
ours = MultiHeadAttention(AttentionConfig(d_model=64, n_heads=4))
attention.load_torch_mha(ours, theirs)
x = torch.randn(3, 12, 64)
causal_block = torch.triu(torch.ones(12, 12, dtype=torch.bool), 1)  # torch's convention: True = blocked
ref_out, ref_w = theirs(x, x, x, attn_mask=causal_block, average_attn_weights=False)
out, w = ours(x, causal=True)
mha_err = (out - ref_out).abs().max().item()
torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)
glue("mha_err", mha_err)
print(f"outputs differ by at most {mha_err:.1e}; weights {tuple(w.shape)} = (B, H, T, T)")

# %% [markdown]
# The largest difference is {glue:text}`mha_err:.1g` in float32. The cost is visible in the shapes: the
# weights are (B, H, T, T), so time grows as $T^2 d$ per head and, when the weights are stored,
# memory as $T^2$ per head. FlashAttention (Part VII) removes the memory term by never storing them.
#
# ## 2. Why divide by √d_k
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, then
# $q \cdot k = \sum_{i=1}^{d} q_i k_i$ is a sum of $d$ independent terms of variance 1, so its
# variance is $d$ and its standard deviation $\sqrt d$. Softmax is not scale-free: multiply every
# score by 8 and the largest one takes nearly all the weight. Dividing by $\sqrt d$ puts the scores
# back at variance 1 whatever the head size. We measure both halves of that argument: the variance
# across $d$, and what unscaled scores do to a softmax over 128 keys — its largest weight, its
# entropy, and the size of its Jacobian $\partial p / \partial s = \operatorname{diag}(p) - pp^\top$,
# which is the factor every gradient through attention is multiplied by.

# %%
dims = [4, 8, 16, 32, 64, 128, 256, 512, 1024]
n_pairs, n_queries, n_keys = pick(SMOKE, 4000, 20000), pick(SMOKE, 200, 1000), 128
g = torch.Generator().manual_seed(1)


def softmax_stats(scores: torch.Tensor) -> dict[str, float]:
    """Softmax over the last dim: mean max weight, mean entropy (nats), the share of saturated queries
    (top weight > 0.99) and the median Frobenius norm of the Jacobian diag(p) − ppᵀ."""
    p = torch.softmax(scores, -1)
    jac = torch.diag_embed(p) - p[..., :, None] * p[..., None, :]  # (N, T, T)
    return {"max weight": p.max(-1).values.mean().item(),
            "entropy": attention.attention_entropy(p).item(),
            "saturated": (p.max(-1).values > 0.99).float().mean().item(),
            "Jacobian norm": jac.flatten(1).norm(dim=1).median().item()}


variance, stats = [], {"unscaled": [], "scaled by 1/√d": []}
for d in tqdm(dims, desc="head sizes", leave=False):
    qs, ks = torch.randn(n_pairs, d, generator=g), torch.randn(n_pairs, d, generator=g)
    variance.append((qs * ks).sum(-1).var().item())
    scores = torch.randn(n_queries, d, generator=g) @ torch.randn(n_keys, d, generator=g).T  # (N, 128)
    stats["unscaled"].append(softmax_stats(scores))
    stats["scaled by 1/√d"].append(softmax_stats(scores / math.sqrt(d)))

fig = make_subplots(rows=1, cols=4, horizontal_spacing=0.07, subplot_titles=(
    "Var(q·k) against d", "largest softmax weight", "softmax entropy (nats)", "median ‖∂p/∂s‖ (gradient factor)"))
fig.add_scatter(x=dims, y=variance, mode="lines+markers", name="measured Var(q·k)", row=1, col=1,
                line=dict(color=viz.PALETTE[2]))
fig.add_scatter(x=dims, y=dims, mode="lines", name="y = d", row=1, col=1, line=dict(color="gray", dash="dot"))
for col, key in enumerate(["max weight", "entropy", "Jacobian norm"], start=2):
    for i, (label, rows) in enumerate(stats.items()):
        fig.add_scatter(x=dims, y=[r[key] for r in rows], mode="lines+markers", name=label, legendgroup=label,
                        showlegend=col == 2, line=dict(color=viz.PALETTE[i]), row=1, col=col)
fig.add_scatter(x=dims, y=[math.log(n_keys)] * len(dims), mode="lines", name="log 128 (uniform)", row=1, col=3,
                line=dict(color="gray", dash="dot"))
fig.update_xaxes(type="log", title_text="head size d")
fig.update_yaxes(type="log", row=1, col=1)
fig.update_layout(title=f"Random unit-variance q and k; softmax over {n_keys} keys", height=420,
                  legend=dict(orientation="h", y=-0.3))
fig

# %%
ratio = np.array(variance) / np.array(dims)
unscaled, scaled = stats["unscaled"], stats["scaled by 1/√d"]
at = {d: i for i, d in enumerate(dims)}
glue("var_ratio_min", ratio.min())
glue("var_ratio_max", ratio.max())
glue("std_d64", math.sqrt(variance[at[64]]))
for d in (128, 1024):
    glue(f"maxw_unscaled_d{d}", unscaled[at[d]]["max weight"])
    glue(f"maxw_scaled_d{d}", scaled[at[d]]["max weight"])
    glue(f"ent_unscaled_d{d}", unscaled[at[d]]["entropy"])
    glue(f"ent_scaled_d{d}", scaled[at[d]]["entropy"])
    glue(f"sat_unscaled_d{d}", unscaled[at[d]]["saturated"])
    glue(f"jac_ratio_d{d}", scaled[at[d]]["Jacobian norm"] / unscaled[at[d]]["Jacobian norm"])
glue("log_keys", math.log(n_keys))
assert np.all(np.abs(ratio - 1) < 0.12), f"Var(q·k)/d should be 1 at every d, got {ratio.round(3)}"
assert unscaled[at[1024]]["max weight"] > 0.8 and unscaled[at[1024]]["entropy"] < 0.5, "unscaled scores saturate"
assert all(abs(s["max weight"] - scaled[at[64]]["max weight"]) < 0.05 for s in scaled), "scaled: the same at every d"
assert all(s["saturated"] == 0 for s in scaled) and unscaled[at[1024]]["saturated"] > 0.5
assert all(a["saturated"] <= b["saturated"] for a, b in zip(unscaled, unscaled[1:])), "saturation grows with d"
assert unscaled[at[1024]]["Jacobian norm"] < 0.05 * scaled[at[1024]]["Jacobian norm"]
assert unscaled[at[4]]["Jacobian norm"] > scaled[at[4]]["Jacobian norm"], "at tiny d, sharper is not yet saturated"

# %% [markdown]
# The measured $\operatorname{Var}(q \cdot k)/d$ lies between {glue:text}`var_ratio_min:.2f` and
# {glue:text}`var_ratio_max:.2f` from $d = 4$ to $d = 1024$; at $d = 64$ the standard deviation of a
# raw score is {glue:text}`std_d64:.1f`, the "std 8" that interview notes quote. At the common head
# size $d = 128$, unscaled scores give the largest key a mean weight of
# {glue:text}`maxw_unscaled_d128:.2f` and an entropy of {glue:text}`ent_unscaled_d128:.2f` nats;
# scaled, {glue:text}`maxw_scaled_d128:.2f` and {glue:text}`ent_scaled_d128:.2f` (uniform over 128
# keys would be {glue:text}`log_keys:.2f`). Unscaled, {glue:text}`sat_unscaled_d128:.0%` of the
# queries put more than 99% of their weight on a single key at $d = 128$, and
# {glue:text}`sat_unscaled_d1024:.0%` at $d = 1024$; scaled, none do at any $d$. A saturated softmax
# is nearly one-hot, so its Jacobian $\operatorname{diag}(p) - pp^\top$ is nearly zero and the
# queries and keys behind it stop learning: at $d = 1024$ the median gradient factor is
# {glue:text}`jac_ratio_d1024:,.0f`× smaller without the scale. The last panel also shows that
# "sharper means smaller gradients" is not the whole story: a softmax split between a few keys has a
# *larger* Jacobian than a flat one, so at $d = 4$ the unscaled factor is the bigger one. What the
# scale buys is a regime that does not depend on the head size.
#
# Two caveats make this a precise answer rather than a slogan. First, the argument is about
# initialization: $1/\sqrt d$ is a fixed temperature, and training can grow $W_Q$ and $W_K$ until
# the scores are as sharp as the task needs (or sharper: large models that diverge often show
# exploding attention logits, which is why some normalize $q$ and $k$ before the product, "QK-norm").
# Second, nothing here is about overflow — softmax subtracts the row maximum first (chapter 1) — it
# is about the gradient.
#
# :::{admonition} Interview angle: "why is attention scaled by 1/√d_k?"
# :class: tip
# Because $q \cdot k$ of unit-variance vectors has variance $d_k$: without the scale the scores of a
# 128-dimensional head have standard deviation about 11, the softmax is nearly one-hot at
# initialization for many queries ({glue:text}`sat_unscaled_d128:.0%` above 0.99 here), and for
# those the softmax Jacobian — the factor on every gradient into $Q$ and $K$ — is about zero.
# Dividing by $\sqrt{d_k}$ restores unit variance for any head size. It is a temperature chosen for
# initialization, not a law; the model can learn to sharpen.
# :::
#
# ## 3. Masks: who may look at whom
#
# A mask decides, before the softmax, which keys each query may see. Three cover almost every use:
#
# - **causal** — a decoder predicts token $t+1$ from tokens $\le t$, so query $t$ must not see
#   later keys, or training would leak the answer;
# - **padding** — sequences of different lengths share a batch by padding the short ones; no query
#   may attend to a pad;
# - **sliding window** — each query sees only the last $w$ keys {cite}`beltagy2020longformer`, so
#   cost and KV cache stay bounded however long the text; Mistral 7B uses $w = 4096$
#   {cite}`jiang2023mistral`.
#
# Here they are for eight tokens (dark = may attend), the padding case for a sequence whose last
# three positions are pads:

# %%
T_MASK, WINDOW = 8, 3
pads = torch.zeros(1, T_MASK, dtype=torch.bool)
pads[0, 5:] = True  # five real tokens, three pads
masks = {
    "causal": attention_mask(T_MASK, T_MASK, causal=True),
    f"causal + window {WINDOW}": attention_mask(T_MASK, T_MASK, causal=True, window=WINDOW),
    "padding (encoder)": attention_mask(T_MASK, T_MASK, key_padding=pads)[0, 0],
    "causal + padding": attention_mask(T_MASK, T_MASK, causal=True, key_padding=pads)[0, 0],
}
fig = make_subplots(rows=1, cols=len(masks), subplot_titles=list(masks), horizontal_spacing=0.04)
for col, m in enumerate(masks.values(), start=1):
    fig.add_trace(go.Heatmap(z=m.int().numpy(), colorscale=[[0, "#f4f4f4"], [1, viz.PALETTE[0]]], showscale=False,
                             xgap=1, ygap=1, hovertemplate="query %{y}, key %{x}: %{z}<extra></extra>"), row=1, col=col)
    fig.update_yaxes(range=[T_MASK - 0.5, -0.5], scaleanchor=f"x{col}", constrain="domain", dtick=1, row=1, col=col)
    fig.update_xaxes(title_text="key", range=[-0.5, T_MASK - 0.5], constrain="domain", dtick=1, row=1, col=col)
fig.update_yaxes(title_text="query", row=1, col=1)
fig.update_layout(title="Boolean attention masks, True (dark) = may attend", height=330)
fig

# %% [markdown]
# Each mask must do exactly what it promises, in our attention and in PyTorch's, and the weights it
# produces must give zero to every blocked key and sum to one over the allowed ones. (The padded
# queries in the last panel see nothing but the real tokens; their outputs are thrown away anyway.)

# %%
assert torch.equal(masks["causal"], torch.tril(torch.ones(T_MASK, T_MASK, dtype=torch.bool)))
assert masks[f"causal + window {WINDOW}"].sum(1).tolist() == [min(t + 1, WINDOW) for t in range(T_MASK)]
assert not masks["padding (encoder)"][:, 5:].any() and masks["padding (encoder)"][:, :5].all()
q8, k8, v8 = (torch.randn(1, 2, T_MASK, 16, generator=g, dtype=torch.float64) for _ in range(3))
for name, m in masks.items():
    out, w = scaled_dot_product_attention(q8, k8, v8, mask=m)
    assert (w[..., ~m] == 0).all(), f"{name}: a blocked key got weight"
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q8, k8, v8, attn_mask=m))

# The causal promise, tested on a layer: changing token 5 cannot change any output before it.
layer = MultiHeadAttention(AttentionConfig(d_model=32, n_heads=4))
x = torch.randn(1, T_MASK, 32, generator=g)
x_changed = x.clone()
x_changed[0, 5] += 10.0
before, after = layer(x)[0], layer(x_changed)[0]
assert torch.equal(before[0, :5], after[0, :5]) and not torch.allclose(before[0, 5:], after[0, 5:])
# The padding promise: appending pads leaves the real tokens' outputs unchanged.
padded = torch.cat([x, torch.randn(1, 3, 32, generator=g)], dim=1)
pad_flags = torch.tensor([[False] * T_MASK + [True] * 3])
torch.testing.assert_close(layer(padded, causal=False, key_padding=pad_flags)[0][0, :T_MASK],
                           layer(x, causal=False)[0][0], atol=1e-6, rtol=1e-6)
print("masks: blocked keys get zero weight, rows sum to 1, equal to torch; the future and pads change nothing")

# %% [markdown]
# A sliding window does not blind the model to everything older than $w$ tokens: layer 2 attends to
# layer 1's outputs, which already mixed in the $w - 1$ tokens before them, so after $L$ layers
# information can travel $L(w-1)$ positions. Composing the mask with itself shows the reach directly:

# %%
T_REACH, W_REACH, LAYERS = 64, 4, 6
step = attention_mask(T_REACH, T_REACH, causal=True, window=W_REACH).double()
reach, rows = step.clone(), []
for n_layers in range(1, LAYERS + 1):
    earliest = int(torch.nonzero(reach[-1] > 0)[0])  # the oldest token the last query can be influenced by
    rows.append((n_layers, T_REACH - 1 - earliest))
    reach = (step @ reach).clamp(max=1)
assert [r for _, r in rows] == [n * (W_REACH - 1) for n in range(1, LAYERS + 1)]
glue("reach_layers", LAYERS)
glue("reach_tokens", rows[-1][1])
glue("reach_window", W_REACH)
glue("mistral_reach", 32 * (4096 - 1))  # the same rule for Mistral 7B: 32 layers, window 4096
print(", ".join(f"{n} layers: {r} tokens back" for n, r in rows))

# %% [markdown]
# With a window of {glue:text}`reach_window` and {glue:text}`reach_layers` layers, the last token can
# be influenced by tokens {glue:text}`reach_tokens` positions back. For Mistral 7B (32 layers,
# $w = 4096$) the same rule gives {glue:text}`mistral_reach:,` tokens of reach, while its KV cache
# never holds more than 4096 positions per layer.
#
# ## 4. MHA, GQA, MQA: sharing keys and values
#
# During generation every layer keeps the keys and values of all earlier tokens (the KV cache,
# Part VI), and every new token reads all of them. With $H_{kv}$ key/value heads of size $d$ the
# cache grows by $2 \cdot H_{kv} \cdot d$ numbers per layer per token. **Multi-query attention**
# {cite}`shazeer2019mqa` lets all $H$ query heads share a single key/value head ($H_{kv} = 1$);
# **grouped-query attention** {cite}`ainslie2023gqa` shares each key/value head among a group of
# $H / H_{kv}$ query heads — Llama-2-70B uses 64 query heads on 8 KV heads {cite}`touvron2023llama2`.
# The query side is untouched, so GQA is exactly multi-head attention whose key/value heads are
# copied across each group. That is why Ainslie et al. can turn a trained MHA checkpoint into a GQA
# one: mean-pool the key and value heads of each group, then train briefly ("uptraining"). The
# identity, checked:

# %%
torch.manual_seed(0)
gqa = MultiHeadAttention(AttentionConfig(d_model=64, n_heads=8, n_kv_heads=2))
mha = MultiHeadAttention(AttentionConfig(d_model=64, n_heads=8))
group = 8 // 2
with torch.no_grad():
    for name in ("q_proj", "out_proj"):
        getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
    for name in ("k_proj", "v_proj"):  # KV head j serves query heads j·group .. (j+1)·group − 1
        src, dst = getattr(gqa, name), getattr(mha, name)
        dst.weight.copy_(src.weight.view(2, 8, 64).repeat_interleave(group, 0).reshape(64, 64))
        dst.bias.copy_(src.bias.view(2, 8).repeat_interleave(group, 0).reshape(64))
x = torch.randn(2, 10, 64)
torch.testing.assert_close(gqa(x)[0], mha(x)[0], atol=1e-6, rtol=1e-5)
print(f"GQA (8 query heads, 2 KV heads) = MHA with copied KV heads; KV cache per token per layer: "
      f"{gqa.kv_cache_bytes_per_token()} vs {mha.kv_cache_bytes_per_token()} bytes in fp16")

# %% [markdown]
# Now at real sizes. The layers below are built on PyTorch's `meta` device — shapes without memory —
# so a 70B-sized attention layer costs nothing to count. Bytes are for an fp16/bf16 cache (2 bytes
# per number); the cache column is for a batch of {glue:text}`kv_batch` sequences of
# {glue:text}`kv_context:,` tokens.

# %%
KV_CONTEXT, KV_BATCH = 4096, 8
configs = {  # name: (d_model, query heads, KV heads, layers)
    "7B-class, MHA (Llama-2-7B)": (4096, 32, 32, 32),
    "7B-class, GQA-8 (Llama-3-8B, Mistral-7B)": (4096, 32, 8, 32),
    "7B-class, MQA": (4096, 32, 1, 32),
    "70B-class, MHA (counterfactual)": (8192, 64, 64, 80),
    "70B-class, GQA-8 (Llama-2-70B)": (8192, 64, 8, 80),
}
kv_rows = {}
for name, (d_model, heads, kv_heads, n_layers) in configs.items():
    with torch.device("meta"):
        layer = MultiHeadAttention(AttentionConfig(d_model=d_model, n_heads=heads, n_kv_heads=kv_heads, bias=False))
    per_layer = layer.kv_cache_bytes_per_token(torch.float16)
    kv_rows[name] = dict(heads=heads, kv_heads=kv_heads, params=sum(p.numel() for p in layer.parameters()),
                         per_layer=per_layer, per_token=per_layer * n_layers,
                         cache_gb=per_layer * n_layers * KV_CONTEXT * KV_BATCH / 1e9)
glue("kv_context", KV_CONTEXT)
glue("kv_batch", KV_BATCH)
Markdown("| attention | H / H_kv | attention params per layer | KV bytes per token per layer | KV bytes per token, all layers "
         f"| KV cache, {KV_BATCH} × {KV_CONTEXT:,} tokens |\n|---|---|---|---|---|---|\n" + "\n".join(
             f"| {n} | {r['heads']} / {r['kv_heads']} | {r['params'] / 1e6:.1f} M | {r['per_layer']:,} | "
             f"{r['per_token']:,} | {r['cache_gb']:.1f} GB |" for n, r in kv_rows.items()))

# %%
mha7, gqa7, mqa7 = (kv_rows[n] for n in list(configs)[:3])
mha70, gqa70 = kv_rows["70B-class, MHA (counterfactual)"], kv_rows["70B-class, GQA-8 (Llama-2-70B)"]
d7 = 4096
# The worked example interview notes quote: Llama-3-8B (32 layers, 8 KV heads of 128) at 8,192 tokens, bf16.
llama3_8k = gqa7["per_token"] * 8192
llama3_8k_if_mha = mha7["per_token"] * 8192
glue("mqa_ratio", mha7["per_token"] / mqa7["per_token"])
glue("gqa_ratio_7b", mha7["per_token"] / gqa7["per_token"])
glue("gqa_ratio_70b", mha70["per_token"] / gqa70["per_token"])
glue("kv_token_70b", gqa70["per_token"])
glue("kv_token_7b_mha", mha7["per_token"])
glue("cache_gb_7b_mha", mha7["cache_gb"])
glue("cache_gb_7b_gqa", gqa7["cache_gb"])
glue("llama3_8k_gb", llama3_8k / 1e9)
glue("llama3_8k_mha_gb", llama3_8k_if_mha / 1e9)
glue("gqa_param_frac", gqa7["params"] / mha7["params"])
# The layers' own byte counts against the calculator that the serving chapters use (kvcache.MODELS).
assert gqa7["per_token"] == kvcache.kv_bytes("Llama-3-8B", 1) and mha7["per_token"] == kvcache.kv_bytes("Llama-2-7B", 1)
assert gqa70["per_token"] == kvcache.kv_bytes("Llama-2-70B", 1)
assert mha7["params"] == 4 * d7 * d7 and gqa7["params"] == 2 * d7 * d7 + 2 * d7 * (8 * 128)
assert gqa70["per_token"] == 2 * 80 * 8 * 128 * 2  # 2 (K and V) · layers · KV heads · head size · bytes
assert llama3_8k == 2 ** 30 and llama3_8k_if_mha == 4 * 2 ** 30
assert mha7["cache_gb"] > 6.74 * 2 > gqa7["cache_gb"], "MHA's cache outweighs the 7B fp16 weights here; GQA-8's does not"

# %% [markdown]
# The saving is exactly $H / H_{kv}$: {glue:text}`gqa_ratio_7b:.0f`× for a 7B-class model with 8
# KV heads, {glue:text}`gqa_ratio_70b:.0f`× for Llama-2-70B, and {glue:text}`mqa_ratio:.0f`× for
# MQA on 32 heads — not the "8×" some notes give for MQA. A 7B-class MHA model needs
# {glue:text}`kv_token_7b_mha:,` bytes of cache per token, so a batch of {glue:text}`kv_batch` at
# {glue:text}`kv_context:,` tokens holds
# {glue:text}`cache_gb_7b_mha:.1f` GB of keys and values — more than the 13.5 GB of its fp16
# weights — against {glue:text}`cache_gb_7b_gqa:.1f` GB with GQA-8. The often-quoted
# Llama-3-8B figure checks out: at 8,192 tokens one sequence needs {glue:text}`llama3_8k_gb:.2f`
# GB; the "about 4 GB" also in circulation ({glue:text}`llama3_8k_mha_gb:.2f` GB) is what the MHA
# formula gives when the 32 query heads are used in place of the 8 KV heads. Parameters shrink
# less: the key and value projections shrink, the query and output projections do not, so GQA-8
# keeps {glue:text}`gqa_param_frac:.0%` of an MHA layer's attention weights.

# %%
contexts = np.array([1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072])
fig = go.Figure()
for i, name in enumerate(list(configs)[:3]):
    fig.add_scatter(x=contexts, y=kv_rows[name]["per_token"] * contexts / 1e9, mode="lines+markers", name=name,
                    line=dict(color=viz.PALETTE[i]))
for level, label, dash in ((6.74e9 * 2 / 1e9, "fp16 weights of a 7B model (13.5 GB)", "dot"),
                           (141, "one H200's memory (141 GB)", "dash")):
    fig.add_scatter(x=contexts[[0, -1]], y=[level, level], mode="lines", name=label, line=dict(color="gray", dash=dash))
fig.update_layout(title="KV cache of one sequence, 7B-class model, fp16",
                  xaxis_title="context length (tokens)", yaxis_title="KV cache (GB)", legend=dict(orientation="h", y=-0.25))
fig.update_xaxes(type="log")
fig.update_yaxes(type="log")
fig

# %% [markdown]
# :::{admonition} Interview angle: "what does GQA buy you, and what does it cost?"
# :class: tip
# GQA divides the KV cache — and the memory traffic of every decoding step, which reads the whole
# cache — by $H/H_{kv}$, so a server fits that many times more concurrent tokens; weights and
# FLOPs barely change. The cost is quality: fewer distinct key/value projections. Ainslie et al.
# found GQA-8 close to MHA and clearly better than MQA, which is why GQA with 8 KV heads became the
# default. Quote the formula with bytes and KV heads:
# $2 \cdot L \cdot H_{kv} \cdot d_\text{head} \cdot \text{bytes}$ per token — for Llama-2-70B
# {glue:text}`kv_token_70b:,` bytes.
# :::
#
# ## 5. Positions: RoPE and ALiBi
#
# Attention by itself has no idea of order. Without position information, shuffling the input
# tokens just shuffles the outputs (for a non-causal layer), so "dog bites man" and "man bites dog"
# get the same set of vectors:

# %%
layer = MultiHeadAttention(AttentionConfig(d_model=32, n_heads=4))
x = torch.randn(1, 9, 32, generator=g)
perm = torch.randperm(9, generator=g)
torch.testing.assert_close(layer(x[:, perm], causal=False)[0], layer(x, causal=False)[0][:, perm], atol=1e-6, rtol=1e-5)
print("no positions: permuting the tokens permutes the outputs, nothing more")

# %% [markdown]
# GPT-2 adds a learned vector per position to the token embeddings, which cannot say anything about
# positions beyond the longest one trained. **RoPE** {cite}`su2021roformer` instead rotates each
# query and key: the head dimensions are split into $d/2$ pairs, and pair $i$ of the vector at
# position $m$ is rotated by the angle $m\,\theta_i$ with $\theta_i = \text{base}^{-2i/d}$. A dot
# product of two rotated 2-D vectors depends only on the difference of their angles, so
#
# $$ \langle R_m q, R_n k \rangle = \langle q, R_{n-m} k \rangle : $$
#
# the score depends on the content and on $m - n$, never on $m$ and $n$ separately.

# %%
display(Code(inspect.getsource(apply_rope), language="python"))

# %%
HEAD, T_ROPE, SHIFT = 64, 48, pick(SMOKE, 500, 5000)
cos, sin = rope_cache(HEAD, T_ROPE + SHIFT)
q1, k1 = torch.randn(1, 1, T_ROPE, HEAD, generator=g), torch.randn(1, 1, T_ROPE, HEAD, generator=g)


def rope_scores(offset: int) -> torch.Tensor:
    """(T, T) scores of the rotated q and k when the whole sequence starts at position ``offset``."""
    return (apply_rope(q1, cos, sin, offset) @ apply_rope(k1, cos, sin, offset).transpose(-2, -1))[0, 0]


base_scores, shifted_scores = rope_scores(0), rope_scores(SHIFT)
rope_shift_err = (base_scores - shifted_scores).abs().max().item()
# Same content at every position: the scores of one q and one k form a Toeplitz matrix (constant diagonals).
q_rep, k_rep = q1[:, :, :1].expand_as(q1), k1[:, :, :1].expand_as(k1)
same = (apply_rope(q_rep, cos, sin) @ apply_rope(k_rep, cos, sin).transpose(-2, -1))[0, 0]
toeplitz_err = (same[1:, 1:] - same[:-1, :-1]).abs().max().item()
assert rope_shift_err < 1e-3 * base_scores.abs().max().item(), rope_shift_err
assert toeplitz_err < 1e-4 * same.abs().max().item()
assert not torch.allclose(same[0], same[0, :1].expand(T_ROPE), atol=1e-3), "the score does change with distance"
glue("rope_shift", SHIFT)
glue("rope_shift_err", rope_shift_err)
glue("rope_score_scale", base_scores.abs().max().item())
print(f"all {T_ROPE}×{T_ROPE} scores equal after shifting every position by {SHIFT}: max |diff| {rope_shift_err:.1e}")

# %% [markdown]
# Shifting every position by {glue:text}`rope_shift:,` changes no score by more than
# {glue:text}`rope_shift_err:.0e` (the scores themselves reach {glue:text}`rope_score_scale:.0f`),
# float32 rounding of the angles. Because the rotation acts on $q$ and $k$ before they are cached,
# a KV cache of RoPE keys stays valid as generation moves on.
#
# The frequencies span a huge range. Pair 0 turns by one radian per token (a wavelength of
# $2\pi \approx 6$ tokens); the last pair of a 128-dimensional head at base $10^4$ has a wavelength
# of tens of thousands of tokens. Fast pairs encode "how near", slow pairs "how far".

# %%
D_HEAD, TRAIN_CTX, EXTEND = 128, 4096, 8
pairs = np.arange(D_HEAD // 2)


def wavelengths(base: float = 1e4, interpolation: float = 1.0, ntk: float = 1.0) -> np.ndarray:
    """Tokens per full turn of each RoPE pair, read back from rope_cache's angles at position 1."""
    cos1, sin1 = rope_cache(D_HEAD, 2, base=base, interpolation=interpolation, ntk_factor=ntk)
    return 2 * np.pi / np.arctan2(sin1[1].double().numpy(), cos1[1].double().numpy())


waves = {"base 10⁴ (Llama-2)": wavelengths(), "base 5·10⁵ (Llama-3)": wavelengths(5e5),
         f"position interpolation ×{EXTEND}": wavelengths(interpolation=EXTEND),
         f"NTK-aware ×{EXTEND}": wavelengths(ntk=EXTEND)}
fig = viz.line_figure(pairs, waves, title=f"RoPE wavelength of each pair, head size {D_HEAD}",
                      xaxis_title="pair i (dimensions i and i + d/2)", yaxis_title="wavelength (tokens per turn)",
                      log_y=True)
fig.add_scatter(x=pairs[[0, -1]], y=[TRAIN_CTX, TRAIN_CTX], mode="lines", name=f"trained context {TRAIN_CTX:,}",
                line=dict(color="gray", dash="dot"))
fig

# %%
w0 = waves["base 10⁴ (Llama-2)"]
w_pi, w_ntk = waves[f"position interpolation ×{EXTEND}"], waves[f"NTK-aware ×{EXTEND}"]
slow_pairs = int((w0 > TRAIN_CTX).sum())
glue("rope_longest", w0[-1])
glue("rope_slow_pairs", slow_pairs)
glue("rope_pairs", len(pairs))
glue("rope_train_ctx", TRAIN_CTX)
glue("rope_extend", EXTEND)
expected = 2 * np.pi * 1e4 ** (2 * pairs / D_HEAD)
np.testing.assert_allclose(w0, expected, rtol=1e-3)
np.testing.assert_allclose(w_pi, EXTEND * w0, rtol=1e-3)  # interpolation slows every pair by the factor
assert abs(w_ntk[0] / w0[0] - 1) < 1e-3 and abs(w_ntk[-1] / w0[-1] - EXTEND) < 1e-2  # NTK: fast pairs kept, slowest ×8

# %% [markdown]
# At base $10^4$ and head size 128 the slowest pair needs {glue:text}`rope_longest:,.0f` tokens
# for one turn, so nothing "wraps around" at twice a 4k training length, as one set of notes claims.
# The real obstacle to running past the trained context is different: {glue:text}`rope_slow_pairs`
# of the {glue:text}`rope_pairs` pairs have wavelengths longer than {glue:text}`rope_train_ctx:,`
# tokens, so in training they only ever saw part of a turn, and positions beyond it hand the model
# angles it has never seen. The fixes all shrink the angles back into the trained range:
#
# - **position interpolation** {cite}`chen2023pi` divides every position by the extension factor
#   $s$: position $s\,m$ gets the angles of position $m$, for every pair. Nothing is unseen, but
#   neighbouring tokens become $s$ times harder to tell apart, so it needs a short fine-tune;
# - **NTK-aware scaling** (bloc97, 2023) raises the base to $\text{base} \cdot s^{d/(d-2)}$: the fast pairs (local
#   order) barely move and the slowest is stretched by exactly $s$ — the measured ratios above;
# - **YaRN** {cite}`peng2024yarn` interpolates per frequency band and adjusts the softmax
#   temperature, and long-context models simply train with a larger base (Llama 3: $5 \cdot 10^5$).
#
# **ALiBi** {cite}`press2022alibi` drops position vectors altogether and subtracts from each score a
# penalty proportional to the distance, $m_h \cdot |i - j|$, with a different slope $m_h$ per head:
# $1/2, 1/4, \ldots, 1/256$ for 8 heads. Steep heads look locally; shallow heads see far. Like
# RoPE's, the bias depends only on $i - j$:

# %%
H_ALIBI, T_ALIBI = 8, 32
slopes = alibi_slopes(H_ALIBI)
bias = alibi_bias(H_ALIBI, T_ALIBI, T_ALIBI)  # (H, T, T)
assert torch.allclose(slopes[1:] / slopes[:-1], torch.full((H_ALIBI - 1,), 0.5)) and slopes[0] == 0.5
torch.testing.assert_close(bias[:, 1:, 1:], bias[:, :-1, :-1])  # depends on i − j only
distance = np.arange(T_ALIBI)
fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
    "bias −m·distance per head", "attention of the last query, equal content scores"))
for h in range(H_ALIBI):
    color = viz.PALETTE[h % len(viz.PALETTE)]
    fig.add_scatter(x=distance, y=bias[h, -1].flip(0).numpy(), mode="lines", name=f"head {h}: m = 1/{2 ** (h + 1)}",
                    legendgroup=str(h), line=dict(color=color), row=1, col=1)
    weights_last = torch.softmax(bias[h, -1], 0).flip(0)  # all content scores equal: ALiBi alone decides
    fig.add_scatter(x=distance, y=weights_last.numpy(), mode="lines", showlegend=False, legendgroup=str(h),
                    line=dict(color=color), row=1, col=2)
fig.update_xaxes(title_text="distance i − j (tokens back)")
fig.update_layout(title=f"ALiBi with {H_ALIBI} heads", height=420)
fig

# %%
steep = torch.softmax(bias[0, -1], 0)
shallow = torch.softmax(bias[-1, -1], 0)
glue("alibi_steep_local", steep[-8:].sum().item())
glue("alibi_shallow_local", shallow[-8:].sum().item())
assert steep[-8:].sum() > 0.95 and shallow[-8:].sum() < 0.5, "the steepest head is local, the shallowest looks far"

# %% [markdown]
# With equal content scores, the steepest head puts {glue:text}`alibi_steep_local:.1%` of its weight
# on the last 8 tokens and the shallowest {glue:text}`alibi_shallow_local:.0%`. Because the penalty
# keeps growing with distance, a query beyond the trained length sees the far tokens fade out
# rather than meet unseen positions, which is why ALiBi extrapolates; RoPE with a large base and
# a little long-context training won in practice.
#
# :::{admonition} Interview angle: "how would you take a 4k model to 32k?"
# :class: tip
# Say why it fails first: RoPE pairs whose wavelength exceeds 4k never completed a turn in training,
# so beyond 4k the model meets unseen angles (with learned absolute positions there is simply no
# embedding). Then the fixes, cheapest first: position interpolation (divide positions by 8) or
# NTK/YaRN base scaling, plus a short fine-tune on long documents; raise the base if you pretrain
# yourself. Then the bill: the KV cache grows linearly — 8× more per sequence — and prefill
# attention quadratically, so budget memory with the GQA formula and use a fused attention kernel.
# :::
#
# ## 6. Inside the book's model: attention maps
#
# Random vectors only go so far. The book's MiniGPT was trained from a seed on the Python
# documentation and standard-library source by `companion.lm` (the next chapter trains it step by
# step); here it is loaded from the cache, or trained the first time. It is tiny —
# {glue:text}`model_params:,` parameters, {glue:text}`model_layers` layers of
# {glue:text}`model_heads` heads, a context of {glue:text}`model_block` tokens, a validation loss of
# {glue:text}`model_val_loss:.2f` nats per token — but training has already shaped its heads. We
# feed it a sentence from the Python docs and look at every head of every layer.

# %%
book = lm.pretrained(SMOKE)
model, tok = book.model, book.tokenizer
cfg = model.cfg
glue("model_params", model.n_params())
glue("model_layers", cfg.n_layer)
glue("model_heads", cfg.n_head)
glue("model_block", cfg.block_size)
glue("model_val_loss", book.history.val_loss[-1])
print(f"MiniGPT: {model.n_params():,} parameters, {cfg.n_layer} layers × {cfg.n_head} heads, "
      f"d_model {cfg.n_embd}, context {cfg.block_size}, vocabulary {cfg.vocab_size}; "
      f"validation loss {book.history.val_loss[-1]:.2f} nats/token")

# %%
SENTENCE = 'This method sorts the list in place, using only "<" comparisons between items.'
assert SENTENCE in " ".join(python_docs().split()), "the sentence is quoted from the Python documentation (list.sort)"
ids = book.encode(SENTENCE)
labels = [viz.visible_whitespace(tok.decode([i])) for i in ids[0].tolist()]
with torch.no_grad():
    _, maps = model(ids, return_attention=True)
sentence_maps = torch.stack(maps, 1)[0]  # (L, H, T, T)
n_tok = ids.shape[1]
above = torch.triu(torch.ones(n_tok, n_tok, dtype=torch.bool), 1)
assert (sentence_maps[..., above] == 0).all(), "causal: no weight on later tokens"
torch.testing.assert_close(sentence_maps.sum(-1), torch.ones(cfg.n_layer, cfg.n_head, n_tok))
sentence_prev = attention.offset_score(sentence_maps, 1)  # (L, H)
best_layer, best_head = divmod(int(sentence_prev.argmax()), cfg.n_head)
glue("sentence_tokens", n_tok)
print(f"{n_tok} tokens: {' '.join(labels)}")

# %% [markdown]
# The sentence is {glue:text}`sentence_tokens` tokens long. Move the slider through all
# {glue:text}`model_layers` × {glue:text}`model_heads` heads (it opens on the head that looks most
# at the previous token); hover a cell to see which token attends to which. Every map is lower
# triangular — the causal mask — and every row sums to one, both asserted above.

# %%
viz.attention_heatmap(sentence_maps.numpy(), labels, active=best_layer * cfg.n_head + best_head,
                      title=f"MiniGPT attention on a sentence from the Python docs ({n_tok} tokens)")

# %% [markdown]
# In a live notebook, the widget below does the same with any text you type (the callback,
# `widgets.attention_figure`, is a plain function the tests call):

# %% tags=["remove-output"]
widgets.attention_widget(model, tok, SENTENCE, layer=best_layer, head=best_head)

# %% [markdown]
# ## 7. What the heads do, measured
#
# Looking at maps one by one does not scale; two numbers per head summarize them. The **entropy**
# of a query's weights is 0 when it looks at a single token and $\log n$ when it spreads evenly
# over $n$; the **previous-token score** is the mean weight a query puts on the token just before
# it. A head that has learned nothing spreads its weight evenly over the allowed keys, and its
# scores are the uniform baseline. We average over validation windows the model never trained on,
# and compare with the same architecture freshly initialized.

# %%
N_WINDOWS = pick(SMOKE, 16, 64)
T_WIN = cfg.block_size
windows = book.data.val_windows(T_WIN, N_WINDOWS * T_WIN)[0][:N_WINDOWS]  # (N, T)
torch.manual_seed(1)
untrained = MiniGPT(cfg).eval()


def head_scores(net: MiniGPT) -> dict[str, torch.Tensor]:
    """Entropy and previous-token score per (layer, head), averaged over the validation windows."""
    with torch.no_grad():
        _, maps = net(windows, return_attention=True)
    w = torch.stack(maps, 1)  # (N, L, H, T, T)
    return {"entropy in nats": attention.attention_entropy(w).mean(0),
            "previous-token score": attention.offset_score(w, 1).mean(0)}


trained_scores, untrained_scores = head_scores(model), head_scores(untrained)
uniform = attention.uniform_causal_weights(T_WIN)
baseline = {"entropy in nats": attention.attention_entropy(uniform).item(),
            "previous-token score": attention.offset_score(uniform, 1).item()}
viz.layer_head_figure({k: v.numpy() for k, v in trained_scores.items()}, reference=baseline,
                      title=f"Trained MiniGPT, {N_WINDOWS} validation windows of {T_WIN} tokens")

# %%
ent, prev = trained_scores["entropy in nats"], trained_scores["previous-token score"]
ent0 = untrained_scores["entropy in nats"]
top = divmod(int(prev.argmax()), cfg.n_head)
glue("n_windows", N_WINDOWS)
glue("window_tokens", T_WIN)
glue("uniform_entropy", baseline["entropy in nats"])
glue("uniform_prev", baseline["previous-token score"])
glue("untrained_entropy_min", ent0.min().item())
glue("untrained_entropy_max", ent0.max().item())
glue("trained_entropy_min", ent.min().item())
glue("trained_entropy_mean", ent.mean().item())
glue("prev_best", prev.max().item())
glue("prev_best_ratio", prev.max().item() / baseline["previous-token score"])
glue("prev_best_layer", top[0])
glue("prev_best_head", top[1])
glue("prev_best_entropy", ent[top].item())
glue("prev_untrained_max", untrained_scores["previous-token score"].max().item())
assert (ent0 - baseline["entropy in nats"]).abs().max() < 0.05, "an untrained model attends almost uniformly"
assert ent.mean() < ent0.mean() - 0.05, "training makes attention sharper on average"
assert ent.min() < ent0.min() - 0.1, "at least one head focuses"
if not SMOKE:  # the tiny SMOKE model trains for seconds; the full model grows a previous-token head
    assert prev.max() > 2 * baseline["previous-token score"], "a head prefers the previous token"
    assert ent[top] < baseline["entropy in nats"] - 0.5, "the previous-token head is also a focused one"

# %% [markdown]
# An untrained model's heads all sit within a hair of the uniform entropy
# ({glue:text}`untrained_entropy_min:.3f`–{glue:text}`untrained_entropy_max:.3f` nats against
# {glue:text}`uniform_entropy:.3f` for spreading evenly over a causal window of
# {glue:text}`window_tokens` tokens): the "uniform attention means the model has not learned"
# rule is right about the starting point. After training the mean head entropy is
# {glue:text}`trained_entropy_mean:.2f` nats and the most focused head reaches
# {glue:text}`trained_entropy_min:.2f`. The strongest previous-token head is layer
# {glue:text}`prev_best_layer`, head {glue:text}`prev_best_head`, which puts
# {glue:text}`prev_best:.2f` of each query's weight on the token just before it —
# {glue:text}`prev_best_ratio:.1f`× the uniform {glue:text}`uniform_prev:.3f` — with an entropy of
# {glue:text}`prev_best_entropy:.2f` nats. These are soft heads — the book's model is small and
# trained for minutes, so no head is close to one-hot — but what to look for is the same in any
# model. Previous-token heads are among the first structures a language model learns; in larger
# models they feed **induction heads**, which find an earlier occurrence of the current token and
# copy what followed it {cite}`olsson2022induction`, and attention to the first token grows into
# an "attention sink" where heads with nothing to do park their weight. Both are measured the same
# way: a score per head, set against the uniform baseline.
#
# :::{admonition} Interview angle: "how would you find out what a head does?"
# :class: tip
# Measure, then look: entropy per head separates focused heads from broad ones; a score against a
# hypothesis (weight on $t-1$, on the first token, on an earlier copy of the current token) finds
# the heads that implement it, compared against the uniform baseline; then ablate the head — zero it
# and watch the loss — to see whether the model relies on it. Attention maps alone show where a
# head looks, not what it passes on.
# :::
#
# ## 8. Claims you will hear, measured
#
# The table is generated from the measurements above.

# %%
claims = [
    ("Var(q·k) = d_k for unit-variance q, k; std 8 at d = 64",
     f"Var/d between {ratio.min():.2f} and {ratio.max():.2f} for d = 4…1024; std {math.sqrt(variance[at[64]]):.1f} at d = 64",
     "holds"),
    ("Without 1/√d_k the softmax saturates and gradients vanish",
     f"d = 128: {unscaled[at[128]]['saturated']:.0%} of queries saturated (> 0.99 on one key) unscaled, 0% scaled; "
     f"d = 1024: median softmax Jacobian {scaled[at[1024]]['Jacobian norm'] / unscaled[at[1024]]['Jacobian norm']:,.0f}× "
     "smaller unscaled", "holds at initialization, growing with d"),
    ("MQA gives an 8× KV-cache reduction",
     f"{mha7['per_token'] / mqa7['per_token']:.0f}× for 32 heads: the reduction is the number of query heads",
     "wrong: it is H (32–64× in practice)"),
    ("GQA halves the KV cache / GQA gives 8–16×",
     f"{mha7['per_token'] / gqa7['per_token']:.0f}× for 32 query heads on 8 KV heads, "
     f"{mha70['per_token'] / gqa70['per_token']:.0f}× for Llama-2-70B",
     "neither: it is H / H_kv"),
    ("KV cache of Llama-3-8B at 8k tokens: ~4 GB",
     f"{llama3_8k / 1e9:.2f} GB with its 8 KV heads; {llama3_8k_if_mha / 1e9:.2f} GB only with 32 (MHA)",
     f"wrong for Llama-3-8B: {llama3_8k / 1e9:.2f} GB"),
    ("RoPE scores depend only on m − n",
     f"shift of {SHIFT:,} positions changes scores by ≤ {rope_shift_err:.0e}", "holds"),
    ("RoPE aliases (wraps) at 2× the training length",
     f"slowest wavelength {w0[-1]:,.0f} tokens at base 10⁴; {slow_pairs} of {len(pairs)} pairs never complete a turn in 4k",
     "wrong: the problem is unseen angles"),
    ("Uniform attention (entropy log n) means the model has not learned",
     f"untrained heads within {(ent0 - baseline['entropy in nats']).abs().max():.3f} nats of uniform; "
     f"trained heads down to {ent.min():.2f} vs {baseline['entropy in nats']:.2f}",
     "holds as a diagnostic; broad heads can be useful too"),
]
Markdown("| claim | measured | verdict |\n|---|---|---|\n" + "\n".join(f"| {c} | {m} | {v} |" for c, m, v in claims))

# %% [markdown]
# ## 9. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** How many bytes of KV cache does Llama-2-70B (80 layers, 8 KV heads of size 128) need per
# token in bf16?

# %%
answer_1 = ...
check(answer_1, kv_rows["70B-class, GQA-8 (Llama-2-70B)"]["per_token"])

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $2 \cdot 80 \cdot 8 \cdot 128 \cdot 2 = 327{,}680$ bytes, about 0.33 MB per token: 4,096 tokens
# cost 1.3 GB per sequence. With 64 KV heads (MHA) it would be 8× that.
# :::
#
# **2.** Unit-variance $q, k$ of size 256, no scaling: what is the variance of $q \cdot k$?

# %%
answer_2 = ...
qs, ks = torch.randn(50_000, 256, generator=g), torch.randn(50_000, 256, generator=g)
check(answer_2, (qs * ks).sum(-1).var().item(), rel_tol=0.05)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# 256: a sum of 256 independent products, each of variance 1. Dividing the scores by $\sqrt{256} = 16$
# brings them back to variance 1.
# :::
#
# **3.** With RoPE, the score between a query at position 10 and a key at position 3 equals the
# score between the same vectors at which key position, if the query sits at position 1,000?

# %%
answer_3 = ...
cos_c, sin_c = rope_cache(16, 1100)
qc, kc = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)
score_at = lambda m, n: (apply_rope(qc, cos_c, sin_c, m) * apply_rope(kc, cos_c, sin_c, n)).sum().item()  # noqa: E731
key_pos = min(range(1000), key=lambda n: abs(score_at(1000, n) - score_at(10, 3)))
check(answer_3, key_pos)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# 993: only $m - n = 7$ matters. (The cell finds it by searching all 1,000 key positions for the
# same score.)
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(2 * 80 * 8 * 128 * 2, kv_rows["70B-class, GQA-8 (Llama-2-70B)"]["per_token"])
assert check(256, (qs * ks).sum(-1).var().item(), rel_tol=0.05)
assert check(993, key_pos)

# %% [markdown]
# ## Summary
#
# - Attention is three lines — scores, softmax, weighted sum — plus masks, a bias and shared KV
#   heads; ours matches `F.scaled_dot_product_attention` and `nn.MultiheadAttention`.
# - $q \cdot k$ has variance $d_k$; dividing by $\sqrt{d_k}$ keeps the softmax away from one-hot
#   at initialization, where a saturated softmax would stop the gradient.
# - Causal, padding and sliding-window masks are boolean matrices; the window bounds the KV cache,
#   while stacked layers still reach $L(w-1)$ tokens back.
# - GQA and MQA divide the KV cache by $H/H_{kv}$ exactly; the cache per token is
#   $2 \cdot L \cdot H_{kv} \cdot d_\text{head} \cdot$ bytes, and at long context it outweighs the model.
# - RoPE makes scores a function of $m - n$; context extension shrinks angles back into the trained
#   range (interpolation, NTK, YaRN, a larger base); ALiBi penalizes distance linearly per head.
# - A trained model's heads specialize: entropy drops below the uniform baseline, and a
#   previous-token head appears; measure heads against that baseline rather than eyeballing maps.

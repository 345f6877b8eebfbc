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
# # Quantization: fewer bits per weight, and where the error goes
#
# A 70-billion-parameter model in fp16 is 140 GB of weights — two 80 GB GPUs before a single token
# of KV cache — and generating one token reads every one of those bytes from memory. Quantization
# stores the weights (and sometimes the activations) in 8, 4 or fewer bits, so the model fits on
# fewer GPUs and each decode step moves fewer bytes. It is how almost every open model is served
# and fine-tuned on modest hardware: int8 and int4 checkpoints (GPTQ, AWQ), llama.cpp's k-quants,
# QLoRA's NF4. Interviews probe it from both ends — "how much memory does a 70B model need in
# int4", "why is per-channel better than per-tensor", "what is NF4", "why is activation
# quantization harder than weight quantization", "does int4 make decoding faster" — and the answers
# are all measurable. This chapter quantizes the book's trained MiniGPT every way that matters and
# measures what each scheme costs in error, in perplexity, in bytes and in time.
#
# **You will learn**
# - why decode speed follows weight bytes, and the memory calculator (70B in fp16, int8, int4, NF4);
# - symmetric and affine quantization per tensor, per channel and per group, on a real weight
#   matrix with its grids drawn over it, checked against PyTorch's own quantizer;
# - NF4 and double quantization, computed from the normal quantiles and checked against QLoRA's table;
# - how weight error falls with every bit, and where the model's perplexity falls off a cliff;
# - why a few outlier features break per-tensor int8 activations, and how LLM.int8() and
#   SmoothQuant repair it;
# - what quantized weights do to tokens per second on a CPU — and why a GPU kernel is different;
# - which quantization numbers in circulating interview notes hold, measured or computed.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/64_quantization.ipynb)
# · Runtime budget on 2 CPU cores, once the book's model is cached: under 30 s with `SMOKE=True`,
# about 3 minutes in full mode (training the small model the first time adds about a minute, the
# full one a few).

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

SMOKE = smoke_default()  # True: the tiny book model and small benchmarks (≤ 30 s on 2 cores); False: the full chapter

# %%
import inspect
import math
import statistics
import time
import warnings

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import Code, Markdown, display
from plotly.subplots import make_subplots
from torch import nn
from tqdm.auto import tqdm

from companion import lm, quant, viz
from companion.batchsim import GPUS, N_PARAMS
from companion.book import check, glue
from companion.config import pick, seed_everything

seed_everything(0)
torch.set_num_threads(1)  # every timing below runs on one core: steadier on a shared machine
torch.set_grad_enabled(False)
pre = lm.pretrained(SMOKE)  # the book's MiniGPT: loaded from the cache, or trained from its seed once
model = pre.model
BLOCK = model.cfg.block_size
EVAL_TOKENS = pick(SMOKE, 4096, 32768)


def perplexity(m: nn.Module) -> float:
    """Validation perplexity: exp of the mean next-token loss over the same EVAL_TOKENS held-out tokens."""
    return math.exp(lm.evaluate(m, pre.data, BLOCK, EVAL_TOKENS))


linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name != "lm_head"}
ppl_fp32 = perplexity(model)
glue("n_params", model.n_params())
glue("n_linear_params", sum(m.weight.numel() for m in linears.values()))
glue("n_layers_quant", len(linears))
glue("ppl_fp32", ppl_fp32)
glue("eval_tokens", EVAL_TOKENS)
print(f"SMOKE={SMOKE}: MiniGPT with {model.n_params():,} parameters, {len(linears)} linear layers; "
      f"validation perplexity {ppl_fp32:.2f} over {EVAL_TOKENS:,} tokens")

# %% [markdown]
# The model is the book's MiniGPT ({glue:text}`n_params:,` parameters, of which
# {glue:text}`n_linear_params:,` sit in the {glue:text}`n_layers_quant` linear layers of its blocks
# — the ones we quantize), trained on the Python documentation and standard-library source. Its
# validation perplexity is {glue:text}`ppl_fp32:.2f` over {glue:text}`eval_tokens:,` held-out
# tokens; every perplexity below is measured on exactly those tokens, so differences between
# schemes are paired comparisons.
#
# ## 1. Why quantize: memory, and the bytes every token reads
#
# Decoding one token at batch size 1 multiplies one activation vector by every weight matrix of the
# model: each weight is read from memory once and used for one multiply-add. That is an
# arithmetic intensity of about 1 FLOP per byte in fp16, far below what a GPU needs to keep its
# arithmetic busy (hundreds), so the step time is set by **bytes of weights ÷ memory bandwidth**.
# Halve the bytes and, if the kernel reads the small format directly, the ceiling on tokens per
# second doubles. Memory is the other half of the story: the weights must fit, with room left for
# the KV cache. The calculator is one line, parameters × bits ÷ 8:

# %%
Code(inspect.getsource(quant.model_memory_gb), language="python")

# %%
formats = ["fp32", "fp16", "int8", "int4", "int4-g128", "nf4", "nf4-dq"]
sizes = {"7B": 7e9, "13B": 13e9, "70B": 70e9}
table = {size: {fmt: quant.model_memory_gb(n, fmt) for fmt in formats} for size, n in sizes.items()}
for fmt in formats:
    glue(f"gb70_{fmt.replace('-', '_')}", table["70B"][fmt])
    glue(f"bits_{fmt.replace('-', '_')}", quant.FORMAT_BITS[fmt])
h100_bw = GPUS["H100-SXM"][1]
ceiling = {fmt: h100_bw / (70e9 * quant.FORMAT_BITS[fmt] / 8) for fmt in ("fp16", "int8", "int4-g128")}
glue("h100_tb_s", h100_bw / 1e12)
glue("tok_s_70b_fp16", ceiling["fp16"])
glue("tok_s_70b_int4", ceiling["int4-g128"])
glue("int4_over_fp16_bytes", quant.FORMAT_BITS["fp16"] / quant.FORMAT_BITS["int4-g128"])
assert table["70B"]["fp16"] == 140.0 and table["70B"]["int8"] == 70.0 and table["70B"]["int4"] == 35.0
assert table["70B"]["nf4-dq"] < table["70B"]["nf4"] < 80 / 2
Markdown("| model | " + " | ".join(f"{f} ({quant.FORMAT_BITS[f]:.3g} bits)" for f in formats) + " |\n|---"
         + "|---" * len(formats) + "|\n" + "\n".join(
             f"| {size} | " + " | ".join(f"{gb:.1f} GB" for gb in row.values()) + " |" for size, row in table.items()))

# %% [markdown]
# A 70B model is {glue:text}`gb70_fp16:.0f` GB in fp16, {glue:text}`gb70_int8:.0f` GB in int8 and
# {glue:text}`gb70_int4:.0f` GB in bare int4. Real 4-bit formats carry scales: group-wise int4 with
# an fp16 scale per 128 weights costs {glue:text}`bits_int4_g128:.3f` bits per weight
# ({glue:text}`gb70_int4_g128:.1f` GB), NF4 with an fp32 scale per 64 weights
# {glue:text}`bits_nf4:.1f` bits ({glue:text}`gb70_nf4:.1f` GB), and NF4 with double-quantized
# scales {glue:text}`bits_nf4_dq:.3f` bits ({glue:text}`gb70_nf4_dq:.1f` GB) — all on one 80 GB GPU.
# On an H100 ({glue:text}`h100_tb_s:.2f` TB/s of HBM, datasheet), reading the weights once per
# token caps batch-1 decoding of the 70B model at {glue:text}`tok_s_70b_fp16:.0f` tokens/s in fp16
# and {glue:text}`tok_s_70b_int4:.0f` in group-wise int4: {glue:text}`int4_over_fp16_bytes:.1f`×
# fewer bytes, the most a weight-only int4 kernel can gain.
#
# ## 2. The schemes, on a real weight matrix
#
# Uniform quantization maps a float to the nearest of $2^b$ evenly spaced levels:
#
# - **symmetric (absmax)**: $s = \max|x| / (2^{b-1}-1)$, $q = \mathrm{round}(x/s)$, $\hat x = q s$;
#   zero is exact and int8 codes span ±127;
# - **affine (asymmetric)**: $s = (\max x - \min x)/(2^b - 1)$ and a zero point $z$,
#   $q = \mathrm{round}(x/s + z)$, $\hat x = (q - z)s$ — all $2^b$ levels cover the actual range,
#   which pays off when the data is not centred on zero (post-ReLU/GELU activations).
#
# Round-to-nearest leaves every value within $s/2$ of where it started, so the whole design space
# is about making $s$ small where the values are: one scale for the tensor (**per tensor**), one
# per output row (**per channel**), or one per run of $g$ consecutive inputs (**group-wise**,
# $g$ = 128 in most GPTQ and AWQ checkpoints). Here are the primitives:

# %%
Code("\n".join(inspect.getsource(f) for f in (quant.absmax_scale, quant.quantize, quant.dequantize)), language="python")

# %% [markdown]
# PyTorch ships a quantizer of its own (`torch.quantize_per_tensor` / `torch.quantize_per_channel`,
# used by its int8 CPU kernels). Given the same scale and zero point, ours must produce the same
# integer codes and the same dequantized values — on every linear weight of the model:

# %%
agree = 0
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # PyTorch deprecates these tensor types in favour of torchao
    for name, lin in linears.items():
        w = lin.weight
        s = quant.absmax_scale(w)
        q, _ = quant.quantize(w, s)
        ref = torch.quantize_per_tensor(w, float(s), 0, torch.qint8)
        assert torch.equal(ref.int_repr(), q) and torch.equal(ref.dequantize(), quant.dequantize(q, s)), name
        qt = quant.quantize_tensor(w, 8, axis=0)
        ref = torch.quantize_per_channel(w, qt.scale.flatten().double(), torch.zeros(len(w), dtype=torch.long), 0,
                                         torch.qint8)
        assert torch.equal(ref.int_repr(), qt.codes) and torch.equal(ref.dequantize(), qt.dequantize()), name
        s, z = quant.affine_params(w, dim=1, round_zero_point=True)
        q, _ = quant.quantize(w, s, zero_point=z)
        ref = torch.quantize_per_channel(w, s.flatten().double(), z.flatten().long(), 0, torch.qint8)
        assert torch.equal(ref.int_repr(), q), name
        agree += 3
glue("torch_agree", agree)
print(f"{agree} quantizations (per tensor, per channel, affine per channel) of {len(linears)} weight matrices: "
      "codes identical to torch's")

# %% [markdown]
# All {glue:text}`torch_agree` quantizations agree code for code. Now look at what the grids do to a
# real matrix. The figure shows the values of one MLP weight matrix of the model, with the levels
# each scheme can represent drawn over them at a single per-tensor scale: int8's 255 levels, int4's
# 15 symmetric levels, and NF4's 16 levels (section 3). The buttons switch grids; the title gives how
# evenly each grid's codes are used, in bits of information per code (the maximum is the bit width).

# %%
w_show = model.blocks[-1].mlp.fc.weight.detach()
absmax = w_show.abs().max().item()


def code_entropy(codes: torch.Tensor) -> float:
    """Bits of information per code: the entropy of how often each code is used."""
    counts = torch.unique(codes, return_counts=True)[1].double()
    p = counts / counts.sum()
    return float(-(p * p.log2()).sum())


grids = {
    "int8": (torch.arange(-127, 128) * absmax / 127, quant.quantize_tensor(w_show, 8).codes),
    "int4": (torch.arange(-7, 8) * absmax / 7, quant.quantize_tensor(w_show, 4).codes),
    "NF4": (quant.NF4 * absmax, quant.nearest_level(w_show / absmax, quant.NF4)),
}
entropy = {name: code_entropy(codes) for name, (_, codes) in grids.items()}
fig = go.Figure(go.Histogram(x=w_show.flatten().numpy(), nbinsx=240, name="weights", marker_color="#9ecae1"))
height = np.histogram(w_show.numpy(), bins=240)[0].max()
for i, (name, (levels, _)) in enumerate(grids.items()):
    xs = np.repeat(levels.numpy(), 3)
    ys = np.tile([0, height * 1.05, np.nan], len(levels))
    xs[2::3] = np.nan
    fig.add_scatter(x=xs, y=ys, mode="lines", name=f"{name} levels", visible=i == 1,
                    line=dict(color=viz.PALETTE[1] if name != "NF4" else viz.PALETTE[2], width=1 if name == "int8" else 2))
buttons = [dict(label=name, method="update",
                args=[{"visible": [True] + [j == i for j in range(len(grids))]},
                      {"title": f"{name} grid over {tuple(w_show.shape)} weights: {entropy[name]:.2f} bits of information per code"}])
           for i, name in enumerate(grids)]
fig.update_layout(updatemenus=[dict(type="buttons", direction="right", buttons=buttons, active=1, x=0.0, y=1.15,
                                    xanchor="left")],
                  title=f"int4 grid over {tuple(w_show.shape)} weights: {entropy['int4']:.2f} bits of information per code",
                  xaxis_title="weight value", yaxis_title="count", height=430, showlegend=False, margin=dict(t=90))
fig

# %%
glue("entropy_int8", entropy["int8"])
glue("entropy_int4", entropy["int4"])
glue("entropy_nf4", entropy["NF4"])
kurtosis = float(((w_show - w_show.mean()) ** 4).mean() / w_show.var() ** 2)
glue("w_kurtosis", kurtosis)
glue("w_absmax_sigma", absmax / w_show.std().item())
assert entropy["NF4"] > entropy["int4"], "quantile levels sit where the weights are"
assert kurtosis > 3, "heavier tails than a normal distribution"
assert entropy["int8"] < 8 and entropy["int4"] < 4

# %% [markdown]
# The weights are bell-shaped with heavier tails than a normal distribution (kurtosis
# {glue:text}`w_kurtosis:.1f`, against 3 for a normal), and the largest is
# {glue:text}`w_absmax_sigma:.1f` standard deviations out. A uniform grid stretched to that
# largest value wastes most of its levels on the sparse tails: int4's codes carry only
# {glue:text}`entropy_int4:.2f` of their 4 bits (int8's {glue:text}`entropy_int8:.2f` of 8), while
# NF4's levels, dense near zero, carry {glue:text}`entropy_nf4:.2f`.
#
# ### Per tensor, per channel, per group
#
# One outlier sets the scale for everything that shares it. The finer the granularity, the fewer
# values share a scale — and the more scales there are to store. The relative error
# $\lVert W - \hat W\rVert^2 / \lVert W \rVert^2$ of int4 over all of the model's linear weights, and
# what each choice costs in bits per weight (fp32 scales as stored here):

# %%
def weight_error(quantize_fn) -> float:
    """Relative squared error summed over all linear weights: Σ‖W − Ŵ‖² / Σ‖W‖²."""
    num = sum(float(((m.weight - quantize_fn(m.weight)) ** 2).sum()) for m in linears.values())
    return num / sum(float((m.weight ** 2).sum()) for m in linears.values())


def stored_bits(make) -> float:
    qs = [make(m.weight) for m in linears.values()]
    return 8 * sum(q.nbytes() for q in qs) / sum(m.weight.numel() for m in linears.values())


granularities = {
    "per tensor": dict(),
    "per channel": dict(axis=0),
    "group 128": dict(group_size=128),
    "group 32": dict(group_size=32),
    "group 128, affine": dict(group_size=128, symmetric=False),
}
gran_rows = {name: (weight_error(lambda w, o=opts: quant.fake_quantize(w, 4, **o)),
                    stored_bits(lambda w, o=opts: quant.quantize_tensor(w, 4, **o)))
             for name, opts in granularities.items()}
gran_rows["NF4, block 64"] = (weight_error(lambda w: quant.quantize_nf4(w).dequantize()),
                              stored_bits(lambda w: quant.quantize_nf4(w)))
gran_rows["NF4 + double quant"] = (weight_error(lambda w: quant.quantize_nf4(w, double_quant=True).dequantize()),
                                   stored_bits(lambda w: quant.quantize_nf4(w, double_quant=True)))
for name, (err, bits) in gran_rows.items():
    key = name.replace(" ", "_").replace(",", "").replace("+", "").replace("__", "_").lower()
    glue(f"err4_{key}", err)
    glue(f"bits4_{key}", bits)
row_absmax = torch.cat([m.weight.abs().amax(1) for m in linears.values()])
glue("row_absmax_spread", (row_absmax.max() / row_absmax.median()).item())
e = {k: v[0] for k, v in gran_rows.items()}
assert e["per channel"] < e["per tensor"] and e["group 32"] < e["group 128"] <= e["per channel"] * 1.001
assert e["group 128, affine"] < e["group 128"] and e["NF4, block 64"] < e["group 128"]
Markdown("| int4 scheme | relative error ‖W−Ŵ‖²/‖W‖² | bits per weight stored |\n|---|---|---|\n" + "\n".join(
    f"| {name} | {err:.2e} | {bits:.3f} |" for name, (err, bits) in gran_rows.items()))

# %% [markdown]
# Per channel cuts the error to {glue:text}`err4_per_channel:.2e` from {glue:text}`err4_per_tensor:.2e`
# per tensor, because output rows differ in range (the largest row maximum is
# {glue:text}`row_absmax_spread:.1f`× the median one). Groups of 32 go further
# ({glue:text}`err4_group_32:.2e`) at {glue:text}`bits4_group_32:.2f` bits per weight with fp32
# scales — which is why checkpoints store scales in fp16 and settle on groups of 128. An affine
# grid uses all 16 codes instead of 15 and fits each group's own range
# ({glue:text}`err4_group_128_affine:.2e`). NF4 with blocks of 64 reaches
# {glue:text}`err4_nf4_block_64:.2e`; double quantization costs almost nothing in error
# ({glue:text}`err4_nf4_double_quant:.2e`) and brings storage from {glue:text}`bits4_nf4_block_64:.2f`
# to {glue:text}`bits4_nf4_double_quant:.2f` bits. (The book model's rows have 192 or 768 inputs, so
# a group of 128 leaves a ragged group of 64 in the 192-wide rows; it gets a scale of its own.)
#
# ## 3. NF4 and double quantization
#
# QLoRA's NormalFloat {cite}`dettmers2023qlora` assumes each block of 64 weights, divided by its
# absmax, is roughly normal, and puts the 16 levels at quantiles of $\mathcal{N}(0, 1)$ so that each
# level would be used equally often: 8 quantiles for the positive half and 7 for the negative half,
# so that 0 is a level, normalized to $[-1, 1]$. The outermost probability stops at
# $1 - \tfrac12(\tfrac1{32} + \tfrac1{30})$, because the quantile at 1 is infinite:

# %%
Code(inspect.getsource(quant.nf4_levels), language="python")

# %%
NF4_PUBLISHED = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                 -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0]  # Dettmers et al. (2023), Appendix E; bitsandbytes' NF4 table
nf4_gap = (quant.nf4_levels().double() - torch.tensor(NF4_PUBLISHED, dtype=torch.float64)).abs().max().item()
glue("nf4_gap", nf4_gap)
glue("dq_saving", quant.nf4_bits_per_param() - quant.nf4_bits_per_param(double_quant=True))
glue("dq_saving_65b_gb", quant.model_memory_gb(65e9, "nf4") - quant.model_memory_gb(65e9, "nf4-dq"))
assert nf4_gap < 1e-6
print("NF4 levels:", ", ".join(f"{v:+.4f}" for v in quant.NF4.tolist()))
print(f"largest difference from the published table: {nf4_gap:.1e}")

# %% [markdown]
# The computed levels match the published table to {glue:text}`nf4_gap:.0e`. Every block of 64
# weights stores one fp32 absmax: 32/64 = 0.5 extra bits per weight. **Double quantization**
# quantizes those constants too — subtract their mean, then 8 bits each with one fp32 scale per 256
# of them — so the overhead becomes $8/64 + 32/(64 \cdot 256) = 0.127$ bits, a saving of
# {glue:text}`dq_saving:.3f` bits per parameter, {glue:text}`dq_saving_65b_gb:.1f` GB on a 65B model.
#
# ## 4. Error against bits
#
# Each extra bit halves the step $s$, and the mean squared error of round-to-nearest is about
# $s^2/12$, so the error should fall about 4× per bit — 6 dB per bit in signal-processing terms.
# Sweeping 2 to 8 bits on all of the model's linear weights:

# %%
bits_range = list(range(2, 9))
sweep_schemes = {"per tensor": dict(), "per channel": dict(axis=0), "group 128": dict(group_size=128),
                 "group 32": dict(group_size=32), "group 128, affine": dict(group_size=128, symmetric=False)}
err_vs_bits = {name: [weight_error(lambda w, b=b, o=o: quant.fake_quantize(w, b, **o)) for b in bits_range]
               for name, o in sweep_schemes.items()}
fig = go.Figure()
for color, (name, errs) in zip(viz.PALETTE, err_vs_bits.items()):
    fig.add_scatter(x=bits_range, y=errs, mode="lines+markers", name=name, line=dict(color=color))
fig.add_scatter(x=[4], y=[e["NF4, block 64"]], mode="markers", name="NF4 (block 64)",
                marker=dict(symbol="star", size=14, color="black"))
fig.update_layout(title="Weight error against bits, all linear layers of the MiniGPT", xaxis_title="bits per code",
                  yaxis=dict(type="log", title="relative error ‖W − Ŵ‖² / ‖W‖²"), height=440)
fig

# %%
per_bit = [a / b for a, b in zip(err_vs_bits["per channel"][2:], err_vs_bits["per channel"][3:])]  # 4→5 ... 7→8 bits
glue("err_per_bit", statistics.geometric_mean(per_bit))
glue("err8_channel", err_vs_bits["per channel"][-1])
glue("err2_channel", err_vs_bits["per channel"][0])
assert all(np.all(np.diff(errs) < 0) for errs in err_vs_bits.values()), "every bit lowers the error"
assert 3 < statistics.geometric_mean(per_bit) < 5, "about 4× per bit"
for b in range(len(bits_range)):
    assert err_vs_bits["per channel"][b] < err_vs_bits["per tensor"][b]

# %% [markdown]
# From 4 to 8 bits each bit divides the per-channel error by {glue:text}`err_per_bit:.1f` on
# average, close to the 4× of the $s^2/12$ model; at 8 bits the relative error is
# {glue:text}`err8_channel:.1e`. At 2 bits the curves bend up: a symmetric 2-bit grid has only three
# levels ($-s$, 0, $s$) and most weights round to zero, while the affine grid keeps four.
#
# ## 5. Perplexity against bits: where the model breaks
#
# Weight error is a proxy; what matters is what the model predicts. `quantize_model` swaps every
# `nn.Linear` of the blocks for a `QuantLinear` that stores codes and scales and dequantizes on the
# fly (the embedding and the tied output head stay in fp32 unless asked):

# %%
Code(inspect.getsource(quant.QuantLinear.forward) + "\n" + inspect.getsource(quant.quantize_model), language="python")

# %%
ppl_sweep = {}
sweep_ppl = {"per channel": lambda b: quant.Scheme(bits=b, axis=0),
             "group 128": lambda b: quant.Scheme(bits=b, axis=None, group_size=128),
             "group 32": lambda b: quant.Scheme(bits=b, axis=None, group_size=32)}
ppl_bits = pick(SMOKE, [2, 3, 4, 8], bits_range)
for name, make in tqdm(sweep_ppl.items(), desc="perplexity sweep"):
    ppl_sweep[name] = [perplexity(quant.quantize_model(model, make(b))) for b in ppl_bits]
fig = go.Figure()
for color, (name, ppls) in zip(viz.PALETTE[1:], ppl_sweep.items()):
    fig.add_scatter(x=ppl_bits, y=ppls, mode="lines+markers", name=name, line=dict(color=color))
fig.add_scatter(x=[ppl_bits[0], ppl_bits[-1]], y=[ppl_fp32] * 2, mode="lines", name="fp32",
                line=dict(color="black", dash="dot"))
fig.update_layout(title="Validation perplexity of the quantized MiniGPT (weights only)", xaxis_title="bits per weight code",
                  yaxis=dict(type="log", title="perplexity"), height=440)
fig

# %%
ratio = {name: [p / ppl_fp32 for p in ppls] for name, ppls in ppl_sweep.items()}
at = {b: i for i, b in enumerate(ppl_bits)}
glue("ppl_int8_channel", ppl_sweep["per channel"][at[8]])
glue("rise_int8", ratio["per channel"][at[8]] - 1)
glue("rise_int4_channel", ratio["per channel"][at[4]] - 1)
glue("rise_int4_g128", ratio["group 128"][at[4]] - 1)
glue("rise_int3_g128", ratio["group 128"][at[3]] - 1)
glue("rise_int2_g128", ratio["group 128"][at[2]] - 1)
glue("rise_int2_channel", ratio["per channel"][at[2]] - 1)
assert ratio["per channel"][at[8]] < 1.005, "int8 per channel: within 0.5% of fp32"
assert ratio["group 128"][at[4]] < 1.05, "int4 group 128: within 5% of fp32"
for name in ratio:  # the cliff: each bit removed costs more than the one before, and 2 bits far more than 4
    assert ratio[name][at[2]] > ratio[name][at[3]] > ratio[name][at[4]] >= ratio[name][at[8]] - 1e-4, name
    assert ratio[name][at[2]] - 1 > 10 * (ratio[name][at[4]] - 1), name
assert ratio["group 32"][at[2]] < ratio["per channel"][at[2]], "finer groups soften the cliff"

# %% [markdown]
# Int8 per channel leaves perplexity at {glue:text}`ppl_int8_channel:.3f` (a change of
# {glue:text}`rise_int8:+.3%`): lossless for practical purposes. Int4 costs
# {glue:text}`rise_int4_channel:+.2%` per channel and {glue:text}`rise_int4_g128:+.2%` with groups of
# 128; 3 bits {glue:text}`rise_int3_g128:+.1%`; then the cliff — 2 bits add
# {glue:text}`rise_int2_g128:+.0%` with groups of 128 and {glue:text}`rise_int2_channel:+.0%` per
# channel. That is the shape production sees: 8 bits free, 4 bits cheap with groups, 3 bits the
# edge, 2 bits broken without methods that go beyond round-to-nearest.
#
# Round-to-nearest (RTN) is the baseline every 4-bit method improves on. **GPTQ**
# {cite}`frantar2023gptq` quantizes a layer's columns one at a time and updates the remaining
# columns to cancel the error so far, using second-order information from calibration inputs;
# **AWQ** {cite}`lin2024awq` scales up the input channels whose *activations* are large before
# quantizing, so the weights that matter most get finer steps. Both produce ordinary group-wise int4
# checkpoints, read by the same kernels. Here are the other schemes of `companion.quant` on the
# same tokens, including the output head:

# %%
more = {
    "int4 group 128, affine": quant.quantize_model(model, "int4-g128-asym"),
    "NF4 (block 64)": quant.quantize_model(model, "nf4"),
    "NF4 + double quant": quant.quantize_model(model, "nf4-dq"),
    "LLM.int8() (activations too)": quant.quantize_model(model, "llm.int8"),
    "int8 incl. output head": quant.quantize_model(model, "int8", include_lm_head=True),
    "int4 group 128 incl. output head": quant.quantize_model(model, "int4-g128", include_lm_head=True),
}
fp_bytes = quant.model_weight_bytes(model)
more_rows = {"fp32": (ppl_fp32, fp_bytes), "int8 per channel": (ppl_sweep["per channel"][at[8]], None),
             "int4 group 128": (ppl_sweep["group 128"][at[4]], None)}
more_rows["int8 per channel"] = (more_rows["int8 per channel"][0], quant.model_weight_bytes(quant.quantize_model(model, "int8")))
more_rows["int4 group 128"] = (more_rows["int4 group 128"][0], quant.model_weight_bytes(quant.quantize_model(model, "int4-g128")))
for name, m in tqdm(more.items(), desc="more schemes"):
    more_rows[name] = (perplexity(m), quant.model_weight_bytes(m))
for name, (p, nbytes) in more_rows.items():
    key = name.split("(")[0].strip().replace(" ", "_").replace(",", "").replace(".", "").replace("+", "").replace("__", "_")
    key = key.lower()
    glue(f"rise_{key}", p / ppl_fp32 - 1)
    glue(f"mb_{key}", nbytes / 1e6)
glue("head_params", model.lm_head.weight.numel())
assert more_rows["NF4 (block 64)"][0] < ppl_sweep["per channel"][at[4]], "NF4 beats per-channel int4"
assert abs(more_rows["LLM.int8() (activations too)"][0] / ppl_fp32 - 1) < 0.01
Markdown("| scheme | perplexity | change | weights stored (MB) |\n|---|---|---|---|\n" + "\n".join(
    f"| {name} | {p:.3f} | {p / ppl_fp32 - 1:+.2%} | {b / 1e6:.2f} |" for name, (p, b) in more_rows.items()))

# %% [markdown]
# NF4 ({glue:text}`rise_nf4:+.2%`) beats per-channel int4 ({glue:text}`rise_int4_channel:+.2%`), and
# the affine group-128 grid, which fits each group's own range with all 16 codes, reaches
# {glue:text}`rise_int4_group_128_affine:+.2%`. LLM.int8(), which also quantizes activations, changes perplexity by
# {glue:text}`rise_llmint8:+.2%`. Quantizing the output head as well (here it is tied to the token
# embedding: {glue:text}`head_params:,` weights) costs {glue:text}`rise_int4_group_128_incl_output_head:+.2%`
# at int4 against {glue:text}`rise_int4_group_128:+.2%` without it — the head turns the last hidden
# state straight into logits, with no later layer to average its errors away, which is why
# quantization recipes usually leave it (and the embedding) in 16 bits. The weights shrink from
# {glue:text}`mb_fp32:.1f` MB to {glue:text}`mb_int4_group_128:.1f` MB; the embedding, stored in fp32,
# is what remains.
#
# :::{admonition} Interview angle: "int8 or int4? per channel or per group?"
# :class: tip
# Weight-only int8 with a scale per output channel is lossless in practice (measured here:
# {glue:text}`rise_int8:+.3%` perplexity). Int4 needs finer scales — groups of 128 inputs, stored
# in fp16, about 4.1 bits per weight — and then costs a little ({glue:text}`rise_int4_g128:+.2%`
# here with plain rounding; GPTQ or AWQ recover most of the rest on large models). Below 4 bits
# round-to-nearest falls off a cliff (2 bits: {glue:text}`rise_int2_g128:+.0%`). Keep the
# embedding and the output head in 16 bits; they are a small share of a large model's weights and
# the most sensitive.
# :::
#
# ## 6. Activations: outlier features break per-tensor int8
#
# Weight-only quantization saves memory and bandwidth but still multiplies in 16 bits. To use int8
# tensor cores — twice the fp16 throughput on an A100 or H100 — the *activations* must be int8 too
# (W8A8), and that is where large models fight back. Dettmers et al. {cite}`dettmers2022llmint8`
# found that beyond a few billion parameters a handful of hidden-state *feature dimensions* carry
# values far larger than the rest, in almost every token; they call a value an outlier when its
# magnitude exceeds 6, where typical values are of order 1. One scale per tensor — or per token —
# is then set by the outlier, and every normal value rounds to a few levels around zero.
#
# The book's model is far too small for emergent outliers. Counting them in the inputs of its
# linear layers over validation text:

# %%
captured = {}


def keep_input(name: str):
    def hook(module, inputs, output) -> None:  # returns None: the layer's output is left alone
        captured[name] = inputs[0].flatten(0, -2)  # (tokens, in_features)
    return hook


hooks = [m.register_forward_hook(keep_input(name)) for name, m in linears.items()]
model(pre.data.val_windows(BLOCK, 8 * BLOCK)[0])
for h in hooks:
    h.remove()
act_outlier_cols = {n: int(quant.outlier_columns(x, 6.0).sum()) for n, x in captured.items()}
act_absmax = max(float(x.abs().max()) for x in captured.values())
glue("own_outlier_cols", sum(act_outlier_cols.values()))
glue("own_act_absmax", act_absmax)
assert sum(act_outlier_cols.values()) <= 2, "a model this small has (almost) no outlier features"
print({n: v for n, v in act_outlier_cols.items() if v})

# %% [markdown]
# Its largest activation is {glue:text}`own_act_absmax:.1f`, and {glue:text}`own_outlier_cols` of its
# input feature columns ever exceed 6: nothing to see at {glue:text}`n_params:,` parameters. To study the
# phenomenon at the scale where it matters, we build it: activations $X \sim \mathcal{N}(0, 1)$ of
# 256 features with 4 outlier features scaled by a magnitude $m$, multiplied by a real weight
# matrix of the model (the first 256 input columns of its first MLP down-projection).
# Four ways to compute $XW^\top$ in int8 against the fp32 product, as $m$ grows:
#
# - **per tensor**: one scale for X, one for W;
# - **vector-wise**: a scale per token (row of X) and per output (row of W);
# - **LLM.int8()**: the columns of X with any |value| > 6 — and the matching columns of W — in
#   fp16 (fp32 here), the rest vector-wise int8 with int32 accumulation;
# - **SmoothQuant** {cite}`xiao2023smoothquant` with α = 0.5: divide feature j of X by
#   $s_j = \max|X_j|^{\alpha} / \max|W_{:,j}|^{1-\alpha}$ and multiply column j of W by it (the product
#   is unchanged), then plain per-tensor int8 on both.

# %%
Code(inspect.getsource(quant.llm_int8_matmul) + "\n" + inspect.getsource(quant.smooth_scales), language="python")

# %%
w_act = model.blocks[0].mlp.proj.weight.detach()[:, :256].contiguous()  # (192, 256): a real weight matrix
gen = torch.Generator().manual_seed(0)
x_base = torch.randn(pick(SMOKE, 64, 256), 256, generator=gen)
outlier_idx = torch.randperm(256, generator=gen)[:4]
magnitudes = [1, 2, 4, 6, 10, 20, 40, 60, 100]


def with_outliers(m: float) -> torch.Tensor:
    x = x_base.clone()
    x[:, outlier_idx] *= m
    return x


def rms_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return (y - ref).pow(2).mean().sqrt().item()


methods = {
    "per tensor": lambda x: quant.int8_matmul(x, w_act, "tensor"),
    "vector-wise": lambda x: quant.int8_matmul(x, w_act, "vector"),
    "LLM.int8() (threshold 6)": lambda x: quant.llm_int8_matmul(x, w_act, 6.0),
    "SmoothQuant α = 0.5": lambda x: quant.smoothquant_matmul(x, w_act, 0.5),
}
act_err = {name: [rms_error(f(with_outliers(m)), with_outliers(m) @ w_act.T) for m in magnitudes]
           for name, f in methods.items()}
alphas = [round(a, 2) for a in np.linspace(0, 1, 11)]
x60 = with_outliers(60)
ref60 = x60 @ w_act.T
alpha_err = [rms_error(quant.smoothquant_matmul(x60, w_act, a), ref60) for a in alphas]
fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("int8 matmul error against outlier magnitude", "SmoothQuant at m = 60: error against α"))
for color, (name, errs) in zip(viz.PALETTE, act_err.items()):
    fig.add_scatter(x=magnitudes, y=errs, mode="lines+markers", name=name, line=dict(color=color), row=1, col=1)
fig.add_scatter(x=alphas, y=alpha_err, mode="lines+markers", name="SmoothQuant, per-tensor int8", showlegend=False,
                line=dict(color=viz.PALETTE[3]), row=1, col=2)
fig.add_scatter(x=alphas, y=[act_err["per tensor"][magnitudes.index(60)]] * len(alphas), mode="lines",
                name="per tensor, no smoothing", line=dict(color=viz.PALETTE[0], dash="dot"), showlegend=False, row=1, col=2)
fig.update_xaxes(type="log", title_text="outlier magnitude m", row=1, col=1)
fig.update_xaxes(title_text="migration strength α", row=1, col=2)
fig.update_yaxes(type="log", title_text="RMS error of XWᵀ", row=1, col=1)
fig.update_yaxes(type="log", row=1, col=2)
fig.update_layout(height=450, legend=dict(orientation="h", y=-0.22), title="Activation outliers and two repairs")
fig

# %%
i1, i60 = magnitudes.index(1), magnitudes.index(60)
best_alpha = alphas[int(np.argmin(alpha_err))]
glue("act_err_growth", act_err["per tensor"][i60] / act_err["per tensor"][i1])
glue("act_err_pt60", act_err["per tensor"][i60])
glue("act_err_pt1", act_err["per tensor"][i1])
glue("act_err_vec60", act_err["vector-wise"][i60])
glue("act_err_llm60", act_err["LLM.int8() (threshold 6)"][i60])
glue("act_err_sq60", act_err["SmoothQuant α = 0.5"][i60])
glue("best_alpha", best_alpha)
glue("sq_gain", act_err["per tensor"][i60] / act_err["SmoothQuant α = 0.5"][i60])
assert act_err["per tensor"][i60] > 10 * act_err["per tensor"][i1], "the error explodes with the outliers"
assert act_err["vector-wise"][i60] > 10 * act_err["vector-wise"][i1], "a scale per token does not help"
assert act_err["LLM.int8() (threshold 6)"][i60] <= act_err["per tensor"][i1] * 1.5, "the decomposition restores it"
assert act_err["SmoothQuant α = 0.5"][i60] < act_err["per tensor"][i60] / 2
assert 0 < best_alpha < 1 and alpha_err[alphas.index(0.5)] < min(alpha_err[0], alpha_err[-1])

# %% [markdown]
# Without outliers, per-tensor int8 has an RMS error of {glue:text}`act_err_pt1:.4f`; with outlier
# features at magnitude 60 it is {glue:text}`act_err_pt60:.3f`, {glue:text}`act_err_growth:.0f`×
# larger. A scale per token does not help ({glue:text}`act_err_vec60:.3f`): the outliers are in
# *every* token, in the same few features — a per-*feature* problem that int8 GEMMs cannot fix
# with per-feature activation scales, because those would not factor out of the sum over features.
# LLM.int8() takes those few columns out and does them in 16 bits: error
# {glue:text}`act_err_llm60:.4f`, as good as if the outliers were not there, for the cost of a small
# extra matmul and a gather. SmoothQuant instead moves the range into the weights, which tolerate
# it better: at α = 0.5 the error falls {glue:text}`sq_gain:.1f`× below per-tensor, with no
# mixed-precision kernel at all, and the sweep's best α here is {glue:text}`best_alpha:.1f` — too
# little migration leaves the activations hard, too much makes the weights hard.
#
# :::{admonition} Interview angle: "why is activation quantization harder than weight quantization?"
# :class: tip
# Weights are fixed and roughly bell-shaped: you can pick scales offline, per channel or per group,
# and verify the error. Activations change with every input, must be quantized on the fly, and in
# large models a few feature dimensions are one to two orders of magnitude larger than the rest in
# nearly every token. A per-tensor or per-token scale is then set by the outlier and crushes
# everything else (error ×{glue:text}`act_err_growth:.0f` above). Fixes: keep the outlier features
# in 16 bits (LLM.int8()), migrate their range into the weights with a per-channel rescaling
# (SmoothQuant, α ≈ 0.5), or avoid activation quantization altogether — weight-only W4A16/W8A16,
# the usual choice for memory-bound decoding.
# :::
#
# ## 7. Tokens per second against weight bytes, on this CPU
#
# The bandwidth argument says fewer bytes, faster decode — *if the kernel reads the compressed
# weights directly*. We time one matrix–vector product (a decode step's work for one layer) of a
# {glue:text}`gemv_k` × {glue:text}`gemv_k` matrix, the size of one projection of a 7B model, on
# one core: fp32; bf16; PyTorch's dynamically quantized int8 `Linear` (its fbgemm kernel reads int8
# weights and multiplies in integers); and `QuantLinear` in int8, int4-g128 and NF4, which
# dequantize the whole matrix to fp32 in memory before the multiply.

# %%
K = pick(SMOKE, 2048, 4096)
glue("gemv_k", K)
torch.manual_seed(0)
big = nn.Linear(K, K, bias=False).eval()
x_vec = torch.randn(1, K)
big_bf16 = nn.Linear(K, K, bias=False).to(torch.bfloat16).eval()
big_bf16.weight.copy_(big.weight.to(torch.bfloat16))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    dynamic = torch.ao.quantization.quantize_dynamic(nn.Sequential(big), {nn.Linear}, dtype=torch.qint8)
ours = {s: quant.QuantLinear(big, s) for s in ("int8", "int4-g128", "nf4")}
variants = {
    "fp32": (lambda: big(x_vec), K * K * 4),
    "bf16": (lambda: big_bf16(x_vec.to(torch.bfloat16)), K * K * 2),
    "int8, torch dynamic (fbgemm)": (lambda: dynamic(x_vec), K * K + 4 * K),  # int8 weights, a float scale per row
    **{f"{s}, dequantize then fp32": (lambda q=q: q(x_vec), q.nbytes()) for s, q in ours.items()},
}
timings = {name: [] for name in variants}
for name, (fn, _) in variants.items():
    fn()  # warm-up
for _ in tqdm(range(pick(SMOKE, 5, 11)), desc="GEMV timings"):
    for name, (fn, _) in variants.items():  # round robin: every variant sees the same machine load
        start = time.perf_counter()
        fn()
        timings[name].append(time.perf_counter() - start)
gemv_s = {name: statistics.median(t) for name, t in timings.items()}
fig = go.Figure()
for color, (name, (_, nbytes)) in zip(viz.PALETTE, variants.items()):
    fig.add_scatter(x=[nbytes / 1e6], y=[1 / gemv_s[name]], mode="markers+text", text=[name], textposition="top center",
                    marker=dict(size=13, color=color), name=name, showlegend=False)
fig.update_layout(title=f"One {K}×{K} matrix–vector product on one CPU core", xaxis=dict(type="log", title="weight bytes (MB)"),
                  yaxis=dict(type="log", title="products per second (≈ tokens/s for one layer)"), height=460)
fig

# %%
speed = {name: gemv_s["fp32"] / t for name, t in gemv_s.items()}
glue("speed_bf16", speed["bf16"])
glue("speed_fbgemm", speed["int8, torch dynamic (fbgemm)"])
glue("speed_ours_int8", speed["int8, dequantize then fp32"])
glue("speed_ours_int4", speed["int4-g128, dequantize then fp32"])
glue("speed_ours_nf4", speed["nf4, dequantize then fp32"])
glue("fp32_gb_s", K * K * 4 / gemv_s["fp32"] / 1e9)
glue("fbgemm_gb_s", K * K / gemv_s["int8, torch dynamic (fbgemm)"] / 1e9)
for name in variants:
    print(f"{name:34s} {gemv_s[name] * 1e3:8.2f} ms   {speed[name]:6.2f}× fp32")
assert speed["int8, torch dynamic (fbgemm)"] > 1, "a kernel that reads int8 weights beats fp32"
assert speed["int8, dequantize then fp32"] < 1 and speed["nf4, dequantize then fp32"] < 1, \
    "dequantizing the whole matrix first costs more than the bytes it saves"

# %% [markdown]
# On this core the fp32 product streams {glue:text}`fp32_gb_s:.1f` GB/s of weights. PyTorch's int8
# kernel, reading a quarter of the bytes, is {glue:text}`speed_fbgemm:.1f`× faster — the bandwidth
# argument at work (and at this size its 1-byte weights may also sit in the last-level cache, which
# the fp32 matrix does not). bf16 halves the bytes but gains only {glue:text}`speed_bf16:.2f`×
# here: without native bf16 arithmetic the CPU converts every weight before using it. And our
# `QuantLinear` is *slower*, {glue:text}`speed_ours_int8:.3f`× fp32 in int8 and
# {glue:text}`speed_ours_nf4:.3f`× in NF4: it reads few bytes and then writes and re-reads a full
# fp32 copy of the matrix. That is the honest lesson: quantized weights speed decoding up only when
# the dequantization happens inside the matmul kernel, in registers, on the way from memory to the
# arithmetic units — which is what GPU weight-only kernels (Marlin, the GPTQ/AWQ kernels in vLLM
# and TensorRT-LLM, bitsandbytes' 4-bit inference path) do. On a GPU at batch 1 the step is bound by
# HBM bandwidth, the dequantization arithmetic hides under the memory traffic, and int4 weights
# approach the {glue:text}`int4_over_fp16_bytes:.1f`× byte ratio of section 1, less the KV-cache
# reads and the kernels' overheads. At large batch the step
# becomes compute-bound and weight-only quantization stops helping: the weights are read once and
# used for many tokens, and the multiply still runs in 16 bits.
#
# :::{admonition} Interview angle: "does int4 make inference faster?"
# :class: tip
# It makes *memory-bound* steps faster — batch-1 and small-batch decoding — by reading fewer bytes
# per token, bounded by the byte ratio (about {glue:text}`int4_over_fp16_bytes:.1f`× for int4
# with group scales against fp16). Only with a fused kernel that dequantizes in registers; a naive
# dequantize-then-matmul is slower than not quantizing (measured: {glue:text}`speed_ours_int8:.2f`×).
# Prefill and large batches are compute-bound: weight-only int4 saves memory there but not time;
# to speed up compute you need low-precision *arithmetic* — W8A8 int8 or FP8 on tensor cores.
# And the memory saved buys batch size: more room for the KV cache, more concurrent sequences.
# :::
#
# ## 8. The seeds' claims, measured or computed
#
# Interview notes repeat a set of numbers about quantization. Each is checked below against this
# chapter's measurements or the arithmetic; ✔ holds, ✘ does not, ≈ holds with a caveat.

# %%
# NF4 against int4 and against the MSE-optimal 16-level grid (Lloyd–Max, fit to the same normalized blocks)
blocks = torch.cat([m.weight.reshape(-1, 64) for m in linears.values()])  # every row length is a multiple of 64
normalized = (blocks / blocks.abs().amax(1, keepdim=True)).flatten()
levels = quant.NF4.clone()
for _ in range(30):  # Lloyd's algorithm in 1-D: assign to the nearest level, move each level to its values' mean
    idx = quant.nearest_level(normalized, levels)
    counts = torch.bincount(idx, minlength=16)
    sums = torch.zeros(16).index_add_(0, idx, normalized)
    levels = torch.where(counts > 0, sums / counts.clamp(min=1), levels).sort().values
mse_of = lambda lv: float(((normalized - lv[quant.nearest_level(normalized, lv)]) ** 2).mean())  # noqa: E731
mse_nf4, mse_lloyd = mse_of(quant.NF4), mse_of(levels)
mse_int4 = float(((normalized - quant.fake_quantize(normalized, 4, group_size=64)) ** 2).mean())
nf4_block_entropy = code_entropy(quant.nearest_level(normalized, quant.NF4))
glue("nf4_block_entropy", nf4_block_entropy)
glue("nf4_vs_int4_mse", mse_int4 / mse_nf4)
glue("lloyd_vs_nf4_mse", mse_nf4 / mse_lloyd)

# FP8 against int8 at the same 8 bits, one scale per tensor, on weights and on outlier activations
def fp8_fake(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    scale = x.abs().max() / torch.finfo(dtype).max
    return (x / scale).to(dtype).float() * scale


def rel_mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return float(((x - x_hat) ** 2).sum() / (x ** 2).sum())


w_all = torch.cat([m.weight.flatten() for m in linears.values()])
fp8_rows = {}
for data_name, data in (("MiniGPT weights", w_all), ("activations with outliers (m = 60)", x60)):
    fp8_rows[data_name] = {"int8": rel_mse(data, quant.fake_quantize(data, 8)),
                           "fp8 e4m3": rel_mse(data, fp8_fake(data, torch.float8_e4m3fn)),
                           "fp8 e5m2": rel_mse(data, fp8_fake(data, torch.float8_e5m2))}
glue("fp8_w_ratio", fp8_rows["MiniGPT weights"]["fp8 e4m3"] / fp8_rows["MiniGPT weights"]["int8"])
glue("fp8_x_ratio", fp8_rows["activations with outliers (m = 60)"]["int8"]
     / fp8_rows["activations with outliers (m = 60)"]["fp8 e4m3"])
assert mse_nf4 < mse_int4 and mse_lloyd < mse_nf4
assert fp8_rows["MiniGPT weights"]["int8"] < fp8_rows["MiniGPT weights"]["fp8 e4m3"]
assert fp8_rows["activations with outliers (m = 60)"]["fp8 e4m3"] < fp8_rows["activations with outliers (m = 60)"]["int8"]
Markdown("| relative error, one scale per tensor | " + " | ".join(next(iter(fp8_rows.values()))) + " |\n|---|---|---|---|\n"
         + "\n".join(f"| {name} | " + " | ".join(f"{v:.2e}" for v in row.values()) + " |" for name, row in fp8_rows.items()))

# %%
llama3_8b, vocab, d = N_PARAMS["Llama-3-8B"], 128256, 4096  # Llama 3 model card: 128,256 tokens, d = 4,096
embed_head = 2 * vocab * d  # input embedding and (untied) output head, kept in bf16 by bitsandbytes
qlora_8b_gb = ((llama3_8b - embed_head) * quant.FORMAT_BITS["nf4-dq"] / 8 + embed_head * 2) / 1e9
glue("llama3_8b_bf16_gb", quant.model_memory_gb(llama3_8b, "bf16"))
glue("llama3_8b_fp32_gb", quant.model_memory_gb(llama3_8b, "fp32"))
glue("llama3_8b_qlora_gb", qlora_8b_gb)
seed_claims = [
    ("70B needs 140 / 70 / 35 GB in fp16 / int8 / int4", "000 L484–487",
     f"{table['70B']['fp16']:.0f} / {table['70B']['int8']:.0f} / {table['70B']['int4']:.0f} GB; "
     f"with group-128 scales int4 is {table['70B']['int4-g128']:.1f} GB", "✔"),
    ("INT8 weights: ~0.1 point drop; INT4: ~0.5 point drop", "000 L486–487",
     f"perplexity here {ratio['per channel'][at[8]] - 1:+.3%} (int8) and {ratio['group 128'][at[4]] - 1:+.2%} (int4 g128); "
     "benchmark points on a 70B model cannot be measured on a laptop", "≈ direction"),
    ("4-bit lets you serve 70B on 2×A100 instead of 8×", "004 L2360",
     f"fp16 weights are {table['70B']['fp16']:.0f} GB: 2×80 GB, not 8; int4 ({table['70B']['int4-g128']:.0f} GB) fits one", "✘"),
    ("QLoRA fine-tunes 70B on one 80 GB GPU", "004 L1812, 003 L3310",
     f"NF4 + double quant: {table['70B']['nf4-dq']:.1f} GB of weights, leaving {80 - table['70B']['nf4-dq']:.0f} GB", "✔"),
    ("double quantization saves ~0.4 bits per parameter", "003 L3424, L3604",
     f"0.5 − 0.127 = {quant.nf4_bits_per_param() - quant.nf4_bits_per_param(double_quant=True):.3f} bits", "✔"),
    ("NF4 has less error than uniform INT4; 'information-theoretically optimal'", "003 L3423, L3603",
     f"int4 error {mse_int4 / mse_nf4:.2f}× NF4's (block 64) ✔; but a Lloyd–Max grid has {mse_nf4 / mse_lloyd:.2f}× less "
     f"error than NF4, and NF4's codes carry {nf4_block_entropy:.2f} of 4 bits: equal-probability for N(0,1), not optimal", "≈"),
    ("Llama-3-8B needs ~32 GB for its weights in BF16; QLoRA ~6 GB", "003 L3584",
     f"bf16 is {quant.model_memory_gb(llama3_8b, 'bf16'):.0f} GB (32 GB is fp32); NF4 + double quant with bf16 "
     f"embeddings and head: {qlora_8b_gb:.1f} GB ✔", "✘ / ✔"),
    ("per-channel beats per-tensor", "004 L2329",
     f"int4 weight error {e['per tensor'] / e['per channel']:.1f}× lower per channel", "✔"),
    ("bits vs perplexity: roughly linear above 3 bits, a cliff below", "003 L7968",
     f"cliff ✔ (2 bits {ratio['group 128'][at[2]] - 1:+.0%}); above 4 bits the loss shrinks about "
     f"{statistics.geometric_mean(per_bit):.1f}× per bit — flat, not linear", "≈"),
    ("halving model size doubles tokens/s almost exactly", "003 L7969",
     f"bf16 (half the bytes) {speed['bf16']:.2f}×, int8 kernel (a quarter) {speed['int8, torch dynamic (fbgemm)']:.1f}×, "
     f"dequantize-first int8 {speed['int8, dequantize then fp32']:.2f}×: only with a kernel that reads the small format", "≈"),
    ("keep the LM head in 16 bits", "003 L5380",
     f"int4 g128 with the head {more_rows['int4 group 128 incl. output head'][0] / ppl_fp32 - 1:+.2%}, without "
     f"{ratio['group 128'][at[4]] - 1:+.2%}", "✔" if more_rows['int4 group 128 incl. output head'][0] > ppl_sweep['group 128'][at[4]] else "✘"),
    ("FP8 is more accurate than INT8 at the same bits", "003 L8146",
     f"on the weights int8 has {fp8_rows['MiniGPT weights']['fp8 e4m3'] / fp8_rows['MiniGPT weights']['int8']:.0f}× less error "
     f"than e4m3; on outlier activations e4m3 wins by {fp8_rows['activations with outliers (m = 60)']['int8'] / fp8_rows['activations with outliers (m = 60)']['fp8 e4m3']:.0f}×", "✘ in general"),
    ("GPTQ 4-bit gives ~2× decode throughput on A100", "004 L2348",
     f"computed bound: fp16 / int4-g128 bytes = {quant.FORMAT_BITS['fp16'] / quant.FORMAT_BITS['int4-g128']:.1f}×; "
     "2× is plausible after KV reads and kernel overheads (not measurable on a CPU)", "≈"),
]
Markdown("| claim | source | measured or computed here | verdict |\n|---|---|---|---|\n" + "\n".join(
    f"| {c} | {s} | {m} | {v} |" for c, s, m, v in seed_claims))

# %% [markdown]
# A few deserve a sentence each. "Serve 70B on 2×A100 instead of 8×" confuses the counts: fp16
# weights need two 80 GB GPUs ({glue:text}`gb70_fp16:.0f` GB), and int4 needs one. "Llama-3-8B
# needs ~32 GB in BF16" is the fp32 figure ({glue:text}`llama3_8b_fp32_gb:.0f` GB); in bf16 it is
# {glue:text}`llama3_8b_bf16_gb:.0f` GB, and QLoRA's ~6 GB checks out
# ({glue:text}`llama3_8b_qlora_gb:.1f` GB, because bitsandbytes keeps the large embedding and
# output head in bf16). And FP8 versus INT8 depends on the data: on bell-shaped weights with a
# per-tensor scale, int8's uniform grid has {glue:text}`fp8_w_ratio:.0f`× less error than e4m3's
# 3-bit mantissa, while on activations with outliers e4m3's exponent keeps the small values and
# wins by {glue:text}`fp8_x_ratio:.0f`× — FP8's case is dynamic range, not precision. NF4 beats
# int4 by {glue:text}`nf4_vs_int4_mse:.2f`× in error on these weights, but "information-theoretically
# optimal" is loose: its levels are equal-probability quantiles of a normal, and a grid fit to
# minimize squared error (Lloyd–Max) does {glue:text}`lloyd_vs_nf4_mse:.2f`× better on the same blocks.
#
# ## 9. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** How many GB do the weights of a 13B-parameter model take in NF4 with double quantization
# (4.127 bits per parameter)? (One decimal.)

# %%
answer_1 = ...
check(answer_1, quant.model_memory_gb(13e9, "nf4-dq"))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $13 \times 10^9 \times 4.127 / 8 = 6.7$ GB. Without double quantization (4.5 bits) it is 7.3 GB;
# in fp16, 26 GB.
# :::
#
# **2.** A weight row holds the values −0.8, 0.1, 0.35 and 0.5. With symmetric int4 absmax
# quantization (codes −7…7), what does 0.35 come back as after dequantization?

# %%
answer_2 = ...
check(answer_2, quant.fake_quantize(torch.tensor([-0.8, 0.1, 0.35, 0.5]), 4)[2].item())

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $s = 0.8 / 7 = 0.1143$; $0.35 / s = 3.06$ rounds to 3; $3 s = 0.343$. The error, 0.007, is within
# $s/2 = 0.057$ as round-to-nearest guarantees.
# :::
#
# **3.** Activations have 4 outlier features in every token. Does a per-*token* int8 scale
# (vector-wise) fix the error of per-tensor int8? Answer `True` or `False`.

# %%
answer_3 = ...
check(answer_3, act_err["vector-wise"][i60] < 2 * act_err["per tensor"][i1])

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# False. Every token contains the outliers, so every token's scale is set by them
# (error {glue:text}`act_err_vec60:.3f` against {glue:text}`act_err_pt1:.4f` without outliers).
# The problem is per *feature*; LLM.int8() handles those features in 16 bits, and SmoothQuant
# rescales them into the weights.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(6.7, quant.model_memory_gb(13e9, "nf4-dq"))
assert check(0.343, quant.fake_quantize(torch.tensor([-0.8, 0.1, 0.35, 0.5]), 4)[2].item())
assert check(False, act_err["vector-wise"][i60] < 2 * act_err["per tensor"][i1])

# %% [markdown]
# ## Summary
#
# - Decode reads every weight once per token, so weight bytes set both the memory a model needs
#   (70B: {glue:text}`gb70_fp16:.0f` GB fp16, {glue:text}`gb70_int4_g128:.1f` GB group-wise int4)
#   and the ceiling on batch-1 tokens per second.
# - Round-to-nearest error is at most half a step; the step is set by the largest value sharing a
#   scale. Per channel beats per tensor, groups beat channels, at the price of stored scales. Our
#   int8 codes equal PyTorch's quantizer's.
# - Each bit divides weight error by about {glue:text}`err_per_bit:.1f`. On the MiniGPT int8 is free
#   ({glue:text}`rise_int8:+.3%` perplexity), int4 with groups of 128 cheap
#   ({glue:text}`rise_int4_g128:+.2%`), and 2 bits fall off a cliff.
# - NF4 places its 16 levels at normal quantiles (QLoRA's table, reproduced) and beats uniform int4;
#   double quantization takes its overhead from 0.5 to 0.127 bits per parameter.
# - Outlier features break per-tensor and per-token int8 activations; LLM.int8() keeps those
#   features in 16 bits, SmoothQuant moves their range into the weights (α ≈ 0.5).
# - Fewer bytes mean faster decoding only when the kernel dequantizes in registers; a
#   dequantize-then-multiply path is slower than fp32 on a CPU, as measured.

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
# # FlashAttention: exact attention without the T×T matrix
#
# Attention is the one part of a transformer whose cost grows with the square of the context. The
# textbook version writes a T×T matrix of scores to memory, reads it back for the softmax, writes
# the probabilities, and reads them again to weight the values — at 8K tokens that is hundreds of
# megabytes per head, moved several times, for a computation whose result is only T×d. FlashAttention
# computes the same numbers tile by tile, keeping a running maximum and a running sum per row so the
# T×T matrix never exists. It is why long-context training fits in memory, why every serving engine
# ships a fused attention kernel, and why "explain FlashAttention's online softmax" is one of the most
# common questions in LLM-systems interviews. This chapter derives the online softmax, builds
# FlashAttention in PyTorch (forward and backward) and in Triton, and measures what it saves.
#
# **You will learn**
# - why standard attention is limited by memory traffic, and what FlashAttention's IO count is;
# - the online-softmax recurrence, derived and checked numerically;
# - how the tiled forward walks query and key tiles, skipping the future under a causal mask (step through it with a slider);
# - a tiled forward and a recomputing backward in PyTorch, equal to `F.scaled_dot_product_attention`
#   in outputs and gradients;
# - peak memory O(T) against O(T²), and speed against PyTorch's CPU attention backends, measured;
# - the same algorithm as a Triton kernel, and a paged-attention decode kernel that reads the KV
#   cache through block tables;
# - which circulating claims about FlashAttention hold when measured.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/71_flash_attention.ipynb)
# · Runtime budget on 2 CPU cores: under 40 s with `SMOKE=True`, under 3 minutes in full mode
# (the sweeps reach 8,192 tokens).

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

SMOKE = smoke_default()  # True: short sequences (≤ 40 s on 2 cores); False: sweeps up to 8,192 tokens

# %%
import inspect
import math
import statistics
import time

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from IPython.display import Code, Markdown, display
from plotly.subplots import make_subplots
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from companion import flash, kernels, paged, viz
from companion.book import check, glue
from companion.config import pick, seed_everything

seed_everything(0)
torch.set_num_threads(1)  # every timing below runs on one core: steadier on a shared machine, and fair to all sides
MiB = 2**20
print(f"SMOKE={SMOKE}; torch {torch.__version__}, one thread; Triton kernels "
      f"{'under the interpreter (CPU)' if kernels.INTERPRETED else 'compiled for CUDA'}")

# %% [markdown]
# ## 1. Where standard attention spends its time
#
# For one head with $N$ queries and keys of dimension $d$, standard attention is three steps, each a
# round trip through main memory (HBM on a GPU, DRAM on a CPU) {cite}`dao2022flashattention`:
#
# $$S = QK^\top/\sqrt d \in \mathbb{R}^{N\times N}, \qquad P = \mathrm{softmax}(S), \qquad O = PV \in \mathbb{R}^{N \times d}.$$
#
# It reads $Q, K$ and writes $S$; reads $S$ and writes $P$; reads $P, V$ and writes $O$:
# $4Nd + 4N^2$ elements of traffic, dominated by $N^2$ once $N \gg d$. The arithmetic is about
# $4N^2 d$ FLOPs, so each byte of $S$ or $P$ moved carries only $O(d)$ FLOPs — far below what a GPU
# (or a CPU core) needs per byte to be compute-bound (see the roofline chapter). Attention at long
# context is **memory-bound**, and the cure is not fewer FLOPs but fewer bytes.
#
# FlashAttention keeps a tile of $Q$ in fast on-chip memory (SRAM: a GPU's shared memory, a CPU's
# caches), streams tiles of $K$ and $V$ past it, and never writes $S$ or $P$. The paper's Theorem 2
# counts $\Theta(N^2 d^2 M^{-1})$ HBM accesses for an SRAM of $M$ elements, against
# $\Theta(Nd + N^2)$ for standard attention. With the query tile outermost, as in FlashAttention-2
# {cite}`dao2023flashattention2`, a tile of $B_q$ query rows reads $K$ and $V$ once, so the traffic is
# $2Nd + 2Nd\lceil N/B_q \rceil$: still quadratic, but smaller by about $2B_q/d$, and smaller again
# when the re-reads of $K, V$ hit a cache. `flash.io_bytes` counts both:

# %%
ns = [2**p for p in range(9, 16)]
io = {n: flash.io_bytes(n, 64, 128) for n in ns}  # fp16, d = 64, query tiles of 128 rows
fig = make_subplots(rows=1, cols=2, subplot_titles=("main-memory traffic, one head, forward (fp16, d = 64)",
                                                    "standard ÷ tiled"))
fig.add_scatter(x=ns, y=[io[n][0] / MiB for n in ns], name="standard: 4Nd + 4N²", line=dict(color=viz.PALETTE[1]),
                row=1, col=1)
fig.add_scatter(x=ns, y=[io[n][1] / MiB for n in ns], name="tiled, B_q = 128: 2Nd(1 + N/B_q)",
                line=dict(color=viz.PALETTE[0]), row=1, col=1)
fig.add_scatter(x=ns, y=[io[n][0] / io[n][1] for n in ns], name="ratio", line=dict(color="black"), showlegend=False,
                row=1, col=2)
fig.update_xaxes(type="log", title_text="sequence length N")
fig.update_yaxes(type="log", title_text="MiB", row=1, col=1)
fig.update_yaxes(title_text="×", row=1, col=2)
fig.update_layout(height=380, legend=dict(orientation="h", y=-0.25))
fig

# %%
scores_8k = 8192**2 * 4  # one head's fp32 score matrix at N = 8192
glue("scores_8k_mib", scores_8k / MiB)
glue("scores_8k_mib_fp16", scores_8k / 2 / MiB)
glue("io_ratio_8k", io[8192][0] / io[8192][1])
glue("io_std_8k_mib", io[8192][0] / MiB)
glue("io_tiled_8k_mib", io[8192][1] / MiB)
assert all(io[n][0] > io[n][1] for n in ns) and abs(io[ns[-1]][0] / io[ns[-1]][1] - 2 * 128 / 64) < 0.1

# %% [markdown]
# At $N$ = 8,192 one head's fp32 score matrix is {glue:text}`scores_8k_mib:.0f` MiB
# ({glue:text}`scores_8k_mib_fp16:.0f` MiB in fp16), and the forward pass moves
# {glue:text}`io_std_8k_mib:,.0f` MiB in the standard version against {glue:text}`io_tiled_8k_mib:,.0f`
# MiB tiled — {glue:text}`io_ratio_8k:.1f`× less in this model, approaching $2B_q/d = 4$. The
# measured gain on a GPU is larger, because the backward pass moves more $N^2$ matrices ($P$, $dP$,
# $dS$) and because re-reads of $K, V$ often come from the L2 cache: the paper reports 40.3 GB of
# HBM traffic for standard attention against 4.4 GB for FlashAttention on GPT-2 medium, forward and
# backward {cite}`dao2022flashattention`.
#
# ## 2. The online softmax
#
# The obstacle to tiling is the softmax: each probability $p_j = e^{s_j} / \sum_k e^{s_k}$ needs the
# whole row's sum, and a stable softmax also needs the row's maximum before it exponentiates. The
# online softmax {cite}`milakov2018online` computes both in one pass over blocks of the row. Keep
# $m$, the maximum so far, and $\ell = \sum_{k \text{ seen}} e^{s_k - m}$. When a new block $s^{(j)}$
# arrives:
#
# $$m' = \max\bigl(m, \max_k s^{(j)}_k\bigr), \qquad
#   \ell' = \ell\, e^{m - m'} + \sum_k e^{s^{(j)}_k - m'}.$$
#
# The factor $e^{m - m'} \le 1$ re-expresses the old sum relative to the new maximum, so after the
# last block $\ell = \sum_k e^{s_k - m}$ with $m$ the true maximum: exactly the stable softmax's
# denominator, and $m + \log \ell$ is the row's log-sum-exp. Attention needs $PV$, not $P$, so the
# same trick carries an unnormalized output $a = \sum_k e^{s_k - m} v_k$:
#
# $$a' = a\, e^{m - m'} + \sum_k e^{s^{(j)}_k - m'} v^{(j)}_k, \qquad o = a / \ell \text{ at the end.}$$
#
# Every quantity kept is $O(1)$ per row (or $O(d)$ for $a$): nothing of size $N$ per row survives a
# block. The check, on one row of 1,000 scores in blocks of 128:

# %%
g = torch.Generator().manual_seed(0)
s, v_row = torch.randn(1000, generator=g, dtype=torch.float64) * 4, torch.randn(1000, 8, generator=g, dtype=torch.float64)
m, l, a = -math.inf, 0.0, torch.zeros(8, dtype=torch.float64)
for s_j, v_j in zip(s.split(128), v_row.split(128)):  # one block of scores and values at a time
    m_new = max(m, s_j.max().item())
    p_j = torch.exp(s_j - m_new)
    l, a = l * math.exp(m - m_new) + p_j.sum().item(), a * math.exp(m - m_new) + p_j @ v_j
    m = m_new
err_lse = abs(m + math.log(l) - torch.logsumexp(s, 0).item())
err_out = (a / l - torch.softmax(s, 0) @ v_row).abs().max().item()
glue("online_err_lse", err_lse)
glue("online_err_out", err_out)
assert err_lse < 1e-12 and err_out < 1e-12
print(f"log-sum-exp error {err_lse:.1e}, output error {err_out:.1e} (float64)")

# %% [markdown]
# The streamed log-sum-exp differs from `torch.logsumexp` by {glue:text}`online_err_lse:.1e` and the
# weighted average from `softmax(s) @ v` by {glue:text}`online_err_out:.1e`: the recurrence is exact,
# up to rounding. Nothing was approximated — FlashAttention is *exact* attention, unlike the sparse
# and low-rank methods that also avoid the $N^2$ matrix.
#
# ## 3. The tiled forward, step by step
#
# FlashAttention applies that recurrence to a whole tile of query rows at once: for each query tile,
# a loop over key tiles computes a $B_q \times B_k$ block of scores with one matrix multiply,
# updates the rows' $m$ and $\ell$, rescales the accumulator and adds $\tilde P V$ — again one matrix
# multiply. Under a causal mask, key tiles entirely in a query tile's future are never computed, and
# only tiles that straddle the diagonal need a mask: about half the work disappears. Drag the
# slider through the loop: the left grid shows which tiles are done, current and skipped; the right panels
# show the running max and sum of the current query tile's rows after each key tile (grey: their
# final values).

# %%
t_demo, b_demo = 48, 8
gd = torch.Generator().manual_seed(1)
q_demo, k_demo = torch.randn(t_demo, 16, generator=gd) * 1.5, torch.randn(t_demo, 16, generator=gd) * 1.5
steps = flash.tile_trace(q_demo, k_demo, causal=True, block_q=b_demo, block_k=b_demo)
n_tiles = t_demo // b_demo
final = {st["qi"]: st for st in steps}  # the last step of each query tile holds its final m and l
computed = {(st["qi"], st["kj"]) for st in steps}


def grid_state(step: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile states after ``step`` computed tiles: 0 pending, 1 done, 2 current, 3 skipped (never computed)."""
    z, text = np.zeros((n_tiles, n_tiles)), np.full((n_tiles, n_tiles), "", dtype=object)
    for i in range(n_tiles):
        for j in range(n_tiles):
            if (i, j) not in computed:
                z[i, j], text[i, j] = 3, "skip"
    for st in steps[:step]:
        z[st["qi"], st["kj"]] = 1
        text[st["qi"], st["kj"]] = "mask" if st["diagonal"] else ""
    cur = steps[step]
    z[cur["qi"], cur["kj"]], text[cur["qi"], cur["kj"]] = 2, "mask" if cur["diagonal"] else "now"
    return z, text


colors = [[0, "#eeeeee"], [0.25, "#eeeeee"], [0.25, "#9ecae1"], [0.5, "#9ecae1"], [0.5, "#e6550d"], [0.75, "#e6550d"],
          [0.75, "#ffffff"], [1, "#ffffff"]]
rows_idx = list(range(b_demo))


def frame_data(step: int) -> list:
    z, text = grid_state(step)
    st, fin = steps[step], final[steps[step]["qi"]]
    return [go.Heatmap(z=z, text=text, texttemplate="%{text}", colorscale=colors, zmin=-0.5, zmax=3.5, showscale=False,
                       xgap=2, ygap=2, hovertemplate="query tile %{y}, key tile %{x}<extra></extra>"),
            go.Scatter(x=rows_idx, y=st["m"].tolist(), mode="lines+markers", line=dict(color=viz.PALETTE[1])),
            go.Scatter(x=rows_idx, y=fin["m"].tolist(), mode="markers", marker=dict(color="#999999", symbol="line-ew-open", size=14)),
            go.Scatter(x=rows_idx, y=st["l"].tolist(), mode="lines+markers", line=dict(color=viz.PALETTE[0])),
            go.Scatter(x=rows_idx, y=fin["l"].tolist(), mode="markers", marker=dict(color="#999999", symbol="line-ew-open", size=14))]


fig = make_subplots(rows=2, cols=2, column_widths=[0.55, 0.45], specs=[[{"rowspan": 2}, {}], [None, {}]],
                    subplot_titles=("tiles of S (query tile × key tile)", "running max m of the tile's rows",
                                    "running sum ℓ of the tile's rows"), horizontal_spacing=0.1)
cells = [(1, 1), (1, 2), (1, 2), (2, 2), (2, 2)]
for i in range(len(steps)):  # every step's traces up front; the slider shows one step's five at a time
    for trace, (r, c) in zip(frame_data(i), cells):
        trace.visible = i == 0
        fig.add_trace(trace, row=r, col=c)


def step_title(i: int) -> str:
    st = steps[i]
    return (f"step {i + 1} of {len(steps)}: query tile {st['qi']}, key tile {st['kj']}"
            + (" (on the diagonal: masked inside)" if st["diagonal"] else ""))


fig.update_yaxes(autorange="reversed", title_text="query tile", row=1, col=1)
fig.update_xaxes(title_text="key tile", side="top", row=1, col=1)
fig.update_yaxes(range=[min(float(st["m"].min()) for st in steps) - 0.3, max(float(st["m"].max()) for st in steps) + 0.3],
                 row=1, col=2)
fig.update_yaxes(type="log", row=2, col=2)
fig.update_xaxes(title_text="row within the query tile", row=2, col=2)
fig.update_layout(
    height=540, showlegend=False, title=step_title(0),
    sliders=[dict(active=0, y=-0.08, currentvalue=dict(prefix="step "),
                  steps=[dict(label=str(i + 1), method="update",
                              args=[{"visible": [j // 5 == i for j in range(5 * len(steps))]}, {"title.text": step_title(i)}])
                         for i in range(len(steps))])])
fig

# %%
n_skipped = n_tiles * n_tiles - len(steps)
glue("demo_tiles", n_tiles * n_tiles)
glue("demo_computed", len(steps))
glue("demo_skipped", n_skipped)
glue("demo_masked", sum(st["diagonal"] for st in steps))
assert n_skipped == n_tiles * (n_tiles - 1) // 2 and all(st["qi"] >= st["kj"] for st in steps)
for st_prev, st in zip(steps, steps[1:]):  # within a query tile the running max never decreases
    if st["qi"] == st_prev["qi"]:
        assert bool((st["m"] >= st_prev["m"]).all())

# %% [markdown]
# Of the {glue:text}`demo_tiles` tiles of this 48 × 48 causal example, {glue:text}`demo_computed` are
# computed and {glue:text}`demo_skipped` are never touched; only the {glue:text}`demo_masked` diagonal
# tiles apply a mask. Within a query tile the running maximum only rises, and each rise shrinks the
# sum accumulated so far by $e^{m - m'}$ — that is why $\ell$ can drop between steps.
#
# ## 4. FlashAttention in PyTorch
#
# `companion.flash` implements the forward and backward passes as a `torch.autograd.Function`. The
# forward is the loop above, per (batch, head), with big tiles — 512 query rows × 1,024 keys by
# default — so each step is a large matrix multiply and Python's per-call overhead stays small. All
# elementwise work is done in place on the one score tile, which is allocated once:

# %%
Code(inspect.getsource(flash.flash_forward), language="python")

# %% [markdown]
# The backward pass saves only $Q, K, V, O$ and the log-sum-exp (B, H, T) — no $N\times N$ matrix
# for autograd to keep. It recomputes each tile of probabilities as $P = \exp(S - \mathrm{LSE})$, and
# uses $D = \mathrm{rowsum}(dO \circ O)$, which equals $\mathrm{rowsum}(P \circ dP)$, to form the
# softmax gradient tile by tile: $dS = P \circ (dP - D)$ with $dP = dO\,V^\top$; then
# $dV \mathrel{+}= P^\top dO$, $dQ \mathrel{+}= dS\,K/\sqrt d$, $dK \mathrel{+}= dS^\top Q/\sqrt d$
# {cite}`dao2023flashattention2`. Recomputing the scores costs one extra $QK^\top$ per tile, and in
# exchange the memory for the backward pass is O(N) too.
#
# ### Correct: the same numbers as PyTorch
#
# Outputs and gradients against `F.scaled_dot_product_attention` (fp32), causal and not, with
# lengths that are not multiples of the tiles, fewer queries than keys (the queries are the last
# positions, as when decoding with a cache) and grouped-query attention (8 query heads sharing 2
# key/value heads):

# %%
t_q, t_k = pick(SMOKE, (300, 500), (1000, 1500))
gq = torch.Generator().manual_seed(2)
qc = torch.randn(2, 8, t_q, 64, generator=gq, requires_grad=True)
kc, vc = (torch.randn(2, 2, t_k, 64, generator=gq, requires_grad=True) for _ in range(2))
errors = {}
for causal in (False, True):
    mask = torch.ones(t_q, t_k, dtype=torch.bool).tril(t_k - t_q) if causal else None
    ref = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=mask, enable_gqa=True)
    ours = flash.flash_attention(qc, kc, vc, causal=causal, block_q=128, block_k=256)
    grad_out = torch.randn(ref.shape, generator=gq)
    grads_ours = torch.autograd.grad(ours, (qc, kc, vc), grad_out)
    grads_ref = torch.autograd.grad(ref, (qc, kc, vc), grad_out)
    label = "causal" if causal else "full"
    errors[label] = {"output": (ours - ref).abs().max().item()} | {
        f"d{n}": (a - b).abs().max().item() for n, a, b in zip("qkv", grads_ours, grads_ref)}
fig = go.Figure([go.Bar(name=label, x=list(e), y=list(e.values()), marker_color=viz.PALETTE[i])
                 for i, (label, e) in enumerate(errors.items())])
fig.add_hline(y=torch.finfo(torch.float32).eps, line_dash="dot", annotation_text="fp32 machine epsilon")
fig.update_layout(barmode="group", yaxis_type="log", yaxis_title="max |ours − SDPA|", height=360,
                  title=f"companion.flash against F.scaled_dot_product_attention: T_q = {t_q}, T_k = {t_k}, GQA 8:2, fp32")
fig

# %%
glue("err_out", max(e["output"] for e in errors.values()))
glue("err_grad", max(max(v for n, v in e.items() if n != "output") for e in errors.values()))
assert all(e["output"] < 1e-5 for e in errors.values()) and all(max(e.values()) < 1e-4 for e in errors.values())

# %% [markdown]
# The largest output difference is {glue:text}`err_out:.1e` and the largest gradient difference
# {glue:text}`err_grad:.1e` — rounding differences of fp32 summed in another order. (The unit tests
# also run `torch.autograd.gradcheck` in float64, and check the log-sum-exp against
# `torch.logsumexp` of the materialized scores.)
#
# ### Memory: O(N) instead of O(N²)
#
# Peak memory is measured by replaying the allocator's log: `torch.profiler` with
# `profile_memory=True` records every allocation and free on the CPU with its size, and the peak
# of their running sum is the most the call held at once, its output included. (`tracemalloc` does
# not see tensor storage, and the process's peak RSS never goes down.) Three forward passes at
# B = 1, H = 8, d = 64, fp32: naive attention (`flash.naive_attention`, three lines that build the
# scores), ours, and `F.scaled_dot_product_attention`, whose default CPU kernel is itself a fused,
# tiled flash kernel.

# %%
lengths = pick(SMOKE, [256, 512, 1024, 2048], [512, 1024, 2048, 4096, 8192])
gm = torch.Generator().manual_seed(3)
peak = {"naive": [], "ours": [], "SDPA (default)": []}
for n in tqdm(lengths, desc="peak memory"):
    q, k, v = (torch.randn(1, 8, n, 64, generator=gm) for _ in range(3))
    peak["naive"].append(flash.peak_memory(flash.naive_attention, q, k, v))
    peak["ours"].append(flash.peak_memory(flash.flash_forward, q, k, v))
    peak["SDPA (default)"].append(flash.peak_memory(F.scaled_dot_product_attention, q, k, v))
out_bytes = [8 * n * 64 * 4 for n in lengths]
fig = go.Figure([go.Scatter(x=lengths, y=[b / MiB for b in ys], name=name, mode="lines+markers",
                            line=dict(color=viz.PALETTE[i])) for i, (name, ys) in enumerate(peak.items())])
fig.add_scatter(x=lengths, y=[b / MiB for b in out_bytes], name="the output itself (B·H·N·d·4 bytes)",
                mode="lines", line=dict(color="black", dash="dot"))
fig.update_layout(xaxis=dict(type="log", title="sequence length N"), yaxis=dict(type="log", title="peak extra MiB"),
                  height=420, title="Peak memory of one attention forward (B = 1, H = 8, d = 64, fp32)",
                  legend=dict(orientation="h", y=-0.2))
fig

# %%
ratio_mem = [a / b for a, b in zip(peak["naive"], peak["ours"])]
growth = {name: ys[-1] / ys[0] for name, ys in peak.items()}
glue("mem_naive_max_mib", peak["naive"][-1] / MiB)
glue("mem_ours_max_mib", peak["ours"][-1] / MiB)
glue("mem_sdpa_max_mib", peak["SDPA (default)"][-1] / MiB)
glue("mem_ratio_max", ratio_mem[-1])
glue("mem_len_max", lengths[-1])
glue("mem_len_factor", lengths[-1] // lengths[0])
glue("mem_growth_naive", growth["naive"])
glue("mem_growth_ours", growth["ours"])
glue("naive_per_head_max_mib", peak["naive"][-1] / 8 / MiB)
assert all(r2 > r1 for r1, r2 in zip(ratio_mem, ratio_mem[1:])), "the saving grows with N"
assert growth["naive"] > 0.5 * (lengths[-1] / lengths[0]) ** 2, "naive memory grows like N²"
assert growth["ours"] < 1.5 * lengths[-1] / lengths[0], "ours grows like N (the output) at most"
assert all(o <= 2 * b + 4 * MiB for o, b in zip(peak["ours"], out_bytes)), "ours: the output plus a tile"
if lengths[-1] >= 4096:
    assert ratio_mem[lengths.index(4096)] >= 50, "at least 50× less than naive at N = 4096"

# %% [markdown]
# Over a {glue:text}`mem_len_factor`× longer sequence, up to N = {glue:text}`mem_len_max:,`, naive
# attention's peak grows {glue:text}`mem_growth_naive:,.0f`× (quadratically) and ours
# {glue:text}`mem_growth_ours:.1f`× (linearly, the output dominating): at N = {glue:text}`mem_len_max:,` naive attention
# holds {glue:text}`mem_naive_max_mib:,.0f` MiB at its peak — the scores *and* the probabilities,
# {glue:text}`naive_per_head_max_mib:,.0f` MiB per head — while ours holds
# {glue:text}`mem_ours_max_mib:.1f` MiB ({glue:text}`mem_ratio_max:.0f`× less): the output, one
# 2 MiB tile of scores and the row statistics. PyTorch's own CPU kernel is in the same class
# ({glue:text}`mem_sdpa_max_mib:.1f` MiB).
#
# Training needs the backward pass too, and there the difference is larger still, because autograd
# keeps naive attention's $N \times N$ probabilities alive from the forward until the backward:

# %%
n_bwd = pick(SMOKE, 1024, 2048)
q, k, v = (torch.randn(1, 8, n_bwd, 64, generator=gm, requires_grad=True) for _ in range(3))


def train_step(attn):
    def run():
        attn(q, k, v).sum().backward()
        q.grad = k.grad = v.grad = None
    return run


peak_bwd = {"naive": flash.peak_memory(train_step(flash.naive_attention)),
            "ours": flash.peak_memory(train_step(flash.flash_attention))}
glue("bwd_len", n_bwd)
glue("bwd_naive_mib", peak_bwd["naive"] / MiB)
glue("bwd_ours_mib", peak_bwd["ours"] / MiB)
glue("bwd_ratio", peak_bwd["naive"] / peak_bwd["ours"])
fig = go.Figure(go.Bar(x=list(peak_bwd), y=[b / MiB for b in peak_bwd.values()], marker_color=[viz.PALETTE[0], viz.PALETTE[1]],
                       text=[f"{b / MiB:,.0f} MiB" for b in peak_bwd.values()], textposition="outside"))
fig.update_layout(height=320, yaxis_title="peak MiB", title=f"Forward + backward at N = {n_bwd:,} (B = 1, H = 8, d = 64)")
fig

# %%
assert peak_bwd["naive"] > 5 * peak_bwd["ours"], "autograd keeps the N×N probabilities for naive attention only"

# %% [markdown]
# At N = {glue:text}`bwd_len:,`, a forward and backward pass through naive attention peaks at
# {glue:text}`bwd_naive_mib:,.0f` MiB and ours at {glue:text}`bwd_ours_mib:,.0f` MiB
# ({glue:text}`bwd_ratio:.0f`× less): what ours holds is the inputs' gradients and a few tiles.
#
# ### Speed: against PyTorch's CPU backends
#
# On a CPU, `F.scaled_dot_product_attention` dispatches by default to a fused kernel written in C++
# (`_scaled_dot_product_flash_attention_for_cpu`): the same tiling, vectorized, without Python.
# Its `MATH` backend is the reference composition of matmul, softmax and matmul that materializes
# the scores. Ours is PyTorch calls on big tiles, one thread for all three, non-causal, timed
# alternately (the median of a few rounds; one round at the largest sizes):

# %%
def timed(fns: dict, repeat: int, warmup: int) -> dict:
    """Median seconds of each function, run in alternation so that all see the same machine load."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def sdpa_math(q, k, v):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


speed_lengths = pick(SMOKE, [512, 1024, 2048], [512, 1024, 2048, 4096, 8192])
seconds = []
for n in tqdm(speed_lengths, desc="speed"):
    q, k, v = (torch.randn(1, 8, n, 64, generator=gm) for _ in range(3))
    big = n >= 4096
    seconds.append(timed({"ours": lambda: flash.flash_forward(q, k, v),
                          "SDPA (default)": lambda: F.scaled_dot_product_attention(q, k, v),
                          "SDPA (math)": lambda: sdpa_math(q, k, v)},
                         repeat=1 if big else 3, warmup=0 if n > 4096 else 1))
flops = [4 * 8 * n * n * 64 for n in speed_lengths]  # QKᵀ and PV: 2·N²·d multiply-adds each, per head
fig = go.Figure([go.Scatter(x=speed_lengths, y=[f / s[name] / 1e9 for f, s in zip(flops, seconds)], name=name,
                            mode="lines+markers", line=dict(color=viz.PALETTE[i]))
                 for i, name in enumerate(seconds[0])])
fig.update_layout(xaxis=dict(type="log", title="sequence length N"), yaxis_title="GFLOP/s (4·N²·d per head)",
                  height=400, title="Attention forward on one CPU core (B = 1, H = 8, d = 64, fp32, non-causal)",
                  legend=dict(orientation="h", y=-0.2))
fig

# %%
vs_sdpa = [s["SDPA (default)"] / s["ours"] for s in seconds]
vs_math = [s["SDPA (math)"] / s["ours"] for s in seconds]
sdpa_vs_math = [s["SDPA (math)"] / s["SDPA (default)"] for s in seconds]
glue("speed_len_max", speed_lengths[-1])
glue("speed_vs_sdpa_max", vs_sdpa[-1])
glue("speed_vs_math_max", vs_math[-1])
glue("speed_vs_sdpa_min", min(vs_sdpa))
glue("speed_vs_math_min", min(vs_math))
glue("gflops_ours_max", flops[-1] / seconds[-1]["ours"] / 1e9)
assert vs_math[-1] > 1.2 and vs_sdpa[-1] > 0.4, "big tiles: near the C++ kernel, well ahead of materializing"
assert sdpa_vs_math[-1] > 1.2

# %% [markdown]
# At N = {glue:text}`speed_len_max:,`, ours runs at {glue:text}`speed_vs_sdpa_max:.2f`× the speed of
# PyTorch's fused C++ kernel and {glue:text}`speed_vs_math_max:.1f`× that of the materializing math
# backend ({glue:text}`gflops_ours_max:.0f` GFLOP/s on one core); across the sweep, between
# {glue:text}`speed_vs_sdpa_min:.2f`× and {glue:text}`speed_vs_sdpa_max:.2f`× of the fused kernel
# and at least {glue:text}`speed_vs_math_min:.1f`× the math backend. On a CPU the win comes from the
# caches: a 512 × 1,024 tile of scores is 2 MiB, about the L2 cache, while the math backend streams
# a {glue:text}`scores_8k_mib:.0f` MiB matrix per head through DRAM twice. The same algorithm in
# Python calls is within a small factor of a hand-vectorized kernel because nearly all the time is
# in two large matrix multiplies and one exponential per score; what is left is the extra passes of
# the elementwise steps over each tile, which a fused kernel does in registers.
#
# :::{admonition} Interview angle: "what does FlashAttention actually speed up?"
# :class: tip
# Not the FLOPs: it does the same $4N^2d$ multiply-adds, plus a recomputation of $QK^\top$ in the
# backward pass. It removes the **memory traffic** of the $N \times N$ scores and probabilities —
# the forward never writes them, the backward recomputes them from the saved log-sum-exp — so a
# memory-bound operation gets closer to compute-bound. The measurements above show both halves:
# peak memory grows like N ({glue:text}`mem_ratio_max:.0f`× less than naive at
# {glue:text}`mem_len_max:,` tokens), and speed improves over the materializing path
# ({glue:text}`speed_vs_math_max:.1f`× here) because fewer bytes move, not because less is
# computed. Say "IO-aware, exact, tiled with an online softmax, recomputation in backward".
# :::
#
# ## 5. The same algorithm in Triton
#
# On a GPU the loop body must run in one kernel, so the tile of scores lives in registers and
# shared memory instead of making a round trip through HBM. Triton {cite}`tillet2019triton` writes
# such a kernel in Python over tiles: each *program* handles one query tile of one (batch, head),
# loads it once, and loops over key tiles with `tl.dot` for both matrix multiplies. Masks handle
# ragged edges (a tile that runs past the end of the sequence loads zeros and sets its scores to
# −∞) and the causal diagonal; the exponentials use `exp2` with $\log_2 e$ folded into the scale,
# as production kernels do. Here is the whole kernel of `companion.kernels.flash_attention`:

# %%
Code(inspect.getsource(kernels._flash_kernel.fn), language="python")

# %% [markdown]
# Without a GPU, `companion.kernels` sets `TRITON_INTERPRET=1` before importing Triton, and the
# same kernel runs on CPU tensors under Triton's interpreter, one program instance at a time with
# NumPy underneath. That checks the indexing, masks and arithmetic — it says nothing about speed.
# The check at a small size, with grouped-query attention and lengths that are not multiples of the
# 16 × 16 tiles:

# %%
gt = torch.Generator().manual_seed(4)
qt = torch.randn(1, 4, 45, 32, generator=gt)
kt, vt = (torch.randn(1, 2, 61, 32, generator=gt) for _ in range(2))
triton_err, triton_seconds = {}, {}
for causal in (False, True):
    mask = torch.ones(45, 61, dtype=torch.bool).tril(61 - 45) if causal else None
    start = time.perf_counter()
    out_t = kernels.flash_attention(qt, kt, vt, causal=causal)
    triton_seconds[causal] = time.perf_counter() - start
    ref_t = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, enable_gqa=True)
    triton_err[causal] = (out_t.float() - ref_t.float()).abs().max().item()
glue("triton_err", max(triton_err.values()))
glue("triton_seconds", triton_seconds[True])
assert max(triton_err.values()) < (1e-5 if kernels.INTERPRETED else 2e-2)
print(f"Triton FlashAttention vs SDPA: max |error| {triton_err[False]:.1e} (full), {triton_err[True]:.1e} (causal); "
      f"{'interpreted' if kernels.INTERPRETED else 'compiled'} run took {triton_seconds[True]:.2f} s")

# %% [markdown]
# The Triton kernel agrees with `F.scaled_dot_product_attention` to {glue:text}`triton_err:.1e`.
# Under the interpreter the causal call took {glue:text}`triton_seconds:.2f` s for a problem PyTorch
# solves in microseconds — **interpreter timings mean nothing**; the same source compiled on a GPU
# is a real FlashAttention kernel. On a CUDA machine, `python -m companion.kernels` checks all four
# kernels at realistic fp16 sizes and times each against PyTorch (`torch.softmax`, `torch.matmul`,
# `F.scaled_dot_product_attention`, and a gather + SDPA for paged decode); the cell below does the
# same when this notebook runs on a GPU.

# %%
if torch.cuda.is_available():
    kernels.self_check()
else:
    print("No GPU here: the kernels ran under the interpreter above; run `python -m companion.kernels` on a GPU to time them.")

# %% [markdown]
# ### Paged attention in a kernel: decode through block tables
#
# A serving engine stores the KV cache in fixed-size blocks scattered through a pool (the paged
# attention chapter, {cite}`kwon2023pagedattention`). The reference `paged.paged_attention` gathers
# each sequence's blocks into a contiguous tensor and then calls SDPA — an extra copy of the whole
# cache per layer and step. A decode kernel instead reads the blocks where they lie: one program per
# (sequence, query head) walks the sequence's block table, loads each block's keys and values from
# the pool, masks the slots past the context length, and applies the same online softmax across
# blocks. The check uses a real `PagedKVCache` with sequences of different lengths whose blocks are
# interleaved in the pool:

# %%
cache = paged.PagedKVCache(n_layer=1, n_kv_heads=2, head_dim=32, num_blocks=24, block_size=8)
gp = torch.Generator().manual_seed(5)
seq_lens = {"a": 37, "b": 9, "c": 60}
for pos in range(max(seq_lens.values())):  # decode the three sequences in lockstep, so their blocks interleave
    for seq, n in seq_lens.items():
        if pos == 0:
            cache.allocator.allocate(seq, [pos])
        elif pos < n:
            cache.allocator.append(seq, [pos])
        if pos < n:
            kv = torch.randn(2, 1, 2, 32, generator=gp)
            cache.write(0, cache.slots(seq, pos, pos + 1), kv[0], kv[1])
tables = cache.block_tables(list(seq_lens))
lens = torch.tensor(list(seq_lens.values()))
q_dec = torch.randn(3, 8, 32, generator=gp)  # one new token per sequence, 8 query heads over 2 KV heads
out_kernel = kernels.paged_decode(q_dec, cache.k[0], cache.v[0], tables, lens)
out_ref = paged.paged_attention(q_dec[:, :, None], cache.k[0], cache.v[0], tables, lens)[:, :, 0]
paged_err = (out_kernel - out_ref).abs().max().item()
glue("paged_err", paged_err)
assert paged_err < 1e-5

fig = go.Figure(go.Heatmap(z=[[b if j * 8 < n else None for j, b in enumerate(row)] for row, n in
                              zip(tables.tolist(), seq_lens.values())],
                           text=[[str(b) if j * 8 < n else "" for j, b in enumerate(row)] for row, n in
                                 zip(tables.tolist(), seq_lens.values())],
                           texttemplate="%{text}", colorscale="Viridis", showscale=False, xgap=2, ygap=2,
                           y=[f"seq {s} ({n} tokens)" for s, n in seq_lens.items()],
                           hovertemplate="logical block %{x} → physical block %{z}<extra></extra>"))
fig.update_layout(height=260, xaxis_title="logical block (8 tokens each)",
                  title=f"Block tables read by the decode kernel; max |kernel − paged_attention| = {paged_err:.1e}")
fig

# %% [markdown]
# The kernel matches `paged.paged_attention` to {glue:text}`paged_err:.1e`, reading each sequence's
# keys through its block table (the numbers in the cells are physical block ids) without gathering
# them first. Decode attention is a matrix–vector product per head — one query against the whole
# cache — so it is purely memory-bound: the kernel's job is to read each cached byte once, which is
# why production engines (vLLM's paged-attention kernels, FlashAttention's `flash_attn_with_kvcache`)
# fuse the block-table lookup into the attention kernel.
#
# :::{admonition} Interview angle: "how would you write attention for decode with a paged cache?"
# :class: tip
# Parallelize over (sequence, head) — and, for long contexts, also split the context across programs
# and merge the partial (m, ℓ, acc) triples with the same online-softmax rescaling ("split-K" or
# flash-decoding), because one query per sequence leaves too little parallel work per program.
# Read K and V through the block table inside the kernel rather than gathering them; mask the slots
# past the context length in the last block; share each KV head's loads across its GQA query heads.
# The arithmetic intensity is about 1 FLOP per byte, so the target is memory bandwidth, not FLOPs.
# :::
#
# ## 6. What the circulating claims say, measured
#
# Study guides repeat a handful of numbers about FlashAttention. Each is checked here against the
# measurements above, on this machine's CPU where a GPU number cannot be measured.

# %%
a7b = dict(layers=32, heads=32, n=8192, bytes_per=2)  # a 7B-class model (Llama-2-7B's shape), fp16, batch 1
layer_scores_gib = a7b["heads"] * a7b["n"] ** 2 * a7b["bytes_per"] / 2**30
glue("oom_layer_gib", layer_scores_gib)
glue("oom_train_gib", layer_scores_gib * a7b["layers"])
glue("sdpa_vs_math_at_max", sdpa_vs_math[-1])
assert layer_scores_gib < 80 < layer_scores_gib * a7b["layers"]

# %% [markdown]
# | claim | measured here | verdict |
# |---|---|---|
# | "T = 8192 gives a 256 MB score tensor per layer per head" | {glue:text}`scores_8k_mib:.0f` MiB in fp32, {glue:text}`scores_8k_mib_fp16:.0f` MiB in fp16; naive attention's measured peak was {glue:text}`naive_per_head_max_mib:,.0f` MiB per head at N = {glue:text}`mem_len_max:,` (scores and probabilities) | holds for fp32 (256 MiB); half that in the fp16 of real training — and the peak is twice the tensor |
# | "memory drops from O(T²) to O(T)" | naive peak ×{glue:text}`mem_growth_naive:,.0f`, ours ×{glue:text}`mem_growth_ours:.1f` over a {glue:text}`mem_len_factor`× longer sequence; {glue:text}`mem_ratio_max:.0f`× less at N = {glue:text}`mem_len_max:,` | holds, and for the backward pass too ({glue:text}`bwd_ratio:.0f`× less at N = {glue:text}`bwd_len:,`) |
# | "exact, not an approximation" (blockwise online softmax agrees to ~1e-6) | outputs within {glue:text}`err_out:.1e`, gradients within {glue:text}`err_grad:.1e` of SDPA (fp32) | holds |
# | "HBM reads/writes drop ~10×" | IO model, forward: {glue:text}`io_ratio_8k:.1f`× with 128-row query tiles at d = 64 (→ 2B_q/d); the paper measured 40.3 → 4.4 GB (9×) forward + backward on GPT-2 medium | plausible for forward + backward on a GPU with caches; the forward alone saves less in a strict IO count |
# | "wall-clock attention drops 2–4×" (or 2–5×; SDPA "2–3× faster at long contexts") | on one CPU core, PyTorch's fused kernel is {glue:text}`sdpa_vs_math_at_max:.1f`× faster than its math backend at N = {glue:text}`speed_len_max:,`; ours {glue:text}`speed_vs_math_max:.1f`× | the order of magnitude holds on a CPU too; the GPU figures (the paper's 2–4× over PyTorch on GPT-2) cannot be measured here |
# | "standard attention OOMs at 8K+ on an A100" | a 7B-class model (32 heads, fp16, batch 1) holds {glue:text}`oom_layer_gib:.0f` GiB of scores per layer at 8K; training keeps all 32 layers' probabilities: {glue:text}`oom_train_gib:.0f` GiB | true for training (over 80 GB); not for an inference forward, which frees each layer's scores |
# | "SRAM ~50 MB on A100" | — (hardware spec) | misleading: the SRAM FlashAttention tiles for is each SM's shared memory, up to 164 KB on an A100 (about 20 MB over 108 SMs); 40 MB is the A100's L2 cache (50 MB on H100). Tiles are sized per SM, which is why B_q and B_k are 64–128, not thousands |
#
# The version claims — FlashAttention-2 "about 2× faster than v1", FlashAttention-3 "about 1.5×
# faster than v2 on H100" — are GPU measurements from the papers and need a GPU to check; the CPU
# lesson is the same one in miniature: the same arithmetic, with fewer bytes moved, runs faster.
#
# :::{admonition} Interview angle: "what is the online softmax, in two sentences?"
# :class: tip
# Keep, for each row, the maximum seen so far $m$ and the sum $\ell$ of $e^{s - m}$ over the scores
# seen so far; when a new block raises the maximum to $m'$, multiply $\ell$ (and the output
# accumulator) by $e^{m - m'}$ before adding the new block's terms. At the end divide by $\ell$ —
# the result is exactly the softmax-weighted sum, computed in one pass with O(1) state per row, and
# $m + \log \ell$ is the log-sum-exp that the backward pass uses to recompute $P$.
# :::
#
# ## 7. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** A running row has $m = 2$ and $\ell = 3$. The next block's scores are $[4, 1]$. What is
# the new $\ell$? (Two decimals.)

# %%
answer_1 = ...
check(answer_1, 3 * math.exp(2 - 4) + math.exp(0) + math.exp(1 - 4))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# The new maximum is $m' = 4$. Rescale the old sum: $3e^{2-4} = 0.406$; add the new terms
# $e^{4-4} + e^{1-4} = 1 + 0.050$. So $\ell' \approx 1.46$, and $m' + \log \ell' = 4.38$ is the
# log-sum-exp of every score seen so far.
# :::
#
# **2.** In fp32, how many MiB does naive attention's score matrix take for B = 1, H = 16 heads and
# N = 4,096 tokens?

# %%
answer_2 = ...
check(answer_2, 16 * 4096**2 * 4 / MiB)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $16 \times 4096^2 \times 4$ bytes = 1,024 MiB — and the softmax writes a second matrix of the same
# size. The tiled forward holds one $B_q \times B_k$ tile at a time instead: 2 MiB for 512 × 1,024
# in fp32.
# :::
#
# **3.** Under a causal mask with $N$ = 4,096 and square tiles of 512, how many tiles does the
# forward compute (including the diagonal ones)?

# %%
answer_3 = ...
check(answer_3, len(flash.tile_trace(torch.zeros(4096, 1), torch.zeros(4096, 1), True, 512, 512)))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# There are $4096 / 512 = 8$ query tiles and 8 key tiles; query tile $i$ needs key tiles $0 \dots i$,
# so $1 + 2 + \dots + 8 = 36$ tiles of the 64, 8 of them on the diagonal (masked inside). Causal
# attention costs a little over half of the full computation.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(1.46, 3 * math.exp(2 - 4) + math.exp(0) + math.exp(1 - 4))
assert check(1024, 16 * 4096**2 * 4 / MiB)
assert check(36, len(flash.tile_trace(torch.zeros(4096, 1), torch.zeros(4096, 1), True, 512, 512)))

# %% [markdown]
# ## Summary
#
# - Standard attention writes and reads $N \times N$ scores and probabilities; at long context it
#   is limited by memory traffic, not arithmetic.
# - The online softmax keeps a running max $m$ and sum $\ell$ per row and rescales by $e^{m - m'}$;
#   it computes the softmax-weighted sum exactly in one pass over key tiles.
# - FlashAttention tiles queries and keys, never materializes $S$ or $P$, skips future tiles under
#   a causal mask, and saves only the log-sum-exp for a backward pass that recomputes $P$. Ours
#   matches SDPA's outputs and gradients to fp32 rounding.
# - Measured: peak memory O(N) against O(N²) — {glue:text}`mem_ratio_max:.0f`× less than naive at
#   N = {glue:text}`mem_len_max:,` — and {glue:text}`speed_vs_math_max:.1f`× the speed of the
#   materializing path on one CPU core, within a small factor of PyTorch's fused C++ kernel.
# - In Triton the same algorithm is one kernel over tiles; a paged decode kernel reads the KV cache
#   through block tables with the same online softmax. Interpreter runs check correctness only.

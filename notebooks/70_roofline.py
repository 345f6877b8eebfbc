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
# # Hardware and the roofline
#
# A team moves its serving fleet to an accelerator with five times the teraFLOPs and sees 1.2×
# the throughput. Nothing is broken: most of what a language model does at inference time is
# limited by how fast bytes reach the arithmetic units, not by how fast they multiply. The
# **roofline model** turns that into arithmetic — two numbers per machine (peak FLOP/s and memory
# bandwidth) and one per operation (FLOPs per byte moved) predict which resource an operation is
# waiting for, and therefore which optimization can help it: batching, quantization, fusion, tiling
# or a faster chip. Interviews for ML-systems and inference roles probe exactly this ("why is decode
# memory-bound?", "which side of the roofline is your kernel on?", "what does fusion buy?", "what
# is warp divergence?"), and production teams use it to decide what to buy and what to optimize.
# This chapter measures the roofline of the machine it runs on, places real operations on it,
# and compares it with the datasheet rooflines of the A100 and H100.
#
# **You will learn**
# - the roofline model — attainable FLOP/s = min(peak, bandwidth × intensity) — and the ridge point
#   of this CPU, measured, and of the A100 and H100, from their datasheets;
# - the FLOPs and bytes of matmul, decode's matrix-vector product, softmax, LayerNorm, GELU and
#   attention (naive and fused), and where each lands on the measured roofline;
# - why five times the FLOP/s can give 1.2× the throughput, computed on a decode step;
# - the memory hierarchy, measured as bandwidth against working-set size;
# - why decode is bandwidth-bound and prefill compute-bound, and the batch size where that flips;
# - what kernel fusion saves, counted in bytes and measured in time;
# - the matmul ladder from Python loops to BLAS, and what cache tiling buys;
# - warp divergence, shown with two Triton kernels.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/70_roofline.ipynb)
# · Runtime budget on 2 CPU cores: under 40 s with `SMOKE=True` (numba compiles its kernels the
# first time), under 3 minutes in full mode.

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

SMOKE = smoke_default()  # True: smaller sweeps and fewer repeats (≤ 40 s on 2 cores); False: the full chapter

# %%
import inspect
import os
from pathlib import Path

import numba
import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from IPython.display import Code, Markdown, display
from numba import njit
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from companion import matmul as mm
from companion.bench import paired_seconds
from companion import roofline as rl
from companion import viz
from companion.book import check, glue
from companion.config import pick, seed_everything

seed_everything(0)
THREADS = 1  # every measurement on one thread: the machine is shared, and one core is a clean unit
torch.set_num_threads(THREADS)
numba.set_num_threads(THREADS)
GB, GFLOP = 1e9, 1e9
glue("threads", THREADS);

# %% [markdown]
# ## 1. The roofline model
#
# An operation that performs $F$ floating-point operations on $B$ bytes of data has **arithmetic
# intensity** $I = F / B$ FLOPs per byte. On a machine that computes at most $P$ FLOP/s and moves
# at most $\beta$ bytes/s from memory, it needs at least $F/P$ seconds to compute and $B/\beta$
# seconds to move its data; if the two overlap perfectly it takes the larger, so it runs at best at
#
# $$\text{attainable}(I) = \min(P,\ \beta \cdot I)\ \text{FLOP/s}.$$
#
# On a log-log plot this is a slanted roof (bandwidth-bound) meeting a flat one (compute-bound) at
# the **ridge point** $I^* = P / \beta$ {cite}`williams2009roofline`. An operation to the left of the
# ridge is waiting for memory: a faster multiplier will not help it, moving fewer bytes will. One to
# the right is waiting for arithmetic. `companion.roofline` writes the model in a few lines:

# %%
Code(inspect.getsource(rl.Roofline), language="python")

# %% [markdown]
# The datasheet numbers of two data-centre GPUs live in one table of the book's package
# (`companion.batchsim.GPUS`, dense peaks without sparsity): the A100-80GB does 312 TFLOP/s in
# fp16/bf16 on its tensor cores and 19.5 in plain fp32, with 2.0 TB/s of HBM bandwidth; the H100
# SXM 989 and 67, with 3.35 TB/s. Their ridge points:

# %%
gpu_roofs = {(gpu, dtype): rl.Roofline.from_gpu(gpu, dtype) for gpu in ("A100-80GB", "H100-SXM")
             for dtype in ("fp16", "fp32", "int8")}
for (gpu, dtype), roof in gpu_roofs.items():
    glue(f"ridge_{gpu[:4].lower()}_{dtype}", roof.ridge_point)
Markdown("| GPU | dtype | peak (TFLOP/s) | HBM (TB/s) | ridge point (FLOP/byte) |\n|---|---|---|---|---|\n" + "\n".join(
    f"| {gpu} | {dtype} | {r.peak_flops / 1e12:,.1f} | {r.bandwidth / 1e12:.2f} | {r.ridge_point:.1f} |"
    for (gpu, dtype), r in gpu_roofs.items()))

# %%
a100, h100 = gpu_roofs["A100-80GB", "fp16"], gpu_roofs["H100-SXM", "fp16"]
assert 145 < a100.ridge_point < 160 and 290 < h100.ridge_point < 300, "the seeds' ≈150 and ≈295 FLOP/byte"
assert h100.ridge_point > a100.ridge_point, "each generation adds FLOP/s faster than bandwidth"
glue("h100_flops_gain", h100.peak_flops / a100.peak_flops)
glue("h100_bw_gain", h100.bandwidth / a100.bandwidth)
glue("fp16_over_fp32", a100.peak_flops / gpu_roofs["A100-80GB", "fp32"].peak_flops);

# %% [markdown]
# The circulating numbers hold: the A100's fp16 ridge is {glue:text}`ridge_a100_fp16:.0f` FLOP/byte
# ("≈150") and the H100's {glue:text}`ridge_h100_fp16:.0f` ("989 / 3.35 ≈ 295"). An operation must
# do about 150–300 floating-point operations for every byte it reads to keep these chips' tensor
# cores busy. From A100 to H100 the peak grew {glue:text}`h100_flops_gain:.1f`× and the bandwidth
# only {glue:text}`h100_bw_gain:.2f`× — the **memory wall** {cite}`wulf1995hitting,gholami2024memorywall`:
# compute has outpaced memory for decades, so every generation pushes the ridge further right and
# more operations fall to its left. ("FP16 is 16× FP32 on an A100" is also right against plain fp32,
# {glue:text}`fp16_over_fp32:.0f`×; against the TF32 tensor-core mode PyTorch uses for fp32 matmuls
# by default it is 2×.)
#
# ## 2. This machine's roofline, measured
#
# The same two numbers for the CPU running this notebook. The compute roof is the rate of a large
# fp32 matrix multiply in PyTorch (a BLAS kernel close to the hardware's peak); the bandwidth roof
# is McCalpin's **STREAM** benchmark {cite}`mccalpin1995stream`: four kernels over arrays far
# larger than the last-level cache, with bytes counted the STREAM way (each array read or written
# once per element; the extra read a cache does before writing a line is not counted).

# %%
peak = rl.measure_peak_flops(n=pick(SMOKE, 1024, 2048), n_threads=THREADS, repeat=pick(SMOKE, 10, 8))  # best of many: load comes and goes
stream_n = pick(SMOKE, 2**24, 2**25)  # 64 / 128 MB per array, several times the last-level cache
stream_bw = rl.stream(n=stream_n, n_threads=THREADS, repeat=pick(SMOKE, 3, 5))
cpu = rl.Roofline(f"this CPU ({THREADS} thread, fp32)", peak, stream_bw["triad"])
glue("cpu_peak", cpu.peak_flops / GFLOP)
glue("cpu_bw", cpu.bandwidth / GB)
glue("cpu_ridge", cpu.ridge_point)
glue("stream_mb", stream_n * 4 / 2**20)
for k, v in stream_bw.items():
    glue(f"stream_{k}", v / GB)
print(f"peak fp32 matmul {peak / GFLOP:.1f} GFLOP/s; STREAM " +
      ", ".join(f"{k} {v / GB:.1f}" for k, v in stream_bw.items()) + " GB/s")
print(f"ridge point {cpu.ridge_point:.2f} FLOP/byte")
assert all(v > 0 and np.isfinite(v) for v in stream_bw.values())
assert 0.2 < cpu.ridge_point < 100, "a CPU core's ridge sits at a few FLOP/byte"
assert cpu.ridge_point < a100.ridge_point / 5

# %% [markdown]
# One core of this machine reaches {glue:text}`cpu_peak:.0f` GFLOP/s on a matmul and streams
# {glue:text}`cpu_bw:.1f` GB/s (triad; copy {glue:text}`stream_copy:.1f`, scale
# {glue:text}`stream_scale:.1f`, add {glue:text}`stream_add:.1f`), so its ridge point is
# {glue:text}`cpu_ridge:.1f` FLOP/byte — some fifty times lower than a GPU's tensor-core ridge. A CPU
# core is "bandwidth-rich" by comparison: operations that are hopelessly memory-bound on an H100 can
# be compute-bound here, which is one reason a CPU profile is a poor guide to a GPU's.
#
# ## 3. Operations on the roofline
#
# `companion.roofline` counts the FLOPs and the **compulsory bytes** (each input read once, each
# output written once) of the operations a transformer runs. Two of them decide most of this chapter:
#
# - **matmul** (M, K) @ (K, N): $2MNK$ FLOPs on $(MK + KN + MN)$ elements — intensity $n/6$ for a
#   square fp32 matmul, which grows without bound with $n$;
# - **decode's matrix-vector product**: a batch of $b$ token vectors through a $d_{in} \times d_{out}$
#   weight; at $b = 1$ every weight is read to do one multiply and one add, so $I \approx 2$ FLOPs
#   per weight's bytes: 0.5 FLOP/byte in fp32, 1 in fp16.
#
# Softmax, LayerNorm and GELU do a handful of FLOPs per element they read and write; attention
# depends on whether the $T \times T$ score matrix goes to memory (naive) or stays on chip (fused,
# FlashAttention {cite}`dao2022flashattention`):

# %%
Code(inspect.getsource(rl.attention_cost), language="python")

# %% [markdown]
# Each operation below runs in PyTorch at a realistic size, and its achieved GFLOP/s is placed at
# its intensity. Hover over a point for the operation, its shape, its intensity and what it achieved.
# The right panel places the same operations, counted in fp16, under the datasheet rooflines of the
# A100 and H100 (there they sit *on* the roof by construction — it is the model's upper bound, not
# a measurement).

# %%
ops = rl.standard_ops(d=1024, rows=8192, seq_lens=pick(SMOKE, (256, 512), (256, 1024, 2048)),
                      head_dim=64, heads=4, gemv_d=4096)
measured = [rl.measure_op(cost, fn, repeat=5, n_threads=THREADS) for cost, fn in tqdm(ops, desc="operations")]


def fp16(cost: rl.OpCost) -> rl.OpCost:
    """The same operation in fp16: same FLOPs, half the bytes."""
    return rl.OpCost(cost.name, cost.shape.replace("fp32", "fp16"), cost.flops, cost.bytes / 2)


def roof_line(roof: rl.Roofline, xs: np.ndarray, scale: float, color: str, dash: str = "solid") -> go.Scatter:
    return go.Scatter(x=xs, y=roof.attainable(xs) / scale, mode="lines", name=f"{roof.name} (ridge {roof.ridge_point:.1f})",
                      line=dict(color=color, dash=dash, width=2), hoverinfo="skip")


xs = np.geomspace(0.05, 2000, 300)
symbols = {"matmul": "square", "decode matvec": "circle", "batched matvec": "circle-open", "softmax": "diamond",
           "layernorm": "triangle-up", "gelu": "triangle-down", "attention, naive": "x", "attention, fused": "star"}
fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("this CPU: measured (GFLOP/s)", "A100 and H100 datasheets, fp16 (TFLOP/s)"))
fig.add_trace(roof_line(cpu, xs, GFLOP, "black"), row=1, col=1)
for i, m in enumerate(measured):
    c = m.cost
    fig.add_scatter(x=[c.intensity], y=[m.flops_per_s / GFLOP], mode="markers", name=c.name, legendgroup=c.name,
                    showlegend=c.name not in [x.cost.name for x in measured[:i]],
                    marker=dict(symbol=symbols[c.name], size=12, color=viz.PALETTE[list(symbols).index(c.name) % 8]),
                    customdata=[[c.shape, m.bytes_per_s / GB, m.flops_per_s / cpu.attainable(c.intensity)]],
                    hovertemplate=f"<b>{c.name}</b><br>%{{customdata[0]}}<br>intensity %{{x:.2f}} FLOP/B<br>"
                                  "achieved %{y:.1f} GFLOP/s, %{customdata[1]:.1f} GB/s<br>"
                                  "%{customdata[2]:.0%} of the roof<extra></extra>", row=1, col=1)
for roof, color in ((a100, viz.PALETTE[0]), (h100, viz.PALETTE[1])):
    fig.add_trace(roof_line(roof, xs, 1e12, color), row=1, col=2)
for i, m in enumerate(measured):
    c = fp16(m.cost)
    fig.add_scatter(x=[c.intensity], y=[a100.attainable(c.intensity) / 1e12], mode="markers", legendgroup=c.name,
                    showlegend=False, marker=dict(symbol=symbols[c.name], size=11, color=viz.PALETTE[list(symbols).index(c.name) % 8]),
                    customdata=[[c.shape, a100.bound(c.intensity), h100.bound(c.intensity)]],
                    hovertemplate=f"<b>{c.name}</b><br>%{{customdata[0]}}<br>intensity %{{x:.2f}} FLOP/B<br>"
                                  "A100 at most %{y:.1f} TFLOP/s (%{customdata[1]}-bound); H100: %{customdata[2]}-bound"
                                  "<extra></extra>", row=1, col=2)
fig.update_xaxes(type="log", title_text="arithmetic intensity (FLOP/byte)")
fig.update_yaxes(type="log", title_text="GFLOP/s", row=1, col=1)
fig.update_yaxes(type="log", title_text="TFLOP/s", row=1, col=2)
fig.update_layout(title="Operations on the roofline", height=520, legend=dict(orientation="h", y=-0.22))
fig.show()

# %%
mat = next(m for m in measured if m.cost.name == "matmul")
gemv = next(m for m in measured if m.cost.name == "decode matvec")
gemv64 = next(m for m in measured if m.cost.name == "batched matvec")
naive_att = [m for m in measured if m.cost.name == "attention, naive"]
fused_att = [m for m in measured if m.cost.name == "attention, fused"]
glue("mat_frac", mat.flops_per_s / cpu.peak_flops)
glue("mat_intensity", mat.cost.intensity)
glue("gemv_intensity", gemv.cost.intensity)
glue("gemv_gflops", gemv.flops_per_s / GFLOP)
glue("gemv_gbs", gemv.bytes_per_s / GB)
glue("gemv_bw_frac", gemv.bytes_per_s / cpu.bandwidth)
glue("gemv64_gflops", gemv64.flops_per_s / GFLOP)
glue("gemv64_intensity", gemv64.cost.intensity)
glue("gemv_mb", 4096 * 4096 * 4 / 2**20)
for name in ("softmax", "layernorm", "gelu"):
    m = next(x for x in measured if x.cost.name == name)
    glue(f"{name}_intensity", m.cost.intensity)
    glue(f"{name}_frac", m.flops_per_s / cpu.attainable(m.cost.intensity))
    glue(f"{name}_gbs", m.bytes_per_s / GB)
# in fp16 the same operations move half the bytes: twice the intensity, still far left of a GPU's ridge
fp16_below = [gpu.ridge_point / (2 * x.cost.intensity) for gpu in (a100, h100)
              for x in measured if x.cost.name in ("softmax", "layernorm", "gelu")]
glue("elementwise_below_min", min(fp16_below))
glue("elementwise_below_max", max(fp16_below))
glue("att_T", int(naive_att[-1].cost.shape.split(",")[0][2:]))
glue("att_naive_intensity", naive_att[-1].cost.intensity)
glue("att_fused_intensity", fused_att[-1].cost.intensity)
glue("att_speedup", naive_att[-1].seconds / fused_att[-1].seconds)

assert mat.cost.intensity > cpu.ridge_point and mat.flops_per_s > 0.3 * cpu.peak_flops, "matmul: compute-bound, near peak"
assert gemv.cost.intensity < cpu.ridge_point and gemv.flops_per_s < 0.6 * cpu.peak_flops, "decode matvec: bandwidth-bound"
assert 0.2 < gemv.bytes_per_s / cpu.bandwidth < 3, "its achieved bandwidth is of the order of STREAM's"
assert gemv64.flops_per_s > 2 * gemv.flops_per_s, "the same weights at batch 64 do far more work per second"
assert all(f.cost.intensity > n.cost.intensity for n, f in zip(naive_att, fused_att))
for m in measured:
    if m.cost.name in ("softmax", "layernorm", "gelu"):  # bandwidth-bound everywhere: here, and far more so on a GPU
        assert m.cost.intensity < cpu.ridge_point and fp16(m.cost).intensity < a100.ridge_point / 50

# %% [markdown]
# Read the left panel from right to left. The 1024-cube **matmul** has an intensity of
# {glue:text}`mat_intensity:.0f` FLOP/byte, far right of the ridge, and reaches
# {glue:text}`mat_frac:.0%` of the measured peak — it *is* the peak, up to noise. The **decode
# matvec** reads a {glue:text}`gemv_mb:.0f` MB fp32 weight (a 4096 × 4096 layer, the width of a 7B
# model) to do {glue:text}`gemv_intensity:.2f` FLOP/byte: it achieves {glue:text}`gemv_gflops:.1f`
# GFLOP/s while moving {glue:text}`gemv_gbs:.1f` GB/s, {glue:text}`gemv_bw_frac:.0%` of STREAM —
# it sits on the slanted roof. The same weights with 64 token vectors
# ({glue:text}`gemv64_intensity:.0f` FLOP/byte) run at {glue:text}`gemv64_gflops:.0f` GFLOP/s.
#
# **Softmax, LayerNorm and GELU** have intensities of {glue:text}`softmax_intensity:.2f`,
# {glue:text}`layernorm_intensity:.2f` and {glue:text}`gelu_intensity:.2f` FLOP/byte — left of any
# ridge, and in fp16 {glue:text}`elementwise_below_min:.0f`–{glue:text}`elementwise_below_max:.0f`×
# below an A100's or H100's. On this CPU, on 32 MB inputs, they reach
# {glue:text}`softmax_frac:.0%`, {glue:text}`layernorm_frac:.0%` and {glue:text}`gelu_frac:.0%` of
# their slanted roof. Falling short is common for them: their FLOP counts treat an `exp`, a `tanh`
# or a reciprocal square root as one operation though each costs a dozen or more instructions, and
# a library kernel may make more than one pass over its input. The roofline is an upper bound; the
# distance below it is the room an optimized kernel has.
# **Attention** shows what fusion does to intensity: at T = {glue:text}`att_T` the naive version,
# which writes the T × T scores and probabilities to memory and reads them back, has an intensity of
# {glue:text}`att_naive_intensity:.0f` FLOP/byte; the fused one {glue:text}`att_fused_intensity:.0f`,
# and PyTorch's fused CPU kernel (`scaled_dot_product_attention`) ran {glue:text}`att_speedup:.1f`×
# faster. (On this CPU the scores of one head still fit in the caches, so the naive version's
# "memory" traffic is mostly cache traffic; on a GPU the same bytes go to HBM — the next section
# shows why that distinction matters.)
#
# ### The seeds' numbers for decode
#
# A widely shared explanation of LLM inference says that batch-1 decode has "intensity 2, so we are
# 100× memory-bound" on an H100, and that "batch 128 gives intensity 256". Counting bytes:

# %%
d7b = 4096
dec1 = rl.gemv_cost(d7b, d7b, 1, "bf16")
dec128 = rl.gemv_cost(d7b, d7b, 128, "bf16")
h100_bf16 = rl.Roofline.from_gpu("H100-SXM", "bf16")
glue("dec1_intensity", dec1.intensity)
glue("dec1_below", h100_bf16.ridge_point / dec1.intensity)
glue("dec128_intensity", dec128.intensity)
glue("h100_ridge_bf16", h100_bf16.ridge_point)
print(f"batch 1, bf16: {dec1.intensity:.2f} FLOP/byte, {h100_bf16.ridge_point / dec1.intensity:.0f}× below the H100 ridge; "
      f"batch 128: {dec128.intensity:.0f} FLOP/byte")
assert 0.99 < dec1.intensity < 1.0 and 250 < h100_bf16.ridge_point / dec1.intensity < 300
assert 110 < dec128.intensity < 128

# %% [markdown]
# Each bf16 weight is **2 bytes** and takes part in **2 FLOPs** (a multiply and an add), so batch-1
# decode does {glue:text}`dec1_intensity:.2f` FLOP/byte, not 2 — {glue:text}`dec1_below:.0f`× below
# the H100's ridge of {glue:text}`h100_ridge_bf16:.0f`, not 100×. At batch 128 it is
# {glue:text}`dec128_intensity:.0f` FLOP/byte (128 less the activations' bytes), not 256: still
# short of the ridge. The conclusion of the seed survives — decode is deeply bandwidth-bound and
# batching is how a server climbs the slanted roof — but the numbers are off by a factor of two.
#
# ## 4. Five times the FLOP/s, 1.2× the throughput
#
# Now the puzzle from the opening. The roofline gives a lower bound on time for a sequence of
# operations, $\sum_i \max(F_i / P,\ B_i / \beta)$, so we can ask what an accelerator with five
# times the peak and the same bandwidth would do for a workload. Take one decode step of a
# 7B-parameter model (32 layers of width 4096: the four projection matrices and the 11008-wide MLP
# at batch $b$, plus attention reading a 1,024-token KV cache per sequence) in fp16 on an A100, and
# compare 5× the FLOP/s against 5× the bandwidth:

# %%
def decode_step(batch: int, context: int = 1024, d: int = 4096, ffn: int = 11008, layers: int = 32) -> list[rl.OpCost]:
    """The FLOPs and bytes of one decode step of a Llama-2-7B-shaped model, fp16, for ``batch`` sequences."""
    per_layer = [rl.gemv_cost(d, 3 * d, batch, "fp16"), rl.gemv_cost(d, d, batch, "fp16"),
                 rl.gemv_cost(d, 2 * ffn, batch, "fp16"), rl.gemv_cost(ffn, d, batch, "fp16"),
                 rl.OpCost("attention over the KV cache", f"{batch} × {context} tokens", 4.0 * batch * context * d,
                           2.0 * batch * context * d * 2),  # q·K and p·V; K and V read, fp16
                 rl.layernorm_cost(batch, d, "fp16"), rl.layernorm_cost(batch, d, "fp16")]
    return per_layer * layers


batches = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
more_flops, more_bw = a100.scaled(flops=5), a100.scaled(bandwidth=5)


def gain(roof: rl.Roofline, batch: int, context: int) -> float:
    return a100.seconds(decode_step(batch, context)) / roof.seconds(decode_step(batch, context))


gain_flops = {ctx: [gain(more_flops, b, ctx) for b in batches] for ctx in (128, 1024)}
gain_bw = [gain(more_bw, b, 1024) for b in batches]
prefill = [rl.matmul_cost(2048, n, k, "fp16") for n, k in ((3 * d7b, d7b), (d7b, d7b), (2 * 11008, d7b), (d7b, 11008))]
gain_prefill = a100.seconds(prefill) / more_flops.seconds(prefill)


def memory_bound_share(costs: list[rl.OpCost], roof: rl.Roofline) -> float:
    """The share of roofline time spent in operations that wait for memory."""
    times = [(c.flops / roof.peak_flops, c.bytes / roof.bandwidth) for c in costs]
    return sum(m for f, m in times if m >= f) / sum(max(f, m) for f, m in times)


amdahl = 1 / (0.8 + 0.2 / 5)
b12 = next(b for b, g in zip(batches, gain_flops[128]) if g >= 1.2)
glue("amdahl", amdahl)
glue("gain_flops_b1", gain_flops[1024][0])
glue("gain_bw_b1", gain_bw[0])
glue("gain_flops_max_1024", max(gain_flops[1024]))
glue("gain_flops_max_128", max(gain_flops[128]))
glue("gain_bw_b2048", gain_bw[-1])
glue("gain_prefill", gain_prefill)
glue("b12", b12)
glue("mem_share_b12", memory_bound_share(decode_step(b12, 128), a100))
glue("mem_share_1024", memory_bound_share(decode_step(batches[-1], 1024), a100))
fig = go.Figure()
for ctx, dash in ((128, "dot"), (1024, "solid")):
    fig.add_scatter(x=batches, y=gain_flops[ctx], mode="lines+markers", line=dict(color=viz.PALETTE[0], dash=dash),
                    name=f"5× the FLOP/s, same bandwidth ({ctx:,}-token contexts)")
fig.add_scatter(x=batches, y=gain_bw, mode="lines+markers", line=dict(color=viz.PALETTE[1]),
                name="5× the bandwidth, same FLOP/s (1,024-token contexts)")
fig.add_hline(y=1.2, line_dash="dot", annotation_text="1.2×", annotation_position="top left")
fig.update_xaxes(type="log", title_text="decode batch (sequences)")
fig.update_yaxes(title_text="speedup of one decode step (roofline)", range=[0.9, 5.3])
fig.update_layout(title="A 7B model's decode step on an A100, with one roof raised five times", height=440,
                  legend=dict(orientation="h", y=-0.25))
fig.show()
assert gain_flops[1024][0] < 1.01 and gain_bw[0] > 4.5, "batch-1 decode: bandwidth is everything"
assert all(np.diff(gain_flops[1024]) >= -1e-9) and max(gain_flops[1024]) < max(gain_flops[128]) < 2
assert gain_prefill > 4, "prefill gets nearly the full 5×"
assert abs(amdahl - 1.19) < 0.01

# %% [markdown]
# At batch 1, five times the FLOP/s speeds the decode step up {glue:text}`gain_flops_b1:.2f`× and five
# times the bandwidth {glue:text}`gain_bw_b1:.2f`×. Batching lets the weight matmuls climb toward the
# ridge, but each sequence still reads its own KV cache at about 1 FLOP/byte, so with 1,024-token
# contexts the 5× FLOP/s never buys more than {glue:text}`gain_flops_max_1024:.2f`× (at batch 2,048
# {glue:text}`mem_share_1024:.0%` of the step is still memory-bound), and even with 128-token contexts
# at most {glue:text}`gain_flops_max_128:.2f`×. Only the 2,048-token prefill, compute-bound, gets
# {glue:text}`gain_prefill:.1f`×. The seed's "5× the teraFLOPs gave 1.2×" is Amdahl's law on the
# roofline: if 80% of the time waits for memory, $1 / (0.8 + 0.2/5)$ = {glue:text}`amdahl:.2f`. The
# 128-token decode step first reaches 1.2× at batch {glue:text}`b12`. The claim holds, and for
# serving workloads dominated by decode with long contexts the gain is smaller still.
#
# :::{admonition} Interview angle: "5× the FLOPs, 1.2× the throughput — why?"
# :class: tip
# Say "roofline", then do the arithmetic. Decode reads every weight once per step and does 2 FLOPs
# with it: about 1 FLOP/byte in fp16, against a ridge of ~150 (A100) or ~295 (H100). It runs on the
# slanted roof, so its speed is bandwidth × intensity and FLOP/s do not enter; only the compute-bound
# part (prefill, large-batch matmuls) gets faster, and Amdahl's law gives the rest: 80% memory-bound
# time caps a 5× compute upgrade at 1.19×. The levers are the ones that move bytes or intensity:
# bigger batches (continuous batching), fewer bytes per weight (quantization), fewer reads per token
# (speculative decoding, GQA for the KV cache), and fused kernels — and when buying hardware, compare
# HBM bandwidth, not just TFLOPS.
# :::
#
# ## 5. The memory hierarchy
#
# "Bandwidth" is not one number. Data close to the cores — registers, L1, L2 — moves much faster
# than data in DRAM (or a GPU's HBM), and the roof an operation sees depends on where its working
# set fits. Repeating a triad over arrays of growing size shows each level as a plateau; each point
# repeats the kernel inside compiled code so that even a few-KB working set is timed, not Python's
# call overhead. The dotted lines are this CPU's cache sizes, as the operating system reports them.

# %%
def cache_sizes() -> dict[str, int]:
    """Per-core data/unified cache sizes in bytes, from Linux's sysfs (empty elsewhere)."""
    out = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        if kind != "Instruction":
            mult = {"K": 2**10, "M": 2**20}.get(size[-1], 1)
            out[f"L{level}"] = int(size.rstrip("KM")) * mult
    return out


caches = cache_sizes()
working_sets = [int(x) for x in np.geomspace(2**13, pick(SMOKE, 2**27, 2**28), pick(SMOKE, 15, 31))]
sweep = [rl.bandwidth_sweep([ws], bytes_per_point=pick(SMOKE, 2**27, 2**29), repeat=pick(SMOKE, 2, 3))[0]
         for ws in tqdm(working_sets, desc="working sets")]
ws_bytes = np.array([w for w, _ in sweep])
bw_sweep = np.array([b for _, b in sweep]) / GB

fig = go.Figure(go.Scatter(x=ws_bytes / 2**10, y=bw_sweep, mode="lines+markers", name="triad, one thread",
                           hovertemplate="working set %{x:,.0f} KB<br>%{y:.1f} GB/s<extra></extra>"))
for level, size in caches.items():
    fig.add_vline(x=size / 2**10, line_dash="dot", annotation_text=f"{level} {size / 2**10:,.0f} KB")
fig.add_hline(y=cpu.bandwidth / GB, line_dash="dash", line_color="gray", annotation_text="STREAM triad (DRAM)",
              annotation_position="bottom left")
fig.update_xaxes(type="log", title_text="working set (KB, three arrays)")
fig.update_yaxes(type="log", title_text="GB/s")
fig.update_layout(title="Bandwidth against working-set size: the memory hierarchy, measured", height=430)
fig.show()

# %%
small = bw_sweep[ws_bytes <= 32 * 2**10].max()
large = bw_sweep[ws_bytes >= 4 * caches.get("L3", 32 * 2**20)].mean() if (ws_bytes >= 4 * caches.get("L3", 32 * 2**20)).any() \
    else bw_sweep[-1]
glue("bw_l1", small)
glue("bw_dram", large)
glue("bw_ratio", small / large)
assert small > 2.5 * large, "data in L1 moves several times faster than data in DRAM"
assert bw_sweep[0] > bw_sweep[-1]

# %% [markdown]
# A working set that fits in L1 streams at {glue:text}`bw_l1:.0f` GB/s; one far larger than the
# last-level cache at {glue:text}`bw_dram:.0f` GB/s — {glue:text}`bw_ratio:.0f`× slower, with a
# step at each cache level. A GPU has the same shape at a larger scale: registers, then shared memory
# and L1 (about 200 KB per SM), then L2 (40 MB on an A100, 50 MB on an H100 — not the "~50 MB SRAM"
# one seed gives the A100), then HBM. The seed's GPU hierarchy puts registers near 80 TB/s, shared
# memory near 20 TB/s and HBM near 2 TB/s: an order of magnitude between the nearest memory and the
# farthest, as on this CPU. Every fast kernel — tiled matmul (section 8), FlashAttention — is a plan
# to do most of its work from the top of this hierarchy.
#
# ## 6. Decode is bandwidth-bound, prefill compute-bound
#
# A linear layer processes the tokens given to it in one matmul: at decode, one token per sequence
# in the batch; at prefill, every prompt token. Its intensity is about $b/2$ FLOP/byte in fp32 for
# $b$ tokens (each weight read once, used $b$ times), so as $b$ grows the layer walks along the
# slanted roof and meets the flat one where $b/2$ reaches the ridge. Two layers, timed at
# $b$ = 1 … 512: a 4096 × 4096 layer (a 7B model's width; 64 MB, far beyond the caches) and the
# 192 → 768 MLP projection of the book's MiniGPT (576 KB, which lives in L2).

# %%
def layer_sweep(d_in: int, d_out: int, tokens: list[int], repeat: int) -> list[rl.Measured]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(d_in, d_out, generator=g)
    out = []
    for b in tqdm(tokens, desc=f"{d_in}→{d_out} layer", leave=False):
        x = torch.randn(b, d_in, generator=g)
        out.append(rl.measure_op(rl.gemv_cost(d_in, d_out, b), lambda x=x: x @ w, repeat=repeat, n_threads=THREADS))
    return out


tokens = pick(SMOKE, [1, 2, 4, 8, 16, 64, 256], [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
big = layer_sweep(4096, 4096, tokens, pick(SMOKE, 2, 4))
mini = layer_sweep(192, 768, tokens, pick(SMOKE, 5, 10))


def crossover(d_in: int, d_out: int, roof: rl.Roofline, dtype: str = "fp32") -> int:
    """The smallest batch at which the layer's intensity reaches the ridge point."""
    return next(b for b in range(1, 100_000) if rl.gemv_cost(d_in, d_out, b, dtype).intensity >= roof.ridge_point)


b_cpu = crossover(4096, 4096, cpu)
b_a100, b_h100 = crossover(4096, 4096, a100, "fp16"), crossover(4096, 4096, h100, "fp16")
fig = go.Figure()
for name, runs, color in (("4096×4096 (64 MB)", big, viz.PALETTE[0]), ("MiniGPT 192→768 (576 KB)", mini, viz.PALETTE[2])):
    fig.add_scatter(x=tokens, y=[m.flops_per_s / GFLOP for m in runs], mode="lines+markers", name=f"measured, {name}",
                    line=dict(color=color), customdata=[[m.cost.intensity, m.bytes_per_s / GB] for m in runs],
                    hovertemplate="b = %{x}<br>%{y:.1f} GFLOP/s<br>intensity %{customdata[0]:.1f} FLOP/B, "
                                  "%{customdata[1]:.1f} GB/s<extra></extra>")
fig.add_scatter(x=tokens, y=[cpu.attainable(rl.gemv_cost(4096, 4096, b).intensity) / GFLOP for b in tokens], mode="lines",
                name="roofline, 4096×4096", line=dict(color="black", dash="dash"))
fig.add_vline(x=b_cpu, line_dash="dot", annotation_text=f"ridge: b = {b_cpu}")
fig.update_xaxes(type="log", title_text="tokens per matmul (decode batch, or prompt length at prefill)")
fig.update_yaxes(type="log", title_text="GFLOP/s")
fig.update_layout(title="A linear layer climbs the slanted roof as it gets more tokens", height=450,
                  legend=dict(orientation="h", y=-0.25))
fig.show()

# %%
gf_big = [m.flops_per_s / GFLOP for m in big]
gf_mini = [m.flops_per_s / GFLOP for m in mini]
last = tokens[-1]
glue("b_cpu", b_cpu)
glue("b_a100", b_a100)
glue("b_h100", b_h100)
glue("big_b1", gf_big[0])
glue("big_last", gf_big[-1])
glue("big_gain", gf_big[-1] / gf_big[0])
glue("big_b1_gbs", big[0].bytes_per_s / GB)
glue("mini_b1", gf_mini[0])
glue("mini_b1_gbs", mini[0].bytes_per_s / GB)
glue("last_tokens", last)
assert gf_big[-1] > 3 * gf_big[0], "achieved GFLOP/s climbs with the batch"
assert tokens[-1] >= 256 and gf_big[tokens.index(256)] > gf_big[0]
assert gf_big[0] < 0.6 * cpu.peak_flops / GFLOP, "batch 1 is far below the compute roof"
assert mini[0].bytes_per_s > 1.5 * big[0].bytes_per_s, "a cache-resident weight streams faster than one in DRAM"
assert b_a100 > 100 and b_h100 > b_a100

# %% [markdown]
# The 4096-wide layer does {glue:text}`big_b1:.1f` GFLOP/s on one token — moving
# {glue:text}`big_b1_gbs:.0f` GB/s, the DRAM roof — and {glue:text}`big_last:.0f` GFLOP/s on
# {glue:text}`last_tokens`, {glue:text}`big_gain:.0f`× more work per second from the same weights.
# The roofline puts the turn at $b$ = {glue:text}`b_cpu` on this CPU; on an A100 in fp16 the same
# layer needs {glue:text}`b_a100` tokens per matmul and on an H100 {glue:text}`b_h100`. That is the
# whole story of LLM serving in one plot: **prefill** multiplies hundreds or thousands of prompt tokens
# by each weight, right of the ridge, compute-bound; **decode** multiplies one token per sequence,
# far left of it, bandwidth-bound; and a server batches decodes (continuous batching, chapter 6.3)
# to climb the slanted roof. The MiniGPT layer shows the other half of the hierarchy lesson: its
# weights fit in L2, so at batch 1 it streams them at {glue:text}`mini_b1_gbs:.0f` GB/s — above the
# DRAM roof, because its roof is the cache's. Small models on CPUs often live there.
#
# :::{admonition} Interview angle: "which side of the roofline is your kernel on?"
# :class: tip
# Compute its intensity on paper (FLOPs over the bytes it must move), compare with the ridge point
# of the chip in that precision, then measure: achieved bandwidth near the peak (Nsight Compute's
# "memory throughput", or bytes / time) means bandwidth-bound, achieved FLOP/s near the peak means
# compute-bound, neither means latency- or overhead-bound (launches, synchronization, too little
# parallelism). The optimization follows from the side: left of the ridge, move fewer bytes (fuse,
# quantize, batch, keep data in SRAM); right of it, use the tensor cores and lower precision.
# Model-bandwidth utilization (bytes of weights and KV cache per step ÷ step time ÷ peak bandwidth)
# is the decode-side analogue of MFU.
# :::
#
# ## 7. Kernel fusion, counted in bytes
#
# A chain of elementwise operations — say $y = \mathrm{GELU}(a x + b)$ — run eagerly is three
# kernels: the multiply reads $x$ and writes a temporary, the add reads it and writes another, GELU
# reads that and writes $y$. Each is bandwidth-bound, and the chain moves $6n$ elements for $2n$ of
# useful traffic. A **fused** kernel does all three in registers in one pass: read $x$, write $y$.
# Compilers do this automatically (`torch.compile`'s Inductor, XLA, TensorRT); here it is by hand in
# numba, with a polynomial `tanh` (the rational approximation Eigen and XLA use) so that the loop
# vectorizes, and `error_model="numpy"` so that numba does not guard every division with a
# zero check — with that check, LLVM cannot vectorize the loop at all.

# %%
f32 = np.float32


@njit(fastmath=True, error_model="numpy", inline="always")
def fast_tanh(x):
    """tanh(x) ≈ x · P(x²) / Q(x²), |error| < 1e-6 in fp32: only multiplies, adds and one divide."""
    x = min(max(x, f32(-7.90531110763549805)), f32(7.90531110763549805))  # beyond: tanh = ±1 in fp32
    x2 = x * x
    p = f32(-2.76076847742355e-16) * x2 + f32(2.00018790482477e-13)  # Horner, odd numerator
    p = p * x2 + f32(-8.60467152213735e-11)
    p = p * x2 + f32(5.12229709037114e-08)
    p = p * x2 + f32(1.48572235717979e-05)
    p = p * x2 + f32(6.37261928875436e-04)
    p = p * x2 + f32(4.89352455891786e-03)
    q = f32(1.19825839466702e-06) * x2 + f32(1.18534705686654e-04)  # even denominator
    q = q * x2 + f32(2.26843463243900e-03)
    q = q * x2 + f32(4.89352518554385e-03)
    return x * p / q


@njit(fastmath=True, error_model="numpy")
def fused_gelu(x, a, b, out):
    """out = GELU(a·x + b), tanh form, in one pass: x read once, out written once."""
    for i in range(x.size):
        u = x[i] * a + b
        out[i] = f32(0.5) * u * (f32(1.0) + fast_tanh(f32(0.7978845608) * (u + f32(0.044715) * u * u * u)))


@njit(fastmath=True, error_model="numpy")
def fused_relu(x, a, b, out):
    """out = ReLU(a·x + b) in one pass."""
    for i in range(x.size):
        out[i] = max(x[i] * a + b, f32(0.0))


Code(inspect.getsource(fast_tanh.py_func) + "\n\n" + inspect.getsource(fused_gelu.py_func), language="python")

# %%
n_fuse = 2**24  # 64 MB per array: beyond the caches, so every pass goes to DRAM
x = torch.randn(n_fuse, generator=torch.Generator().manual_seed(0))
t1, t2, out = torch.empty(n_fuse), torch.empty(n_fuse), torch.empty(n_fuse)
a_, b_ = 1.1, 0.1


def unfused_gelu():
    torch.mul(x, a_, out=t1)  # read x, write t1
    torch.add(t1, b_, out=t2)  # read t1, write t2
    torch.ops.aten.gelu.out(t2, approximate="tanh", out=out)  # read t2, write out


def unfused_relu():
    torch.mul(x, a_, out=t1)
    torch.add(t1, b_, out=t2)
    torch.clamp_min(t2, 0.0, out=out)


xn, on = x.numpy(), out.numpy()  # numpy views of the same memory
af, bf = np.float32(a_), np.float32(b_)
chains = {}
for name, unfused, fused, ref in (
        ("GELU(a·x + b)", unfused_gelu, lambda: fused_gelu(xn, af, bf, on), lambda: F.gelu(x * a_ + b_, approximate="tanh")),
        ("ReLU(a·x + b)", unfused_relu, lambda: fused_relu(xn, af, bf, on), lambda: torch.relu(x * a_ + b_))):
    fused()
    torch.testing.assert_close(out, ref(), rtol=1e-5, atol=1e-5)  # the fused kernel computes the same thing
    t_un, t_fu = paired_seconds(unfused, fused, repeat=9)  # alternated, medians: both see the same load
    chains[name] = dict(unfused_s=t_un, fused_s=t_fu, unfused_bytes=6 * 4 * n_fuse, fused_bytes=2 * 4 * n_fuse)
copy_s, _ = paired_seconds(lambda: out.copy_(x), lambda: fused_gelu(xn, af, bf, on), repeat=9)

fig = go.Figure()
for kind, color in (("unfused", viz.PALETTE[1]), ("fused", viz.PALETTE[2])):
    fig.add_bar(x=list(chains), y=[c[f"{kind}_s"] * 1e3 for c in chains.values()], name=f"{kind} ({chains['ReLU(a·x + b)'][f'{kind}_bytes'] / 2**20:.0f} MB moved)",
                marker_color=color, text=[f"{c[f'{kind}_s'] * 1e3:.1f} ms" for c in chains.values()], textposition="outside")
fig.add_hline(y=copy_s * 1e3, line_dash="dot", annotation_text="one copy of x (the floor: read once, write once)")
fig.update_layout(title=f"Three elementwise operations on {n_fuse:,} floats, eager and fused", yaxis_title="ms",
                  barmode="group", height=420)
fig.show()

# %%
relu, gelu = chains["ReLU(a·x + b)"], chains["GELU(a·x + b)"]
glue("fuse_mb_unfused", relu["unfused_bytes"] / 2**20)
glue("fuse_mb_fused", relu["fused_bytes"] / 2**20)
glue("relu_speedup", relu["unfused_s"] / relu["fused_s"])
glue("gelu_speedup", gelu["unfused_s"] / gelu["fused_s"])
glue("relu_unfused_gbs", relu["unfused_bytes"] / relu["unfused_s"] / GB)
glue("gelu_unfused_ms", gelu["unfused_s"] * 1e3)
glue("gelu_fused_ms", gelu["fused_s"] * 1e3)
assert relu["unfused_s"] > 1.3 * relu["fused_s"], "three passes over DRAM cost more than one"
assert gelu["unfused_s"] > 1.5 * gelu["fused_s"]
assert gelu["fused_s"] < 4 * copy_s, "the fused GELU runs at close to the speed of a copy"

# %% [markdown]
# Eager execution moves {glue:text}`fuse_mb_unfused:.0f` MB, the fused kernel
# {glue:text}`fuse_mb_fused:.0f` MB. For ReLU, where each operation is one instruction, time follows
# bytes and then some (each eager pass also reads its output's cache lines before writing them):
# the fused version is {glue:text}`relu_speedup:.1f`× faster, and the eager chain moves its
# bytes at {glue:text}`relu_unfused_gbs:.0f` GB/s — each kernel on the slanted roof. For GELU the
# fused kernel is {glue:text}`gelu_speedup:.1f`× faster ({glue:text}`gelu_unfused_ms:.0f` ms →
# {glue:text}`gelu_fused_ms:.1f` ms, close to the dotted line of a plain copy): on one CPU core PyTorch's `tanh`-GELU is itself compute-heavy, so the saving is the bytes *and* a
# cheaper inner loop. On a GPU, with a ridge near 10 FLOP/byte even for plain fp32 CUDA cores,
# every one of these operations is bandwidth-bound and fusion's gain is close to the ratio of bytes;
# the "1.5–2× from `torch.compile` on an A100" that the seeds quote is that ratio for typical chains.
#
# :::{admonition} Interview angle: "how does kernel fusion help?"
# :class: tip
# Elementwise and normalization operations are bandwidth-bound: their time is bytes ÷ bandwidth. Run
# separately, each kernel writes its output to HBM and the next reads it back; fused, intermediates
# stay in registers, so $k$ chained elementwise operations move $2n$ elements instead of $2kn$ (and
# launch one kernel instead of $k$). It does nothing for a compute-bound matmul on its own — which is
# why compilers fuse the elementwise *epilogue* (bias, activation, residual) into the matmul kernel,
# and why FlashAttention, which fuses QKᵀ, softmax and PV so the T × T matrix never reaches HBM, is
# the fusion that matters most for transformers.
# :::
#
# ## 8. The matmul ladder
#
# Every rung computes the same $2n^3$ FLOPs. The Python triple loop spends a dozen interpreter steps
# per multiply-add; numba compiles the same loop to machine code, but its inner loop walks down a
# column of $B$ — a stride of $n$ floats, a new cache line for every element — with one scalar
# accumulator. The tiled kernel changes only the **order** of the work and where data sits
# {cite}`lam1991cache,goto2008anatomy`:

# %%
Code("\n".join(inspect.getsource(f.py_func) for f in (mm._tiled_kernel, mm._micro_kernel)), language="python")

# %% [markdown]
# A `bk × bn` tile of $B$ (128 × 512 fp32, 256 KB) is copied once into a contiguous buffer that stays
# in L2 while *every* row tile of $A$ passes over it, so each element of $B$ fetched from DRAM is used
# $M$ times instead of once per row. The micro-kernel then updates two rows of $C$ held in a small
# accumulator with four $k$-steps at once; its innermost loop runs over contiguous columns, so LLVM
# turns it into 16-wide SIMD fused multiply-adds. Tiling raises the intensity seen by the slow level
# of the hierarchy — the same idea that makes GPU matmuls (shared-memory tiles) and FlashAttention
# work. BLAS libraries go one step further and keep a register tile of $C$ in a hand-written
# micro-kernel.

# %%
ladder_n = pick(SMOKE, 256, 1024)
rungs = mm.ladder(n=ladder_n, n_threads=THREADS, repeat=pick(SMOKE, 2, 3), python_n=pick(SMOKE, 32, 64),
                  naive_n=pick(SMOKE, 256, 512))
gf = {r.name: r.gflops for r in rungs}
fig = go.Figure(go.Bar(x=list(gf), y=list(gf.values()), marker_color=[viz.PALETTE[i] for i in range(len(gf))],
                       text=[f"{v:.2g}" for v in gf.values()], textposition="outside",
                       customdata=[r.n for r in rungs], hovertemplate="%{x}: %{y:.3g} GFLOP/s at n = %{customdata}<extra></extra>"))
fig.add_hline(y=cpu.peak_flops / GFLOP, line_dash="dot", annotation_text="measured peak (section 2)")
fig.update_yaxes(type="log", title_text="GFLOP/s (log scale)")
fig.update_layout(title=f"The same matmul five ways, fp32, {THREADS} thread (n = {ladder_n}; Python loops at n = "
                        f"{rungs[0].n}, numba naive at n = {rungs[1].n})", height=450)
fig.show()

# %%
for name, v in gf.items():
    glue("ladder_" + name.split()[0].lower() + ("_" + name.split()[1] if " " in name else ""), v)
glue("ladder_n", ladder_n)
glue("tiled_over_naive", gf["numba tiled"] / gf["numba naive"])
glue("naive_over_python", gf["numba naive"] / gf["Python loops"])
glue("tiled_of_torch", gf["numba tiled"] / gf["torch"])
glue("torch_over_python", gf["torch"] / gf["Python loops"])
assert gf["numba naive"] > 10 * gf["Python loops"], "compiling removes the interpreter"
assert gf["numba tiled"] > 3 * gf["numba naive"], "tiling and vectorization"
assert gf["torch"] > 2 * gf["numba naive"] and gf["numba tiled"] > 0.1 * gf["torch"]

# %% [markdown]
# From {glue:text}`ladder_python_loops:.3f` GFLOP/s for Python loops to {glue:text}`ladder_torch:.0f`
# for PyTorch is a factor of {glue:text}`torch_over_python:,.0f`. Compiling the loop buys
# {glue:text}`naive_over_python:.0f`×, but the naive compiled loop still manages only
# {glue:text}`ladder_numba_naive:.1f` GFLOP/s: it is memory-bound by its access order, not by the
# operation's intensity. Tiling and a vectorizable inner loop add another
# {glue:text}`tiled_over_naive:.0f`× ({glue:text}`ladder_numba_tiled:.0f` GFLOP/s), reaching
# {glue:text}`tiled_of_torch:.0%` of PyTorch's BLAS at n = {glue:text}`ladder_n` — the remaining gap
# is the register-blocked, hand-scheduled micro-kernel. The numbers behind the benchmark page
# (`kernels.matmul_numba_tiled.*`) come from the same functions at 1024³.
#
# ## 9. Warp divergence, in Triton
#
# A GPU runs threads in groups of 32 — a **warp** — that issue one instruction at a time for all
# their lanes (SIMT: single instruction, multiple threads). When lanes of a warp disagree on an
# `if`, the warp runs *both* sides one after the other, each with the lanes of the other side
# masked off: a divergent warp pays for the `then` and the `else`. Branches that are uniform across a
# warp cost nothing extra. Triton {cite}`tillet2019triton` programs a block of elements at once and
# makes the distinction explicit: a per-element condition is written with `tl.where`, which computes
# both sides for every element and selects — exactly what a divergent warp does — while an `if` on
# a *scalar* (one value per program) is a real, uniform branch.
#
# The two kernels below compute $y = \sqrt{x}$ where $x > 0$ and $y = -x^2$ elsewhere. The first is
# branch-free. The second branches on the data: a block whose elements are all positive (or all
# non-positive) takes one side only, and only a mixed block pays for both — the pattern
# FlashAttention uses to skip tiles that a causal mask empties. It also records which path each
# block took. On a machine without CUDA, Triton's interpreter (`TRITON_INTERPRET=1`, set before
# importing Triton) runs the kernels with NumPy: right for checking results, meaningless for timing.

# %%
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # must be set before triton is imported
import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def where_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=1.0)
    y = tl.where(x > 0, tl.sqrt(tl.abs(x)), -x * x)  # both sides for every element, then a select
    tl.store(y_ptr + offs, y, mask=mask)


@triton.jit
def branch_kernel(x_ptr, y_ptr, path_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=1.0)
    n_pos = tl.sum((x > 0).to(tl.int32), axis=0)  # one number per block: the branch below is uniform
    if n_pos == BLOCK:  # every element positive: one side only
        y = tl.sqrt(x)
        path = 0
    elif n_pos == 0:  # none positive: the other side only
        y = -x * x
        path = 1
    else:  # mixed: both sides, as a divergent warp would run them
        y = tl.where(x > 0, tl.sqrt(tl.abs(x)), -x * x)
        path = 2
    tl.store(y_ptr + offs, y, mask=mask)
    tl.store(path_ptr + pid, path)


display(Code(inspect.getsource(where_kernel.fn) + "\n\n" + inspect.getsource(branch_kernel.fn), language="python"))

# %%
BLOCK = 128
n_tri = pick(SMOKE, 8 * BLOCK + 37, 64 * BLOCK + 37)  # not a multiple of the block: the last one is masked
device = "cuda" if torch.cuda.is_available() else "cpu"
g = torch.Generator().manual_seed(0)
inputs = {"random signs": torch.randn(n_tri, generator=g)}
inputs["sorted"] = inputs["random signs"].sort().values
paths = {}
for name, xt in inputs.items():
    xt = xt.to(device)
    want = torch.where(xt > 0, xt.abs().sqrt(), -xt * xt)
    grid = (triton.cdiv(n_tri, BLOCK),)
    y_where, y_branch = torch.empty_like(xt), torch.empty_like(xt)
    path = torch.empty(grid[0], dtype=torch.int32, device=device)
    where_kernel[grid](xt, y_where, n_tri, BLOCK=BLOCK)
    branch_kernel[grid](xt, y_branch, path, n_tri, BLOCK=BLOCK)
    torch.testing.assert_close(y_where, want)
    torch.testing.assert_close(y_branch, want)
    paths[name] = torch.bincount(path.cpu().long(), minlength=3).tolist()
    print(f"{name:13s}: both kernels equal torch.where; blocks by path (positive only, non-positive only, both): {paths[name]}")
glue("n_blocks", triton.cdiv(n_tri, BLOCK))
glue("mixed_random", paths["random signs"][2])
glue("mixed_sorted", paths["sorted"][2])
assert paths["random signs"][2] == triton.cdiv(n_tri, BLOCK), "random signs: every block is mixed"
assert paths["sorted"][2] <= 2, "sorted: at most the block at the sign change (and the padded tail) is mixed"

# %% [markdown]
# Both kernels agree with `torch.where` on both inputs. With random signs all
# {glue:text}`mixed_random` of {glue:text}`n_blocks` blocks are mixed and pay for both sides; sorted,
# only {glue:text}`mixed_sorted` is, and every other block runs one side. Counting element-evaluations
# of a side (one per element in a uniform block, two in a mixed one), the random input costs
# {glue:text}`work_ratio:.2f`× the sorted one. On a GPU a warp behaves like these blocks at the
# granularity of 32 lanes: divergence costs the sum of both paths, so an if/else inside a kernel
# "doubles the time" only when the two sides cost the same and the data mixes within warps — sorting
# or bucketing work so that warps agree is a standard fix. A CPU's SIMD units have the same
# trade-off: a vectorized loop with a branch computes both sides and selects.

# %%
work = {name: BLOCK * (p[0] + p[1] + 2 * p[2]) for name, p in paths.items()}
glue("work_ratio", work["random signs"] / work["sorted"])
assert work["random signs"] > 1.7 * work["sorted"]

# %% [markdown]
# :::{admonition} Interview angle: "why can an if/else double a CUDA kernel's time?"
# :class: tip
# The 32 threads of a warp share one instruction stream. If some lanes take the `if` and others the
# `else`, the warp executes both paths in turn with inactive lanes masked, so its time is the sum of
# the two. The cost depends on the data: a branch uniform across each warp (e.g. on the block index,
# or on data sorted so neighbours agree) is free. Fixes: make branches warp-uniform (sort or bin the
# work), replace small branches with predication/`where` when both sides are cheap, and hoist
# expensive work out of divergent regions. In Triton you write `tl.where` for per-element choices and
# `if` only on scalars, which keeps the cost visible. (Since Volta, threads of a warp have independent
# program counters, but divergent paths still serialize.)
# :::
#
# ## 10. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** A chip does 400 TFLOP/s in bf16 and has 2 TB/s of memory bandwidth. What is its ridge point,
# in FLOP/byte?

# %%
answer_1 = ...
check(answer_1, rl.Roofline("chip", 400e12, 2e12).ridge_point)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $400 \times 10^{12} / 2 \times 10^{12} = 200$ FLOP/byte. Operations below 200 FLOP/byte are
# bandwidth-bound on it.
# :::
#
# **2.** What is the arithmetic intensity, in FLOP/byte, of a batch-1 matrix-vector product with an
# 8192 × 8192 int8 weight (int8 activations too)? Two decimals.

# %%
answer_2 = ...
check(answer_2, rl.gemv_cost(8192, 8192, 1, "int8").intensity)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# About 2.00: $2 \cdot 8192^2$ FLOPs over $8192^2 + 2 \cdot 8192$ bytes. Each weight is now one byte,
# so the intensity doubles compared with fp16 — which is why weight quantization speeds up decode
# nearly in proportion to the bytes it saves.
# :::
#
# **3.** A decode step of a 7B model reads its 13.5 GB of fp16 weights once. At best, how many
# milliseconds does one step take on an H100 SXM (3.35 TB/s)? One decimal.

# %%
answer_3 = ...
check(answer_3, 13.5e9 / rl.Roofline.from_gpu("H100-SXM").bandwidth * 1e3)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $13.5 \times 10^9 / 3.35 \times 10^{12}$ s ≈ 4.0 ms: the bandwidth floor, about 250 tokens/s for
# one sequence. A claim of "~30 ms per token for a 7B on an H100 at batch 1" is seven times slower
# than this floor — possible with a poor implementation, not a property of the hardware.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(200, rl.Roofline("chip", 400e12, 2e12).ridge_point)
assert check(2.00, rl.gemv_cost(8192, 8192, 1, "int8").intensity)
assert check(4.0, 13.5e9 / rl.Roofline.from_gpu("H100-SXM").bandwidth * 1e3)

# %% [markdown]
# ## Summary
#
# - The roofline: attainable FLOP/s = min(peak, bandwidth × intensity); the ridge point peak/bandwidth
#   splits bandwidth-bound from compute-bound. A100 fp16: {glue:text}`ridge_a100_fp16:.0f` FLOP/byte;
#   H100: {glue:text}`ridge_h100_fp16:.0f`; one core of this CPU: {glue:text}`cpu_ridge:.1f`, measured.
# - Matmuls of any size are compute-bound; decode's matrix-vector products (≈1 FLOP/byte in fp16),
#   softmax, LayerNorm and GELU are bandwidth-bound on any GPU. FLOP counts undercount transcendental
#   functions, so on a CPU the latter sit well below their roof.
# - Five times the FLOP/s leaves batch-1 decode unchanged; "5× FLOPs, 1.2× throughput" is Amdahl's
#   law with 80% of the time memory-bound. Bandwidth, batching, quantization and fusion move decode.
# - Bandwidth depends on where data lives: L1 was {glue:text}`bw_ratio:.0f`× faster than DRAM here.
#   Fast kernels are plans to work from the top of the hierarchy.
# - A linear layer turns compute-bound once it gets about 2 × ridge tokens in fp32 (ridge tokens in
#   fp16): prefill is compute-bound, decode bandwidth-bound until the batch reaches
#   {glue:text}`b_a100` sequences on an A100.
# - Fusion saves bytes: three elementwise passes became one, {glue:text}`relu_speedup:.1f`× faster.
#   Tiling saves bytes in the slow memory: {glue:text}`tiled_over_naive:.0f`× over the naive
#   compiled matmul, {glue:text}`tiled_of_torch:.0%` of BLAS.
# - A divergent warp runs both sides of a branch; uniform branches are free. Triton makes the
#   difference explicit: `tl.where` per element, `if` per block.

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
# # The KV cache: prefill, decode, and the memory that serving is about
#
# Every production LLM server — vLLM, TensorRT-LLM, SGLang, TGI, llama.cpp — is built around one data
# structure: the keys and values of every token a request has seen, kept in every layer so that the
# next token costs one token of work instead of a pass over the whole text. That cache is why a chat
# reply streams at a steady pace, why the first token takes longer than the rest, why long contexts
# are expensive, and why a GPU with room for the weights can still run out of memory at a batch of
# eight. Serving interviews start here: "what is the KV cache and what does it save", "how big is it
# for Llama-3-8B at 8k tokens", "why is decoding memory-bound", "what do GQA and int8 KV buy". This
# chapter answers each with the book's trained MiniGPT on this machine, and checks the numbers that
# circulate in interview notes against the arithmetic.
#
# **You will learn**
# - prefill and decode: one pass over the prompt, then one token per step against the cache, on the
#   real model, token-identical to recomputing everything;
# - why the cache turns each new token's attention from O(T²) into O(T) work, and its projections
#   from O(T) into O(1), measured up to 1,024 tokens of context, and why quoted speed-ups range
#   from 7× to 50×;
# - what the naive `torch.cat` cache copies, and why engines preallocate;
# - the memory calculator, live and static, and which of the circulating KV-cache numbers are wrong;
# - why decoding is bound by memory traffic, not arithmetic, and what batching does about it;
# - an int8 KV cache with per-channel key scales: bytes saved, errors per layer and in the logits;
# - our cached `generate` against Hugging Face's, token for token and in tokens per second.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/60_kv_cache.ipynb)
# · Runtime budget on 2 CPU cores, once the book's model is cached: under 30 s with `SMOKE=True`,
# about a minute in full mode (training the small model the first time adds about a minute, the
# full one about two).

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

SMOKE = smoke_default()  # True: the tiny book model and short contexts (≤ 30 s on 2 cores); False: the full chapter

# %%
import dataclasses
import inspect
import time

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from IPython.display import Code, Markdown
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from companion import bench, decoding, kvcache, lm, viz, widgets
from companion.book import check, glue
from companion.config import pick, seed_everything
from companion.model import MiniGPT, to_hf_gpt2

seed_everything(0)
pre = lm.pretrained(SMOKE)  # the book's MiniGPT: loaded from the cache, or trained from its seed once
torch.set_num_threads(1)  # every timing on one core: small matrices run faster and steadier on one than on two
torch.set_grad_enabled(False)  # from here on, inference only: no autograd graphs
model, tok = pre.model, pre.tokenizer
cfg, BLOCK = model.cfg, model.cfg.block_size
greedy = decoding.SamplingConfig(greedy=True)

# Where only time matters, a randomly initialized MiniGPT of the same shape with a longer context:
# a forward pass costs the same whatever values the weights hold.
MAX_CONTEXT = pick(SMOKE, 256, 1024)
torch.manual_seed(0)
timer_model = MiniGPT(dataclasses.replace(cfg, block_size=MAX_CONTEXT + 32)).eval()
HEAD_DIM = cfg.n_embd // cfg.n_head
KV_BYTES_PER_TOKEN = 2 * cfg.n_layer * cfg.n_head * HEAD_DIM * 4  # K and V, every layer, fp32

glue("n_params", model.n_params())
glue("n_layer", cfg.n_layer)
glue("d_model", cfg.n_embd)
glue("n_head", cfg.n_head)
glue("head_dim", HEAD_DIM)
glue("block", BLOCK)
glue("max_context", MAX_CONTEXT)
glue("kv_token_bytes", KV_BYTES_PER_TOKEN)
print(f"SMOKE={SMOKE}: MiniGPT with {model.n_params():,} parameters, {cfg.n_layer} layers, d={cfg.n_embd}, "
      f"{cfg.n_head} heads, context {BLOCK}; timing model: same shape, context {timer_model.cfg.block_size}")

# %% [markdown]
# The model is the book's MiniGPT ({doc}`52_small_llm`): {glue:text}`n_params:,` parameters,
# {glue:text}`n_layer` layers of width {glue:text}`d_model` with {glue:text}`n_head` heads of size
# {glue:text}`head_dim`, a context of {glue:text}`block` tokens. Every token it has seen leaves
# {glue:text}`kv_token_bytes:,` bytes of keys and values in fp32 (2 × layers × heads × head size ×
# 4 bytes). Experiments where only time matters use a randomly initialized copy of the same shape
# with room for {glue:text}`max_context:,` tokens: how long a forward pass takes does not depend on
# the values of the weights.
#
# ## 1. Prefill and decode
#
# A causal model computes the keys and values of token $t$ from tokens $\le t$ only, so they never
# change once computed. Generation therefore splits into two phases with different costs:
#
# - **prefill**: one forward pass over the whole prompt, in parallel, which fills the cache with the
#   prompt's keys and values and yields the first new token. Its latency is the *time to first
#   token* (TTFT).
# - **decode**: one forward pass per new token, over that token alone; attention reads every cached
#   key and value and the step appends one more. Its latency is the *time per output token* (TPOT).
#
# `companion.kvcache.KVCache` preallocates (layers, batch, KV heads, max length, head size) for keys
# and for values, and each layer writes its new keys and values in place and attends to everything
# stored so far:

# %%
Code(inspect.getsource(kvcache.KVCache.write), language="python")

# %% [markdown]
# Here is the whole mechanism on the trained model: a prompt of {glue:text}`prompt_len` real tokens
# from held-out text, one prefill pass, then one-token decode steps, each timed.

# %%
P = pick(SMOKE, 24, 64)  # prompt tokens
N_STEPS = pick(SMOKE, 16, 32)  # decode steps shown
prompt = pre.data.val[:P][None]  # (1, P)


def prefill_once() -> tuple[torch.Tensor, kvcache.KVCache, float]:
    cache = kvcache.KVCache.for_model(model, batch=1)
    start = time.perf_counter()
    logits = model(prompt, cache=cache)  # (1, P, V): the prompt's keys and values are now cached
    return logits, cache, time.perf_counter() - start


prefill_runs = [prefill_once() for _ in range(5)]
logits, cache, _ = prefill_runs[-1]
prefill_s = float(np.median([r[2] for r in prefill_runs]))
print(f"prefill: ids {tuple(prompt.shape)} -> logits {tuple(logits.shape)}; cache.k {tuple(cache.k.shape)}, "
      f"length {cache.length}")
step_s, ids = [], prompt
for step in range(N_STEPS):
    token = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1): greedy
    ids = torch.cat([ids, token], dim=1)
    start = time.perf_counter()
    logits = model(token, cache=cache)  # (1, 1, V): one token in, one row of logits out
    step_s.append(time.perf_counter() - start)
    if step < 2:
        print(f"decode step {step + 1}: ids {tuple(token.shape)} -> logits {tuple(logits.shape)}; "
              f"cache length {cache.length}")
decode_s = float(np.median(step_s))
assert cache.length == P + N_STEPS

fig = go.Figure(go.Bar(
    x=["prefill"] + [f"step {i + 1}" for i in range(N_STEPS)], y=[1e3 * prefill_s] + [1e3 * s for s in step_s],
    marker_color=[viz.PALETTE[1]] + [viz.PALETTE[0]] * N_STEPS,
    customdata=[P] + [1] * N_STEPS, hovertemplate="%{x}: %{y:.2f} ms for %{customdata} token(s)<extra></extra>"))
fig.update_layout(title=f"One prefill pass over {P} prompt tokens, then one forward pass per new token",
                  yaxis_title="ms per forward pass", xaxis=dict(type="category", tickangle=-45), height=400)
fig

# %%
glue("prompt_len", P)
glue("prefill_ms", 1e3 * prefill_s)
glue("decode_ms", 1e3 * decode_s)
glue("prefill_us_per_token", 1e6 * prefill_s / P)
glue("prefill_per_token_vs_decode", decode_s / (prefill_s / P))
assert prefill_s / P < decode_s, "per token, the parallel prefill is far cheaper than a decode step"

# Greedy with the cache must produce exactly what recomputing the whole sequence produces.
n_gen = BLOCK - P
with_cache = kvcache.generate(model, prompt, n_gen, greedy)
without_cache = decoding.generate(model, prompt, n_gen, greedy)
assert torch.equal(with_cache, without_cache), "the cache changes the cost, never the tokens"
glue("n_gen", n_gen)
print(f"{n_gen} greedy tokens, with and without the cache, identical:\n"
      + repr(tok.decode(with_cache[0, P:].tolist())))

# %% [markdown]
# The prefill processes {glue:text}`prompt_len` tokens in {glue:text}`prefill_ms:.2f` ms, about
# {glue:text}`prefill_us_per_token:.0f` µs per token; each decode step takes
# {glue:text}`decode_ms:.2f` ms for a single token, {glue:text}`prefill_per_token_vs_decode:.0f`×
# more per token. That asymmetry is the first fact of serving. Prefill is one large batch of matrix
# multiplications, so its cost is arithmetic; a decode step does a sliver of arithmetic but still
# touches every weight and every cached key and value, and pays every fixed cost of a forward pass,
# for one token. The {glue:text}`n_gen` greedy tokens generated with the cache are identical to
# those from recomputing the whole sequence at every step: the cache changes the cost, never the
# result.
#
# :::{admonition} Interview angle: "what are TTFT and TPOT, and what sets each?"
# :class: tip
# Time to first token is the prefill (plus queueing): it grows with the prompt length and is
# compute-bound, so it is what a long prompt hurts. Time per output token is one decode step: it
# grows with the model's bytes and the KV cache it must read, barely with the arithmetic. Engines
# treat them differently — chunked prefill splits a long prompt so that it does not stall the decode
# steps of other requests; disaggregated serving runs the two phases on different GPUs.
# :::
#
# ## 2. O(T²) → O(T) per token: what the cache saves
#
# Without a cache, the next token after $T$ tokens costs a forward pass over all $T + 1$: every
# projection and MLP again for every position — $2 \cdot 12 L d^2$ FLOPs per position for a
# GPT-2-style block, plus the output head — and causal attention over $\approx (T+1)^2/2$ query–key
# pairs per layer. With the cache it costs the same per-position work once, plus one query against
# $T + 1$ keys. Counting multiply–adds as two FLOPs:

# %%
def next_token_flops(c, context: int, cached: bool) -> float:
    """FLOPs of the matmuls and attention to produce the next token after ``context`` tokens (norms ignored).

    Per position: 12·d² weights a layer (4·d² attention projections, 8·d² MLP) and the d·V output
    head, 2 FLOPs per weight. Attention: QKᵀ and AV, 4·d FLOPs per query–key pair per layer.
    """
    d, L, V = c.n_embd, c.n_layer, c.vocab_size
    per_position = 2 * (12 * L * d * d + d * V)
    n = context + 1
    if cached:
        return per_position + 4 * d * L * n  # one new position; its query meets n keys
    return n * per_position + 4 * d * L * n * (n + 1) / 2  # every position again; causal pairs


Code(inspect.getsource(next_token_flops), language="python")

# %% [markdown]
# The measurement: for each context length, one decode step against a cache already holding the
# context, against one forward pass over the whole sequence (`bench.decode_step_pair`), timed
# alternately so both see the same machine load.

# %%
contexts = pick(SMOKE, [32, 64, 128, 256], [64, 128, 256, 512, 1024])
repeat = pick(SMOKE, 5, 7)
sweep = {}
for T in tqdm(contexts, desc="context lengths"):
    cached, uncached = bench.decode_step_pair(timer_model, T)
    t_cached, t_uncached = bench.paired_seconds(cached, uncached, repeat=repeat, warmup=1)
    sweep[T] = dict(cached=t_cached, uncached=t_uncached, speedup=t_uncached / t_cached,
                    flops_cached=next_token_flops(timer_model.cfg, T, True),
                    flops_uncached=next_token_flops(timer_model.cfg, T, False))
Ts = np.array(contexts)
ms_cached = np.array([1e3 * sweep[T]["cached"] for T in contexts])
ms_uncached = np.array([1e3 * sweep[T]["uncached"] for T in contexts])
speedups = np.array([sweep[T]["speedup"] for T in contexts])
flop_ratio = np.array([sweep[T]["flops_uncached"] / sweep[T]["flops_cached"] for T in contexts])

fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("time per new token", "speed-up of the cache"))
fig.add_scatter(x=Ts, y=ms_uncached, mode="lines+markers", name="no cache: full forward pass",
                line=dict(color=viz.PALETTE[1]), row=1, col=1)
fig.add_scatter(x=Ts, y=ms_cached, mode="lines+markers", name="KV cache: one-token step",
                line=dict(color=viz.PALETTE[0]), row=1, col=1)
fig.add_scatter(x=Ts, y=speedups, mode="lines+markers+text", name="measured speed-up",
                text=[f"{s:.1f}×" for s in speedups], textposition="top center", cliponaxis=False,
                line=dict(color=viz.PALETTE[2]), row=1, col=2)
fig.add_scatter(x=Ts, y=flop_ratio, mode="lines+markers", name="FLOP ratio (what arithmetic alone predicts)",
                line=dict(color="gray", dash="dash"), row=1, col=2)
fig.update_xaxes(type="log", title_text="tokens of context", tickvals=contexts)
fig.update_yaxes(type="log", title_text="ms", row=1, col=1)
fig.update_yaxes(type="log", title_text="no cache / cache", row=1, col=2)
fig.update_layout(title=f"Next-token cost against context length ({timer_model.cfg.n_layer} layers, "
                        f"d = {timer_model.cfg.n_embd}, one CPU thread)", height=460, margin=dict(t=90),
                  legend=dict(orientation="h", y=-0.25))
fig

# %%
longest, shortest = contexts[-1], contexts[0]
gflops_uncached = sweep[longest]["flops_uncached"] / sweep[longest]["uncached"] / 1e9
ideal_cached_ms = 1e3 * sweep[longest]["flops_cached"] / (gflops_uncached * 1e9)
d, L, V = timer_model.cfg.n_embd, timer_model.cfg.n_layer, timer_model.cfg.vocab_size
glue("speedup_list", ", ".join(f"{s:.1f}× at {T:,}" for T, s in zip(contexts, speedups)))
glue("ctx_short", shortest)
glue("ctx_long", longest)
glue("speedup_long", speedups[-1])
glue("flop_ratio_long", flop_ratio[-1])
glue("ms_cached_short", ms_cached[0])
glue("ms_cached_long", ms_cached[-1])
glue("ms_uncached_short", ms_uncached[0])
glue("ms_uncached_long", ms_uncached[-1])
glue("gflops_uncached", gflops_uncached)
glue("ideal_cached_ms", ideal_cached_ms)
glue("slope_uncached", np.polyfit(np.log(Ts), np.log(ms_uncached), 1)[0])
glue("slope_cached", np.polyfit(np.log(Ts), np.log(ms_cached), 1)[0])
glue("attention_crossover", 12 * d + V / L)
glue("attention_crossover_llama", 12 * 4096)
Markdown("| context | no cache (ms) | cache (ms) | speed-up | FLOP ratio |\n|---|---|---|---|---|\n" + "\n".join(
    f"| {T:,} | {u:.2f} | {c:.2f} | {s:.1f}× | {r:.0f}× |"
    for T, u, c, s, r in zip(contexts, ms_uncached, ms_cached, speedups, flop_ratio)))

# %%
assert ms_cached[-1] < ms_uncached[-1], "at the longest context the cache must win"
assert speedups[-1] > speedups[0], "the speed-up grows with the context"
assert ms_uncached[-1] > 2 * ms_uncached[0], "without a cache the cost grows with the context"
assert ms_cached[-1] < ms_uncached[-1] / 2 and all(flop_ratio > speedups), "arithmetic alone predicts more"

# %% [markdown]
# Without the cache the next token costs {glue:text}`ms_uncached_short:.1f` ms at
# {glue:text}`ctx_short` tokens of context and {glue:text}`ms_uncached_long:.1f` ms at
# {glue:text}`ctx_long:,`; with it, {glue:text}`ms_cached_short:.2f` ms and
# {glue:text}`ms_cached_long:.2f` ms. The speed-up: {glue:text}`speedup_list` tokens of context.
#
# Three things in these curves are worth saying out loud.
#
# **The textbook O(T²) is the asymptote, not the regime.** Attention's share of a full pass
# overtakes the projections only once $2LdT^2 > T \cdot 2(12Ld^2 + dV)$, i.e. beyond
# $T \approx 12d + V/L$ = {glue:text}`attention_crossover:,.0f` tokens for this model (for a
# Llama-3-8B-sized $d$ = 4096, about {glue:text}`attention_crossover_llama:,` tokens). Below that,
# recomputation costs O(T·d²) per token: the uncached curve above has a log–log slope of
# {glue:text}`slope_uncached:.2f` — at most linear in the context over this range, where quadratic
# would be 2. The cache removes both
# terms: what is left per token is one position of projections plus O(T) attention reads, and the
# cached curve's slope is {glue:text}`slope_cached:.2f` — nearly flat.
#
# **Measured speed-ups fall far below the FLOP ratio.** At {glue:text}`ctx_long:,` tokens
# recomputation does {glue:text}`flop_ratio_long:,.0f`× the arithmetic of a cached step, and the full
# pass runs at {glue:text}`gflops_uncached:.0f` GFLOP/s. At that rate the cached step's arithmetic
# would take {glue:text}`ideal_cached_ms:.3f` ms; it takes {glue:text}`ms_cached_long:.2f` ms. The
# difference is fixed cost per forward pass — dozens of small operator calls per layer, each
# dispatched from Python, each touching weights that arithmetic barely uses. A one-token step is
# latency- and memory-bound, not compute-bound (section 5).
#
# **So "the" KV-cache speed-up does not exist.** The numbers in circulation — "~50× at length 256",
# "~40×", "14× at 1,024-token contexts", and a table of 7.7× to 46.9× for prompts of 64 to 512 tokens
# on an RTX 4090 — are each true of one model, one machine, one context and one way of timing. The
# ratio grows with the context (the FLOP ratio is roughly proportional to it); with model size (a
# bigger model makes the cached step less dominated by fixed costs, pushing the measured ratio toward
# the FLOP ratio); and with what is timed (the 4090 table times 64 new tokens *including* the prompt's
# prefill, which both sides pay, so it understates the per-step ratio; on a GPU, kernel-launch
# latency sets a floor under a small model's cached step just as Python does here). Quote the
# mechanism and a measured ratio with its conditions, never a bare multiplier.
#
# ## 3. Preallocate, don't concatenate
#
# The simplest cache appends each step's keys and values with `torch.cat` — as the KV cache of many
# tutorials does, and as Hugging Face's default `DynamicCache` still does. `torch.cat` allocates a new
# tensor and copies the old contents into it, so step $t$ moves O(t) bytes and a generation of $n$
# tokens moves O(n²). `kvcache.ConcatKVCache` counts those bytes; the preallocated `KVCache` writes
# only the new token's keys and values. Both decode the same tokens from the timing model:

# %%
N_CONCAT = pick(SMOKE, 192, 768)


def decode_side_by_side(caches: dict, n: int) -> tuple[dict, list[int], dict]:
    """Greedy-decode n tokens from token 0 with each cache, stepping them in turn so both see the same load.

    Returns seconds per step for each cache, the torch.cat cache's bytes copied after each step, and
    the tokens each produced.
    """
    tokens = {name: [torch.zeros(1, 1, dtype=torch.long)] for name in caches}
    seconds, copied = {name: [] for name in caches}, []
    for _ in range(n):
        for name, cache in caches.items():
            start = time.perf_counter()
            tokens[name].append(timer_model(tokens[name][-1], cache=cache)[:, -1:].argmax(-1))  # (1, 1)
            seconds[name].append(time.perf_counter() - start)
        copied.append(caches["torch.cat cache"].bytes_copied)
    return {k: np.array(v) for k, v in seconds.items()}, copied, {k: torch.cat(v, 1) for k, v in tokens.items()}


caches = {"torch.cat cache": kvcache.ConcatKVCache.for_model(timer_model),
          "preallocated cache": kvcache.KVCache.for_model(timer_model, batch=1, max_len=N_CONCAT)}
step_seconds, copied, produced = decode_side_by_side(caches, N_CONCAT)
assert torch.equal(*produced.values()), "both caches decode the same tokens"
positions = np.arange(1, N_CONCAT + 1)
copied_concat = np.array(copied, dtype=float)
timer_kv_token_bytes = 2 * timer_model.cfg.n_layer * timer_model.cfg.n_embd * 4  # K and V of one token, fp32
written_prealloc = positions * timer_kv_token_bytes  # each step writes one token's keys and values in place


def smooth(seconds: np.ndarray, width: int = 16) -> np.ndarray:
    """Running median in ms: single steps on a shared machine are noisy."""
    return np.array([1e3 * np.median(seconds[max(0, i - width):i + 1]) for i in range(len(seconds))])


fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("bytes copied into the cache, cumulative", "time per decode step"))
for i, name in enumerate(caches):
    moved = copied_concat if name == "torch.cat cache" else written_prealloc
    fig.add_scatter(x=positions, y=moved / 1e6, mode="lines", name=name, legendgroup=name,
                    line=dict(color=viz.PALETTE[1 - i]), row=1, col=1)
    fig.add_scatter(x=positions, y=smooth(step_seconds[name]), mode="lines", name=name, legendgroup=name,
                    showlegend=False, line=dict(color=viz.PALETTE[1 - i]), row=1, col=2)
fig.update_xaxes(title_text="tokens in the sequence")
fig.update_yaxes(title_text="MB", row=1, col=1)
fig.update_yaxes(title_text="ms (running median)", row=1, col=2)
fig.update_layout(title="The torch.cat cache copies O(n²) bytes over a generation, the preallocated one O(n)",
                  height=440, margin=dict(t=90), legend=dict(orientation="h", y=-0.25))
fig

# %%
half = N_CONCAT // 2
glue("n_concat", N_CONCAT)
glue("concat_mb", copied_concat[-1] / 1e6)
glue("prealloc_mb", written_prealloc[-1] / 1e6)
glue("concat_ratio", copied_concat[-1] / written_prealloc[-1])
glue("concat_growth", copied_concat[-1] / copied_concat[half - 1])
tail = slice(3 * N_CONCAT // 4, None)
glue("concat_step_ms", 1e3 * np.median(step_seconds["torch.cat cache"][tail]))
glue("prealloc_step_ms", 1e3 * np.median(step_seconds["preallocated cache"][tail]))
glue("last_copy_mb", (copied_concat[-1] - copied_concat[-2]) / 1e6)
# At scale, with an H100 SXM's datasheet bandwidth (3.35 TB/s of HBM3; not measured here): a torch.cat
# cache for 32 Llama-3-8B sequences at 8k tokens reads and writes its 1 GiB per sequence at every step.
H100_FLOPS, H100_BW = 989e12, 3.35e12  # dense bf16 FLOP/s, bytes/s
glue("concat_h100_ms", 1e3 * 32 * 2 * kvcache.kv_bytes("Llama-3-8B", 8192) / H100_BW)
glue("weights_h100_ms", 1e3 * 8.0e9 * 2 / H100_BW)
assert 3.5 < copied_concat[-1] / copied_concat[half - 1] < 4.5, "twice the tokens, four times the bytes"
assert copied_concat[-1] > N_CONCAT / 4 * written_prealloc[-1], "O(n²) against O(n)"
assert all(c.length == N_CONCAT for c in caches.values())

# %% [markdown]
# Over {glue:text}`n_concat` tokens the `torch.cat` cache copies {glue:text}`concat_mb:.0f` MB, the
# preallocated one writes {glue:text}`prealloc_mb:.1f` MB — {glue:text}`concat_ratio:.0f`× less —
# and doubling the length multiplies the copying by {glue:text}`concat_growth:.2f`, the signature of
# O(n²). The last step alone copies {glue:text}`last_copy_mb:.1f` MB. In time, on a model this
# small, the copy is lost in the fixed cost of a step: over the last quarter of the run (the two
# caches stepped in turn) a step takes {glue:text}`concat_step_ms:.2f` ms with `torch.cat` and
# {glue:text}`prealloc_step_ms:.2f` ms preallocated. It is not lost at scale: for Llama-3-8B at 8k
# tokens the cache is 1 GiB per sequence, and concatenation would copy all of it, for every sequence,
# at every step: for a batch of 32 on an H100 that is {glue:text}`concat_h100_ms:.0f` ms of copying per
# step, several times the {glue:text}`weights_h100_ms:.1f` ms it takes to read the model's 16 GB of
# bf16 weights. Preallocating has its own cost — memory reserved for the longest possible sequence
# whether or not it is used — and that waste is what the paged allocator of vLLM
# {cite}`kwon2023pagedattention` removes, by handing out fixed-size blocks on demand.
#
# ## 4. How big is the cache? The calculator
#
# The cache holds, for every layer, a key and a value vector for each KV head and each token:
#
# $$ \text{bytes} = 2 \cdot L \cdot H_{kv} \cdot d_\text{head} \cdot \text{bytes per number} \cdot T \cdot B . $$
#
# With grouped-query attention {cite}`ainslie2023gqa` $H_{kv}$ is smaller than the number of query
# heads; {doc}`51_attention` measures what MHA, GQA and MQA save. `kvcache.kv_bytes` is the
# formula, with presets for published configurations. In Jupyter or Colab the widget below is live;
# its callback, `widgets.kv_cache_figure`, is a plain function tested in `tests/unit`.

# %% tags=["remove-output"]
widgets.kv_cache_widget(model="Llama-3-8B", context=8192, batch=1, dtype="fp16")

# %% [markdown]
# In the static page, the same calculator as curves: one sequence's cache against context length for
# every preset, with the number format chosen by the buttons.

# %%
kv_contexts = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
dtypes = ["fp32", "fp16", "int8"]
fig = go.Figure()
for i, name in enumerate(kvcache.MODELS):
    fig.add_scatter(x=kv_contexts, y=[kvcache.kv_bytes(name, T, 1, "fp16") / 1e9 for T in kv_contexts],
                    mode="lines+markers", name=name, line=dict(color=viz.PALETTE[i % len(viz.PALETTE)]),
                    hovertemplate=name + ": %{y:.2f} GB at %{x:,} tokens<extra></extra>")
fig.add_scatter(x=[kv_contexts[0], kv_contexts[-1]], y=[80, 80], mode="lines", name="80 GB: one H100's memory",
                line=dict(color="gray", dash="dash"))
n_models = len(kvcache.MODELS)
buttons = [dict(label=dt, method="update", args=[
    {"y": [[kvcache.kv_bytes(name, T, 1, dt) / 1e9 for T in kv_contexts] for name in kvcache.MODELS] + [[80, 80]]},
    {"title.text": f"KV cache of one sequence, {dt}"}]) for dt in dtypes]
fig.update_layout(title="KV cache of one sequence, fp16", xaxis_title="context (tokens)", yaxis_title="GB",
                  height=500, margin=dict(t=90), legend=dict(orientation="h", y=-0.2),
                  updatemenus=[dict(type="buttons", direction="right", buttons=buttons, active=1, x=1, y=1.18,
                                    xanchor="right", yanchor="top", showactive=True)])
fig.update_xaxes(type="log", tickvals=kv_contexts, ticktext=[f"{T // 1024}k" for T in kv_contexts])
fig.update_yaxes(type="log")
fig

# %% [markdown]
# Models with the same cache shape share a line: Llama-3-8B and Mistral-7B (32 layers, 8 KV heads of
# 128), and the two 70B models (80 layers, 8 KV heads). GQA is why a 70B model's cache is smaller than
# Llama-2-13B's.
#
# Interview notes quote several of these numbers; each is checkable with one line. The table
# computes every claim from the published configurations (GB = 10⁹ bytes, as the claims use).

# %%
# Llama-3-8B with n_heads written in place of n_kv_heads: the mistake behind "~4 GB"
llama3_8b_as_mha = kvcache.ModelShape(n_layer=32, n_kv_heads=32, head_dim=128, n_heads=32)
claims = [  # (claim, where it circulates, stated GB, computed bytes)
    ("Llama-3-8B, 8,192 tokens, bf16, one sequence", "1.07 GB", 1.07, kvcache.kv_bytes("Llama-3-8B", 8192)),
    ("the same, with the formula written with n_heads", "~4 GB", 4.0, kvcache.kv_bytes(llama3_8b_as_mha, 8192)),
    ("Llama-3-8B, 8,192 tokens, batch 32", "34.4 GB", 34.4, kvcache.kv_bytes("Llama-3-8B", 8192, 32)),
    ("Llama-3-70B, 4,096 tokens, batch 32", "42.9 GB", 42.9, kvcache.kv_bytes("Llama-3-70B", 4096, 32)),
    ("70B at 128k tokens, one request", "~10 GB", 10.0, kvcache.kv_bytes("Llama-3-70B", 131072)),
]
rows = []
for claim, stated, stated_gb, computed in claims:
    holds = abs(computed / 1e9 - stated_gb) <= 0.05 * stated_gb
    rows.append(f"| {claim} | {stated} | {computed / 1e9:.2f} GB | {'holds' if holds else 'wrong'} |")
Markdown("| claim | stated | computed | verdict |\n|---|---|---|---|\n" + "\n".join(rows))

# %%
glue("llama3_8k_gb", kvcache.kv_bytes("Llama-3-8B", 8192) / 1e9)
glue("llama3_8k_nheads_gb", kvcache.kv_bytes(llama3_8b_as_mha, 8192) / 1e9)
glue("llama3_token_kib", kvcache.kv_bytes("Llama-3-8B", 1) / 1024)
glue("llama70_token_kib", kvcache.kv_bytes("Llama-3-70B", 1) / 1024)
glue("llama70_b32_gb", kvcache.kv_bytes("Llama-3-70B", 4096, 32) / 1e9)
glue("llama70_128k_gb", kvcache.kv_bytes("Llama-3-70B", 131072) / 1e9)
glue("llama2_7b_4k_b8_gb", kvcache.kv_bytes("Llama-2-7B", 4096, 8) / 1e9)
assert kvcache.kv_bytes("Llama-3-8B", 8192) == 2**30 and kvcache.kv_bytes(llama3_8b_as_mha, 8192) == 4 * 2**30
assert kvcache.kv_bytes("Llama-3-70B", 131072) > 4 * 10e9, "the 128k figure is off by more than 4×"

# %% [markdown]
# Llama-3-8B has 32 query heads but only 8 KV heads, so one sequence of 8,192 tokens needs
# {glue:text}`llama3_8k_gb:.2f` GB (exactly 1 GiB). The "~4 GB" in circulation,
# {glue:text}`llama3_8k_nheads_gb:.2f` GB, is what the formula gives when it is written with
# `n_heads` — the query heads — instead of `n_kv_heads`: right for Llama-2-7B, four times too large
# for any GQA model. The Llama-3-70B figure of {glue:text}`llama70_b32_gb:.1f` GB for 32 sequences of
# 4,096 tokens holds. The "~10 GB per request at 128k" for a 70B model does not: with 80 layers and
# 8 KV heads of 128 a token costs {glue:text}`llama70_token_kib:.0f` KiB, and 131,072 tokens cost
# {glue:text}`llama70_128k_gb:.1f` GB — more than half an H100 for one request's cache.
#
# :::{admonition} Interview angle: "how big is the KV cache of model X?"
# :class: tip
# Write the formula with **KV heads**: $2 \cdot L \cdot H_{kv} \cdot d_\text{head} \cdot$ bytes per
# token, then multiply by tokens and batch. Remember two per-token figures in fp16 and scale from
# them: Llama-3-8B {glue:text}`llama3_token_kib:.0f` KiB, Llama-3-70B
# {glue:text}`llama70_token_kib:.0f` KiB. Then say what follows: the cache, not the weights, caps the
# batch — Llama-2-7B (MHA) at 8 × 4,096 tokens needs {glue:text}`llama2_7b_4k_b8_gb:.1f` GB of cache
# next to 13.5 GB of weights — which is why GQA, KV quantization and paged allocation exist.
# :::
#
# ## 5. Why decoding is bound by memory, and what batching buys
#
# A decode step multiplies one vector per sequence by every weight matrix: each weight is read once
# and used for one multiply–add per sequence. Reading is slow and arithmetic is fast, so a step's
# time is set by the bytes it must move — all the weights, plus every sequence's cache — not by its
# FLOPs. The measure is **arithmetic intensity**, FLOPs per byte moved; a processor keeps its
# arithmetic units busy only above its *ridge point*, peak FLOP/s divided by memory bandwidth.
#
# Batching is the lever: the weights are read once per step however many sequences share it, so
# the step's time grows slowly with the batch while its tokens grow linearly. The cache is not
# shared: each sequence reads its own. Here is one decode step of the timing model at batch 1 to 64,
# with {glue:text}`short_ctx` and with {glue:text}`long_ctx` tokens already cached (stand-in keys and
# values: the cost does not depend on what they hold).

# %%
batches = [1, 2, 4, 8, 16, 32, 64]
SHORT_CTX, LONG_CTX = 16, pick(SMOKE, 192, 512)


def batched_step(batch: int, context: int):
    """One decode step of (batch, 1) tokens against a cache holding ``context`` tokens, rewound after each call."""
    cache = kvcache.KVCache.for_model(timer_model, batch, max_len=context + 1)
    cache.k.normal_(), cache.v.normal_()
    cache.length = context
    token = torch.zeros(batch, 1, dtype=torch.long)

    def step():
        timer_model(token, cache=cache)
        cache.length = context

    return step


step_ms = {SHORT_CTX: [], LONG_CTX: []}
for b in tqdm(batches, desc="batch sizes"):
    t_short, t_long = bench.paired_seconds(batched_step(b, SHORT_CTX), batched_step(b, LONG_CTX),
                                           repeat=pick(SMOKE, 3, 7), warmup=1)
    step_ms[SHORT_CTX].append(1e3 * t_short)
    step_ms[LONG_CTX].append(1e3 * t_long)
tokens_per_s = {T: np.array(batches) / (np.array(ms) / 1e3) for T, ms in step_ms.items()}


def step_intensity(c, batch: int, context: int, bytes_per_number: int = 4) -> tuple[float, float]:
    """(FLOPs, bytes moved) of one decode step: weights read once, each sequence's cache read once."""
    d, L, V = c.n_embd, c.n_layer, c.vocab_size
    weight_bytes = (12 * L * d * d + d * V) * bytes_per_number
    kv_bytes = batch * 2 * L * d * context * bytes_per_number  # keys and values, every layer (MHA)
    return batch * next_token_flops(c, context, cached=True), weight_bytes + kv_bytes


# This CPU, one thread: a large matmul's FLOP/s and a large read's bandwidth (well outside the caches).
a, b_ = torch.randn(1024, 1024), torch.randn(1024, 1024)
big = torch.randn(32 * 2**20)  # 128 MB
t_mm, t_read = bench.paired_seconds(lambda: a @ b_, lambda: big.sum(), repeat=5)
cpu_gflops, cpu_gbs = 2 * 1024**3 / t_mm / 1e9, big.numel() * 4 / t_read / 1e9
intensity = {T: [np.divide(*step_intensity(timer_model.cfg, b, T)) for b in batches] for T in step_ms}

fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("throughput of one decode step", "arithmetic intensity of that step"))
for i, T in enumerate(step_ms):
    fig.add_scatter(x=batches, y=tokens_per_s[T], mode="lines+markers", name=f"{T} tokens cached",
                    legendgroup=str(T), line=dict(color=viz.PALETTE[i]),
                    customdata=step_ms[T], hovertemplate="batch %{x}: %{y:,.0f} tokens/s, %{customdata:.2f} ms/step",
                    row=1, col=1)
    fig.add_scatter(x=batches, y=intensity[T], mode="lines+markers", name=f"{T} tokens cached", legendgroup=str(T),
                    showlegend=False, line=dict(color=viz.PALETTE[i]), row=1, col=2)
fig.add_scatter(x=batches, y=tokens_per_s[SHORT_CTX][0] * np.array(batches), mode="lines",
                name="batch × batch-1 throughput (free batching)", line=dict(color="gray", dash="dot"), row=1, col=1)
fig.add_scatter(x=[1, 64], y=[cpu_gflops / cpu_gbs] * 2, mode="lines", name="this CPU's ridge point (1 thread)",
                line=dict(color="black", dash="dash"), row=1, col=2)
fig.update_xaxes(type="log", title_text="batch (sequences per step)", tickvals=batches)
fig.update_yaxes(type="log", title_text="tokens / s", row=1, col=1)
fig.update_yaxes(type="log", title_text="FLOPs per byte (fp32)", row=1, col=2)
fig.update_layout(title="Batched decode: one step serves every sequence in the batch", height=460,
                  margin=dict(t=90), legend=dict(orientation="h", y=-0.25))
fig

# %%
short, long_ = np.array(step_ms[SHORT_CTX]), np.array(step_ms[LONG_CTX])
glue("short_ctx", SHORT_CTX)
glue("long_ctx", LONG_CTX)
glue("step_ms_b1", short[0])
glue("step_ms_b64", short[-1])
glue("tps_b1", tokens_per_s[SHORT_CTX][0])
glue("tps_b64", tokens_per_s[SHORT_CTX][-1])
glue("tps_gain_short", tokens_per_s[SHORT_CTX][-1] / tokens_per_s[SHORT_CTX][0])
glue("tps_gain_long", tokens_per_s[LONG_CTX][-1] / tokens_per_s[LONG_CTX][0])
glue("step_growth_short", short[-1] / short[0])
glue("intensity_b1", intensity[SHORT_CTX][0])
glue("intensity_b64", intensity[SHORT_CTX][-1])
glue("intensity_b64_long", intensity[LONG_CTX][-1])
glue("cpu_gflops", cpu_gflops)
glue("cpu_gbs", cpu_gbs)
glue("cpu_ridge", cpu_gflops / cpu_gbs)
weights_mb = step_intensity(timer_model.cfg, 1, 0)[1] / 1e6
glue("weights_mb", weights_mb)
try:  # the size of this CPU's last-level cache, as Linux reports it ("32768K")
    l3_mb = int(open("/sys/devices/system/cpu/cpu0/cache/index3/size").read().strip().rstrip("K")) / 1024
except (OSError, ValueError):
    l3_mb = float("nan")
glue("l3_text", f"{l3_mb:.0f} MB" if l3_mb == l3_mb else "several-MB")
PARAMS_7B = 7e9  # a 7B model in fp16 on the same H100 (datasheet numbers, section 3)
glue("h100_ridge", H100_FLOPS / H100_BW)
glue("h100_tps_7b", H100_BW / (2 * PARAMS_7B))
assert tokens_per_s[SHORT_CTX][-1] > 4 * tokens_per_s[SHORT_CTX][0], "batching multiplies throughput"
assert short[-1] < 64 / 4 * short[0], "while the step time grows far less than the batch"
gain = {T: tps[-1] / tps[0] for T, tps in tokens_per_s.items()}
assert gain[LONG_CTX] < gain[SHORT_CTX], "every sequence reads its own cache: long contexts gain less from batching"
assert intensity[SHORT_CTX][0] < 1 < intensity[SHORT_CTX][-1] and intensity[LONG_CTX][-1] < intensity[SHORT_CTX][-1]

# %% [markdown]
# With {glue:text}`short_ctx` tokens cached, going from batch 1 to 64 multiplies the step time by
# only {glue:text}`step_growth_short:.1f` ({glue:text}`step_ms_b1:.2f` → {glue:text}`step_ms_b64:.2f`
# ms), so throughput rises {glue:text}`tps_gain_short:.0f`× ({glue:text}`tps_b1:,.0f` →
# {glue:text}`tps_b64:,.0f` tokens/s). With {glue:text}`long_ctx` tokens cached the gain is only
# {glue:text}`tps_gain_long:.1f`×: each sequence's cache is its own and must be read in full at every
# step, so past a point the step's bytes grow with the batch after all.
#
# The intensity panel says why. At batch 1 a step does {glue:text}`intensity_b1:.2f` FLOPs per byte
# it moves — each fp32 weight (4 bytes) serves one multiply–add (2 FLOPs). At batch 64 with a short
# context that rises to {glue:text}`intensity_b64:.0f`, but with {glue:text}`long_ctx` tokens cached
# it stays at {glue:text}`intensity_b64_long:.1f`, because attention over a cache does about one
# multiply–add per number read whatever the batch. This CPU core does {glue:text}`cpu_gflops:.0f`
# GFLOP/s on a large matmul and reads {glue:text}`cpu_gbs:.0f` GB/s, a ridge point of
# {glue:text}`cpu_ridge:.1f` FLOPs per byte (the dashed line): below it a step is limited by the
# bytes it moves, above it by arithmetic. (Honesty about the small model: its
# {glue:text}`weights_mb:.1f` MB of weights fit in this CPU's {glue:text}`l3_text` L3 cache, so at
# batch 1 the step here is dominated by fixed per-call costs rather than DRAM traffic; the shape of
# the curve has the same cause: a cost paid once per step, shared by the batch.)
#
# On a GPU the arithmetic is starker. An H100 SXM's datasheet gives 989 TFLOP/s of dense bf16 and
# 3.35 TB/s of memory bandwidth: a ridge point of {glue:text}`h100_ridge:.0f` FLOPs per byte. A 7B
# model in fp16 reads 14 GB of weights per step, so at batch 1 it cannot exceed
# {glue:text}`h100_tps_7b:.0f` tokens/s whatever the kernels do, while using well under 1% of the
# arithmetic; only a batch in the hundreds — and the KV memory to hold it — moves it toward the
# compute roof {cite}`pope2023efficiently`.
#
# :::{admonition} Interview angle: "why is decode memory-bound, and what do you do about it?"
# :class: tip
# A decode step reads every weight and the whole KV cache to produce one token per sequence: about 1
# FLOP per byte in fp16 at batch 1, against a GPU ridge point near 300. So: **batch** (continuous
# batching keeps the batch full, and throughput grows almost linearly while weights dominate the
# bytes); **shrink the bytes** (weight quantization for the weights; GQA/MQA and KV quantization for
# the cache, which dominates at long contexts, where batching stops helping); **make each step yield
# more tokens** (speculative decoding verifies several draft tokens in one pass). Prefill is the
# opposite: hundreds of tokens per weight read, compute-bound.
# :::
#
# ## 6. An int8 KV cache
#
# If bytes set the speed and the cache sets the batch, storing the cache in fewer bits pays twice.
# `kvcache.Int8KVCache` has the `KVCache` interface and stores keys and values as int8 with
# symmetric absmax scales: $q = \mathrm{round}(x / s)$ in $[-127, 127]$, $x \approx q s$, an error of
# at most $s/2$. Where the scales live is the design decision. KIVI {cite}`liu2024kivi` observed that
# in large models the *keys* have outlier **channels** — a few dimensions large for every token —
# while values have no fixed pattern; so keys get a scale per channel and values a scale per token.
# Here the key scales are fixed by the prefill, with headroom, and later tokens are clamped to that
# range (counted in `clipped`):

# %%
Code(inspect.getsource(kvcache.Int8KVCache.write), language="python")

# %% [markdown]
# **Bytes first.** The seeds say that "INT8/FP8 KV halves memory". Against fp16, yes — plus the
# scales; against fp32, a quarter:

# %%
kv_fp32 = kvcache.KVCache.for_model(model, batch=1)
kv_fp16 = kvcache.KVCache.for_model(model, batch=1, dtype=torch.float16)
kv_int8 = kvcache.Int8KVCache.for_model(model, batch=1)
glue("int8_vs_fp32", kv_int8.nbytes() / kv_fp32.nbytes())
glue("int8_vs_fp16", kv_int8.nbytes() / kv_fp16.nbytes())
llama_int8_vs_fp16 = 0.5 + 1 / 8192 + 1 / 128  # per (layer, head): T·hd int8 + hd key scales + T value scales, fp32
glue("llama_int8_vs_fp16", llama_int8_vs_fp16)
print(f"book model at {BLOCK} tokens: fp32 {kv_fp32.nbytes():,} B, fp16 {kv_fp16.nbytes():,} B, "
      f"int8 + scales {kv_int8.nbytes():,} B")
assert np.isclose(kv_int8.nbytes() / kv_fp16.nbytes(), 0.5 + 1 / BLOCK + 1 / HEAD_DIM), "half, plus the scales"
assert kv_int8.nbytes() < kv_fp16.nbytes() < kv_fp32.nbytes() and kv_fp16.nbytes() == kv_fp32.nbytes() // 2

# %% [markdown]
# The int8 cache is {glue:text}`int8_vs_fp32:.3f` of fp32 and {glue:text}`int8_vs_fp16:.3f` of
# fp16 here; the excess over ½ is the fp32 scales, one per key channel and one per value token per
# head, which weigh more with this model's small heads ({glue:text}`head_dim` numbers). With
# Llama's heads of 128 at 8,192 tokens the ratio to fp16 is {glue:text}`llama_int8_vs_fp16:.3f`.
#
# **Errors next.** The exact fp32 keys and values of held-out text go through the int8 cache: a
# prefill of {glue:text}`int8_prefill` tokens sets the key scales, the rest follow. For comparison,
# the same keys quantized with a scale per *token*, and the values with a scale per *channel*:

# %%
N_WIN, P8 = pick(SMOKE, 8, 16), 16
windows = pre.data.val[: N_WIN * BLOCK].view(N_WIN, BLOCK)  # (N_WIN, BLOCK) held-out tokens
exact = kvcache.KVCache.for_model(model, batch=N_WIN)
full_logits = model(windows, cache=exact)  # fills exact.k, exact.v: (layers, N_WIN, H, BLOCK, hd)
int8 = kvcache.Int8KVCache.for_model(model, batch=N_WIN)


def rel_err(x: torch.Tensor, y: torch.Tensor, dims=None) -> torch.Tensor:
    """‖x − y‖ / ‖x‖, over ``dims`` (all by default)."""
    return (x - y).norm(dim=dims) / x.norm(dim=dims)


def per_token_round_trip(x: torch.Tensor) -> torch.Tensor:
    scale = kvcache.absmax_scale(x, dim=-1)  # one scale per (row, head, token)
    return kvcache.dequantize(kvcache.quantize(x, scale)[0], scale)


def per_channel_round_trip(x: torch.Tensor) -> torch.Tensor:
    scale = kvcache.absmax_scale(x, dim=-2)  # one scale per (row, head, channel), from all tokens
    return kvcache.dequantize(kvcache.quantize(x, scale)[0], scale)


layer_errors = {"keys, per channel (the cache)": [], "keys, per channel, hindsight scales": [], "keys, per token": [],
                "values, per token (the cache)": [], "values, per channel": []}
for layer in range(cfg.n_layer):  # the prefill, as one forward pass writes it: every layer at offset 0
    int8.write(layer, exact.k[layer, :, :, :P8], exact.v[layer, :, :, :P8])
int8.advance()
for layer in range(cfg.n_layer):  # the rest of each window, one write per layer, against the fixed key scales
    k_back, v_back = int8.write(layer, exact.k[layer, :, :, P8:], exact.v[layer, :, :, P8:])  # all BLOCK tokens back
    k, v = exact.k[layer], exact.v[layer]
    layer_errors["keys, per channel (the cache)"].append(rel_err(k, k_back).item())
    layer_errors["keys, per channel, hindsight scales"].append(rel_err(k, per_channel_round_trip(k)).item())
    layer_errors["keys, per token"].append(rel_err(k, per_token_round_trip(k)).item())
    layer_errors["values, per token (the cache)"].append(rel_err(v, v_back).item())
    layer_errors["values, per channel"].append(rel_err(v, per_channel_round_trip(v)).item())
int8.advance()
n_later = exact.k[:, :, :, P8:].numel()
channel_absmax = exact.k.abs().amax(dim=(1, 3))  # (layers, H, hd): each key channel's largest value
channel_spread = (channel_absmax / channel_absmax.median(dim=-1, keepdim=True).values).amax().item()
print(f"key values clipped after the prefill: {int8.clipped:,} of {n_later:,}; largest key channel / median "
      f"channel: {channel_spread:.2f}")

# %% [markdown]
# Large models differ from ours in one respect that matters here: their activations develop a few
# outlier feature dimensions {cite}`dettmers2022llmint8`, and that is what makes per-channel key
# scales pay. To see the effect, the same real keys again with two channels of every head scaled up
# by a factor — a synthetic outlier — and the error measured on the *other* channels:

# %%
factors = [1, 2, 4, 8, 16, 32, 64]
keys0 = exact.k[0]  # (N_WIN, H, BLOCK, hd): layer 0's real keys
normal = torch.ones(HEAD_DIM, dtype=torch.bool)
normal[:2] = False  # channels 0 and 1 of every head become the outliers
outlier_err = {"per token": [], "per channel": []}
for f in factors:
    boosted = keys0.clone()
    boosted[..., ~normal] *= f
    outlier_err["per token"].append(rel_err(boosted[..., normal], per_token_round_trip(boosted)[..., normal]).item())
    outlier_err["per channel"].append(
        rel_err(boosted[..., normal], per_channel_round_trip(boosted)[..., normal]).item())

fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, column_widths=[0.55, 0.45],
                    subplot_titles=("int8 round-trip error per layer (real keys and values)",
                                    "keys with two outlier channels per head"))
for i, (name, errs) in enumerate(layer_errors.items()):
    fig.add_bar(x=[f"layer {l}" for l in range(cfg.n_layer)], y=[100 * e for e in errs], name=name,
                marker_color=viz.PALETTE[i], row=1, col=1)
for i, (name, errs) in enumerate(outlier_err.items()):
    fig.add_scatter(x=factors, y=[100 * e for e in errs], mode="lines+markers", name=f"with outliers: {name} scales",
                    line=dict(color=viz.PALETTE[4 + i]), row=1, col=2)
fig.update_yaxes(title_text="relative error (%)", row=1, col=1)
fig.update_xaxes(type="log", title_text="outlier channels × factor", tickvals=factors, row=1, col=2)
fig.update_yaxes(type="log", title_text="error on the other channels (%)", row=1, col=2)
fig.update_layout(title="Where the scales live decides the error", barmode="group", height=480,
                  margin=dict(t=90), legend=dict(orientation="h", y=-0.25))
fig

# %%
errs = {name: np.array(e) for name, e in layer_errors.items()}
glue("int8_prefill", P8)
glue("err_k_channel", errs["keys, per channel (the cache)"].mean())
glue("err_k_token", errs["keys, per token"].mean())
glue("err_k_hindsight", errs["keys, per channel, hindsight scales"].mean())
glue("err_v_token", errs["values, per token (the cache)"].mean())
glue("err_v_channel", errs["values, per channel"].mean())
glue("clipped_share", int8.clipped / n_later)
glue("err_max", max(e.max() for e in errs.values()))
glue("channel_spread", channel_spread)
glue("outlier_factor", factors[-1])
glue("outlier_token_err", outlier_err["per token"][-1])
glue("outlier_channel_err", outlier_err["per channel"][-1])
assert all(e.max() < 0.03 for e in errs.values()), "int8 keeps every layer's K and V within 3%"
assert outlier_err["per token"][-1] > 4 * outlier_err["per channel"][-1], "outlier channels ruin per-token key scales"
assert abs(outlier_err["per channel"][-1] - outlier_err["per channel"][0]) < 0.2 * outlier_err["per channel"][0]

# %% [markdown]
# Every layer's keys and values come back within {glue:text}`err_max:.1%`. The values, with per-token
# scales, lose {glue:text}`err_v_token:.2%` on average ({glue:text}`err_v_channel:.2%` with
# per-channel scales). The keys in the cache lose {glue:text}`err_k_channel:.2%`, and the bars
# separate the two reasons. Per-channel scales chosen with hindsight from all the tokens would lose
# {glue:text}`err_k_hindsight:.2%`; the rest is the price of streaming — the scales are fixed by the
# prefill, before the later keys exist, with the default headroom of 2 spending one bit of the eight
# on range ({glue:text}`clipped_share:.2%` of the later key values still clipped). And on *this*
# model per-token keys are as good or better ({glue:text}`err_k_token:.2%`), for a visible reason:
# its largest key channel is only {glue:text}`channel_spread:.1f`× the median one — a model this
# small has no outlier features. The right panel shows what changes when it does: with two channels
# per head {glue:text}`outlier_factor`× larger, a per-token scale is set by the outlier and the other
# channels' error grows to {glue:text}`outlier_token_err:.0%`, while per-channel scales keep it at
# {glue:text}`outlier_channel_err:.2%`. That is KIVI's argument; the cache follows it for the models
# that have such channels, at a measured cost on ours.
#
# **What the model feels.** The decisive test is the logits. The held-out windows go through the
# model with the fp32 cache and with the int8 cache — prefill, then one real token per step — while
# the key headroom sweeps from 1 (scales exactly spanning the prefill's range) upwards:

# %%
def teacher_forced(cache) -> torch.Tensor:
    """Logits (N_WIN, BLOCK, V) for the held-out windows: prefill P8 tokens, then one real token per step."""
    pieces = [model(windows[:, :P8], cache=cache)]
    pieces += [model(windows[:, i:i + 1], cache=cache) for i in range(P8, BLOCK)]
    return torch.cat(pieces, dim=1)


def nll(logits: torch.Tensor) -> float:
    """Mean next-token loss over the decoded positions (the prefill's excluded), nats per token."""
    return F.cross_entropy(logits[:, P8:-1].flatten(0, 1), windows[:, P8 + 1:].flatten()).item()


fp32_logits = teacher_forced(kvcache.KVCache.for_model(model, batch=N_WIN))
torch.testing.assert_close(fp32_logits, full_logits, atol=1e-4, rtol=1e-4)  # the fp32 cache is exact
headrooms = [1.0, 1.25, 1.5, 2.0, 3.0, 4.0]
sweep8 = {}
for h in tqdm(headrooms, desc="key headroom"):
    c = kvcache.Int8KVCache.for_model(model, batch=N_WIN, key_headroom=h)
    lg = teacher_forced(c)
    sweep8[h] = dict(clipped=c.clipped / n_later, dnll=nll(lg) - nll(fp32_logits),
                     max_dlogit=(lg - fp32_logits).abs().max().item(),
                     argmax=(lg.argmax(-1) == fp32_logits.argmax(-1))[:, P8:].float().mean().item())

fig = make_subplots(specs=[[{"secondary_y": True}]])
fig.add_scatter(x=headrooms, y=[100 * sweep8[h]["clipped"] for h in headrooms], mode="lines+markers",
                name="key values clipped (%)", line=dict(color=viz.PALETTE[1]))
fig.add_scatter(x=headrooms, y=[sweep8[h]["max_dlogit"] for h in headrooms], mode="lines+markers",
                name="max |Δ logit| against the fp32 cache", line=dict(color=viz.PALETTE[0]), secondary_y=True)
fig.update_xaxes(title_text="key_headroom (key scale = the prefill's absmax / 127 × headroom)")
fig.update_yaxes(title_text="clipped (%)", rangemode="tozero", secondary_y=False)
fig.update_yaxes(title_text="max |Δ logit|", rangemode="tozero", showgrid=False, secondary_y=True)
fig.update_layout(title="Key scales fixed at the prefill: range against resolution", height=420,
                  legend=dict(orientation="h", y=-0.25))
fig

# %%
default = kvcache.Int8KVCache.for_model(model, batch=1).key_headroom
Markdown("| key headroom | clipped | max abs Δ logit | Δ NLL (nats/token) | same argmax |\n|---|---|---|---|---|\n"
         + "\n".join(f"| {h:g}{' (default)' if h == default else ''} | {r['clipped']:.2%} | {r['max_dlogit']:.3f} | "
                     f"{r['dnll']:+.4f} | {r['argmax']:.2%} |" for h, r in sweep8.items()))

# %%
n_new8 = BLOCK - P8
exact_ids = kvcache.generate(model, windows[:, :P8], n_new8, greedy)
int8_ids = kvcache.generate(model, windows[:, :P8], n_new8, greedy, cache_cls=kvcache.Int8KVCache)
same = exact_ids[:, P8:] == int8_ids[:, P8:]  # (N_WIN, n_new8)
r1, rd = sweep8[1.0], sweep8[default]
glue("headroom_default", default)
glue("clipped_h1", r1["clipped"])
glue("clipped_default", rd["clipped"])
glue("dlogit_h1", r1["max_dlogit"])
glue("dlogit_default", rd["max_dlogit"])
glue("dnll_h1", r1["dnll"])
glue("dnll_default", rd["dnll"])
glue("argmax_default", rd["argmax"])
glue("greedy_agree", same.float().mean().item())
glue("greedy_identical", int(same.all(dim=1).sum()))
glue("n_win", N_WIN)
glue("n_new8", n_new8)
clipped_curve = [sweep8[h]["clipped"] for h in headrooms]
assert all(a >= b for a, b in zip(clipped_curve, clipped_curve[1:])), "more headroom, fewer clips"
assert rd["clipped"] < r1["clipped"] and abs(rd["dnll"]) < 0.01, "the default costs under 0.01 nats per token"
assert rd["argmax"] > 0.97, "the int8 cache almost never changes the most likely next token"
assert same.float().mean() > 0.5, "greedy text mostly survives the int8 cache"

# %% [markdown]
# With the scales spanning exactly the prefill's range (headroom 1), {glue:text}`clipped_h1:.1%` of
# later key values are clipped, logits move by up to {glue:text}`dlogit_h1:.2f` and the held-out
# loss by {glue:text}`dnll_h1:+.4f` nats per token: {glue:text}`int8_prefill` tokens of prompt do not show the full
# range of later keys. With the default headroom of {glue:text}`headroom_default:g` — one bit of the
# eight spent on range — clipping falls to {glue:text}`clipped_default:.2%`, the largest logit change
# to {glue:text}`dlogit_default:.2f`, the loss changes by {glue:text}`dnll_default:+.4f` nats per
# token and the most likely next token is unchanged at {glue:text}`argmax_default:.1%` of positions.
# Greedy generation from the {glue:text}`n_win` held-out prompts agrees on
# {glue:text}`greedy_agree:.0%` of {glue:text}`n_new8` new tokens ({glue:text}`greedy_identical` of
# the {glue:text}`n_win` continuations identical). A greedy continuation can only part from the
# fp32 one at a near-tie, and after that the two are different texts, not necessarily worse ones.
# KIVI avoids the range problem differently: it requantizes keys per group of tokens and keeps the
# most recent ones in full precision.
#
# One caveat about this implementation: `write` dequantizes the whole cache into a float copy for
# attention at every step, which saves *storage* but not *bandwidth*. The bandwidth win of section 5
# needs an attention kernel that reads the int8 numbers and dequantizes them in registers, as
# serving engines' fp8 and int8 KV paths do.
#
# :::{admonition} Interview angle: "GQA/MQA or a quantized KV cache?"
# :class: tip
# Both shrink the cache, in different places. GQA and MQA change the **model**: fewer KV heads,
# $H/H_{kv}$ times less cache and cache traffic (4–8× for current models), decided at training time
# (or by uptraining a checkpoint), with a quality cost measured by the model's builders. KV
# quantization changes the **storage**: 2× against fp16 for int8 or fp8, 4× and more for KIVI-style
# 2-bit, applied to a trained model with no retraining, at the cost of a small, measurable error —
# here {glue:text}`dnll_default:+.4f` nats per token. They compose: Llama-3-8B is already GQA-8, and
# an fp8 cache halves its {glue:text}`llama3_8k_gb:.2f` GB per 8k sequence again. Mention the detail
# that decides quality: key outliers live in channels, so keys are scaled per channel.
# :::
#
# ## 7. Against Hugging Face's `generate`
#
# The last check is the production library. `model.to_hf_gpt2` copies the trained MiniGPT's weights
# into a `transformers.GPT2LMHeadModel`; both generate greedily from the same prompt with their KV
# caches, and must agree token for token. The attention mask is passed explicitly: without it,
# `transformers` treats any prompt token equal to the pad id as padding.

# %%
hf = to_hf_gpt2(model)
hf_prompt = pre.data.val[1000:1000 + P][None]
n_hf = BLOCK - P
ours_ids = kvcache.generate(model, hf_prompt, n_hf, greedy)
hf_ids = hf.generate(hf_prompt, attention_mask=torch.ones_like(hf_prompt), max_new_tokens=n_hf, do_sample=False,
                     use_cache=True, pad_token_id=0)
assert torch.equal(ours_ids, hf_ids), "same weights, same greedy tokens"
record = bench.hf_generate_record(model, hf_prompt, n_hf, repeat=pick(SMOKE, 3, 7))
glue("n_hf", n_hf)
glue("ours_tps", record.ours)
glue("hf_tps", record.reference)
glue("hf_ratio", record.ratio)
print(f"identical {n_hf} tokens; ours {record.ours:,.0f} tokens/s, transformers {record.reference:,.0f} tokens/s, "
      f"ratio {record.ratio:.2f}")
assert record.ratio > 0.5, "a readable loop need not be slower than the library's general one"

# %% [markdown]
# The {glue:text}`n_hf` tokens are identical. Our loop generates {glue:text}`ours_tps:,.0f` tokens/s
# against {glue:text}`hf_tps:,.0f` for `transformers` — a ratio of {glue:text}`hf_ratio:.2f`, on one
# thread. The model arithmetic is the same; the difference is the loop around it. `generate` is
# general — logits processors, stopping criteria, streaming, a dozen decoding modes — and its
# default `DynamicCache` grows by `torch.cat`, the section-3 cache. (`transformers` also offers a
# preallocated `StaticCache` and a quantized cache, which is where KIVI's method ships.) Production
# engines go much further than either loop: batched decoding with a paged cache, CUDA graphs to
# remove per-step launch overhead, and fused attention kernels that read the cache in place — the
# rest of this part.
#
# ## 8. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** Mistral-7B has 32 layers and 8 KV heads of size 128. How many GiB does its KV cache take
# for one sequence of 32,768 tokens in fp16?

# %%
answer_1 = ...
check(answer_1, kvcache.kv_bytes("Mistral-7B", 32768) / 2**30)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $2 \cdot 32 \cdot 8 \cdot 128 \cdot 2$ bytes = 131,072 bytes = 128 KiB per token; times 32,768
# tokens = 4 GiB. (Its sliding window of 4,096 tokens could cap the cache at 0.5 GiB, if the engine
# uses it.)
# :::
#
# **2.** A 7B-parameter model in fp16 decodes at batch 1 on a GPU with 3.35 TB/s of memory
# bandwidth. Ignoring the KV cache, at most how many tokens per second can it produce?

# %%
answer_2 = ...
check(answer_2, 3.35e12 / (7e9 * 2))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# Every step reads all 14 GB of weights: 3.35 × 10¹² / 1.4 × 10¹⁰ ≈ 239 steps per second, one token
# each. Arithmetic does not enter — which is the point: at batch 1 the bound is bandwidth, and a
# batch of 32 gets about 32 times the tokens from nearly the same step time.
# :::
#
# **3.** An int8 KV cache with fp32 scales — one per key channel, one per value token, per head —
# stores 4,096 tokens with heads of 128. What fraction of the fp16 cache's bytes does it take?
# (Three decimals.)

# %%
answer_3 = ...
int8_shape = kvcache.Int8KVCache(n_layer=1, batch=1, n_kv_heads=8, head_dim=128, max_len=4096)
fp16_shape = kvcache.KVCache(n_layer=1, batch=1, n_kv_heads=8, head_dim=128, max_len=4096, dtype=torch.float16)
check(answer_3, int8_shape.nbytes() / fp16_shape.nbytes(), rel_tol=1e-3)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# Per head: keys and values $2 \cdot 4096 \cdot 128$ bytes in int8; key scales $128 \cdot 4$ bytes;
# value scales $4096 \cdot 4$ bytes. The fp16 cache holds $2 \cdot 4096 \cdot 128 \cdot 2$ bytes.
# The ratio is $\tfrac12 + \tfrac{1}{4096} + \tfrac{1}{128} \approx 0.508$: "int8 halves the cache"
# holds, give or take the scales.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(4.0, kvcache.kv_bytes("Mistral-7B", 32768) / 2**30)
assert check(239, 3.35e12 / (7e9 * 2))
assert check(0.508, int8_shape.nbytes() / fp16_shape.nbytes(), rel_tol=1e-3)

# %% [markdown]
# ## Summary
#
# - Generation is a prefill (the prompt in one compute-bound pass: time to first token) followed by
#   decode steps (one token each against the cache: time per output token). The cache changes the
#   cost, never the tokens.
# - Without a cache the next token costs a pass over the whole context; with it, one position plus
#   attention reads. The measured speed-up grows with the context ({glue:text}`speedup_long:.0f`× at
#   {glue:text}`ctx_long:,` tokens here) and with model size, and stays below the FLOP ratio because a
#   one-token step is dominated by fixed costs and memory traffic. Any quoted multiplier is one
#   configuration's.
# - Preallocate: a `torch.cat` cache copies O(n²) bytes over a generation.
# - KV bytes = 2 · layers · **KV heads** · head size · bytes · tokens · batch. Llama-3-8B at 8k is
#   1 GiB, not 4 GB; a 70B model at 128k is about 43 GB per sequence, not 10.
# - Decode is memory-bound: about one FLOP per byte at batch 1. Batching shares the weight reads and
#   multiplies throughput until every sequence's own cache dominates the bytes.
# - An int8 cache with per-channel key scales and per-token value scales halves fp16's bytes (a
#   quarter of fp32's) for a loss change of {glue:text}`dnll_default:+.4f` nats per token here; the
#   scale layout matters once a model has outlier channels.
# - Our cached loop matches `transformers.generate` token for token on the same weights.

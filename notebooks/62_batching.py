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
# # Batching: static, dynamic and continuous
#
# A GPU serving an LLM spends most of a decode step reading the weights, whatever the number of
# sequences it advances with them. Batching is how a server turns that bandwidth into throughput,
# and *how* it batches decides the rest: whether short answers wait for long ones, whether a new
# request waits for a whole batch to drain, whether a long prompt freezes every stream on the
# machine, and how many GPUs a given traffic needs. Continuous batching is the reason vLLM, TGI,
# TensorRT-LLM and SGLang serve several times more users per GPU than a loop around `generate`, and
# interviews probe it from every side: "why does static batching waste the GPU", "why can continuous
# batching raise TTFT", "what does chunked prefill trade", "how do you size `max_num_seqs`", "how
# many replicas for 20 requests per second". This chapter runs a real continuous-batching engine
# and Hugging Face's `generate` on the same weights and the same requests, then takes the same
# policies to a simulated A100 to see where the quoted 2×, 5× and 10× come from.
#
# **You will learn**
# - static, dynamic and continuous (iteration-level) batching, and why requests of different
#   lengths break static batching, on an interactive timeline of real runs;
# - the engine against `generate` with static batching, on the same trace, the same weights and the
#   same KV memory: outputs token-identical, throughput measured, the gain split into scheduling and
#   implementation;
# - throughput against concurrency, and why a decode step costs nearly the same for one sequence as
#   for many;
# - TTFT and inter-token latency percentiles under Poisson load: the latency–throughput trade-off;
# - what chunked prefill does to the inter-token latency of running streams, and what it costs;
# - the seeds' 2–10× gains and 20%→85% utilization reconciled: the gain is set by length variance
#   and batch size; the throughput cliff; Little's law; a simulator calibrated on the real engine.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/62_batching.ipynb)
# · Runtime budget on 2 CPU cores: under 40 s with `SMOKE=True` (including training the small
# model the first time), under 3 minutes in full mode once the book's model is cached.

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

SMOKE = smoke_default()  # True: the tiny book model and short traces (≤ 40 s on 2 cores); False: the full chapter

# %%
import time

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import Markdown
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from companion import lm, viz
from companion.batchsim import CostModel, LinearCost, littles_law, simulate
from companion.book import check, glue
from companion.config import pick, seed_everything
from companion.data.synthetic import RequestTrace, request_trace
from companion.model import to_hf_gpt2
from companion.serving import Engine, EngineConfig, Request, hf_static_batching, serve

seed_everything(0)
torch.set_num_threads(1)  # every timing below on one thread: comparable runs, and no fight over the two cores
torch.set_grad_enabled(False)
pre = lm.pretrained(SMOKE)  # the book's MiniGPT: loaded from the cache, or trained from its seed once
model = pre.model.eval()
hf = to_hf_gpt2(model)  # the same weights in transformers' GPT2LMHeadModel: the static-batching baseline
BLOCK = model.cfg.block_size  # learned positions: prompt + output must fit in BLOCK tokens
KV_BLOCK = 16  # tokens per block of the engine's paged KV pool
glue("n_params", model.n_params())
glue("block", BLOCK)
glue("n_layer", model.cfg.n_layer)
glue("d_model", model.cfg.n_embd)
print(f"SMOKE={SMOKE}: MiniGPT with {model.n_params():,} parameters, {model.cfg.n_layer} layers, d={model.cfg.n_embd}, "
      f"context {BLOCK} tokens; torch threads: {torch.get_num_threads()}")

# %% [markdown]
# The model is the book's MiniGPT ({doc}`52_small_llm`): {glue:text}`n_params:,` parameters in
# {glue:text}`n_layer` layers of width {glue:text}`d_model`, with a context of {glue:text}`block`
# tokens. Every timed run in this chapter uses one CPU thread (`torch.set_num_threads(1)`) and repeats or
# alternates its contenders, because the machine is shared and its timings are noisy; the
# assertions check directions and floors, never exact times.
#
# ## 1. Why batch, and three ways to do it
#
# A decode step produces one token per sequence and, to do it, reads every weight of the model
# once ({doc}`60_kv_cache` measures this). On a GPU the read is the slow part: the step is bound by
# memory bandwidth, not arithmetic, so a step for 64 sequences costs little more than a step for
# one — until the batch is large enough to make it compute-bound, or its KV reads rival the weights.
# The roofline cost model of `companion.batchsim` puts numbers on it for Llama-2-7B in fp16 on an
# A100-80GB (datasheet peak FLOP/s and bandwidth; no kernel overheads):

# %%
a100 = CostModel.for_gpu("Llama-2-7B", "A100-80GB")
ctx = 512  # tokens already cached per sequence
gpu_step = {b: float(a100.step_seconds(0, b, b * ctx)) for b in (1, 64)}
glue("gpu_ctx", ctx)
glue("gpu_step_1_ms", 1e3 * gpu_step[1])
glue("gpu_step_64_ms", 1e3 * gpu_step[64])
glue("gpu_tps_1", 1 / gpu_step[1])
glue("gpu_tps_64", 64 / gpu_step[64])
glue("gpu_tps_gain", 64 / gpu_step[64] * gpu_step[1])
glue("gpu_weights_gb", a100.weight_bytes / 1e9)
glue("gpu_kv_64_gb", a100.kv_bytes_per_token * 64 * ctx / 1e9)
print(f"decode step, {ctx} cached tokens per sequence: "
      f"batch 1 {1e3 * gpu_step[1]:.2f} ms ({1 / gpu_step[1]:.0f} tok/s); "
      f"batch 64 {1e3 * gpu_step[64]:.2f} ms ({64 / gpu_step[64]:,.0f} tok/s)")
assert gpu_step[64] < 4 * gpu_step[1] and 64 / gpu_step[64] > 15 / gpu_step[1]

# %% [markdown]
# One sequence decodes at {glue:text}`gpu_tps_1:.0f` tokens/s (a step of
# {glue:text}`gpu_step_1_ms:.1f` ms, almost all of it reading {glue:text}`gpu_weights_gb:.1f` GB
# of weights); 64 sequences with {glue:text}`gpu_ctx` cached tokens each take
# {glue:text}`gpu_step_64_ms:.1f` ms per step —
# {glue:text}`gpu_tps_64:,.0f` tokens/s, {glue:text}`gpu_tps_gain:.0f`× more from the same
# hardware. (The step does not stay flat: 64 × {glue:text}`gpu_ctx` cached tokens are
# {glue:text}`gpu_kv_64_gb:.1f` GB of KV to read, more than the weights.) A server that decodes
# one request at a time leaves most of that on the table. How it fills the batch is the policy:
#
# - **Static batching**: take up to $B$ waiting requests, pad their prompts to the longest, and
#   decode until the longest output is done — what a loop around `model.generate` does. A request
#   that finishes early keeps its slot, idle, until the whole batch ends; a request that arrives
#   during a batch waits for all of it.
# - **Dynamic batching** (Triton's dynamic batcher, TorchServe): static batching whose batches
#   launch when $B$ requests wait or the oldest has waited `max_wait`: fuller batches for some
#   added delay. It helps fixed-size work such as image classification; it does nothing for
#   outputs of different lengths.
# - **Continuous batching**, or iteration-level scheduling (Orca {cite}`yu2022orca`; vLLM
#   {cite}`kwon2023pagedattention`): the batch is re-formed at *every step*. A finished sequence
#   leaves at once, a waiting one joins at once, and a prompt's prefill runs in the same step as
#   other sequences' decodes. With a paged KV cache ({doc}`61_paged_attention`) a sequence holds
#   only the memory it has used so far, so more of them fit.
#
# Output lengths are what break static batching. They are not known in advance and they vary
# widely: a chat reply of 5 tokens and one of 500 come from the same endpoint. In a static batch
# of 8, the longest of 8 draws sets the time of all 8.
#
# ## 2. Static and continuous batching, side by side
#
# The {glue:text}`gantt_n` requests below are a small trace in the shape of real traffic: log-normal prompt and output
# lengths (an output-length σ of 1.0, as in chat logs), sized for the book's model so that every
# prompt plus output fits its {glue:text}`block` positions — and, for static batching, the longest
# prompt plus the longest output of any batch. The prompts are real held-out text. They all arrive
# at once, and the same trace runs through Hugging Face's `generate` with static batches of
# {glue:text}`gantt_batch` (`serving.hf_static_batching`, which passes the `attention_mask` that
# left padding needs) and through `serving.Engine` with at most {glue:text}`gantt_batch` sequences
# at a time and the same KV memory.

# %%
def cpu_trace(n: int, seed: int, sigma: float = 1.0, rate: float | None = None) -> RequestTrace:
    """n requests sized for the book's model: log-normal prompt (≤ 40% of the context) and output
    (≤ 60%) lengths, redrawn until they fit, so any static batch fits the learned positions.
    Arrivals are Poisson at ``rate`` requests/s, or all at t = 0. The lengths depend on ``seed`` only."""
    return request_trace(n, seed, prompt_median=0.15 * BLOCK, output_median=0.15 * BLOCK, sigma=sigma,
                         max_len=BLOCK, rate=rate, prompt_sigma=0.6, max_prompt_len=int(0.4 * BLOCK),
                         max_output_len=int(0.6 * BLOCK))


def to_requests(trace: RequestTrace, seed: int) -> list[Request]:
    """One greedy ``Request`` per trace entry; its prompt is a window of held-out text of the traced length."""
    val = pre.data.val
    starts = np.random.default_rng(seed).integers(0, len(val) - BLOCK, len(trace))
    return [Request(val[s:s + p].tolist(), int(o), arrival=float(a))
            for s, p, o, a in zip(starts, trace.prompt_len, trace.output_len, trace.arrival)]


def kv_blocks(tokens: int) -> int:
    return tokens // KV_BLOCK


gantt_batch = 4
gantt_trace = cpu_trace(pick(SMOKE, 16, 20), seed=1)
gantt_reqs = to_requests(gantt_trace, seed=1)
hf_static_batching(hf, gantt_reqs[:2], 2)  # warm-up: the first call to generate pays one-off costs
gantt_static = hf_static_batching(hf, gantt_reqs, gantt_batch)
gantt_engine = Engine(model, EngineConfig(num_blocks=kv_blocks(gantt_batch * BLOCK), block_size=KV_BLOCK,
                                          max_num_seqs=gantt_batch))
gantt_out = gantt_engine.run(gantt_reqs)
assert gantt_out == gantt_static.outputs, "greedy outputs are token-identical"

fig = viz.gantt_figure({f"static (HF generate, batches of {gantt_batch})": gantt_static.spans(),
                        f"continuous (engine, {gantt_batch} sequences)": gantt_engine.spans()},
                       title=f"{len(gantt_reqs)} requests, all arriving at t = 0: pick a policy in the menu")
fig.show()

# %%
def time_in(spans, kind: str) -> float:
    return sum(s.end - s.start for s in spans if s.kind == kind)


static_spans, engine_spans = gantt_static.spans(), gantt_engine.spans()
busy = sum(time_in(static_spans, k) for k in ("prefill", "decode", "held"))
held_share = time_in(static_spans, "held") / busy
static_end = max(s.end for s in static_spans)
engine_end = max(s.end for s in engine_spans)
glue("gantt_n", len(gantt_reqs))
glue("gantt_batch", gantt_batch)
glue("gantt_held_share", held_share)
glue("gantt_static_s", static_end)
glue("gantt_engine_s", engine_end)
glue("gantt_speedup", static_end / engine_end)
glue("gantt_out_max", int(gantt_trace.output_len.max()))
glue("gantt_out_min", int(gantt_trace.output_len.min()))
print(f"static: done at {static_end:.3f} s, slots held idle {held_share:.0%} of their time; "
      f"continuous: done at {engine_end:.3f} s")
assert held_share > 0.2 and "held" not in {s.kind for s in engine_spans}
assert engine_end < static_end

# %% [markdown]
# Each bar is a request's life: grey while it waits, blue for its prefill, green while it decodes,
# and red while it is **held** — finished, but still occupying its slot, because a static batch
# runs until its longest member is done (`generate` takes one `max_new_tokens` for the batch, and
# its rows advance in lockstep). Outputs in this trace range from {glue:text}`gantt_out_min` to
# {glue:text}`gantt_out_max` tokens, so in the static run the slots were held idle for
# {glue:text}`gantt_held_share:.0%` of their time, and every request behind a batch waited for that
# batch's longest member. Switch to the engine: a slot freed at one step is refilled at the next, the
# green bars pack tightly, and the whole trace is done in {glue:text}`gantt_engine_s:.2f` s instead
# of {glue:text}`gantt_static_s:.2f` s ({glue:text}`gantt_speedup:.1f`×) with the same
# {glue:text}`gantt_batch` sequences at a time — and exactly the same tokens.
#
# ## 3. The engine against `generate`: same trace, same weights, same memory
#
# Now a trace of {glue:text}`thr_n` requests ({glue:text}`thr_tokens:,` output tokens in all,
# output σ = 1.0, all arriving at once), and static batches of $B$ = {glue:text}`thr_batch`. The
# fair comparison holds the **KV memory** equal. A static batch must be able to hold $B$ sequences
# of the full context, so a server that preallocates reserves $B$ × {glue:text}`block` =
# {glue:text}`kv_tokens:,` tokens of KV (Hugging Face's `generate` grows its cache as it goes, but
# pads every row to the longest). The engine gets exactly that many tokens as paged blocks and
# admits as many sequences as fit; when the pool runs out mid-decode it preempts the newest
# sequence and recomputes it later. Two more runs frame it: the engine limited to the same $B$
# sequences (equal concurrency), and one request at a time (the floor).

# %%
thr_batch = 8
thr_trace = cpu_trace(pick(SMOKE, 48, 128), seed=2)
thr_reqs = to_requests(thr_trace, seed=2)
n_tokens = int(thr_trace.output_len.sum())
kv_equal = kv_blocks(thr_batch * BLOCK)
configs = {
    "engine, equal KV memory": EngineConfig(num_blocks=kv_equal, block_size=KV_BLOCK, max_num_seqs=256),
    "engine, equal concurrency": EngineConfig(num_blocks=kv_equal, block_size=KV_BLOCK, max_num_seqs=thr_batch),
}
Engine(model, configs["engine, equal KV memory"]).run(thr_reqs[:4])  # warm-up
configs["engine, one at a time"] = EngineConfig(num_blocks=kv_equal, block_size=KV_BLOCK, max_num_seqs=1)
best, runs = {}, {}
for rep in tqdm(range(2), desc="alternating runs"):
    start = time.perf_counter()
    runs["HF generate, static"] = hf_static_batching(hf, thr_reqs, thr_batch)
    best["HF generate, static"] = min(best.get("HF generate, static", np.inf), time.perf_counter() - start)
    for name, cfg in configs.items():
        engine = Engine(model, cfg)
        start = time.perf_counter()
        engine.run(thr_reqs)
        best[name] = min(best.get(name, np.inf), time.perf_counter() - start)
        runs[name] = engine
tps = {name: n_tokens / seconds for name, seconds in best.items()}

static_run = runs["HF generate, static"]
for name in configs:
    assert [s.output for s in runs[name].sequences.values()] == static_run.outputs, f"{name}: identical tokens"
Markdown("| run | tokens/s (best of the repeats) | vs HF static |\n|---|---|---|\n" + "\n".join(
    f"| {name} | {v:,.0f} | {v / tps['HF generate, static']:.2f}× |" for name, v in tps.items()))

# %% [markdown]
# Where does the gain come from? Two sources, which can be separated. **Scheduling**: count the
# model steps each run needed — a static batch runs as many steps as its longest output, the engine
# as many as its schedule needs — a count that does not depend on the machine's noise.
# **Implementation**: the time of one decode step for the same {glue:text}`thr_batch` sequences,
# `generate` against the engine.

# %%
eq_kv, eq_conc = runs["engine, equal KV memory"], runs["engine, equal concurrency"]
batches = [members for _, _, members in static_run.batches]
static_steps = sum(max(thr_reqs[i].max_new_tokens for i in b) for b in batches)
slot_steps = sum(len(b) * max(thr_reqs[i].max_new_tokens for i in b) for b in batches)
full = [b for b in batches if len(b) == thr_batch]
hf_step = np.median(np.concatenate([np.diff(max((static_run.token_times[i] for i in b), key=len)) for b in full]))
eng_step = np.median([s.end - s.start for s in eq_conc.steps if s.decode_tokens == thr_batch and not s.prefill_tokens])
preempted = sum(s.preempted for s in eq_kv.steps)

glue("thr_n", len(thr_reqs))
glue("thr_batch", thr_batch)
glue("thr_tokens", n_tokens)
glue("kv_tokens", kv_equal * KV_BLOCK)
for key, name in (("static", "HF generate, static"), ("eq_kv", "engine, equal KV memory"),
                  ("eq_conc", "engine, equal concurrency"), ("one", "engine, one at a time")):
    glue(f"tps_{key}", tps[name])
ratio_kv = glue("ratio_kv", tps["engine, equal KV memory"] / tps["HF generate, static"])
ratio_conc = glue("ratio_conc", tps["engine, equal concurrency"] / tps["HF generate, static"])
glue("ratio_static_one", tps["HF generate, static"] / tps["engine, one at a time"])
glue("ratio_kv_one", tps["engine, equal KV memory"] / tps["engine, one at a time"])
glue("static_useful", n_tokens / slot_steps)
glue("static_steps", static_steps)
glue("conc_steps", len(eq_conc.steps))
glue("step_ratio", static_steps / len(eq_conc.steps))
glue("hf_step_ms", 1e3 * hf_step)
glue("eng_step_ms", 1e3 * eng_step)
glue("impl_ratio", hf_step / eng_step)
glue("n_preempted", preempted)
e2e_static, e2e_engine = static_run.latency().percentile("e2e", 50), eq_kv.latency().percentile("e2e", 50)
glue("e2e50_static", e2e_static)
glue("e2e50_engine", e2e_engine)
glue("max_running", max(s.running for s in eq_kv.steps))
print(f"static: {static_steps} steps, {n_tokens / slot_steps:.0%} of its slot-steps produced a token; engine at "
      f"{thr_batch} sequences: {len(eq_conc.steps)} steps. Decode step for {thr_batch}: "
      f"generate {1e3 * hf_step:.2f} ms, engine {1e3 * eng_step:.2f} ms. "
      f"Equal-KV engine: up to {max(s.running for s in eq_kv.steps)} sequences, {preempted} preemptions")
assert ratio_kv > 1.2 and ratio_conc > 1.1, "the engine beats static batching on the same weights and memory"
assert tps["engine, equal KV memory"] > tps["engine, one at a time"] * 2
assert static_steps < len(runs["engine, one at a time"].steps) == n_tokens, "static batching needs fewer steps"
assert tps["HF generate, static"] > 0.8 * tps["engine, one at a time"]
assert static_steps > len(eq_conc.steps), "static batching needs more steps for the same tokens"
assert e2e_engine < e2e_static, "and the median request is done sooner"
assert max(s.running for s in eq_kv.steps) > thr_batch, "paged memory fits more sequences than the static reservation"

# %%
fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.1,
                    subplot_titles=("tokens per second, same trace", "the KV memory both were given, in use"))
fig.add_bar(x=[name.replace(", ", "<br>") for name in tps], y=list(tps.values()),
            text=[f"{v:,.0f}" for v in tps.values()], textposition="outside", cliponaxis=False, showlegend=False,
            marker_color=[viz.PALETTE[1], viz.PALETTE[2], viz.PALETTE[0], "#999999"], row=1, col=1)
# static: the tokens of sequences still decoding, as a share of the B × BLOCK reservation, step by step
for start, _, members in static_run.batches:
    longest = max(members, key=lambda i: len(static_run.token_times[i]))
    t = np.array(static_run.token_times[longest]) - static_run.arrival_time
    live = [sum(len(thr_reqs[i].prompt) + k + 1 for i in members if thr_reqs[i].max_new_tokens > k)
            for k in range(len(t))]
    fig.add_scatter(x=t, y=np.array(live) / (thr_batch * BLOCK), mode="lines", line=dict(color=viz.PALETTE[1]),
                    name="static: tokens of live sequences / reservation", legendgroup="s",
                    showlegend=start == static_run.batches[0][0], row=1, col=2)
times, used = eq_kv.kv_utilization()
fig.add_scatter(x=times, y=used, mode="lines", line=dict(color=viz.PALETTE[2]), name="engine: KV blocks in use",
                row=1, col=2)
pre_t = [s.start - eq_kv.steps[0].start for s in eq_kv.steps if s.preempted]
fig.add_scatter(x=pre_t, y=[1.02] * len(pre_t), mode="markers", marker=dict(symbol="triangle-down", color="black"),
                name="engine: a preemption", row=1, col=2)
fig.update_yaxes(title_text="tokens/s", range=[0, 1.15 * max(tps.values())], row=1, col=1)
fig.update_xaxes(tickangle=0, row=1, col=1)
fig.update_yaxes(title_text="share of the KV memory", tickformat=".0%", row=1, col=2)
fig.update_xaxes(title_text="time since the run started (s)", row=1, col=2)
fig.update_layout(height=480, legend=dict(orientation="h", y=-0.25), margin=dict(t=90),
                  title=f"{len(thr_reqs)} requests; static batches of {thr_batch} against the engine with the same "
                        f"{kv_equal * KV_BLOCK:,} KV tokens")
fig.show()

# %% [markdown]
# With equal KV memory the engine produces {glue:text}`tps_eq_kv:,.0f` tokens/s against
# {glue:text}`tps_static:,.0f` for static batching with `generate`: **{glue:text}`ratio_kv:.1f`×**,
# on the same weights, with token-identical outputs. Held to the same {glue:text}`thr_batch`
# sequences at a time it still gets {glue:text}`tps_eq_conc:,.0f` tokens/s,
# {glue:text}`ratio_conc:.1f`×. Decoding one request at a time gives {glue:text}`tps_one:,.0f`
# tokens/s: static batching gets {glue:text}`ratio_static_one:.1f`×
# that (it needs {glue:text}`static_steps` model steps for the {glue:text}`thr_tokens:,` tokens
# instead of {glue:text}`thr_tokens:,`, but each of its steps is a `generate` step for a padded
# batch), the engine {glue:text}`ratio_kv_one:.1f`×. Latency improves with throughput here: with
# every request queued at t = 0, the median request was done after {glue:text}`e2e50_engine:.2f` s
# in the engine and {glue:text}`e2e50_static:.2f` s under static batching.
#
# The split: static batching ran {glue:text}`static_steps` steps where the engine needed
# {glue:text}`conc_steps` for the same tokens at the same concurrency
# ({glue:text}`step_ratio:.2f`× — scheduling alone), because only {glue:text}`static_useful:.0%` of
# the static batches' slot-steps produced a token. The rest is the cost of a step: a decode step
# for {glue:text}`thr_batch` sequences takes {glue:text}`hf_step_ms:.2f` ms in `generate` and
# {glue:text}`eng_step_ms:.2f` ms in the engine ({glue:text}`impl_ratio:.2f`×). The two are close on
# this model — `generate` carries more per-step Python machinery (logits processors, stopping
# criteria, cache objects), the engine gathers keys and values through block tables — so most of
# the equal-concurrency gain is scheduling; section 7 separates the two with a fitted cost model.
#
# With equal memory the engine also ran up to {glue:text}`max_running` sequences at once. The right
# panel shows why it can: its paged pool holds only tokens that exist, while the static
# reservation is mostly empty. The price was {glue:text}`n_preempted` preemptions, each
# recomputing a sequence's prompt and output so far when the pool ran out.
#
# ## 4. Throughput against concurrency
#
# How many sequences should run at once? The engine's `max_num_seqs` is the knob. The sweep below
# serves the same {glue:text}`thr_n` requests with memory to spare (no preemption), twice per
# setting (the faster run counts), and a second measurement times single decode steps for
# batches of 1 to 64 sequences.

# %%
# each run's step log also becomes rows for the cost model fitted in section 7
def engine_rows(engine: Engine) -> list[tuple[int, int, int, float]]:
    """(prefill_tokens, decode_seqs, context_tokens, seconds) per step of a run without chunking,
    preemption or prefix-cache hits; context counts the cached tokens each decode reads."""
    produced, rows = {}, []
    for s in engine.steps:
        context = 0
        for i in s.decode_ids:
            context += len(engine.sequences[i].request.prompt) + produced[i] - 1
            produced[i] += 1
        for i in s.prefill_ids:
            produced[i] = 1  # a whole prompt in one step: it yields the first token
        rows.append((s.prefill_tokens, s.decode_tokens, context, s.end - s.start))
    return rows


conc_levels = [1, 2, 4, 8, 16, 32, 64]
roomy = dict(num_blocks=kv_blocks(64 * BLOCK), block_size=KV_BLOCK, chunked_prefill=False, prefix_caching=False)
sweep = {m: 0.0 for m in conc_levels}  # tokens/s, the better of two interleaved rounds
sweep_rows = []  # every step of every run, for the cost model fitted in section 7
for rep in range(2):
    for m in tqdm(conc_levels, desc=f"max_num_seqs, round {rep + 1}"):
        engine = Engine(model, EngineConfig(max_num_seqs=m, **roomy))
        start = time.perf_counter()
        engine.run(thr_reqs)
        sweep[m] = max(sweep[m], n_tokens / (time.perf_counter() - start))
        assert not any(s.preempted for s in engine.steps)
        sweep_rows += engine_rows(engine)

step_batches = [1, 2, 4, 8, 16, 32, 64]
n_steps = pick(SMOKE, 12, 24)
step_ms = {b: np.inf for b in step_batches}
val = pre.data.val
for _ in tqdm(range(3), desc="decode step vs batch"):  # interleaved rounds; per batch size, the best median step
    for b in step_batches:  # b sequences with 16-token prompts, decoding together
        reqs = [Request(val[97 * i:97 * i + 16].tolist(), n_steps + 1) for i in range(b)]
        engine = Engine(model, EngineConfig(max_num_seqs=b, **roomy))
        engine.run(reqs)
        median = 1e3 * np.median([s.end - s.start for s in engine.steps if s.decode_tokens == b])
        step_ms[b] = min(step_ms[b], median)
gpu_rel = {b: float(a100.step_seconds(0, b, b * ctx) / a100.step_seconds(0, 1, ctx)) for b in step_batches}

fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("engine throughput against max_num_seqs", "one decode step against batch size"))
fig.add_scatter(x=conc_levels, y=[sweep[m] for m in conc_levels], mode="lines+markers", name="engine, measured",
                line=dict(color=viz.PALETTE[2]), row=1, col=1)
fig.add_scatter(x=conc_levels, y=[tps["HF generate, static"]] * len(conc_levels), mode="lines",
                line=dict(color=viz.PALETTE[1], dash="dash"), name=f"HF static, batch {thr_batch}", row=1, col=1)
fig.add_scatter(x=step_batches, y=[step_ms[b] / step_ms[1] for b in step_batches], mode="lines+markers",
                name="CPU, book model (measured)", line=dict(color=viz.PALETTE[0]), row=1, col=2)
fig.add_scatter(x=step_batches, y=[gpu_rel[b] for b in step_batches], mode="lines+markers",
                name=f"A100, Llama-2-7B, {ctx} cached tokens (roofline)", line=dict(color=viz.PALETTE[3]), row=1, col=2)
fig.add_scatter(x=step_batches, y=step_batches, mode="lines", line=dict(color="gray", dash="dot"),
                name="cost ∝ batch (no sharing)", row=1, col=2)
fig.update_xaxes(type="log", tickvals=conc_levels, title_text="max_num_seqs", row=1, col=1)
fig.update_xaxes(type="log", tickvals=step_batches, title_text="sequences in the decode step", row=1, col=2)
fig.update_yaxes(title_text="tokens/s", row=1, col=1)
fig.update_yaxes(type="log", tickvals=step_batches, title_text="step time / step time at batch 1", row=1, col=2)
fig.update_layout(height=470, legend=dict(orientation="h", y=-0.2), margin=dict(t=90),
                  title="Batching buys throughput because a step is shared")
fig.show()

# %%
glue("sweep_tps_1", sweep[1])
glue("sweep_tps_max", max(sweep.values()))
glue("sweep_best_m", max(sweep, key=sweep.get))
glue("sweep_gain", max(sweep.values()) / sweep[1])
gain_16 = glue("sweep_gain_16", sweep[16] / sweep[1])
glue("seed_16_verdict", "meets" if gain_16 >= 3 else "falls short of")
glue("step_1_ms", step_ms[1])
glue("step_64_ms", step_ms[64])
glue("step_64_rel", step_ms[64] / step_ms[1])
glue("gpu_64_rel", gpu_rel[64])
print("tokens/s:", {m: round(v) for m, v in sweep.items()})
print("decode step (ms):", {b: round(v, 2) for b, v in step_ms.items()})
assert min(sweep[32], sweep[64]) > 2.5 * sweep[1], "concurrency multiplies throughput"
assert step_ms[64] < 64 / 4 * step_ms[1], "a step for 64 costs far less than 64 steps for 1"
assert gpu_rel[8] < 1.2 < gpu_rel[64], "on the GPU roofline the step is flat, then the KV reads take over"

# %% [markdown]
# From one sequence at a time to {glue:text}`sweep_best_m` the engine's throughput grows from
# {glue:text}`sweep_tps_1:,.0f` to {glue:text}`sweep_tps_max:,.0f` tokens/s
# ({glue:text}`sweep_gain:.1f`×), with diminishing returns at high concurrency: the batch is
# limited by what is still waiting, and the last long outputs of the trace finish in a nearly
# empty batch, at the speed of one. The right panel is the reason for the rise. A decode step for 64
# sequences on this CPU takes {glue:text}`step_64_rel:.1f`× the time of a step for one
# ({glue:text}`step_1_ms:.2f` ms → {glue:text}`step_64_ms:.2f` ms), not 64×: the weights are read
# once per step and the per-step Python overhead is paid once. On an A100 the roofline is flatter
# still — weight reads dominate — until, at 64 sequences of {glue:text}`gpu_ctx` cached tokens, the
# KV reads add up to more bytes than the weights and the step grows to {glue:text}`gpu_64_rel:.1f`×.
# That is the shape the seeds describe as "throughput grows linearly with batch size until memory
# bound — then the KV cache is the bottleneck".
#
# A curriculum in the seeds sets its serving lab the target "≥ 3× throughput vs sequential at
# concurrency = 16". With 16 sequences this engine gets {glue:text}`sweep_gain_16:.1f`× on this
# trace, so it {glue:text}`seed_16_verdict` the target — a ratio that depends on the model's step
# cost and on the trace's tail as much as on the engine.
#
# :::{admonition} Interview angle: "how do you size max_num_seqs and the token budget?"
# :class: tip
# Start from memory: after the weights, the KV pool holds so many tokens; divided by the expected
# tokens per sequence (prompt + half the output, on average) it gives the concurrency the pool
# sustains without preemption — set `max_num_seqs` near it, not far above (above it, the engine
# thrashes: it preempts and recomputes). Then sweep it and stop where throughput flattens or the
# inter-token latency leaves the SLO: a bigger batch makes every step longer (here a step for 64 is
# {glue:text}`step_64_rel:.1f`× a step for 1). The token budget (`max_num_batched_tokens`) caps
# the work per step: large enough that a step is efficient (prefill chunks of a few hundred tokens
# saturate a GPU), small enough that one step never stalls the running streams — section 6.
# :::
#
# ## 5. Latency under load: TTFT and inter-token latency
#
# Throughput on an offline batch is half the story; a server sees requests arrive one by one. The
# runs below replay Poisson arrivals in real time (`serving.serve`: a request joins the engine at
# its arrival time, and its latency counts from then) at three rates — light load, heavy load and
# overload — set as fractions of the engine's capacity with a full batch of {glue:text}`serve_seqs`
# sequences. That capacity is Little's law (section 7) applied to the measurements of section 4:
# a full batch holds {glue:text}`serve_seqs` requests, each stays for about its
# {glue:text}`serve_mean_out:.0f` output tokens' worth of {glue:text}`step_32_ms:.2f`-ms steps, so
# the engine can finish at most about {glue:text}`capacity_rps:.0f` requests per second. Each rate
# serves {glue:text}`serve_n` requests. The serving metrics are those of every SLO: **TTFT**, time
# to first token (queueing + prefill), and **ITL**, inter-token latency, the gaps a user sees while
# the answer streams.

# %%
serve_seqs = 32
serve_n = pick(SMOKE, 150, 120)
# capacity by Little's law: a full batch holds serve_seqs requests, each in it for about mean_out steps of
# step_ms[serve_seqs], so the engine finishes at most serve_seqs / W requests per second
mean_out = float(cpu_trace(serve_n, seed=3).output_len.mean())
capacity_rps = serve_seqs / (mean_out * step_ms[serve_seqs] / 1e3)
load_fracs = (0.25, 0.7, 1.5)
serve_cfg = EngineConfig(num_blocks=kv_blocks(serve_seqs * BLOCK), block_size=KV_BLOCK, max_num_seqs=serve_seqs)
loads = {}
for frac in tqdm(load_fracs, desc="arrival rates"):
    trace = cpu_trace(serve_n, seed=3, rate=frac * capacity_rps)  # the same lengths at every rate
    reqs = to_requests(trace, seed=3)
    engine = Engine(model, serve_cfg)
    out = serve(engine, reqs)
    assert [len(o) for o in out] == [r.max_new_tokens for r in reqs]
    loads[frac] = (engine.latency().summary((50, 99)), engine)

cols = ["ttft_p50", "ttft_p99", "itl_p50", "itl_p99", "tokens_per_s"]
Markdown("| load | arrival rate (req/s) | " + " | ".join(cols) + " |\n" + "|---" * (len(cols) + 2) + "|\n" + "\n".join(
    f"| {frac:.0%} | {frac * capacity_rps:.1f} | " + " | ".join(
        f"{s[c]:,.0f}" if c == "tokens_per_s" else f"{1e3 * s[c]:.1f} ms" for c in cols) + " |"
    for frac, (s, _) in loads.items()))

# %%
fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("time to first token", "inter-token latency"))
achieved = [s["tokens_per_s"] for s, _ in loads.values()]
for col, metric in ((1, "ttft"), (2, "itl")):
    for q, dash in ((50, "solid"), (99, "dash")):
        fig.add_scatter(x=achieved, y=[1e3 * s[f"{metric}_p{q}"] for s, _ in loads.values()], mode="lines+markers",
                        text=[f"{f:.0%} load" for f in load_fracs], line=dict(color=viz.PALETTE[col - 1], dash=dash),
                        name=f"{metric.upper()} p{q}", hovertemplate="%{text}: %{y:.1f} ms<extra></extra>",
                        row=1, col=col)
fig.update_xaxes(title_text="throughput achieved (tokens/s)")
fig.update_yaxes(title_text="ms", type="log")
fig.update_layout(height=440, legend=dict(orientation="h", y=-0.2), margin=dict(t=90),
                  title="The latency–throughput trade-off: Poisson arrivals at three rates, the real engine")
fig.show()

# %%
lo, hi = loads[load_fracs[0]][0], loads[load_fracs[-1]][0]
glue("serve_n", serve_n)
glue("capacity_rps", capacity_rps)
glue("serve_seqs", serve_seqs)
glue("serve_mean_out", mean_out)
glue("step_32_ms", step_ms[serve_seqs])
for name, s in (("lo", lo), ("hi", hi)):
    glue(f"{name}_tps", s["tokens_per_s"])
    for m in ("ttft_p50", "ttft_p99", "itl_p50"):
        glue(f"{name}_{m}_ms", 1e3 * s[m])
glue("load_lo", load_fracs[0])
glue("load_hi", load_fracs[-1])
# Little's law on the real engine: the time-average number of requests in the system, read off the
# step log (running + waiting, weighted by step time), against arrival rate × mean time in system
engine = loads[load_fracs[-1]][1]
arrivals = np.array([s.arrival_time for s in engine.sequences.values()])
finishes = np.array([s.token_times[-1] for s in engine.sequences.values()])
window = finishes.max() - arrivals.min()
in_system = sum((s.running + s.waiting) * (s.end - s.start) for s in engine.steps) / window
L, lam_w = littles_law(arrivals, finishes)
glue("engine_L_steps", in_system)
glue("engine_lam_w", lam_w)
print(f"at {load_fracs[-1]:.0%} load: mean in system from the step log {in_system:.2f}, λ·W = {lam_w:.2f}")
assert hi["tokens_per_s"] > 1.3 * lo["tokens_per_s"], "more offered load, more throughput"
batch_lo, batch_hi = (np.mean([s.running for s in loads[f][1].steps]) for f in (load_fracs[0], load_fracs[-1]))
glue("batch_lo", batch_lo)
glue("batch_hi", batch_hi)
assert batch_hi > batch_lo, "more offered load, more sequences in every step"
if not SMOKE:  # the SMOKE model is so small that a step costs about the same at any batch
    assert hi["itl_p50"] > lo["itl_p50"], "bigger batches make every step, so every token gap, longer"
assert hi["ttft_p99"] > 2 * lo["ttft_p99"], "and past capacity the queue sets TTFT"
assert abs(in_system / lam_w - 1) < 0.3, "Little's law: the step log agrees with λ·W"

# %% [markdown]
# From {glue:text}`load_lo:.0%` to {glue:text}`load_hi:.0%` of the measured capacity, throughput
# rises from {glue:text}`lo_tps:,.0f` to {glue:text}`hi_tps:,.0f` tokens/s, and latency pays for
# it: median ITL {glue:text}`lo_itl_p50_ms:.1f` → {glue:text}`hi_itl_p50_ms:.1f` ms (a step carries
# {glue:text}`batch_lo:.1f` → {glue:text}`batch_hi:.1f` sequences on average), median TTFT {glue:text}`lo_ttft_p50_ms:.1f` →
# {glue:text}`hi_ttft_p50_ms:.1f` ms and p99 TTFT {glue:text}`lo_ttft_p99_ms:.1f` →
# {glue:text}`hi_ttft_p99_ms:.1f` ms. Past capacity the queue, not the model, sets TTFT: requests
# arrive faster than the engine finishes them, the queue grows for as long as the overload lasts,
# and so does the wait (section 7 shows the cliff on a longer trace). That is the
# latency–throughput trade-off every serving configuration picks a point on. A quick consistency
# check, Little's law (section 7): at the highest load the step log shows
# {glue:text}`engine_L_steps:.2f` requests in the system on average, and arrival rate × mean time
# in system gives {glue:text}`engine_lam_w:.2f`.
#
# :::{admonition} Interview angle: "continuous batching raises throughput — why can it raise TTFT?"
# :class: tip
# It raises throughput by keeping the batch full, and a full batch is what costs latency: each step
# carries more sequences, so once the step cost follows the batch every token gap grows (median ITL
# {glue:text}`lo_itl_p50_ms:.1f` → {glue:text}`hi_itl_p50_ms:.1f` ms above), and a new request's prefill competes with the running
# decodes for the step's token budget and for free KV blocks — when the pool is full it waits, or
# pushes someone out (a preemption, whose recompute delays that request again). Engines pick a
# side: prefill-first schedulers (vLLM's original default) give low TTFT but stall the running
# streams; decode-first schedulers with chunked prefill (Sarathi-Serve, vLLM V1, this engine) keep
# ITL smooth and let TTFT absorb the wait. Against static batching, continuous batching usually
# *lowers* TTFT under load — nobody waits for a whole batch to drain — so the honest answer is: it
# trades per-token latency for throughput, and the scheduler decides whether TTFT or ITL pays.
# :::
#
# ## 6. Chunked prefill: smooth streams while long prompts arrive
#
# A prefill processes a whole prompt in one step — hundreds or thousands of tokens, compute-bound.
# Every sequence decoding in the same step waits for it, so each long prompt that arrives puts a
# spike in the token stream of everyone else. **Chunked prefill** (Sarathi-Serve
# {cite}`agrawal2024sarathi`) caps the tokens per step and splits a long prompt across several
# steps, each carrying the running decodes too. On the real engine: {glue:text}`chunk_decoders`
# requests decode {glue:text}`chunk_out` tokens each while, every {glue:text}`chunk_every` steps,
# {glue:text}`chunk_group` requests with {glue:text}`chunk_prompt`-token prompts arrive. Without
# chunking the budget is unlimited; with it, a step holds at most {glue:text}`chunk_budget` tokens
# (the decodes plus a {glue:text}`chunk_piece`-token piece of prompt).

# %%
chunk_decoders, chunk_every, chunk_group = 8, 12, 3
chunk_out, chunk_prompt = int(0.75 * BLOCK), int(0.85 * BLOCK)
chunk_piece = 32
chunk_budget = chunk_decoders + chunk_piece
offsets = np.random.default_rng(4).integers(0, len(val) - BLOCK, 64)


def long_prompt_run(chunked: bool) -> tuple[np.ndarray, list[float], Engine]:
    """Decoders start at step 0; ``chunk_group`` long prompts join every ``chunk_every`` steps. Returns the
    decoders' inter-token gaps (s), the long prompts' TTFTs (s) and the engine."""
    cfg = EngineConfig(num_blocks=kv_blocks(32 * BLOCK), block_size=KV_BLOCK, max_num_seqs=64, prefix_caching=False,
                       chunked_prefill=chunked, max_batched_tokens=chunk_budget if chunked else 4 * BLOCK)
    engine = Engine(model, cfg)
    decoders = [engine.add_request(Request(val[o:o + 8].tolist(), chunk_out)) for o in offsets[:chunk_decoders]]
    longs, k = [], 0
    while engine.has_unfinished():
        if k % chunk_every == chunk_every // 2 and k < chunk_out - chunk_every:
            for _ in range(chunk_group):
                o = offsets[chunk_decoders + len(longs)]
                longs.append(engine.add_request(Request(val[o:o + chunk_prompt].tolist(), 2)))
        engine.step()
        k += 1
    gaps = np.concatenate([np.diff(engine.sequences[i].token_times) for i in decoders])
    ttft = [engine.sequences[i].token_times[0] - engine.sequences[i].arrival_time for i in longs]
    return gaps, ttft, engine


chunk_runs = {True: [], False: []}
for rep in tqdm(range(3), desc="alternating runs"):
    for chunked in (False, True):
        chunk_runs[chunked].append(long_prompt_run(chunked))
chunk_stats = {chunked: {name: float(np.median([f(r) for r in rs])) for name, f in (
    ("itl_p50", lambda r: np.percentile(r[0], 50)), ("itl_p99", lambda r: np.percentile(r[0], 99)),
    ("ttft_mean", lambda r: np.mean(r[1])))} for chunked, rs in chunk_runs.items()}
chunk_steps = {chunked: float(np.median([1e3 * (s.end - s.start) for r in rs for s in r[2].steps if s.prefill_tokens]))
               for chunked, rs in chunk_runs.items()}

# %% [markdown]
# The simulator of `companion.batchsim` runs the same policy on the roofline of Llama-2-7B on an
# A100: {glue:text}`sim_chunk_n` requests with prompts of median {glue:text}`sim_chunk_prompt`
# tokens and outputs of median 128 (σ = 0.8), arriving as a Poisson stream at
# {glue:text}`sim_chunk_load:.0%` of capacity, up to 64 sequences; without chunking the step budget
# is 4,096 tokens, with it 256 to 2,048.

# %%
sim_chunk_n = pick(SMOKE, 300, 1000)
sim_prompt = 1024
offline = request_trace(sim_chunk_n, seed=5, prompt_median=sim_prompt, output_median=128, sigma=0.8, max_len=4096)
sim_cap = simulate(offline, "continuous", a100, max_batch=64, token_budget=4096).stats.requests_per_s
sim_load = 0.8
stream = request_trace(sim_chunk_n, seed=5, prompt_median=sim_prompt, output_median=128, sigma=0.8, max_len=4096,
                       rate=sim_load * sim_cap)
budgets = {"no chunking (4096)": (4096, False)} | {f"chunks of {b}": (b, True) for b in (2048, 1024, 512, 256)}
sim_chunk = {name: simulate(stream, "continuous", a100, max_batch=64, token_budget=b, chunked_prefill=c).stats
             for name, (b, c) in budgets.items()}
itl99 = [1e3 * s.percentile("itl", 99) for s in sim_chunk.values()]
ttft50 = [1e3 * s.percentile("ttft", 50) for s in sim_chunk.values()]

fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, column_widths=[0.5, 0.5],
                    specs=[[{}, {"secondary_y": True}]],
                    subplot_titles=("book model, CPU: the gaps in one decoding stream",
                                    "Llama-2-7B on an A100 (simulated), by step budget"))
for chunked, color in ((False, viz.PALETTE[1]), (True, viz.PALETTE[2])):
    engine = chunk_runs[chunked][-1][2]
    fig.add_scatter(y=1e3 * np.diff(engine.sequences[0].token_times), mode="lines", line=dict(color=color),
                    name=f"chunked prefill, {chunk_budget} tokens per step" if chunked else "whole prompts in one step",
                    row=1, col=1)
budget_x = [b for b, _ in budgets.values()]
fig.add_scatter(x=budget_x, y=itl99, mode="lines+markers", text=list(sim_chunk), line=dict(color=viz.PALETTE[3]),
                name="simulated p99 ITL (left axis)", hovertemplate="%{text}: %{y:.0f} ms<extra></extra>", row=1, col=2)
fig.add_scatter(x=budget_x, y=ttft50, mode="lines+markers", text=list(sim_chunk),
                line=dict(color=viz.PALETTE[4], dash="dash"), name="simulated median TTFT (right axis)",
                hovertemplate="%{text}: %{y:.0f} ms<extra></extra>",
                row=1, col=2, secondary_y=True)
fig.update_xaxes(title_text="token of the first decoding request", row=1, col=1)
fig.update_yaxes(title_text="gap before this token (ms)", row=1, col=1)
fig.update_xaxes(title_text="tokens per step (4,096: whole prompts, no chunking)", type="log", tickvals=budget_x,
                 row=1, col=2)
fig.update_yaxes(title_text="p99 ITL (ms)", type="log", row=1, col=2)
fig.update_yaxes(title_text="median TTFT (ms)", row=1, col=2, secondary_y=True)
fig.update_layout(height=470, legend=dict(orientation="h", y=-0.22), margin=dict(t=90),
                  title="What chunked prefill trades")
fig.show()

# %%
glue("chunk_decoders", chunk_decoders)
glue("chunk_out", chunk_out)
glue("chunk_prompt", chunk_prompt)
glue("chunk_every", chunk_every)
glue("chunk_group", chunk_group)
glue("chunk_budget", chunk_budget)
glue("chunk_piece", chunk_piece)
for chunked, key in ((False, "whole"), (True, "chunked")):
    for name, v in chunk_stats[chunked].items():
        glue(f"{key}_{name}_ms", 1e3 * v)
    glue(f"{key}_prefill_step_ms", chunk_steps[chunked])
glue("sim_chunk_n", sim_chunk_n)
glue("sim_chunk_prompt", sim_prompt)
glue("sim_chunk_load", sim_load)
s_whole, s_512 = sim_chunk["no chunking (4096)"], sim_chunk["chunks of 512"]
glue("sim_itl99_whole_ms", 1e3 * s_whole.percentile("itl", 99))
glue("sim_itl99_512_ms", 1e3 * s_512.percentile("itl", 99))
glue("sim_ttft50_whole_ms", 1e3 * s_whole.percentile("ttft", 50))
glue("sim_ttft50_512_ms", 1e3 * s_512.percentile("ttft", 50))
glue("sim_ttft50_256_ms", 1e3 * sim_chunk["chunks of 256"].percentile("ttft", 50))
print({k: {n: round(1e3 * v, 2) for n, v in d.items()} for k, d in chunk_stats.items()}, chunk_steps)
assert chunk_stats[True]["itl_p99"] < chunk_stats[False]["itl_p99"], "chunking removes the spikes from the streams"
assert chunk_steps[True] < chunk_steps[False], "a step with a chunk is shorter than a step with a whole prompt"
assert chunk_stats[True]["ttft_mean"] > chunk_stats[False]["ttft_mean"], "the long prompts themselves wait longer"
assert itl99 == sorted(itl99, reverse=True), "simulated: a smaller budget, a lower p99 ITL"
assert ttft50[-1] > ttft50[0], "and, for the smallest chunks, a higher median TTFT"

# %% [markdown]
# Without chunking, a step that carries the new prompts whole takes
# {glue:text}`whole_prefill_step_ms:.1f` ms (median), and each one shows up as a spike in every
# decoding stream: p99 ITL {glue:text}`whole_itl_p99_ms:.1f` ms (median
# {glue:text}`whole_itl_p50_ms:.1f` ms). With {glue:text}`chunk_budget`-token steps a step with a
# piece of prompt takes {glue:text}`chunked_prefill_step_ms:.1f` ms and the p99 ITL falls to
# {glue:text}`chunked_itl_p99_ms:.1f` ms. The bill goes to the long prompts: their TTFT rises from
# {glue:text}`whole_ttft_mean_ms:.1f` to {glue:text}`chunked_ttft_mean_ms:.1f` ms (mean), since
# their prefill is spread over several steps, and the median gap rises a little
# ({glue:text}`chunked_itl_p50_ms:.1f` ms), since more steps carry prompt work. On the simulated
# A100 the same trade is larger: chunks of 512 tokens take p99 ITL from
# {glue:text}`sim_itl99_whole_ms:.0f` to {glue:text}`sim_itl99_512_ms:.0f` ms at a median TTFT of
# {glue:text}`sim_ttft50_512_ms:.0f` ms instead of {glue:text}`sim_ttft50_whole_ms:.0f` ms; chunks of
# 256 raise the median TTFT to {glue:text}`sim_ttft50_256_ms:.0f` ms — each chunk re-reads the
# weights and the prompt's earlier KV, so very small chunks waste the GPU. The seeds' "chunked
# prefill bounds ITL" holds. Their "it reduces TTFT for concurrent requests" needs care: it holds
# for the next tokens of requests already decoding; requests still waiting depend on the scheduler
# (first come, first served here: they wait behind the long prompt's chunks), and the chunked
# request's own TTFT goes up, as measured above.
#
# :::{admonition} Interview angle: "what does chunked prefill trade?"
# :class: tip
# Tail inter-token latency for the running streams against time to first token for the long prompt
# (and a little throughput: every chunk re-reads the weights and the prompt's cached keys and
# values). The chunk size is the dial: at a few hundred tokens a prefill chunk already saturates a
# GPU's compute, so the decodes riding along are nearly free ("piggybacking", Sarathi-Serve), and
# the step stays short enough for the ITL SLO. Below that, chunks waste weight reads; above it,
# long prompts stall everyone again. It also lets one step mix compute-bound prefill with
# bandwidth-bound decode, which uses both roofs of the GPU at once.
# :::
#
# ## 7. Beyond the CPU: the gain, the cliff, Little's law, and a calibrated simulator
#
# The simulator serves thousands of requests on a GPU's cost model in seconds, so it can answer
# what one machine cannot: how the gain depends on the traffic. The seeds disagree on the number:
# continuous batching gives "3–10×", "2–5×", "5×+" (one curriculum, five places), "3–5× at identical
# latency" (another) and raises GPU utilization "from 20% to 85%" or "from ~40% to ~80%". The sweep
# below serves {glue:text}`sweep_n` requests (all at once; prompts and outputs of median 256 and 128
# tokens) on the Llama-2-7B/A100 roofline, with static and continuous batching, for batch sizes 8,
# 32 and 128 and length spreads σ from 0 (all requests alike) to 1.5. **Utilization** is the share
# of batch slots doing useful work, averaged over time — the quantity behind "GPU utilization" in
# these claims.

# %%
sweep_n = pick(SMOKE, 800, 2000)
sigmas = pick(SMOKE, [0.0, 0.5, 1.0, 1.5], [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
sizes = [8, 32, 128]
grid = {}
for sigma in tqdm(sigmas, desc="σ"):
    trace = request_trace(sweep_n, seed=6, prompt_median=256, output_median=128, sigma=sigma, max_len=4096)
    for b in sizes:
        grid[sigma, b] = {p: simulate(trace, p, a100, max_batch=b) for p in ("static", "continuous")}
gain = {k: r["continuous"].stats.tokens_per_s / r["static"].stats.tokens_per_s for k, r in grid.items()}

fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("throughput gain, continuous / static", "slot utilization"))
for b, color in zip(sizes, viz.PALETTE):
    fig.add_scatter(x=sigmas, y=[gain[s, b] for s in sigmas], mode="lines+markers", line=dict(color=color),
                    name=f"batch {b}", legendgroup=str(b), row=1, col=1)
    for p, dash in (("static", "dash"), ("continuous", "solid")):
        fig.add_scatter(x=sigmas, y=[grid[s, b][p].utilization for s in sigmas], mode="lines+markers",
                        line=dict(color=color, dash=dash), name=f"{p}, batch {b}", legendgroup=str(b),
                        showlegend=False, hovertemplate=f"{p}, batch {b}: " + "%{y:.0%}<extra></extra>", row=1, col=2)
fig.add_scatter(x=[sigmas[0], sigmas[-1], sigmas[-1], sigmas[0]], y=[2, 2, 10, 10], fill="toself", mode="none",
                fillcolor="rgba(128, 128, 128, 0.15)", name="the seeds' 2–10×", hoverinfo="skip", row=1, col=1)
fig.update_xaxes(title_text="σ of log prompt and output lengths")
fig.update_yaxes(title_text="× tokens/s", type="log", row=1, col=1)
fig.update_yaxes(title_text="useful slots (solid: continuous, dashed: static)", tickformat=".0%", row=1, col=2)
fig.update_layout(height=470, legend=dict(orientation="h", y=-0.2), margin=dict(t=90),
                  title=f"Llama-2-7B on an A100 (simulated roofline), {sweep_n} requests")
fig.show()

# %%
def g(sigma, b):
    return gain[sigma, b]


for sigma in (0.5, 1.0):
    for b in sizes:
        glue(f"gain_s{sigma:g}_b{b}".replace(".", "_"), g(sigma, b))
for b in (8, 32):
    glue(f"util_static_s1_b{b}", grid[1.0, b]["static"].utilization)
    glue(f"util_cont_s1_b{b}", grid[1.0, b]["continuous"].utilization)
glue("gain_s0_max", max(g(0.0, b) for b in sizes))
util_ratio = grid[1.0, 32]["continuous"].utilization / grid[1.0, 32]["static"].utilization
glue("util_ratio_s1_b32", util_ratio)
glue("pad_part_s1_b32", g(1.0, 32) / util_ratio)
glue("sweep_n", sweep_n)
for b in sizes:
    gains = [g(s, b) for s in sigmas]
    assert all(np.diff(gains) > -0.05), f"batch {b}: the gain grows with the spread of lengths"
for s in sigmas[1:]:
    assert g(s, 8) < g(s, 32) < g(s, 128), "and with the batch size"
assert max(g(0.0, b) for b in sizes) < 1.15, "equal lengths: nothing to gain"
assert grid[1.0, 32]["static"].utilization < 0.3 and grid[1.0, 32]["continuous"].utilization > 0.75
assert grid[1.0, 8]["static"].utilization > grid[1.0, 32]["static"].utilization, "smaller batches waste less"
assert g(1.0, 32) > util_ratio > 1, "held slots explain part of the gain, padding the rest"

# %% [markdown]
# Every quoted number is on these curves; what picks one is the traffic. With all lengths equal
# (σ = 0) there is nothing to gain (at most {glue:text}`gain_s0_max:.2f`×): every slot finishes at
# once. The gain grows with the **spread of lengths** — the expected longest of $B$ draws pulls
# away from the mean as σ grows — and with the **batch size**, because the longest of 128 draws is
# further out than the longest of 8. At σ = 0.5 it is {glue:text}`gain_s0_5_b8:.1f`×,
# {glue:text}`gain_s0_5_b32:.1f`× and {glue:text}`gain_s0_5_b128:.1f`× for batches of 8, 32 and
# 128; at σ = 1.0, typical of chat traffic, {glue:text}`gain_s1_b8:.1f`×,
# {glue:text}`gain_s1_b32:.1f`× and {glue:text}`gain_s1_b128:.1f`×. So "2–5×" and "3–5×" describe
# batches of 8 over moderate to wide spreads, or batches of 32 at a moderate one; "3–10×" (whose
# last mention adds "depending on output-length variance" — the right caveat) spans batches of 32
# from moderate spreads to chat-like ones; "5×+" is any batch of 32 or more on chat-like traffic.
# Gains far beyond 10× come from batches of 128 against a static baseline that pads everything to
# the longest prompt and output of its batch — a strawman that real static servers soften by
# bucketing requests by prompt length.
#
# The gain has two parts. The **held slots**: the utilization ratio below,
# {glue:text}`util_ratio_s1_b32:.1f`× at σ = 1 with batches of 32. And **padding**: a static batch
# prefills every prompt to the longest of its batch and reads that padded KV at every decode step
# (as `generate` with left padding does), which the continuous batch never stores; on the
# simulated A100 that multiplies the step time, and it is the remaining
# {glue:text}`pad_part_s1_b32:.1f`×.
#
# Utilization reconciles the other pair of claims. On the same chat-like traffic (σ = 1), static
# batching keeps {glue:text}`util_static_s1_b32:.0%` of its slots busy with batches of 32 — the
# seeds' "20%" — and {glue:text}`util_static_s1_b8:.0%` with batches of 8 — their "~40%".
# Continuous batching reaches {glue:text}`util_cont_s1_b32:.0%` and
# {glue:text}`util_cont_s1_b8:.0%`; it falls short of 100% only while the last requests drain (and,
# on a real GPU, when the KV cache rather than the slot count limits the batch). So "20% → 85%"
# and "40% → 80%" are both right: they describe the same policy change at different batch sizes.
#
# ### The throughput cliff
#
# Under a stream of arrivals the question becomes: what request rate can a replica take before
# latency explodes? Below, Poisson arrivals at rates up to past the capacity of each policy
# (σ = 1.0, {glue:text}`cliff_n` requests per rate, batches of 32 and 8); dynamic batching waits up
# to {glue:text}`max_wait_ms:.0f` ms to fill a batch. Each line is the p90 of end-to-end latency.

# %%
cliff_n = pick(SMOKE, 400, 1500)
base = request_trace(cliff_n, seed=7, prompt_median=256, output_median=128, sigma=1.0, max_len=4096)
max_wait = 0.25
runs_cliff = {("static", 32): {}, ("dynamic", 32): {"max_wait": max_wait}, ("continuous", 32): {},
              ("static", 8): {}, ("continuous", 8): {}}
cap = {(p, b): simulate(base, p, a100, max_batch=b).stats.requests_per_s for p, b in runs_cliff if p != "dynamic"}
rates = np.geomspace(0.2 * cap["static", 32], 1.3 * cap["continuous", 32], pick(SMOKE, 8, 14))
cliff = {key: [] for key in runs_cliff}
for rate in tqdm(rates, desc="arrival rates"):
    trace = request_trace(cliff_n, seed=7, prompt_median=256, output_median=128, sigma=1.0, max_len=4096,
                          rate=float(rate))
    for (p, b), kw in runs_cliff.items():
        cliff[p, b].append(simulate(trace, p, a100, max_batch=b, **kw))
p90 = {key: np.array([r.stats.percentile("e2e", 90) for r in rs]) for key, rs in cliff.items()}
slo = 2 * p90["continuous", 32][0]  # an SLO: p90 end-to-end latency within 2× of the unloaded continuous value


def rate_at_slo(p90s: np.ndarray) -> float:
    """The arrival rate at which the p90 latency crosses the SLO, interpolated on log scales."""
    over = np.nonzero(p90s > slo)[0]
    if len(over) == 0:
        return float(rates[-1])
    if over[0] == 0:
        return float(rates[0])
    i = over[0]
    f = np.log(slo / p90s[i - 1]) / np.log(p90s[i] / p90s[i - 1])
    return float(np.exp(np.log(rates[i - 1]) + f * np.log(rates[i] / rates[i - 1])))


best_rate = {key: rate_at_slo(v) for key, v in p90.items()}

fig = go.Figure()
colors = {"static": viz.PALETTE[1], "dynamic": viz.PALETTE[4], "continuous": viz.PALETTE[2]}
for (p, b), v in p90.items():
    fig.add_scatter(x=rates, y=v, mode="lines+markers", name=f"{p}, batch {b}",
                    line=dict(color=colors[p], dash="solid" if b == 32 else "dot", width=3 if b == 32 else 1.5))
fig.add_scatter(x=[rates[0], rates[-1]], y=[slo, slo], mode="lines", line=dict(color="gray", dash="dash"),
                name=f"SLO: p90 ≤ {slo:.1f} s")
fig.update_layout(title="p90 end-to-end latency against arrival rate: the throughput cliff (simulated A100)",
                  xaxis=dict(title="arrival rate (requests/s)", type="log"), yaxis_title="p90 e2e latency (s)",
                  yaxis_type="log", height=450, legend=dict(orientation="h", y=-0.2))
fig.show()

# %%
glue("cliff_n", cliff_n)
glue("max_wait_ms", 1e3 * max_wait)
glue("cap_static", cap["static", 32])
glue("cap_cont", cap["continuous", 32])
glue("cap_ratio", cap["continuous", 32] / cap["static", 32])
glue("cap_ratio_8", cap["continuous", 8] / cap["static", 8])
glue("slo_s", slo)
glue("slo_rate_static", best_rate["static", 32])
glue("slo_rate_dynamic", best_rate["dynamic", 32])
glue("slo_rate_cont", best_rate["continuous", 32])
slo_ratio = {b: best_rate["continuous", b] / best_rate["static", b] for b in (8, 32)}
glue("slo_ratio_32", slo_ratio[32])
glue("slo_ratio_8", slo_ratio[8])
i_busy = int(np.nonzero(rates <= 0.9 * cap["continuous", 32])[0].max())  # the busiest rate below saturation
loaded = cliff["continuous", 32][i_busy]
L, lam_w = loaded.little
glue("little_rate", rates[i_busy])
glue("little_L", L)
glue("little_lam_w", lam_w)
window = loaded.finish.max() - loaded.arrival.min()
busy_slots = float(np.sum(loaded.steps.running * (loaded.steps.end - loaded.steps.start)) / window)  # mean batch
glue("little_slots", busy_slots)
glue("little_queued", L - busy_slots)
print(f"capacity (req/s): { {k: round(v, 2) for k, v in cap.items()} }; highest rate within the {slo:.1f} s SLO: "
      f"{ {k: round(v, 2) for k, v in best_rate.items()} }; Little at {rates[i_busy]:.2f} req/s: L = {L:.2f}, "
      f"λW = {lam_w:.2f}")
assert cap["continuous", 32] > 2 * cap["static", 32]
assert slo_ratio[32] > slo_ratio[8] > 1.5, "at the same latency continuous batching takes more load, more so at 32"
assert best_rate["dynamic", 32] <= best_rate["continuous", 32]
for b in (8, 32):
    assert slo_ratio[b] > cap["continuous", b] / cap["static", b], "head-of-line blocking: static's latency rises early"
assert p90["static", 32][-1] > 10 * p90["static", 32][0], "past capacity the queue, and the latency, grow without bound"
assert abs(L - lam_w) < 1e-6 * max(1.0, L)
assert busy_slots <= L + 1e-9

# %% [markdown]
# With batches of 32 (thick lines), static batching saturates at {glue:text}`cap_static:.2f`
# requests/s and continuous batching at {glue:text}`cap_cont:.2f` ({glue:text}`cap_ratio:.1f`×;
# with batches of 8, {glue:text}`cap_ratio_8:.1f`×). Below saturation the latency curves are
# nearly flat; near it they turn up into a cliff, because a queue fed faster than it drains grows
# without bound (the p90 here is limited only by the length of the trace). Static batching's curve
# turns up long before its capacity: a request that arrives while a batch runs waits for all of it —
# head-of-line blocking behind the batch's longest output — and with σ = 1 that output is often
# ten times the median. Dynamic batching's wait buys nothing for LLM traffic: at low load it adds
# delay, at high load batches are full anyway, and they still run to their longest member.
#
# With an SLO of {glue:text}`slo_s:.1f` s on p90 latency, the highest rate each policy sustains is
# {glue:text}`slo_rate_static:.2f` (static), {glue:text}`slo_rate_dynamic:.2f` (dynamic) and
# {glue:text}`slo_rate_cont:.2f` requests/s (continuous): **{glue:text}`slo_ratio_32:.0f`× the
# throughput at the same latency** with batches of 32, and {glue:text}`slo_ratio_8:.1f`× with
# batches of 8 (thin dotted lines) — more than the ratios of capacities, because of that
# head-of-line blocking. So "3–5× at identical latency" has the right form — throughput at equal
# latency, which is what a capacity plan needs — but on chat-like traffic it undersells the policy;
# its number is the capacity ratio of small batches.
#
# **Little's law** {cite}`little1961proof`: over any window that starts and ends empty, the
# time-average number of requests in the system $L$ equals the arrival rate $\lambda$ times the mean
# time in the system $W$. On the continuous run at {glue:text}`little_rate:.2f` requests/s the
# simulator's two sides are $L$ = {glue:text}`little_L:.3f` and $\lambda W$ =
# {glue:text}`little_lam_w:.3f` — equal, as they must be: both are the area under the
# number-in-system curve, counted once by time and once by request. Of those
# {glue:text}`little_L:.2f` requests, {glue:text}`little_slots:.2f` were in the running batch on
# average and {glue:text}`little_queued:.2f` in the queue. The real engine of section 5 passed the
# same check with a number measured independently, from its step log.
#
# :::{admonition} Interview angle: "Little's law for capacity planning"
# :class: tip
# $L = \lambda W$. At 20 requests/s with a 3 s mean end-to-end latency, 60 requests are in the
# system on average; if they all decode, a replica must hold 60 sequences — their KV cache — at
# once, or some queue and $W$ grows. Turn it around to size a fleet: the concurrency one replica
# sustains within the latency SLO (the sweep of section 4 and the cliff above) divided into
# $\lambda W$ gives the replicas, plus headroom for bursts, because near the cliff a little more
# load means a lot more latency. The law needs no assumption about arrivals or service times —
# only a stable system — which is why it is the first tool for a back-of-the-envelope answer.
# :::
#
# ### A simulator calibrated on the real engine
#
# How far can the simulator be trusted? Fit its linear cost model — seconds per step = $a$ +
# $b$·prefill tokens + $c$·decoding sequences + $d$·cached tokens read — to the steps the real
# engine logged in the sweep of section 4 (`CostModel.fit`, non-negative least squares; the
# cached tokens per step are rebuilt from the log, exact because those runs had no chunking,
# preemption or prefix hits), and a second one to the steps of `generate`. Then simulate the CPU
# trace with each and compare with what was measured.

# %%
def static_rows(run, requests: list[Request]) -> list[tuple[int, int, int, float]]:
    """The same rows for ``generate`` with static batching: a padded prefill, then decode steps for the whole batch."""
    rows = []
    for start, _, members in run.batches:
        width, b = max(len(requests[i].prompt) for i in members), len(members)
        t = [start] + max((run.token_times[i] for i in members), key=len)
        rows.append((b * width, 0, 0, t[1] - t[0]))
        rows += [(0, b, b * (width + k - 1), t[k + 1] - t[k]) for k in range(1, len(t) - 1)]
    return rows


engine_cost = CostModel.fit(sweep_rows)
hf_cost = CostModel.fit(static_rows(static_run, thr_reqs))
predicted = {m: simulate(thr_trace, "continuous", engine_cost, max_batch=m, token_budget=512).stats.tokens_per_s
             for m in conc_levels}
pred_static = simulate(thr_trace, "static", hf_cost, max_batch=thr_batch).stats.tokens_per_s
sched_only = (simulate(thr_trace, "continuous", engine_cost, max_batch=thr_batch).stats.tokens_per_s
              / simulate(thr_trace, "static", engine_cost, max_batch=thr_batch).stats.tokens_per_s)

fig = go.Figure()
fig.add_scatter(x=conc_levels, y=[sweep[m] for m in conc_levels], mode="markers", marker=dict(size=10),
                name="engine, measured", line=dict(color=viz.PALETTE[2]))
fig.add_scatter(x=conc_levels, y=list(predicted.values()), mode="lines", name="engine, simulated (fitted cost)",
                line=dict(color=viz.PALETTE[2], dash="dash"))
fig.add_scatter(x=[thr_batch], y=[tps["HF generate, static"]], mode="markers", marker=dict(size=10, symbol="square"),
                name=f"HF static batch {thr_batch}, measured", line=dict(color=viz.PALETTE[1]))
fig.add_scatter(x=[thr_batch], y=[pred_static], mode="markers", marker=dict(size=14, symbol="x"),
                name="HF static, simulated (fitted cost)", line=dict(color=viz.PALETTE[1]))
fig.update_layout(title="The simulator with costs fitted to this CPU, against the measurements",
                  xaxis=dict(type="log", tickvals=conc_levels, title="max_num_seqs (engine) / batch size (static)"),
                  yaxis_title="tokens/s", height=420)
fig.show()

# %%
errors = {m: predicted[m] / sweep[m] - 1 for m in conc_levels}
glue("fit_overhead_ms", 1e3 * engine_cost.overhead)
glue("fit_decode_us", 1e6 * engine_cost.per_decode_seq)
glue("fit_prefill_us", 1e6 * engine_cost.per_prefill_token)
glue("fit_context_us", 1e6 * engine_cost.per_context_token)
glue("fit_err_max", max(abs(e) for e in errors.values()))
glue("fit_static_err", abs(pred_static / tps["HF generate, static"] - 1))
glue("sched_only", sched_only)
print("engine:", engine_cost, "\ngenerate:", hf_cost)
print("simulated / measured - 1, engine:", {m: f"{e:+.0%}" for m, e in errors.items()},
      f"generate: {pred_static / tps['HF generate, static'] - 1:+.0%}; "
      f"scheduling alone at batch {thr_batch}: {sched_only:.2f}×")
assert max(abs(e) for e in errors.values()) < 0.5, "the fitted simulator predicts the engine's throughput"
assert abs(pred_static / tps["HF generate, static"] - 1) < 0.5, "and generate's"
assert sched_only > 1.1

# %% [markdown]
# The fit gives each step a fixed cost of {glue:text}`fit_overhead_ms:.2f` ms — Python, kernel
# launches, reading the weights — plus {glue:text}`fit_decode_us:.0f` µs per decoding sequence,
# {glue:text}`fit_prefill_us:.0f` µs per prompt token and {glue:text}`fit_context_us:.1f` µs per
# cached token read. With it the simulator predicts the engine's
# throughput at every concurrency within {glue:text}`fit_err_max:.0%`, and `generate`'s within
# {glue:text}`fit_static_err:.0%`: four numbers carry most of what the real runs measured, which is
# what makes the GPU sweeps above worth believing in shape, if not to the last percent. The same
# fitted cost isolates scheduling on this CPU: with the engine's own step cost for both policies,
# continuous batching at {glue:text}`thr_batch` sequences gives {glue:text}`sched_only:.2f`× the
# throughput of static batching on this trace, against {glue:text}`ratio_conc:.1f`× measured in
# section 3, where the two policies also ran on different step costs.
#
# ## 8. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** A static batch holds four requests with equal prompts and outputs of 10, 20, 30 and 100
# tokens. What fraction of its decode slot-steps produce a token?

# %%
answer_1 = ...
ex1 = simulate(RequestTrace(np.zeros(4), np.ones(4, np.int64), np.array([10, 20, 30, 100]), 200), "static",
               LinearCost(overhead=1.0), max_batch=4)
check(answer_1, ex1.utilization)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# 0.4. The batch runs 100 steps for 4 slots, 400 slot-steps, and 10 + 20 + 30 + 100 = 160 of them
# produce tokens. Continuous batching would hand each freed slot to a waiting request.
# :::
#
# **2.** A service receives 20 requests per second and their mean end-to-end latency is 3 s. How
# many requests are in the system on average?

# %%
answer_2 = ...
steady = np.arange(100_000) / 20.0  # one arrival every 50 ms, each in the system for 3 s
check(answer_2, littles_law(steady, steady + 3.0)[0])

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# 60, by Little's law: $L = \lambda W$ = 20 × 3. If each is a decoding sequence, the replicas must
# hold 60 sequences' KV cache between them.
# :::
#
# **3.** An engine with a budget of 512 tokens per step and chunked prefill runs 64 decoding
# sequences when a 2,000-token prompt arrives. The decodes keep their place in every step. How
# many steps until the new request's first token?

# %%
answer_3 = ...
ex3_trace = RequestTrace(np.array([0.0] * 64 + [1.0]), np.array([1] * 64 + [2000]), np.array([20] * 64 + [1]), 4096)
ex3 = simulate(ex3_trace, "continuous", LinearCost(overhead=1.0), max_batch=65, token_budget=512,
               chunked_prefill=True)
check(answer_3, ex3.stats.ttft[-1])  # every step takes 1 s, so the TTFT in seconds counts the steps

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# 5. Each step has 512 − 64 = 448 tokens left for the prompt after the decodes; 2,000 / 448 = 4.5,
# so the prompt takes 5 steps, and the fifth yields its first token. Without chunking it would need
# a step of 2,064 tokens — over the budget, so it could not be scheduled at all, or with a larger
# budget it would stall 64 streams for one long step.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(0.4, ex1.utilization)
assert check(60, littles_law(steady, steady + 3.0)[0])
assert check(5, ex3.stats.ttft[-1])

# %% [markdown]
# ## Summary
#
# - Decode steps are bound by memory bandwidth, so a step for many sequences costs little more than
#   for one; batching turns that into throughput. Static batching runs each batch for its longest
#   output and holds finished requests' slots; continuous batching re-forms the batch every step.
# - On the same trace, weights and KV memory, the engine served {glue:text}`ratio_kv:.1f`× the
#   tokens per second of `generate` with static batches, token-identical; at equal concurrency
#   {glue:text}`ratio_conc:.1f`×; with one step cost for both, scheduling alone gives
#   {glue:text}`sched_only:.2f`×.
# - Throughput grows with concurrency while the step time grows far slower than the batch; more
#   load buys throughput with higher ITL and TTFT, and past capacity latency falls off a cliff.
# - Chunked prefill caps the step, so long prompts no longer put spikes in other streams' ITL; the
#   long prompts' own TTFT pays for it.
# - The continuous-batching gain is not one number: it grows with the spread of lengths and the
#   batch size (1× with equal lengths, {glue:text}`gain_s1_b8:.1f`× and {glue:text}`gain_s1_b32:.0f`×
#   for batches of 8 and 32 on chat-like traffic on a simulated A100), and so does the utilization
#   gap (20%→85% and 40%→80% are both points on it). At equal latency the advantage is larger
#   still, because static batching blocks new requests behind a batch's longest output.
# - Little's law, $L = \lambda W$, turns rates and latencies into the concurrency a fleet must hold;
#   a four-term cost model fitted to the engine's steps predicts its throughput within
#   {glue:text}`fit_err_max:.0%`.

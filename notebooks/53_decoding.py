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
# # Decoding: from next-token logits to text
#
# A language model does not write text. At every step it returns a score for each token in its
# vocabulary, and a few lines of code after the model — the decoder — decide which token comes next.
# Those lines set much of what users experience: whether a chatbot repeats itself, whether code
# completion is reproducible, whether an answer wanders into nonsense, and what a request costs
# (beam search runs the model on several sequences at once). Every serving API exposes the same
# knobs — temperature, top-k, top-p, min-p, repetition penalty, seed — and interviews ask about them
# because they separate people who have shipped generation from people who have called it: "what
# does temperature 0 mean", "why not beam search for chat", "top-k or top-p", "why is my output
# different with the same seed". This chapter runs every decoding strategy on the book's trained
# MiniGPT and measures what each knob does.
#
# **You will learn**
# - the decoding pipeline — repetition penalty, temperature, top-k, top-p, min-p, pick — as code
#   checked against Hugging Face's logits processors;
# - what temperature, top-k and top-p do to a real next-token distribution, interactively;
# - why top-p and min-p adapt to the model's confidence and top-k does not, measured;
# - what greedy, beam search and sampling write from the same prompts, and what beam search costs;
# - the repetition loop of greedy decoding, and what the repetition penalty does about it;
# - the diversity–quality trade-off across temperature, top-p, top-k and min-p, measured against
#   real text and against a judge that is not the model itself;
# - what "temperature 0" and "the same seed" do and do not guarantee in a serving system.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/53_decoding.ipynb)
# · Runtime budget on 2 CPU cores: under 40 s with `SMOKE=True` (including training the small
# model the first time), under 4 minutes in full mode once the book's model is cached.

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

SMOKE = smoke_default()  # True: the tiny model and few samples (≤ 40 s on 2 cores); False: the full chapter

# %%
import inspect
import math
import re
import time

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import Code, Markdown, display
from plotly.subplots import make_subplots
from tqdm.auto import tqdm
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from companion import decoding, lm, viz, widgets
from companion.book import check, glue
from companion.config import pick, seed_everything

seed_everything(0)
pre = lm.pretrained(SMOKE)  # the book's MiniGPT: loaded from the cache, or trained from its seed once
model, tok = pre.model, pre.tokenizer
torch.set_grad_enabled(False)  # from here on the model only runs forward: no autograd graphs, less memory
if model.n_params() < 1_000_000:
    torch.set_num_threads(1)  # matrices this small finish faster on one core than split across two
BLOCK, V = model.cfg.block_size, tok.vocab_size
SamplingConfig = decoding.SamplingConfig


def label(i: int) -> str:
    """A token as readable text, whitespace made visible: ' x\\n' -> '␣x↵'."""
    return viz.visible_whitespace(tok.decode([i]))


def visible(text: str) -> str:
    """Decoded text for a table cell: newlines as ↵, runs of spaces as ␣ (single spaces stay)."""
    text = re.sub(r" {2,}", lambda m: "␣" * len(m.group()), text).replace("\n", "↵").replace("\t", "⇥")
    return "``" + text.replace("`", "ˋ").replace("|", "\\|") + "``"


def last_logits(text: str) -> torch.Tensor:
    """The model's next-token logits (V,) after ``text``."""
    return model(pre.encode(text)[:, -BLOCK:])[0, -1].float()


labels = [label(i) for i in range(V)]
glue("n_params", model.n_params())
glue("vocab", V)
glue("block", BLOCK)
glue("val_loss", pre.history.val_loss[-1])
print(f"SMOKE={SMOKE}: MiniGPT with {model.n_params():,} parameters, vocabulary {V:,}, context {BLOCK} tokens, "
      f"validation loss {pre.history.val_loss[-1]:.2f} nats/token")

# %% [markdown]
# The model is the book's MiniGPT, trained from a fixed seed on the Python documentation and
# standard-library source: {glue:text}`n_params:,` parameters, a {glue:text}`vocab:,`-token BPE
# vocabulary, a context of {glue:text}`block` tokens, and a validation loss of
# {glue:text}`val_loss:.2f` nats per token. It is small enough to show every failure of decoding
# plainly — which is the point: a large model hides the same mechanisms behind better
# probabilities.
#
# ## 1. The decoding pipeline
#
# For one sequence the model returns logits $z \in \mathbb{R}^V$. Sampling decoders — Hugging Face
# `transformers`, and serving engines with small variations — apply the same steps to them, in
# this order:
#
# 1. **repetition penalty** {cite}`keskar2019ctrl`: each token already in the context has its
#    logit divided by $\theta > 1$ (multiplied, when negative), so it becomes less likely;
# 2. **temperature**: $z / T$; $T < 1$ sharpens the softmax, $T > 1$ flattens it;
# 3. **truncation** — keep only the plausible head of the distribution and set the rest to $-\infty$:
#    **top-k** {cite}`fan2018hierarchical` keeps the $k$ most likely tokens; **top-p** (nucleus)
#    {cite}`holtzman2020curious` keeps the smallest set whose probability reaches $p$; **min-p**
#    {cite}`nguyen2024minp` keeps tokens at least $p_{\min}$ times as likely as the best one;
# 4. **softmax** over what is left, then **pick**: the argmax (greedy) or a random draw.
#
# `companion.decoding` writes each step as a function from logits to logits, so they compose.
# Here is the whole pipeline and the two filters whose definitions are easiest to get wrong:

# %%
Code("\n".join(inspect.getsource(f) for f in (decoding.next_token_logits, decoding.top_p_filter,
                                                 decoding.min_p_filter)), language="python")

# %% [markdown]
# Two details matter. Top-p keeps a token when the mass of the tokens *strictly more likely* than
# it is below $p$, so the token that crosses $p$ is kept — the nucleus always holds at least one
# token and its mass is at least $p$. And truncation runs *after* temperature, as in Hugging Face
# `transformers`, so a high temperature widens the nucleus too. Each function is tested against the
# matching `transformers` logits processor on random inputs; here is the same check on the real
# next-token logits of our model for a batch of prompts, step by step and for the whole pipeline:

# %%
check_prompts = ["The list", "def __init__(self", "Return the", "If the", "import ", "    for i in range("]
batch_logits = torch.stack([last_logits(t) for t in check_prompts])  # (6, V)
context = pre.data.val[: 6 * 16].view(6, 16)  # 16 earlier tokens per row, for the repetition penalty
steps = {
    "repetition penalty 1.3": (decoding.repetition_penalty(batch_logits, context, 1.3),
                               RepetitionPenaltyLogitsProcessor(1.3)(context, batch_logits.clone())),
    "temperature 0.7": (decoding.apply_temperature(batch_logits, 0.7),
                        TemperatureLogitsWarper(0.7)(context, batch_logits.clone())),
    "top-k 40": (decoding.top_k_filter(batch_logits, 40), TopKLogitsWarper(40)(context, batch_logits.clone())),
    "top-p 0.9": (decoding.top_p_filter(batch_logits, 0.9), TopPLogitsWarper(0.9)(context, batch_logits.clone())),
    "min-p 0.05": (decoding.min_p_filter(batch_logits, 0.05), MinPLogitsWarper(0.05)(context, batch_logits.clone())),
}
pipeline_cfg = SamplingConfig(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.3)
hf_pipeline = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.3), TemperatureLogitsWarper(0.7),
                                   TopKLogitsWarper(40), TopPLogitsWarper(0.9), MinPLogitsWarper(0.05)])
steps["whole pipeline"] = (decoding.next_token_logits(batch_logits, context, pipeline_cfg),
                           hf_pipeline(context, batch_logits.clone()))
for name, (ours, theirs) in steps.items():
    torch.testing.assert_close(ours, theirs)  # same values, and -inf exactly where transformers has it
    n_kept = torch.isfinite(ours).sum(1).tolist()
    print(f"{name:24s} identical to transformers; tokens kept per row: {n_kept}")

# %% [markdown]
# ## 2. Temperature, top-k and top-p on a real distribution
#
# The figure shows the model's next-token distribution after a real prompt: the 30 most likely
# tokens, their probability after temperature, in colour when the filters keep them and in grey
# when they are cut. The title gives how many of the {glue:text}`vocab:,` tokens survive and the
# entropy of the distribution that sampling actually draws from. The three sliders move temperature,
# top-k and top-p over a precomputed grid, so they work in the static page too (moving a slider
# resets the ones below it).

# %%
candidates = ["The list", "def __init__(self", "Return the", "If the", "import ", "    for i in range(",
              "The function returns a", "    def ", "class ", "This module provides", "    return self.", "For example,"]
cand_logits = {t: last_logits(t) for t in candidates}
top1 = {t: torch.softmax(lg, -1).max().item() for t, lg in cand_logits.items()}
confident, uncertain = max(top1, key=top1.get), min(top1, key=top1.get)
explore_prompt = sorted(top1, key=top1.get)[len(top1) // 2]  # a middling one: some mass at the top, a long tail
explore = cand_logits[explore_prompt]
glue("explore_prompt", repr(explore_prompt))

fig = widgets.next_token_explorer(explore, labels, temperatures=[0.3, 0.5, 0.7, 1.0, 1.5, 2.0],
                                  top_ks=[1, 5, 20, 50, None], top_ps=[0.5, 0.8, 0.9, 0.95, 1.0], active=(2, 4, 1))
fig.update_layout(title_x=0.02)
fig

# %% [markdown]
# The prompt is {glue:text}`explore_prompt`. In Jupyter or Colab the widget below does the same
# with continuous sliders and a min-p control; its callback, `widgets.next_token_figure`, is a plain
# function tested in `tests/unit`.

# %% tags=["remove-output"]
widgets.next_token_widget(explore, labels, temperature=0.7, top_k=0, top_p=0.8)

# %% [markdown]
# ### What each knob measurably does
#
# Three properties are worth measuring rather than asserting from memory. **Temperature moves
# entropy monotonically**: dividing logits by a larger $T$ always flattens the softmax, towards
# $\log V$ = {glue:text}`log_vocab:.2f` nats as $T \to \infty$ and towards 0 (the argmax) as
# $T \to 0$. **Top-k keeps a fixed number of tokens**, whatever the model believes. **Top-p and
# min-p keep a number that follows the model's confidence.** The candidate prompts below span that
# range (grey in the first panel); the most confident is {glue:text}`confident_prompt` (top token
# {glue:text}`confident_top1:.0%`), the least {glue:text}`uncertain_prompt` (top token
# {glue:text}`uncertain_top1:.0%`).

# %%
temps = np.geomspace(0.1, 10, 25)
ps = np.linspace(0.05, 1.0, 39)
min_ps = np.geomspace(0.005, 0.9, 30)
entropy_vs_t = {t: [decoding.entropy(decoding.apply_temperature(lg[None], float(T))).item() for T in temps]
                for t, lg in cand_logits.items()}
kept_vs_p = {t: [int(torch.isfinite(decoding.top_p_filter(cand_logits[t][None], float(p))).sum()) for p in ps]
             for t in (confident, uncertain)}
kept_vs_minp = {t: [int(torch.isfinite(decoding.min_p_filter(cand_logits[t][None], float(m))).sum()) for m in min_ps]
                for t in (confident, uncertain)}

fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                    subplot_titles=("entropy against temperature", "tokens kept by top-p", "tokens kept by min-p"))
for t, ent in entropy_vs_t.items():
    color = viz.PALETTE[0] if t == confident else viz.PALETTE[1] if t == uncertain else "#bbbbbb"
    fig.add_scatter(x=temps, y=ent, mode="lines", name=repr(t), line=dict(color=color, width=3 if color != "#bbbbbb" else 1),
                    showlegend=t in (confident, uncertain), legendgroup=t, row=1, col=1)
fig.add_scatter(x=temps, y=[math.log(V)] * len(temps), mode="lines", name="log V (uniform)",
                line=dict(color="black", dash="dot"), row=1, col=1)
for t, color in ((confident, viz.PALETTE[0]), (uncertain, viz.PALETTE[1])):
    fig.add_scatter(x=ps, y=kept_vs_p[t], mode="lines", line=dict(color=color, width=3), legendgroup=t,
                    showlegend=False, row=1, col=2)
    fig.add_scatter(x=min_ps, y=kept_vs_minp[t], mode="lines", line=dict(color=color, width=3), legendgroup=t,
                    showlegend=False, row=1, col=3)
for col, xs in ((2, ps), (3, min_ps)):  # top-k keeps the same count whatever the prompt
    fig.add_scatter(x=xs, y=[40] * len(xs), mode="lines", name="top-k = 40, any prompt", legendgroup="k",
                    line=dict(color="gray", dash="dash"), showlegend=col == 2, row=1, col=col)
fig.update_xaxes(type="log", title_text="temperature T", row=1, col=1)
fig.update_xaxes(title_text="p", row=1, col=2)
fig.update_xaxes(type="log", title_text="min-p", row=1, col=3)
fig.update_yaxes(title_text="nats", row=1, col=1)
fig.update_yaxes(type="log", title_text="tokens kept", row=1, col=2)
fig.update_yaxes(type="log", row=1, col=3)
fig.update_layout(height=430, legend=dict(orientation="h", y=-0.25),
                  title="Three knobs on the model's real next-token distributions")
fig

# %%
for t, ent in entropy_vs_t.items():
    assert all(np.diff(ent) > 0), f"entropy must rise with temperature for {t!r}"
    assert ent[0] < 0.5 * ent[-1] and abs(ent[-1] - math.log(V)) < 0.05 * math.log(V)
for t in (confident, uncertain):
    assert all(np.diff(kept_vs_p[t]) >= 0) and all(np.diff(kept_vs_minp[t]) <= 0)
assert all(c <= u for c, u in zip(kept_vs_p[confident], kept_vs_p[uncertain])), "top-p keeps fewer when confident"
assert all(c <= u for c, u in zip(kept_vs_minp[confident], kept_vs_minp[uncertain])), "so does min-p"


def kept(logits: torch.Tensor, **cfg) -> int:
    return int(torch.isfinite(decoding.next_token_logits(logits[None], torch.zeros(1, 0, dtype=torch.long),
                                                        SamplingConfig(**cfg))).sum())


rows = {}
for name, t in (("confident", confident), ("uncertain", uncertain)):
    lg = cand_logits[t]
    rows[name] = dict(top1=top1[t], entropy=decoding.entropy(lg[None]).item(), k40=kept(lg, top_k=40),
                      p90=kept(lg, top_p=0.9), minp10=kept(lg, min_p=0.1))
    glue(f"{name}_top1", top1[t])
    glue(f"{name}_prompt", repr(t))
    glue(f"{name}_entropy", rows[name]["entropy"])
    glue(f"{name}_p90", rows[name]["p90"])
    glue(f"{name}_minp10", rows[name]["minp10"])
glue("log_vocab", math.log(V))
assert rows["confident"]["k40"] == rows["uncertain"]["k40"] == 40
assert rows["confident"]["p90"] < rows["uncertain"]["p90"] and rows["confident"]["minp10"] < rows["uncertain"]["minp10"]
Markdown("| prompt | top-1 probability | entropy (nats) | kept by top-k = 40 | by top-p = 0.9 | by min-p = 0.1 |\n"
         "|---|---|---|---|---|---|\n" + "\n".join(
             f"| {name}: {visible(t)} | {r['top1']:.2f} | {r['entropy']:.2f} | {r['k40']} | {r['p90']} | {r['minp10']} |"
             for (name, r), t in zip(rows.items(), (confident, uncertain))))

# %% [markdown]
# After the confident prompt, top-p = 0.9 keeps {glue:text}`confident_p90` tokens and min-p = 0.1
# keeps {glue:text}`confident_minp10`; after the uncertain one, {glue:text}`uncertain_p90` and
# {glue:text}`uncertain_minp10`. Top-k = 40 keeps 40 in both, whatever the model believes: when one
# token dominates, that lets through dozens the model considers unlikely; when many continuations
# are plausible, it can cut good ones. That is the case for top-p made by Holtzman et al., and
# min-p sharpens it: its threshold is relative to the best token, so it cuts hard when one token
# dominates and opens up when none does, and it keeps doing so at high temperatures, where the
# nucleus of a flattened distribution grows to hundreds of tokens.
#
# Temperature alone never removes a token, it only rescales. On the uncertain prompt, the tokens the
# model gives less than 0.1% each — individually implausible — hold {glue:text}`tail_mass_t1:.0%` of
# the probability at T = 1 and still {glue:text}`tail_mass_t07:.0%` at T = 0.7. Over a 50-token
# answer that is a chance of {glue:text}`tail_50_t07:.0%` that at least one step draws from that
# tail (if every step looked like this one), which is why production configurations pair a
# temperature with a truncation rule.

# %%
u = cand_logits[uncertain]
junk = torch.softmax(u, -1) < 1e-3  # tokens the model itself rates below 0.1% each
tail_mass = {T: torch.softmax(u / T, -1)[junk].sum().item() for T in (1.0, 0.7)}
glue("tail_mass_t1", tail_mass[1.0])
glue("tail_mass_t07", tail_mass[0.7])
glue("tail_50_t07", 1 - (1 - tail_mass[0.7]) ** 50)
print(f"{int(junk.sum())} tokens below 0.1% each; their mass at T=1: {tail_mass[1.0]:.3f}, at T=0.7: {tail_mass[0.7]:.3f}")
assert 0 < tail_mass[0.7] < tail_mass[1.0]
assert torch.isfinite(decoding.top_p_filter(u[None] / 0.7, 0.9))[0][junk].sum() < junk.sum(), "top-p cuts the tail"

# %% [markdown]
# :::{admonition} Interview angle: "top-k or top-p?"
# :class: tip
# Top-k fixes the *number* of candidates, top-p fixes their *mass*, min-p fixes a *ratio to the best
# one*. Measured above: with the same settings, top-p keeps {glue:text}`confident_p90` tokens when
# the model is confident and {glue:text}`uncertain_p90` when it is not, top-k keeps 40 either way.
# Say that top-p adapts to the entropy of each step, that temperature alone leaves the tail in
# place, and that providers typically expose temperature with top-p (0.7 and 0.9 are common
# defaults) — and that a truncation rule is a heuristic, chosen by evaluating outputs, not derived.
# :::
#
# ## 3. Greedy, beam search and sampling, side by side
#
# **Greedy** decoding takes the argmax at every step. **Beam search** keeps the `beam_width` best
# partial sequences by total log-probability and extends each, so it can find a sequence whose first
# token was not the single most likely one. Because total log-probability only falls as a sequence
# grows, beam search favours hypotheses that end early; the **length penalty** of Wu et al.
# {cite}`wu2016google` ranks finished hypotheses by $\log P / n^{\alpha}$ instead (the form
# Hugging Face uses; GNMT divides by $((5 + n)/6)^{\alpha}$), with $\alpha = 0$ the raw sum and larger
# $\alpha$ favouring longer outputs. **Sampling** draws from the (processed) distribution, so each
# run differs. Here they are from the same prompts, up to {glue:text}`n_table` tokens each. Beam
# search runs with width {glue:text}`beam_width` and $\alpha$ = 1, and a hypothesis ends when it
# emits the bare newline token `↵` (the vocabulary also has tokens that merge a newline with
# indentation or punctuation; those do not end it).

# %%
table_prompts = candidates[:pick(SMOKE, 3, 4)]
n_table = pick(SMOKE, 20, 32)
beam_width = 4
newline = tok.encode_ordinary("\n")[0]
glue("beam_width", beam_width)
glue("n_table", n_table)


def continuation(ids: torch.Tensor, prompt_len: int) -> str:
    return tok.decode(ids[prompt_len:].tolist())


strategies = {
    "greedy": lambda ids: decoding.generate(model, ids, n_table, SamplingConfig(greedy=True), max_context=BLOCK)[0],
    f"beam {beam_width}, α = 1": lambda ids: decoding.beam_search(model, ids[0], beam_width, n_table, eos_id=newline,
                                                                  length_penalty=1.0)[0],
    "sample T = 0.7, top-p 0.9": lambda ids: decoding.generate(
        model, ids, n_table, SamplingConfig(temperature=0.7, top_p=0.9), torch.Generator().manual_seed(0),
        max_context=BLOCK)[0],
    "sample T = 1": lambda ids: decoding.generate(model, ids, n_table, SamplingConfig(), torch.Generator().manual_seed(0),
                                                  max_context=BLOCK)[0],
}
outputs = {}
for prompt in tqdm(table_prompts, desc="prompts"):
    ids = pre.encode(prompt)
    outputs[prompt] = {name: continuation(run(ids), ids.shape[1]) for name, run in strategies.items()}
Markdown("| prompt | " + " | ".join(strategies) + " |\n" + "|---" * (len(strategies) + 1) + "|\n" + "\n".join(
    f"| {visible(p)} | " + " | ".join(visible(outs[s]) for s in strategies) + " |" for p, outs in outputs.items()))

# %%
for prompt, outs in outputs.items():
    assert len(set(outs.values())) > 1, f"the strategies should not all agree on {prompt!r}"
again = decoding.generate(model, pre.encode(table_prompts[0]), n_table, SamplingConfig(greedy=True), max_context=BLOCK)[0]
assert continuation(again, pre.encode(table_prompts[0]).shape[1]) == outputs[table_prompts[0]]["greedy"], \
    "greedy is deterministic"

# %% [markdown]
# (`↵` is a newline, `␣␣` a run of spaces.) Greedy decoding and beam search both chase likelihood,
# and on a model this small the likeliest text is generic and soon circular: a phrase, a word or a
# run of whitespace that makes itself the best continuation (next section). Sampling reads less
# fluently but keeps moving.
#
# ### What beam search costs
#
# A claim that circulates in interview notes says beam search needs "B × vocab forward passes per
# step". It does not: scoring every extension of every beam takes **one** forward pass over a
# batch of B sequences, because the model returns logits for the whole vocabulary at once. The cost
# is B times the rows — B times the compute of greedy decoding, and B times the KV cache memory in a
# serving engine. Counting the calls:

# %%
class Counting:
    """Wraps the model and counts forward calls, sequences and tokens it is asked to process."""

    def __init__(self, fn):
        self.fn, self.calls, self.rows, self.tokens = fn, 0, 0, 0

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls, self.rows, self.tokens = self.calls + 1, self.rows + ids.shape[0], self.tokens + ids.numel()
        return self.fn(ids)


n_cost = pick(SMOKE, 16, 24)
cost_prompt = pre.encode(table_prompts[0])
greedy_count, beam_count = Counting(model), Counting(model)
start = time.perf_counter()
decoding.generate(greedy_count, cost_prompt, n_cost, SamplingConfig(greedy=True))
greedy_s = time.perf_counter() - start
start = time.perf_counter()
decoding.beam_search(beam_count, cost_prompt[0], beam_width, n_cost)
beam_s = time.perf_counter() - start
glue("beam_calls_per_step", beam_count.calls / n_cost)
glue("beam_rows_per_call", beam_count.rows / beam_count.calls)
glue("beam_token_ratio", beam_count.tokens / greedy_count.tokens)
glue("beam_time_ratio", beam_s / greedy_s)
glue("n_cost", n_cost)
print(f"{n_cost} new tokens — greedy: {greedy_count.calls} calls, {greedy_count.rows} rows, "
      f"{greedy_count.tokens:,} tokens; "
      f"beam {beam_width}: {beam_count.calls} calls, {beam_count.rows} rows, {beam_count.tokens:,} tokens; "
      f"wall time ratio {beam_s / greedy_s:.1f}×")
assert greedy_count.calls == beam_count.calls == n_cost, "one forward pass per step, never one per vocabulary entry"
assert beam_count.rows == 1 + beam_width * (n_cost - 1), "the first step has one beam, then beam_width of them"
assert beam_width - 1 < beam_count.tokens / greedy_count.tokens <= beam_width

# %% [markdown]
# Over {glue:text}`n_cost` new tokens beam search makes {glue:text}`beam_calls_per_step:.0f` model
# call per step, each over {glue:text}`beam_rows_per_call:.2f` sequences on average, and processes
# {glue:text}`beam_token_ratio:.2f`× the tokens of greedy decoding (wall time here
# {glue:text}`beam_time_ratio:.1f`×, including its bookkeeping in Python).
#
# The length penalty is easiest to see by sweeping $\alpha$. With the newline token ending a
# hypothesis, $\alpha = 0$ compares raw sums of log-probabilities, which every extra token lowers:

# %%
alphas = [0.0, 0.5, 1.0, 2.0]
len_prompts = candidates[:pick(SMOKE, 4, 8)]
n_len = pick(SMOKE, 16, 24)
lengths = {a: [] for a in alphas}
for prompt in tqdm(len_prompts, desc="beam, length penalty"):
    ids = pre.encode(prompt)[0]
    for a in alphas:
        best, _ = decoding.beam_search(model, ids, beam_width, n_len, eos_id=newline, length_penalty=a)
        lengths[a].append(len(best) - len(ids))
mean_len = {a: float(np.mean(v)) for a, v in lengths.items()}
for a in alphas:
    print(f"α = {a:3.1f}: new tokens per prompt {lengths[a]}  mean {mean_len[a]:.1f}")
glue("len_alpha0", mean_len[0.0])
glue("len_alpha2", mean_len[2.0])
glue("n_len", n_len)
assert mean_len[0.0] <= mean_len[1.0] <= mean_len[2.0] and mean_len[0.0] < mean_len[2.0]

# %% [markdown]
# The mean output grows from {glue:text}`len_alpha0:.1f` new tokens at $\alpha = 0$ to
# {glue:text}`len_alpha2:.1f` at $\alpha = 2$ (of at most {glue:text}`n_len`). Translation systems
# tune $\alpha$ (GNMT used 0.6–0.7) because there the right output length is knowable; in open-ended
# generation there is no such target.
#
# ## 4. The repetition loop, and the repetition penalty
#
# Greedy decoding is a deterministic function of the context, so once a phrase makes itself the most
# likely continuation, the model repeats it forever. Small models fall into such loops within a few
# tokens; large ones do too, more slowly {cite}`holtzman2020curious`. A simple measure is the
# **repeated 3-gram share**: the fraction of a continuation's 3-grams that already appeared earlier
# in it (0 for fresh text, near 1 for a loop). Each strategy below continues the same
# {glue:text}`n_prompts` prompts — the first {glue:text}`prompt_len` tokens of lines of held-out
# text — by {glue:text}`n_rep` tokens, in one batch (four samples per prompt for sampling).

# %%
# The batched experiments continue real text: the first tokens of lines of held-out (validation)
# text, so every prompt has the same length and all of them run as one batch.
prompt_len, n_prompts = 16, pick(SMOKE, 4, 8)
n_rep, n_rep_samples = pick(SMOKE, 32, 48), 4
val = pre.data.val
line_ends = torch.tensor([i for i in range(V) if tok.decode([i]).endswith("\n")])
line_starts = torch.isin(val[:-1], line_ends).nonzero().flatten() + 1
line_starts = line_starts[line_starts < len(val) - prompt_len - 64]
order = torch.randperm(len(line_starts), generator=torch.Generator().manual_seed(1))
prompts = val[line_starts[order[:n_prompts]][:, None] + torch.arange(prompt_len)]  # (n_prompts, prompt_len)
glue("prompt_len", prompt_len)
glue("n_prompts", n_prompts)

rep_settings = {
    "greedy": SamplingConfig(greedy=True),
    "greedy, penalty 1.2": SamplingConfig(greedy=True, repetition_penalty=1.2),
    "greedy, penalty 1.5": SamplingConfig(greedy=True, repetition_penalty=1.5),
    "sample T = 0.5": SamplingConfig(temperature=0.5),
    "sample T = 0.7, top-p 0.9": SamplingConfig(temperature=0.7, top_p=0.9),
    "sample T = 1": SamplingConfig(),
}
rep_share, rep_text = {}, {}
for i, (name, cfg) in enumerate(tqdm(rep_settings.items(), desc="strategies")):
    rows = prompts if cfg.greedy else prompts.repeat_interleave(n_rep_samples, dim=0)
    out = decoding.generate(model, rows, n_rep, cfg, torch.Generator().manual_seed(i), max_context=BLOCK)
    rep_share[name] = float(np.mean([decoding.repeated_ngram_share(row[prompt_len:], 3) for row in out]))
    rep_text[name] = continuation(out[0], prompt_len)

fig = go.Figure(go.Bar(x=list(rep_share), y=list(rep_share.values()), marker_color=[
    viz.PALETTE[1] if n == "greedy" else viz.PALETTE[4] if n.startswith("greedy") else viz.PALETTE[0] for n in rep_share],
    text=[f"{v:.2f}" for v in rep_share.values()], textposition="outside"))
fig.update_layout(title=f"Repeated 3-gram share of {n_rep}-token continuations ({n_prompts} prompts)",
                  yaxis_title="share of 3-grams seen before", yaxis_range=[0, 1.1], height=420)
fig

# %%
for name in rep_share:
    glue("rep_" + re.sub(r"\W+", "_", name).strip("_").lower(), rep_share[name])
glue("n_rep", n_rep)
assert rep_share["greedy"] > 0.3, "greedy loops on a small model"
assert rep_share["greedy"] > 2 * rep_share["sample T = 1"]
assert rep_share["greedy, penalty 1.5"] < rep_share["greedy"]
assert rep_share["sample T = 0.5"] > rep_share["sample T = 1"], "a lower temperature repeats more"
Markdown(f"The first prompt: {visible(tok.decode(prompts[0].tolist()))}\n\n| strategy | its continuation |\n|---|---|\n"
         + "\n".join(f"| {name} | {visible(text)} |" for name, text in rep_text.items()))

# %% [markdown]
# Greedy continuations repeat {glue:text}`rep_greedy:.0%` of their 3-grams; sampling at T = 1 only
# {glue:text}`rep_sample_t_1:.0%`, and lowering the temperature to 0.5 raises it to
# {glue:text}`rep_sample_t_0_5:.0%` — the common rule "T < 1: more repetition" holds. A repetition
# penalty of 1.5 brings greedy down to {glue:text}`rep_greedy_penalty_1_5:.0%` (1.2:
# {glue:text}`rep_greedy_penalty_1_2:.0%`). It is a blunt tool, though: the CTRL penalty applies to
# *every* token already in the context, prompt included, however often and however long ago it
# appeared. Code has to repeat `self`, variable names and indentation, and prose has to repeat
# "the"; a strong penalty pushes the model off exactly those tokens. Production APIs therefore
# offer gentler variants — OpenAI's presence and frequency penalties subtract a constant (times the
# count) instead of dividing, and `no_repeat_ngram_size` bans only exact n-gram repeats — and the
# usual cure for loops in open-ended generation is simply to sample.
#
# :::{admonition} Interview angle: "why not always greedy, or beam search, for chat?"
# :class: tip
# Three measured reasons. Greedy loops: {glue:text}`rep_greedy:.0%` of its 3-grams above are
# repeats. The most likely text is not human-like text: the next section shows real text scores a
# far higher NLL under the model than greedy output — people do not write the argmax. And beam
# search costs {glue:text}`beam_width`× the compute and KV cache of greedy for a result that is
# *more* generic. Beam search earns its cost where one answer is right and its length is roughly
# known — translation, speech recognition, constrained extraction — and greedy (temperature 0) where
# reproducibility matters more than variety, such as code completion and structured output.
# :::
#
# ## 5. Diversity against quality
#
# Every sampling setting trades **diversity** (do different samples differ?) against **quality**
# (is each sample good?). Here, for each of {glue:text}`n_settings` settings, the model writes
# {glue:text}`n_samples` continuations of {glue:text}`n_new` tokens for each of the
# {glue:text}`n_prompts` prompts of the last section, in one batch.
# Diversity is **distinct-2** {cite}`li2016diversity`: the share of unique token bigrams among all
# bigrams of one prompt's samples, averaged over prompts. Quality has no ground truth for
# open-ended text, so three proxies, each with a known blind spot:
#
# - **NLL under the model itself** (nats/token). Low means the model finds the text likely — but it
#   rewards exactly the degenerate, repetitive text that greedy writes; it is a measure of
#   typicality to the model, not of quality.
# - **NLL under a bigram model** fit on the training tokens (interpolated with the unigram so no
#   pair is impossible). A different model family is an outside judge: it punishes token pairs that
#   never occur in real text. Its blind spot: it sees two tokens at a time, so a loop of common
#   pairs scores well.
# - **Share of words found in the corpus**: decoded words of three or more letters that occur in
#   the training text ({glue:text}`corpus_words:,` distinct words). It catches invented words
#   (subword soup) and nothing else.
#
# As an anchor, the same measures on **real text**: held-out windows of the corpus, continuations of
# their own first tokens.

# %%
n_samples, n_new = pick(SMOKE, 6, 12), pick(SMOKE, 24, 40)
grid = {"greedy": SamplingConfig(greedy=True)}
grid |= {f"T={t:g}": SamplingConfig(temperature=t) for t in (0.3, 0.5, 0.7, 1.0, 1.3, 1.6)}
grid |= {f"top-p={p:g}": SamplingConfig(top_p=p) for p in (0.5, 0.7, 0.9, 0.95)}
grid |= {f"top-k={k}": SamplingConfig(top_k=k) for k in (5, 20, 100)}
grid |= {f"min-p={m:g}, T=1.5": SamplingConfig(temperature=1.5, min_p=m) for m in (0.05, 0.1, 0.2)}
glue("n_samples", n_samples)
glue("n_new", n_new)
glue("n_settings", len(grid))

bigram = decoding.bigram_table(pre.data.train, V)
corpus_words = set(re.findall(r"[A-Za-z]{3,}", tok.decode(pre.data.train.tolist())))
glue("corpus_words", len(corpus_words))


def word_share(texts: list[str]) -> float:
    words = [w for t in texts for w in re.findall(r"[A-Za-z]{3,}", t)]
    return sum(w in corpus_words for w in words) / max(1, len(words))


def score(batch: torch.Tensor, groups: int) -> dict:
    """Metrics of a batch (groups × n, prompt_len + n_new): distinct-n is pooled within each group of rows."""
    cont = batch[:, prompt_len:]
    return {
        "distinct-1": float(np.mean([decoding.distinct_n(g, 1) for g in cont.chunk(groups)])),
        "distinct-2": float(np.mean([decoding.distinct_n(g, 2) for g in cont.chunk(groups)])),
        "repeated 3-grams": float(np.mean([decoding.repeated_ngram_share(r, 3) for r in cont])),
        "model NLL": decoding.continuation_nll(model, batch, prompt_len).mean().item(),
        "bigram NLL": decoding.bigram_nll(bigram, batch, prompt_len).mean().item(),
        "corpus words": word_share([tok.decode(r.tolist()) for r in cont]),
    }


assert prompt_len + n_new <= BLOCK, "the model NLL is one forward pass over prompt and continuation"
results = {}
for i, (name, cfg) in enumerate(tqdm(grid.items(), desc="settings")):
    if cfg.greedy:  # every greedy sample of a prompt is the same: decode once, count it n_samples times
        out = decoding.generate(model, prompts, n_new, cfg, max_context=BLOCK).repeat_interleave(n_samples, dim=0)
    else:
        out = decoding.generate(model, prompts.repeat_interleave(n_samples, dim=0), n_new, cfg,
                                torch.Generator().manual_seed(i), max_context=BLOCK)
    results[name] = score(out, n_prompts)

# Real text: other held-out lines, cut the same way, in groups of n_samples. Their distinct-n pools
# continuations of *different* prompts, so it is an upper reference for diversity.
real_starts = line_starts[order[n_prompts:n_prompts * (n_samples + 1)]]
real = val[real_starts[:, None] + torch.arange(prompt_len + n_new)]
results["real text"] = score(real, n_prompts)

metrics = list(results["real text"])
Markdown("| setting | " + " | ".join(metrics) + " |\n" + "|---" * (len(metrics) + 1) + "|\n" + "\n".join(
    f"| {name} | " + " | ".join(f"{r[m]:.2f}" for m in metrics) + " |" for name, r in results.items()))

# %%
families = {family: [k for k in grid if k.startswith(prefix)] for family, prefix in
            (("temperature", "T="), ("top-p (T = 1)", "top-p"), ("top-k (T = 1)", "top-k"), ("min-p (T = 1.5)", "min-p"))}
fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("NLL under the model itself", "NLL under a bigram model of the corpus"))
for col, metric in ((1, "model NLL"), (2, "bigram NLL")):
    for color, (family, names) in zip(viz.PALETTE, families.items()):
        fig.add_scatter(x=[results[n]["distinct-2"] for n in names], y=[results[n][metric] for n in names],
                        mode="lines+markers+text" if family == "temperature" else "lines+markers",
                        text=[n.split(",")[0].split("=")[1] for n in names], textposition="middle left",
                        hovertemplate="%{text}: distinct-2 %{x:.2f}, %{y:.2f} nats<extra>" + family + "</extra>",
                        textfont=dict(size=10), name=family, legendgroup=family,
                        showlegend=col == 1, line=dict(color=color), row=1, col=col)
    for name, symbol, color in (("greedy", "x", "black"), ("real text", "star", viz.PALETTE[4])):
        fig.add_scatter(x=[results[name]["distinct-2"]], y=[results[name][metric]], mode="markers", name=name,
                        marker=dict(symbol=symbol, size=14, color=color), legendgroup=name, showlegend=col == 1,
                        row=1, col=col)
fig.update_xaxes(title_text="diversity: distinct-2 across samples")
fig.update_yaxes(title_text="nats / token (lower = more likely)", row=1, col=1)
fig.update_layout(title="Diversity against two measures of likelihood, one point per decoding setting", height=480,
                  legend=dict(orientation="h", y=-0.2))
fig

# %%
r = results
for name in ("greedy", "T=0.3", "T=0.7", "T=1", "T=1.6", "top-p=0.9", "min-p=0.1, T=1.5", "real text"):
    key = re.sub(r"\W+", "_", name).strip("_").lower()
    for metric, short in (("distinct-2", "d2"), ("model NLL", "nll"), ("bigram NLL", "bnll"), ("corpus words", "words")):
        glue(f"q_{key}_{short}", r[name][metric])
temps_q = families["temperature"]
assert r["T=1.6"]["distinct-2"] > r["T=0.7"]["distinct-2"] > r["T=0.3"]["distinct-2"], "diversity rises with T"
assert r["T=1.6"]["model NLL"] > r["T=1"]["model NLL"] > r["T=0.3"]["model NLL"] > r["greedy"]["model NLL"] - 0.2
assert r["top-p=0.95"]["distinct-2"] > r["top-p=0.5"]["distinct-2"], "a wider nucleus is more diverse"
assert r["real text"]["model NLL"] > r["greedy"]["model NLL"] + 1, "real text is far less likely than greedy output"
assert abs(r["real text"]["model NLL"] - r["T=1"]["model NLL"]) < r["real text"]["model NLL"] - r["greedy"]["model NLL"]
assert r["top-p=0.9"]["distinct-2"] > r["T=0.7"]["distinct-2"] and r["top-p=0.9"]["model NLL"] < r["T=1"]["model NLL"]
assert r["T=0.3"]["bigram NLL"] < r["real text"]["bigram NLL"] + 0.3, "the bigram judge's blind spot: loops of common pairs"
assert r["T=1.6"]["bigram NLL"] > r["T=0.7"]["bigram NLL"], "high temperature writes pairs the corpus never had"
assert r["real text"]["corpus words"] > r["T=1.6"]["corpus words"] + 0.1, "and words it never had"
assert r["min-p=0.1, T=1.5"]["bigram NLL"] < r["T=1.6"]["bigram NLL"] - 1, "min-p keeps T = 1.5 on the corpus's pairs"

# %% [markdown]
# Read the left panel first. Temperature traces the trade-off most cleanly: from greedy to T = 1.6
# diversity rises (distinct-2 {glue:text}`q_greedy_d2:.2f` → {glue:text}`q_t_1_6_d2:.2f`) and so
# does the model's own NLL ({glue:text}`q_greedy_nll:.2f` → {glue:text}`q_t_1_6_nll:.2f`
# nats/token). Truncation buys a better point on that curve: top-p = 0.9 is more diverse than
# T = 0.7 (distinct-2 {glue:text}`q_top_p_0_9_d2:.2f` against {glue:text}`q_t_0_7_d2:.2f`) and more
# likely than T = 1 (NLL {glue:text}`q_top_p_0_9_nll:.2f` against {glue:text}`q_t_1_nll:.2f`),
# because it removes the tail instead of shrinking everything. Now find the star: **real text**
# scores an NLL of {glue:text}`q_real_text_nll:.2f` under the model — near plain sampling at T = 1
# ({glue:text}`q_t_1_nll:.2f`) and far above greedy ({glue:text}`q_greedy_nll:.2f`). People do not
# write the most likely continuation, which is the observation behind nucleus sampling
# {cite}`holtzman2020curious`: a decoder that maximizes likelihood moves *away* from human text.
#
# The right panel is the outside judge. The bigram model rates low temperatures about as likely as
# real text, or more (T = 0.3: {glue:text}`q_t_0_3_bnll:.2f`, real text {glue:text}`q_real_text_bnll:.2f`),
# because loops of common pairs are likely under it too — that is its blind spot. But it is
# independent evidence against high temperatures: T = 1.6 writes token pairs the corpus hardly
# contains (bigram NLL {glue:text}`q_t_1_6_bnll:.2f`), and only {glue:text}`q_t_1_6_words:.0%` of
# its words exist in the corpus, against {glue:text}`q_real_text_words:.0%` of real text's. Min-p
# is built for that regime: at T = 1.5 with min-p = 0.1 the samples reach distinct-2
# {glue:text}`q_min_p_0_1_t_1_5_d2:.2f` at a bigram NLL of {glue:text}`q_min_p_0_1_t_1_5_bnll:.2f`,
# next to {glue:text}`q_top_p_0_9_d2:.2f` and {glue:text}`q_top_p_0_9_bnll:.2f` for top-p = 0.9 at
# T = 1, because its cut-off follows the best token and so does not flatten with the temperature
# {cite}`nguyen2024minp`. None of these proxies replaces a human or a strong model judging the
# outputs; they are cheap, honest about what they measure, and enough to show where a setting sits.
#
# ## 6. Temperature 0, seeds and determinism
#
# $\mathrm{softmax}(z/T)$ is undefined at $T = 0$; its limit as $T \to 0$ puts all the mass on the
# argmax. APIs therefore treat "temperature 0" as a request for greedy decoding, and a careful
# implementation refuses to divide by zero rather than return NaNs:

# %%
try:
    decoding.apply_temperature(explore[None], 0.0)
except ValueError as err:
    print("ValueError:", err)
zero_prompt = pre.encode(table_prompts[0])
greedy_ids = decoding.generate(model, zero_prompt, n_table, SamplingConfig(greedy=True), max_context=BLOCK)
cold = [decoding.generate(model, zero_prompt, n_table, SamplingConfig(temperature=0.01), torch.Generator().manual_seed(s),
                          max_context=BLOCK) for s in range(5)]
assert all(torch.equal(c, greedy_ids) for c in cold), "T = 0.01 samples the argmax every time here"
print(f"T = 0.01 with 5 different seeds: all 5 equal greedy's {n_table} tokens")

# %% [markdown]
# Greedy output is a deterministic function of the logits — but the logits are not a deterministic
# function of the prompt in a serving system. A batched matrix multiply may sum in a different order
# for a different batch size, and floating-point addition is not associative, so the same prompt
# gives slightly different logits alone and in a batch. Whenever the top two logits are closer than
# that noise, the argmax — and everything after it — can flip. (Mixture-of-experts models add a
# second source: which other requests share the batch decides which tokens overflow an expert's
# capacity.) Sampling adds a third: a batch usually draws from one random stream, so a request's
# sample depends on its neighbours.

# %%
rows_same_len = [p for p in candidates if pre.encode(p).shape[1] == pre.encode(candidates[0]).shape[1]]
batch = torch.cat([pre.encode(p) for p in rows_same_len] * 4)
alone = model(batch[:1])[0, -1]
in_batch = model(batch)[0, -1]
batch_noise = (alone - in_batch).abs().max().item()
val_x = pre.data.val[: 32 * BLOCK].view(32, BLOCK)
top2 = model(val_x).float().topk(2, dim=-1).values
gaps = (top2[..., 0] - top2[..., 1]).flatten()
glue("batch_noise", batch_noise)
glue("batch_rows", len(batch))
glue("gap_positions", len(gaps))
close_calls = int((gaps < 0.01).sum())
flip_every = 1 / (close_calls / len(gaps) * batch_noise / 0.01)  # gaps taken as evenly spread below 0.01
glue("close_calls", close_calls)
glue("min_gap", gaps.min().item())
glue("flip_every", float(f"{flip_every:.2g}"))
print(f"same prompt alone vs in a batch of {len(batch)}: max |Δ logit| = {batch_noise:.1e}; {close_calls} of "
      f"{len(gaps):,} validation positions have a top-2 gap below 0.01 (smallest {gaps.min():.1e}); "
      f"a gap below the noise about once every {flip_every:,.0f} tokens")

seeded = SamplingConfig(temperature=1.0)
a1 = decoding.generate(model, zero_prompt, 12, seeded, torch.Generator().manual_seed(7), max_context=BLOCK)
a2 = decoding.generate(model, zero_prompt, 12, seeded, torch.Generator().manual_seed(7), max_context=BLOCK)
other = pre.encode(candidates[2])[:, : zero_prompt.shape[1]] if pre.encode(candidates[2]).shape[1] >= zero_prompt.shape[1] \
    else zero_prompt.flip(1)
pair = decoding.generate(model, torch.cat([zero_prompt, other]), 12, seeded, torch.Generator().manual_seed(7),
                         max_context=BLOCK)
assert torch.equal(a1, a2), "same prompt, same seed, same batch: same sample"
assert not torch.equal(a1[0], pair[0]), "same prompt and seed, but a neighbour in the batch shares the random stream"
assert batch_noise < 1e-3 and close_calls >= 5
print("seed 7 alone, twice:       ", repr(continuation(a1[0], zero_prompt.shape[1])))
print("seed 7, batched with another:", repr(continuation(pair[0], zero_prompt.shape[1])))

# %% [markdown]
# The same prompt alone and in a batch of {glue:text}`batch_rows` differs by up to
# {glue:text}`batch_noise:.1e` in its logits. Near-ties are not rare: {glue:text}`close_calls` of
# {glue:text}`gap_positions:,` validation positions have their top two logits within 0.01 of each
# other (the smallest gap is {glue:text}`min_gap:.1e`). If gaps are spread about evenly below 0.01,
# one smaller than the batch noise — a token that can flip with the batch — comes about once every
# {glue:text}`flip_every:,.0f` tokens: rare for one user, routine for a service that decodes billions
# of tokens a day, and every flip changes the rest of that answer. With a fixed seed, the same
# request alone gives the same sample twice, but batched with another request under one generator it
# gives a different one.
#
# :::{admonition} Interview angle: "we set temperature 0 and a seed — why do outputs still differ?"
# :class: tip
# Temperature 0 means greedy: the argmax at each step, the limit of $T \to 0$, special-cased because
# dividing by zero is undefined. It makes decoding deterministic *given the logits*, but the logits
# move with batch size and composition (reduction order, kernel choice, MoE capacity), and a
# near-tie turns a {glue:text}`batch_noise:.0e` difference into a different token and a different continuation. Seeds make
# sampling reproducible only if each request owns its random generator and the batch has the same
# shape; engines such as vLLM give every request its own seeded generator for this reason. For
# bit-exact replay you need batch-invariant kernels, or decoding alone, at a throughput cost.
# :::
#
# ## 7. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** A next-token distribution has probabilities 0.5, 0.3, 0.15 and 0.05. How many tokens does
# top-p = 0.9 keep?

# %%
answer_1 = ...
check(answer_1, kept(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), top_p=0.9))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# Three. The mass before the third token is 0.5 + 0.3 = 0.8 < 0.9, so the third is kept; the mass
# before the fourth is 0.95 ≥ 0.9, so it goes. The nucleus is the smallest set whose mass reaches
# $p$, here 0.95.
# :::
#
# **2.** Beam search with width 5 writes 50 new tokens (no KV cache, no end token). How many times
# does it call the model?

# %%
answer_2 = ...
counter = Counting(model)
decoding.beam_search(counter, cost_prompt[0], 5, 6)
check(answer_2, counter.calls / 6 * 50)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# 50: one call per step, each over a batch of (up to) 5 sequences — about 5× greedy's compute, not
# 5 × vocabulary calls. With a KV cache each call processes one new token per beam, and the cache
# holds 5 sequences.
# :::
#
# **3.** As the temperature grows without bound, what does the entropy of this chapter's
# next-token distribution approach, in nats? (Two decimals.)

# %%
answer_3 = ...
check(answer_3, decoding.entropy(decoding.apply_temperature(explore[None], 1e6)).item())

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $\log V$ for a vocabulary of $V$ tokens: every token becomes equally likely. Here
# $\log$ {glue:text}`vocab` = {glue:text}`log_vocab:.2f`.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(3, kept(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), top_p=0.9))
assert check(50, counter.calls / 6 * 50)
assert check(round(math.log(V), 2), decoding.entropy(decoding.apply_temperature(explore[None], 1e6)).item())

# %% [markdown]
# ## Summary
#
# - Decoding is a pipeline over logits: repetition penalty, temperature, truncation (top-k, top-p,
#   min-p), softmax, pick. Ours matches Hugging Face's processors exactly, step by step.
# - Temperature rescales and never removes a token; truncation removes the tail. Top-k keeps a fixed
#   count; top-p and min-p follow the model's confidence.
# - Greedy and beam search maximize likelihood and on open-ended text produce loops and generic
#   output; beam search costs beam-width × the compute, in one batched call per step, and needs a
#   length penalty to stop favouring short outputs.
# - Diversity and likelihood trade off along one curve for temperature, top-p and top-k; real text
#   sits at a far higher NLL than greedy output, and high temperatures leave the corpus's vocabulary
#   unless min-p or top-p reins them in.
# - Temperature 0 is greedy; it is deterministic only given identical logits, and a seed is
#   reproducible only per request with its own generator.

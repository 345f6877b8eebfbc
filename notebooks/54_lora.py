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
# # LoRA and friends: fine-tuning through a low-rank update
#
# Fine-tuning every weight of a 7B model with Adam holds about 16 bytes per parameter — more than a
# hundred gigabytes before a single activation — and every fine-tune is a full copy of the model to
# store and serve. Low-rank adaptation (LoRA) freezes the pretrained weights and trains, next to
# each chosen matrix, a product of two thin matrices; QLoRA stores the frozen part in 4 bits. They
# are why fine-tuning moved from clusters to single GPUs, why one serving fleet can host thousands of
# customer adapters, and why interviews ask you to write $W_0 + \frac{\alpha}{r}BA$, count its
# parameters, say why $B$ starts at zero, explain what merging costs, and size the GPU for a 70B
# QLoRA run. This chapter builds LoRA from scratch, checks it against Hugging Face `peft`, and
# measures each of those claims on the book's trained MiniGPT.
#
# **You will learn**
# - why a low-rank update is enough: the singular values of a real fine-tuning update $\Delta W$;
# - LoRA's parameter arithmetic, including the seeds' "r = 16 on 4096² is 128× fewer" and the
#   Llama-3-8B count, and which memory savings are real (optimizer state) and which are not (total);
# - how loss depends on the rank r, against full fine-tuning, and what each forgets;
# - merging: why a merged adapter costs exactly nothing at inference, measured in FLOPs and time;
# - that our LoRA and `peft` agree to 1e-6 — counts, outputs, gradients, merges, speed;
# - QLoRA: a 4-bit NF4 base under the same adapters trains as well as the fp32 base, and the memory
#   table of full fine-tuning, LoRA and QLoRA for 7B, 13B, 65B and 70B models.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/54_lora.ipynb)
# · Runtime budget on 2 CPU cores, once the book's model is cached: under 60 s with `SMOKE=True`,
# about 4 minutes in full mode (training the small model the first time adds about a minute, the
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

SMOKE = smoke_default()  # True: the tiny model and few steps (≤ 60 s on 2 cores); False: the full chapter

# %%
import copy
import inspect
import math
import time

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import Code, Markdown, display
from peft import LoraConfig, get_peft_model
from plotly.subplots import make_subplots
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from companion import lm, lora, quant, viz
from companion.bench import paired_seconds
from companion.book import check, glue
from companion.config import pick, seed_everything
from companion.data import python_docs

seed_everything(0)
pre = lm.pretrained(SMOKE)  # the book's MiniGPT: loaded from the cache, or trained from its seed once
base, tok = pre.model, pre.tokenizer
torch.set_num_threads(1 if SMOKE else 2)  # the tiny model runs faster on one core
ALL = ("q_proj", "k_proj", "v_proj", "out_proj", "fc", "proj")  # every linear layer of a MiniGPT block
BLOCK = 64  # fine-tuning windows of 64 tokens, batches of 8: small enough to sweep ranks on a laptop

# The new domain: the Python docs in capitals. Same content the model was trained on, a surface form it
# never saw — the kind of shift (a format, a style, a register) that fine-tuning is mostly used for.
shouted = python_docs(max_chars=pick(SMOKE, 60_000, 240_000)).upper()
new = lm.TokenData.from_ids(tok.encode_ordinary(shouted), tok.vocab_size)
eval_tokens = pick(SMOKE, 2048, 4096)


def losses(model: torch.nn.Module) -> tuple[float, float]:
    """Validation loss (nats/token) on the new domain and on the model's original data."""
    return (lm.evaluate(model, new, BLOCK, eval_tokens), lm.evaluate(model, pre.data, BLOCK, eval_tokens))


base_new, base_orig = losses(base)
glue("n_params", base.n_params())
glue("d_model", base.cfg.n_embd)
glue("n_layer", base.cfg.n_layer)
glue("base_new", base_new)
glue("base_orig", base_orig)
glue("new_tokens", len(new.train))
print(f"SMOKE={SMOKE}: MiniGPT with {base.n_params():,} parameters (d = {base.cfg.n_embd}, {base.cfg.n_layer} blocks); "
      f"loss {base_orig:.2f} nats/token on its own validation data, {base_new:.2f} on the capitalized docs "
      f"({len(new.train):,} training tokens)")
if not SMOKE:  # the tiny SMOKE model has barely learned either kind of text
    assert base_new > base_orig + 0.2, "the capitalized docs are a real shift for the model"

# %% [markdown]
# The model is the book's MiniGPT ({glue:text}`n_params:,` parameters, width
# {glue:text}`d_model`, {glue:text}`n_layer` blocks), pretrained on the Python docs and
# standard-library code. Its fine-tuning task: the same docs **in capital letters**
# ({glue:text}`new_tokens:,` training tokens). The words and facts are familiar; their surface form
# is not, and the loss there is {glue:text}`base_new:.2f` nats/token against
# {glue:text}`base_orig:.2f` on text like its training data. Learning a new format, style or register
# on top of knowledge the model already has is what most production fine-tunes do — and, as we
# will measure, exactly where a low-rank update does well.
#
# ## 1. Why a low-rank update should be enough
#
# Fine-tuning changes a weight matrix $W_0 \in \mathbb{R}^{d_\text{out} \times d_\text{in}}$ into
# $W_0 + \Delta W$. LoRA {cite}`hu2022lora` bets that $\Delta W$ has low rank: that it can be written
# as $BA$ with $B \in \mathbb{R}^{d_\text{out} \times r}$, $A \in \mathbb{R}^{r \times d_\text{in}}$ and
# $r \ll \min(d_\text{out}, d_\text{in})$. The bet rests on the observation that fine-tuning works in
# a subspace of tiny *intrinsic dimension* {cite}`aghajanyan2021intrinsic`. It is easy to test: fine-tune
# every weight, take $\Delta W$ of each matrix, and ask how much of it the best rank-$r$ matrix holds.
# By the Eckart–Young theorem that best approximation keeps the top $r$ singular values, so the share
# of $\lVert\Delta W\rVert_F^2$ it captures is $\sum_{i \le r}\sigma_i^2 / \sum_i \sigma_i^2$
# (`lora.energy_captured`). For contrast, a random Gaussian matrix of the same shape spreads its
# energy over all directions.

# %%
steps = pick(SMOKE, 30, 40)
glue("steps", steps)
LR_FULL, LR_LORA = 1e-3, 3e-3  # LoRA's adapters start from zero and take a larger step, as usual in practice


def finetune(model: torch.nn.Module, lr: float) -> lm.LMHistory:
    """AdamW with warmup and cosine decay on the capitalized docs: ``steps`` batches of 8 × 64 tokens."""
    cfg = lm.LMTrainConfig(steps=steps, batch_size=8, block=BLOCK, peak_lr=lr, warmup_steps=max(1, steps // 10),
                           weight_decay=0.0, eval_every=steps, eval_tokens=512, seed=0)  # losses() evaluates
    return lm.train_lm(model, new, cfg, progress=False)


full = copy.deepcopy(base)
start = time.perf_counter()
full_history = finetune(full, LR_FULL)
full_seconds = time.perf_counter() - start
full_new, full_orig = losses(full)

matrices = {}  # "block i · name" -> ΔW (out, in)
for i, (b0, b1) in enumerate(zip(base.blocks, full.blocks)):
    for name in ALL:
        sub = "attn" if name in ("q_proj", "k_proj", "v_proj", "out_proj") else "mlp"
        w0, w1 = getattr(getattr(b0, sub), name).weight, getattr(getattr(b1, sub), name).weight
        matrices[f"{i}·{name}"] = (w1 - w0).detach()
spectra = {k: lora.energy_captured(d) for k, d in matrices.items()}
random_spectra = {k: lora.energy_captured(torch.randn(d.shape, generator=torch.Generator().manual_seed(0)))
                  for k, d in matrices.items()}
print(f"full fine-tuning, {steps} steps: new-domain loss {base_new:.2f} -> {full_new:.2f}, "
      f"original {base_orig:.2f} -> {full_orig:.2f}")

# %%
fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
    "share of ‖ΔW‖² in the top r directions", "the same for a random matrix of each shape"))
for col, curves in ((1, spectra), (2, random_spectra)):
    for j, name in enumerate(ALL):
        for key, share in curves.items():
            if key.endswith("·" + name):
                ks = np.arange(1, len(share) + 1)
                fig.add_scatter(x=ks, y=share.numpy(), mode="lines", line=dict(color=viz.PALETTE[j % len(viz.PALETTE)]),
                                name=name, legendgroup=name, showlegend=col == 1 and key.startswith("0·"),
                                hovertemplate=f"{key}: top %{{x}} hold %{{y:.0%}}<extra></extra>", row=1, col=col)
fig.update_xaxes(type="log", title_text="rank r")
fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
fig.update_layout(height=430, title="How low-rank is a real fine-tuning update? One line per weight matrix",
                  legend=dict(orientation="h", y=-0.22))
fig

# %%
r_probe = 8
share_r = {k: float(s[r_probe - 1]) for k, s in spectra.items()}
rand_r = {k: float(s[r_probe - 1]) for k, s in random_spectra.items()}
attn_keys = [k for k in share_r if k.split("·")[1] in ("q_proj", "k_proj", "v_proj", "out_proj")]
glue("r_probe", r_probe)
glue("share_r_mean", float(np.mean(list(share_r.values()))))
glue("share_r_min", min(share_r.values()))
glue("share_r_attn", float(np.mean([share_r[k] for k in attn_keys])))
glue("rand_r_mean", float(np.mean(list(rand_r.values()))))
glue("full_new", full_new)
glue("full_orig", full_orig)
ranks_for_90 = [int((s < 0.9).sum()) + 1 for s in spectra.values()]
glue("rank90_median", float(np.median(ranks_for_90)))
glue("min_dim", min(min(d.shape) for d in matrices.values()))
for k in share_r:
    assert share_r[k] > 2 * rand_r[k], f"ΔW of {k} is far more concentrated than noise"
assert full_new < base_new - 0.3, "full fine-tuning learns the new domain"

# %% [markdown]
# After {glue:text}`steps` steps of full fine-tuning (new-domain loss {glue:text}`base_new:.2f` →
# {glue:text}`full_new:.2f`), the top {glue:text}`r_probe` singular directions of each update hold
# {glue:text}`share_r_mean:.0%` of its energy on average (at least {glue:text}`share_r_min:.0%` in
# every matrix; {glue:text}`share_r_attn:.0%` in the attention projections), against
# {glue:text}`rand_r_mean:.0%` for random matrices of the same shapes. Half the matrices need
# {glue:text}`rank90_median:.0f` or fewer directions to hold 90% of their update, out of at least
# {glue:text}`min_dim`. The update is not exactly low-rank — its spectrum has a long tail — but it is
# steep, which is what LoRA needs: a rank-$r$ adapter can reach most of the update, and the rest is
# the price. The seed's summary, "LoRA is a low-rank approximation justified by the observation that
# fine-tuning updates have low effective rank", holds here, with that qualifier.
#
# ## 2. LoRA, in code
#
# LoRA freezes $W_0$ and adds a trainable path beside it:
#
# $$ y = W_0 x + \frac{\alpha}{r}\, B\,A\,\mathrm{dropout}(x), \qquad A \in \mathbb{R}^{r\times d_\text{in}},\;
#    B \in \mathbb{R}^{d_\text{out}\times r}. $$
#
# $B$ starts at **zero**, so $\Delta W = 0$ and the fine-tune starts exactly at the pretrained model;
# $A$ starts random (as `peft` does: `kaiming_uniform_` with $a=\sqrt 5$, the init of an `nn.Linear`),
# so that the first gradient of $B$, which is proportional to $A x$, is not zero. Were both zero,
# neither would ever move; were $B$ random, step 0 would already damage the model. The factor
# $\alpha/r$ keeps the size of the update roughly independent of $r$ when you change it;
# **rsLoRA** {cite}`kalajdzievski2023rslora` argues that $\alpha/\sqrt r$ is the right factor for
# that, so that high ranks learn as fast as low ones. The layer, from `companion.lora`:

# %%
Code(inspect.getsource(lora.LoRALinear), language="python")

# %% [markdown]
# `add_lora` wraps every `nn.Linear` whose name ends with one of the targets (the same rule as
# `peft`'s `target_modules`) and freezes everything else. Two properties to check right away: at
# step 0 the model is unchanged, and only $A$ and $B$ receive gradients — and of those, only $B$,
# because $\partial L/\partial A = \frac{\alpha}{r} B^\top (\ldots)$ vanishes while $B = 0$.

# %%
probe = copy.deepcopy(base)
names = lora.add_lora(probe, 8, 16, ("q_proj", "v_proj"))
x0, y0 = new.batch(4, BLOCK, torch.Generator().manual_seed(0))
assert torch.equal(probe(x0), base(x0)), "B = 0: the adapted model is the base model, bit for bit"
lm.lm_loss(probe.train(), x0, y0).backward()
got_grad = {n for n, p in probe.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
assert got_grad == {f"{n}.lora_B" for n in names}, "at step 0 only B moves; A follows once B is nonzero"
assert all(not p.requires_grad for n, p in probe.named_parameters() if "lora_" not in n)
print(f"{len(names)} layers adapted: {names[:2]} ...; trainable {lora.trainable_parameters(probe):,} of "
      f"{sum(p.numel() for p in probe.parameters()):,}; nonzero gradients at step 0 only in lora_B")

# %% [markdown]
# ### Counting parameters
#
# A LoRA adapter on a $d_\text{out} \times d_\text{in}$ matrix trains $r(d_\text{in} + d_\text{out})$
# numbers instead of $d_\text{in} d_\text{out}$. The seed documents quote this for the classic example
# in three ways — "122× fewer", "128×" and "~120×" — for $r = 16$ on a $4096 \times 4096$ matrix.
# The arithmetic, and the counts for real models (`lora.LLAMA` holds the published shapes):

# %%
one = lora.lora_parameter_count([(4096, 4096)], 16)
glue("seed_lora_params", one)
glue("seed_full_params", 4096 * 4096)
glue("seed_ratio", 4096 * 4096 / one)
llama3 = lora.LLAMA["8B"]
llama3_lora = lora.lora_parameter_count(llama3.linear_shapes(), 16)
glue("llama3_lora", llama3_lora)
glue("llama3_params", llama3.n_params())
glue("llama3_pct", 100 * llama3_lora / (llama3.n_params() + llama3_lora))
glue("llama3_mb_bf16", llama3_lora * 2 / 1e6)
glue("llama3_mb_fp32", llama3_lora * 4 / 1e6)
llama2 = lora.LLAMA["7B"]
llama2_lora = lora.lora_parameter_count(llama2.linear_shapes(), 16)
glue("llama2_lora_m", llama2_lora / 1e6)
glue("llama2_n_matrices", len(llama2.linear_shapes()))
glue("llama2_opt_gb", 8 * llama2_lora / 1e9)
glue("llama3_qv_pct", 100 * lora.lora_parameter_count(llama3.linear_shapes(("q_proj", "v_proj")), 16) / llama3.n_params())
assert one == 131_072 and 4096 * 4096 / one == 128
assert llama3_lora == 41_943_040, "peft's print_trainable_parameters for Llama-3-8B at r = 16 on all linears"

rows = []
for r in (1, 4, 8, 16, 64):
    rows.append((r, lora.lora_parameter_count([(4096, 4096)], r), lora.lora_parameter_count(llama3.linear_shapes(), r)))
Markdown("| r | one 4096 × 4096 matrix | × fewer than 16,777,216 | Llama-3-8B, all 7 projections | share of 8.03B |\n"
         "|---|---|---|---|---|\n" + "\n".join(
             f"| {r} | {a:,} | {4096 * 4096 / a:,.0f}× | {b:,} | {b / llama3.n_params():.2%} |" for r, a, b in rows))

# %% [markdown]
# - **4096², r = 16**: {glue:text}`seed_lora_params:,` against {glue:text}`seed_full_params:,`, exactly
#   {glue:text}`seed_ratio:.0f`× fewer, since $d^2 / (2dr) = d / 2r = 128$. "128×" is right; "122×"
#   and "~120×" are arithmetic slips.
# - **Llama-3-8B, r = 16 on q, k, v, o, gate, up, down**: {glue:text}`llama3_lora:,` trainable
#   parameters — the seed's 41,943,040 holds (keys and values are narrower under GQA, 1024 wide), and
#   so does its "trainable%: 0.52": {glue:text}`llama3_pct:.2f`%. The adapter file is
#   {glue:text}`llama3_mb_bf16:.0f` MB in bf16 and {glue:text}`llama3_mb_fp32:.0f` MB in fp32 (peft
#   saves the adapters' own dtype, fp32 by default), so the seeds' "~50 MB" and "52 MB" adapters
#   would need a smaller rank or fewer targets; "~100 MB" is the bf16 file, rounded up. A résumé line
#   in the seeds claims "training only 0.18% of parameters" for r = 16 — that is neither the
#   all-linear count (0.52%) nor q and v alone ({glue:text}`llama3_qv_pct:.2f`%).
# - **Llama-2-7B, r = 16 on all 7 projections**: {glue:text}`llama2_n_matrices` matrices (the seed's
#   "~225") and {glue:text}`llama2_lora_m:.1f`M parameters, not "≈ 30M"; their two fp32 Adam moments
#   take {glue:text}`llama2_opt_gb:.2f` GB — "fit in < 1 GB" holds.
#
# ## 3. Rank against loss: a sweep, and full fine-tuning
#
# Now the experiment that matters: fine-tune the same model on the same batches with LoRA on every
# linear layer of every block at $r \in$ {glue:text}`ranks_text`, $\alpha = 2r$ (the seeds'
# convention: scale 2), and compare with full fine-tuning. Besides the new domain's loss we track the
# loss on the **original** data: how much each method forgets.

# %%
ranks = pick(SMOKE, [1, 2, 4, 8, 16, 32], [1, 2, 4, 8, 16, 32])
glue("ranks_text", ", ".join(map(str, ranks)))
sweep = {}
for r in tqdm(ranks, desc="LoRA rank sweep"):
    m = copy.deepcopy(base)
    lora.add_lora(m, r, 2 * r, ALL)
    start = time.perf_counter()
    hist = finetune(m, LR_LORA)
    seconds = time.perf_counter() - start
    new_loss, orig_loss = losses(m)
    sweep[r] = dict(model=m, history=hist, new=new_loss, orig=orig_loss, params=lora.trainable_parameters(m),
                    seconds=seconds)
    print(f"r = {r:2d}: {sweep[r]['params']:>8,} trainable; new-domain loss {new_loss:.3f}, original {orig_loss:.3f}")
print(f"full fine-tuning: {base.n_params():>8,} trainable; new-domain loss {full_new:.3f}, original {full_orig:.3f}")

# %%
full_params = sum(p.numel() for p in full.parameters())
fig = go.Figure()
metric_names = {"new": "loss on the new domain (capitalized docs)", "orig": "loss on the original data (forgetting)"}
for j, (key, label) in enumerate(metric_names.items()):
    fig.add_scatter(x=[sweep[r]["params"] for r in ranks], y=[sweep[r][key] for r in ranks], mode="lines+markers+text",
                    text=[f"r={r}" for r in ranks], textposition="top center", name="LoRA", visible=j == 0,
                    marker=dict(size=9, color=viz.PALETTE[0]),
                    customdata=[[r, sweep[r]["new"], sweep[r]["orig"]] for r in ranks],
                    hovertemplate="r = %{customdata[0]}<br>%{x:,} trainable<br>new domain %{customdata[1]:.3f}"
                                  "<br>original %{customdata[2]:.3f}<extra>LoRA</extra>")
    fig.add_scatter(x=[full_params], y=[full_new if key == "new" else full_orig], mode="markers", name="full fine-tuning",
                    marker=dict(symbol="star", size=16, color=viz.PALETTE[1]), visible=j == 0,
                    hovertemplate=f"all {full_params:,} parameters<br>new domain {full_new:.3f}<br>original "
                                  f"{full_orig:.3f}<extra>full</extra>")
    fig.add_scatter(x=[min(sweep[r]["params"] for r in ranks), full_params],
                    y=[base_new if key == "new" else base_orig] * 2, mode="lines", name="before fine-tuning",
                    line=dict(color="gray", dash="dot"), visible=j == 0)
buttons = [dict(label=label, method="update", args=[{"visible": [i // 3 == j for i in range(6)]},
                                                    {"yaxis.title.text": label}]) for j, label in enumerate(metric_names.values())]
fig.update_layout(updatemenus=[dict(buttons=buttons, x=0.0, xanchor="left", y=1.14, yanchor="top")],
                  xaxis=dict(type="log", title="trainable parameters"), yaxis_title=metric_names["new"], height=470,
                  title=dict(text=f"LoRA rank sweep against full fine-tuning ({steps} steps each)", y=0.97),
                  margin=dict(t=110), legend=dict(orientation="h", y=-0.2))
fig

# %%
fig = go.Figure()
for j, r in enumerate(ranks):
    h = sweep[r]["history"]
    fig.add_scatter(x=h.step, y=h.train_loss, mode="lines", name=f"LoRA r = {r}", line=dict(color=viz.PALETTE[j % len(viz.PALETTE)]))
fig.add_scatter(x=full_history.step, y=full_history.train_loss, mode="lines", name="full", line=dict(color="black", width=3))
fig.update_layout(title="Training loss per step on the new domain (click the legend to compare)", height=400,
                  xaxis_title="step", yaxis_title="nats / token")
fig

# %%
best_r = min(ranks, key=lambda r: sweep[r]["new"])
glue("r1_new", sweep[1]["new"])
glue("r1_params", sweep[1]["params"])
glue("r8_new", sweep[8]["new"])
glue("r8_params", sweep[8]["params"])
glue("r8_share", sweep[8]["params"] / full_params)
glue("rmax", ranks[-1])
glue("rmax_new", sweep[ranks[-1]]["new"])
glue("best_r", best_r)
glue("best_new", sweep[best_r]["new"])
glue("gap_best_full", sweep[best_r]["new"] - full_new)
glue("r8_orig", sweep[8]["orig"])
glue("forget_full", full_orig - base_orig)
glue("forget_r8", sweep[8]["orig"] - base_orig)
glue("full_params", full_params)
glue("best_recovered", (base_new - sweep[best_r]["new"]) / (base_new - full_new))
glue("r1_recovered", (base_new - sweep[1]["new"]) / (base_new - full_new))
glue("forget_rmax", sweep[ranks[-1]]["orig"] - base_orig)
for r in ranks:
    assert sweep[r]["new"] < base_new - 0.1, f"LoRA r = {r} learns the new domain"
assert sweep[ranks[-1]]["new"] < sweep[1]["new"] and sweep[8]["new"] < sweep[1]["new"], "more rank, more capacity"
assert sweep[8]["params"] < 0.15 * full_params
assert (base_new - sweep[best_r]["new"]) > 0.25 * (base_new - full_new), "LoRA recovers a good part of full FT's gain"
assert sweep[8]["orig"] - base_orig < full_orig - base_orig, "LoRA forgets less of the original data than full FT"

# %% [markdown]
# Every rank learns the new domain. Rank 1 — {glue:text}`r1_params:,` trainable numbers — already
# takes the loss from {glue:text}`base_new:.2f` to {glue:text}`r1_new:.2f`; rank 8
# ({glue:text}`r8_share:.1%` of the model's parameters) reaches {glue:text}`r8_new:.2f`; the best
# rank, {glue:text}`best_r`, reaches {glue:text}`best_new:.2f`, {glue:text}`gap_best_full:.2f` nats
# from full fine-tuning's {glue:text}`full_new:.2f` with all {glue:text}`full_params:,` parameters —
# {glue:text}`best_recovered:.0%` of full fine-tuning's gain. (Part of the remaining gap is not rank at
# all: full fine-tuning also retrains the token embeddings, which LoRA on linear layers leaves alone,
# and capital letters are tokens the model rarely saw.)
# Rank 1 alone recovers {glue:text}`r1_recovered:.0%` of full fine-tuning's gain — the steep top of
# the singular-value curves of §1 — and after that each doubling of r buys a small, steady step
# while doubling the parameters. Switch the menu to the original data: full fine-tuning raised the
# loss there by {glue:text}`forget_full:.2f` nats, LoRA r = 8 by {glue:text}`forget_r8:.2f`, and
# forgetting grows with the rank (r = {glue:text}`rmax`: {glue:text}`forget_rmax:.2f`). LoRA learns
# less and forgets less {cite}`biderman2024lora` — the constraint is also a regularizer.
#
# Ranks, learning rates and step counts here are small, because the model and the budget are; the
# shape of the result — a steep gain from r = 0 to 1, then slow gains per doubling, below full
# fine-tuning — is the one practitioners see at scale, where r = 8 to 64 is the usual range (the seeds' "r = 16 is a
# great default"), and a very different target language or domain calls for more.
#
# :::{admonition} Interview angle: "walk me through LoRA — and what does it not save?"
# :class: tip
# $W = W_0 + \frac{\alpha}{r}BA$, $W_0$ frozen, $B$ zero at init so training starts at the pretrained
# model, $A$ random so $B$ gets a gradient. It trains $r(d_\text{in}+d_\text{out})$ numbers per matrix
# — 128× fewer for r = 16 on 4096² — so gradients and Adam moments shrink by the same factor, and a
# fine-tune ships as a few-MB file. What it does **not** save: the frozen weights still sit in memory
# (that is QLoRA's job), activations are still stored for the backward pass, and backpropagation
# still computes gradients with respect to every activation — so a step costs about two thirds of a
# full step, not "< 1%" (§4 measures it). Target all linear layers, start at r = 8–16 with
# α = 2r (or rsLoRA), use a learning rate several times higher than for full fine-tuning.
# :::
#
# ## 4. What a LoRA step costs
#
# A seed claims LoRA costs "typically < 1% of full fine-tuning compute". The parameter count is below
# 1%; the compute is not. A training step runs the forward pass (2 FLOPs per weight per token), the
# backward pass with respect to activations (another 2, needed to reach earlier layers) and with
# respect to weights (2 more, skipped for frozen $W_0$). Counting FLOPs with PyTorch's
# `FlopCounterMode` and timing the same steps:

# %%
x, y = new.batch(8, BLOCK, torch.Generator().manual_seed(1))


def step_flops(model: torch.nn.Module) -> int:
    with FlopCounterMode(display=False) as counter:
        lm.lm_loss(model.train(), x, y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def train_step(model: torch.nn.Module):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def run():
        lm.lm_loss(model, x, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return run


full_copy, lora8 = copy.deepcopy(base), copy.deepcopy(base)
lora.add_lora(lora8, 8, 16, ALL)
flops_full, flops_lora = step_flops(full_copy), step_flops(lora8)
with FlopCounterMode(display=False) as fwd:
    base(x)
flops_fwd = fwd.get_total_flops()
t_lora, t_full = paired_seconds(train_step(lora8.train()), train_step(full_copy.train()), repeat=pick(SMOKE, 5, 9))
glue("flops_ratio", flops_lora / flops_full)
glue("time_ratio", t_lora / t_full)
glue("bwd_over_fwd_full", (flops_full - flops_fwd) / flops_fwd)
print(f"forward+backward FLOPs — full: {flops_full / 1e9:.3f} GFLOP, LoRA r = 8: {flops_lora / 1e9:.3f} GFLOP "
      f"({flops_lora / flops_full:.0%}); step time LoRA / full = {t_lora / t_full:.2f}")
assert 0.5 < flops_lora / flops_full < 0.9, "LoRA skips the weight gradients of W0, not the activation gradients"

# %% [markdown]
# A LoRA step here needs {glue:text}`flops_ratio:.0%` of the FLOPs of a full step and
# {glue:text}`time_ratio:.0%` of its time. Time follows FLOPs only loosely: the weight-gradient
# matmuls it saves are partly paid back by the adapter's extra small matmuls and their launch
# overhead, which weigh most on a model this small, while the optimizer step over 1% of the
# parameters becomes nearly free. The rule of thumb for
# large models is two thirds — full training costs about $6N$ FLOPs per token, LoRA about $4N$. The
# "< 1% of compute" claim confuses trainable parameters with work: **✘**. LoRA's real savings are
# memory (gradients and optimizer state for 1% of the parameters) and storage, not FLOPs.
#
# ## 5. Merging: zero extra cost at inference
#
# After training, $W_0 + \frac{\alpha}{r}BA$ is one matrix of the original shape. `merge` adds the
# product into $W_0$ in place; `merge_and_unload` then drops the adapter modules, leaving a model with
# exactly the base architecture. `unmerge` subtracts the product again, which is how a server swaps
# one adapter for another on the same base. Three forward passes of one sequence: the base model,
# the model with its adapter unmerged (the extra path runs every time), and merged:

# %%
tuned = sweep[8]["model"].eval()
ids = new.val[: 4 * BLOCK].view(4, BLOCK)
with torch.no_grad():
    before = tuned(ids)
    lora.merge(tuned)
    merged_out = tuned(ids)
    lora.unmerge(tuned)
    after_round_trip = tuned(ids)
merge_diff = (merged_out - before).abs().max().item()
round_trip_diff = (after_round_trip - before).abs().max().item()
served = lora.merge_and_unload(copy.deepcopy(tuned)).eval()
assert sum(p.numel() for p in served.parameters()) == base.n_params()
assert [type(m) for m in served.modules()] == [type(m) for m in base.modules()], "merged = the base architecture"

one_seq = ids[:1]


def fwd_flops(model: torch.nn.Module) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(one_seq)
    return counter.get_total_flops()


def forward(model: torch.nn.Module):
    def run():
        with torch.no_grad():
            model(one_seq)
    return run


flops = {"base": fwd_flops(base), "unmerged adapter": fwd_flops(tuned), "merged": fwd_flops(served)}
repeat = pick(SMOKE, 15, 25)
t_unmerged, t_base = paired_seconds(forward(tuned), forward(base), repeat=repeat, warmup=3)
t_merged, t_base2 = paired_seconds(forward(served), forward(base), repeat=repeat, warmup=3)
latency = {"base": (t_base + t_base2) / 2, "unmerged adapter": t_unmerged, "merged": t_merged}
glue("merge_diff", merge_diff)
glue("round_trip_diff", round_trip_diff)
glue("unmerged_flops_extra", flops["unmerged adapter"] / flops["base"] - 1)
glue("unmerged_latency_ratio", t_unmerged / t_base)
glue("merged_latency_ratio", t_merged / t_base2)
assert merge_diff < 1e-4 and round_trip_diff < 1e-5
assert flops["merged"] == flops["base"] < flops["unmerged adapter"], "merged: exactly the base model's FLOPs"

fig = make_subplots(rows=1, cols=2, subplot_titles=("FLOPs of one forward pass", "forward latency (median)"))
for col, values, fmt in ((1, {k: v / 1e6 for k, v in flops.items()}, "{:.2f} MFLOP"),
                         (2, {k: v * 1e3 for k, v in latency.items()}, "{:.2f} ms")):
    fig.add_bar(x=list(values), y=list(values.values()), text=[fmt.format(v) for v in values.values()],
                textposition="outside", marker_color=[viz.PALETTE[2], viz.PALETTE[1], viz.PALETTE[0]], showlegend=False,
                row=1, col=col)
fig.update_layout(height=400, title=f"One sequence of {BLOCK} tokens through the model, r = 8 on every linear layer")
fig

# %% [markdown]
# Merged and unmerged outputs differ by {glue:text}`merge_diff:.1e` (float rounding of the sum), and
# merge followed by unmerge returns the weights to within {glue:text}`round_trip_diff:.1e`. The
# merged model *is* a base model: same modules, same parameter count, the same FLOPs to the last
# multiply-add, and a latency ratio of {glue:text}`merged_latency_ratio:.2f` against the base (noise
# around 1). Keeping the adapter unmerged adds {glue:text}`unmerged_flops_extra:.1%` FLOPs — small,
# since $r \ll d$ — but {glue:text}`unmerged_latency_ratio:.2f`× the time here, because each adapter
# is two extra small matmul launches per layer: at small batch, overhead, not FLOPs, sets the cost.
#
# :::{admonition} Interview angle: "merge the adapter, or serve it unmerged?"
# :class: tip
# One fine-tune, latency-sensitive: merge — inference cost is exactly the base model's. Many
# fine-tunes of one base (a customer each): keep the base shared and the adapters separate, and batch
# requests for different adapters together; systems such as S-LoRA and Punica (and vLLM's multi-LoRA
# support) run a gathered low-rank matmul per layer for that. Unmerged adapters cost a few percent of
# FLOPs but extra kernel launches; merging costs a copy of the weights per adapter. And a QLoRA
# adapter cannot be merged into the 4-bit weights without requantizing them — merge into a
# dequantized copy instead.
# :::
#
# ## 6. Ours against `peft`
#
# Hugging Face `peft` is what production fine-tuning code uses. `get_peft_model` accepts any
# `nn.Module` with `nn.Linear` targets, so it wraps the MiniGPT directly. On two copies of the
# pretrained model, with the same targets and rank, and the weights of our trained r = 8 adapter
# copied into peft's:

# %%
ours_model = sweep[8]["model"].eval()
theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=list(ALL))).eval()
peft_trainable = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
peft_sd = theirs.state_dict()
with torch.no_grad():
    for name, layer in lora.lora_layers(ours_model):
        peft_sd[f"base_model.model.{name}.lora_A.default.weight"].copy_(layer.lora_A)
        peft_sd[f"base_model.model.{name}.lora_B.default.weight"].copy_(layer.lora_B)
    peft_diff = (ours_model(ids) - theirs(ids)).abs().max().item()
    peft_merged = theirs.merge_and_unload()
    peft_merged_diff = (served(ids) - peft_merged(ids)).abs().max().item()

peft_step_model = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=list(ALL))).train()
ours_step_model = copy.deepcopy(base)
lora.add_lora(ours_step_model, 8, 16, ALL)
t_ours, t_peft = paired_seconds(train_step(ours_step_model.train()), train_step(peft_step_model), repeat=pick(SMOKE, 5, 9))
glue("peft_diff", peft_diff)
glue("peft_merged_diff", peft_merged_diff)
glue("peft_trainable", peft_trainable)
glue("ours_trainable", sweep[8]["params"])
glue("peft_speed_ratio", t_peft / t_ours)
assert peft_trainable == sweep[8]["params"]
assert peft_diff < 1e-5 and peft_merged_diff < 1e-4
Markdown("| | ours (`companion.lora`) | `peft` |\n|---|---|---|\n"
         f"| trainable parameters, r = 8, all linears | {sweep[8]['params']:,} | {peft_trainable:,} |\n"
         f"| max \\|logit difference\\|, same adapter weights | {peft_diff:.1e} | |\n"
         f"| max \\|logit difference\\| after merging | {peft_merged_diff:.1e} | |\n"
         f"| training steps per second (forward, backward, AdamW) | {1 / t_ours:.1f} | {1 / t_peft:.1f} |")

# %% [markdown]
# The two agree on the count ({glue:text}`ours_trainable:,` trainable parameters each), on the
# logits to {glue:text}`peft_diff:.1e` with the same adapter, and after merging to
# {glue:text}`peft_merged_diff:.1e`. Ours runs a training step at {glue:text}`peft_speed_ratio:.2f`×
# peft's speed; peft's layer spends its extra time on bookkeeping for multiple adapters, dtype casts
# and variants such as DoRA. `tests/unit/test_lora.py` checks the rest against peft: gradients,
# rsLoRA's scaling, dropout in training mode under a shared seed, and the merged weights themselves.
#
# ## 7. QLoRA: the same adapters over a 4-bit base
#
# QLoRA {cite}`dettmers2023qlora` stores the frozen $W_0$ in **NF4** — 16 levels at quantiles of a
# normal distribution, one absmax per block of 64 weights, the absmax constants themselves quantized
# to 8 bits (*double quantization*) — 4.127 bits per weight instead of 16, and dequantizes each block
# on the fly in the forward pass. Gradients flow through the dequantized weights into the
# full-precision adapters; the base is never updated, so its rounding error is fixed, and the adapter
# can learn to compensate for it. (The third ingredient, *paged optimizers*, moves optimizer state
# between GPU and CPU memory under pressure; it changes no numbers.) `add_lora(..., quantize="nf4-dq")`
# wraps each target in a `QLoRALinear` over `companion.quant`'s NF4 — the same one the quantization
# chapter checks against QLoRA's table:

# %%
qmodel = copy.deepcopy(base)
lora.add_lora(qmodel, 8, 16, ALL, quantize="nf4-dq")
q_start_new, q_start_orig = losses(qmodel)
q_history = finetune(qmodel, LR_LORA)
q_new, q_orig = losses(qmodel)
linear_fp32 = sum(m.weight.numel() * 4 for n, m in base.named_modules() if n.endswith(ALL))
linear_nf4 = sum(layer.base.qweight.nbytes() for _, layer in lora.lora_layers(qmodel))
glue("q_start_new", q_start_new)
glue("q_start_gap", q_start_orig - base_orig)
glue("q_new", q_new)
glue("q_gap", q_new - sweep[8]["new"])
glue("q_bits", 8 * linear_nf4 / (linear_fp32 / 4))
glue("q_bytes_ratio", linear_fp32 / linear_nf4)
print(f"NF4 base: {8 * linear_nf4 / (linear_fp32 / 4):.3f} bits per weight of the adapted layers; loss before "
      f"fine-tuning {q_start_new:.3f} (fp32 base {base_new:.3f}); after {steps} steps QLoRA {q_new:.3f}, "
      f"LoRA on the fp32 base {sweep[8]['new']:.3f}")
assert abs(q_new - sweep[8]["new"]) < 0.1 * (base_new - sweep[8]["new"]) + 0.02, "QLoRA trains as well as LoRA"
assert q_new < base_new - 0.2

fig = go.Figure()
for h, name, color in ((sweep[8]["history"], "LoRA r = 8, fp32 base", viz.PALETTE[0]),
                       (q_history, "QLoRA r = 8, NF4 base (double quant)", viz.PALETTE[1]),
                       (full_history, "full fine-tuning", "black")):
    fig.add_scatter(x=h.step, y=h.train_loss, mode="lines", name=name, line=dict(color=color))
fig.update_layout(title="QLoRA against LoRA against full fine-tuning: training loss", height=380,
                  xaxis_title="step", yaxis_title="nats / token")
fig

# %% [markdown]
# The NF4 base stores the adapted layers in {glue:text}`q_bits:.2f` bits per weight
# ({glue:text}`q_bytes_ratio:.1f`× fewer bytes than fp32; the 4.127 of the paper is the limit for
# large tensors). Quantization moves the starting loss on the original data by
# {glue:text}`q_start_gap:+.3f` nats, and after fine-tuning QLoRA ends at {glue:text}`q_new:.3f`
# against {glue:text}`r8_new:.3f` for LoRA on the fp32 base — a difference of
# {glue:text}`q_gap:+.3f`. The seeds' "no quality loss" from on-the-fly dequantization is, here,
# "no loss worth measuring"; the QLoRA paper reports the same at 7B–65B against 16-bit LoRA and full
# fine-tuning. (Dequantizing every weight on every step costs CPU time here; on a GPU the fused
# kernels of bitsandbytes do it in registers.)
#
# ## 8. The memory table: full fine-tuning, LoRA, QLoRA
#
# `lora.finetune_memory` adds up what a fine-tune holds besides activations, with stated
# assumptions. **Full fine-tuning** in mixed precision with Adam: bf16 weights and gradients
# (2 + 2 bytes), an fp32 master copy (4) and two fp32 moments (4 + 4) — the 16 bytes per parameter of
# ZeRO's accounting {cite}`rajbhandari2020zero`. **LoRA**: the base frozen in bf16 (2 bytes, no
# gradient), adapters in fp32 with fp32 gradients and moments (16 bytes per adapter parameter).
# **QLoRA**: the same, with the blocks' projection matrices in NF4 with double quantization
# (4.127 bits); embeddings and norms stay bf16. Adapters: r = 16 on all seven projections.
# Activations come on top and depend on batch, sequence length and checkpointing.
#
# First, does the calculator predict what PyTorch actually allocates? AdamW's state after one step,
# read from the optimizer, against `adamw_state_bytes` (two moments per parameter plus a 4-byte step
# counter per tensor):

# %%
measured = {}
for name in ("LoRA r = 8", "full"):
    m = copy.deepcopy(base)
    if name != "full":
        lora.add_lora(m, 8, 16, ALL)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    lm.lm_loss(m.train(), x, y).backward()
    opt.step()
    measured[name] = (lora.optimizer_state_bytes(opt), lora.adamw_state_bytes(params), sum(p.numel() for p in params))
    assert measured[name][0] == measured[name][1], "the calculator predicts AdamW's bytes exactly"
glue("opt_bytes_ratio", measured["full"][0] / measured["LoRA r = 8"][0])
Markdown("| fine-tuning | trainable | AdamW state, measured | predicted |\n|---|---|---|---|\n" + "\n".join(
    f"| {k} | {n:,} | {a:,} B | {b:,} B |" for k, (a, b, n) in measured.items()))

# %%
models = ["7B", "13B", "65B", "70B"]
table = {(name, method): lora.llama_finetune_memory(name, method, r=16) for name in models for method in lora.METHODS}
q65_r64 = lora.llama_finetune_memory("65B", "qlora", r=64)
parts = ("weights", "gradients", "adapters", "optimizer")
fig = go.Figure()
for j, method in enumerate(lora.METHODS):
    mems = [table[name, method] for name in models]
    fig.add_bar(name={"full": "full fine-tuning", "lora": "LoRA, bf16 base", "qlora": "QLoRA, NF4 base"}[method],
                x=models, y=[m.total / 1e9 for m in mems], marker_color=viz.PALETTE[j],
                text=[f"{m.total / 1e9:,.0f}" for m in mems], textposition="outside",
                customdata=[[getattr(m, part) / 1e9 for part in parts] for m in mems],
                hovertemplate="%{x}: %{y:,.1f} GB<br>" + "<br>".join(
                    f"{part} %{{customdata[{i}]:,.2f}} GB" for i, part in enumerate(parts)) + "<extra></extra>")
for gb, label in ((24, "24 GB (RTX 4090)"), (48, "48 GB (A6000)"), (80, "80 GB (A100/H100)")):
    fig.add_hline(y=gb, line=dict(dash="dot", color="gray"), annotation_text=label, annotation_position="top left")
fig.update_layout(barmode="group", yaxis=dict(type="log", title="GB (10⁹ bytes), log scale"), height=480,
                  title="Fine-tuning memory without activations (hover for the parts): adapters r = 16 on all projections",
                  legend=dict(orientation="h", y=-0.25))
fig

# %%
for name in models:
    for method in lora.METHODS:
        glue(f"mem_{name.lower()}_{method}", table[name, method].total / 1e9)
glue("mem_65b_qlora_r64", q65_r64.total / 1e9)
glue("mem_65b_qlora_r64_weights", q65_r64.weights / 1e9)
glue("mem_65b_headroom", 48 - q65_r64.total / 1e9)
glue("mem_65b_full_12", 12 * lora.LLAMA["65B"].n_params() / 1e9)
glue("mem_7b_ratio_full_lora", table["7B", "full"].total / table["7B", "lora"].total)
glue("mem_7b_opt_ratio", table["7B", "full"].optimizer / table["7B", "lora"].optimizer)
glue("mem_70b_adam_fp32", 8 * lora.LLAMA["70B"].n_params() / 1e9)
assert q65_r64.total < 48e9 < table["65B", "lora"].total, "QLoRA's headline: 65B on one 48 GB GPU"
assert table["70B", "qlora"].total < 80e9 and table["7B", "lora"].total < 80e9
Markdown("| model | full fine-tuning | LoRA (bf16 base) | QLoRA (NF4 base) |\n|---|---|---|---|\n" + "\n".join(
    f"| {name} ({lora.LLAMA[name].n_params() / 1e9:.1f}B params) | " + " | ".join(
        f"{table[name, m].total / 1e9:,.1f} GB" for m in lora.METHODS) + " |" for name in models))

# %% [markdown]
# Read the table against the seeds' claims:
#
# - **"QLoRA fine-tunes a 65B model on one 48 GB GPU"** (the QLoRA paper's headline). With the
#   paper's setting, r = 64 on all linear layers, the calculator gives
#   {glue:text}`mem_65b_qlora_r64:.1f` GB, of which {glue:text}`mem_65b_qlora_r64_weights:.1f` GB is
#   the NF4 base — **✔**, but with only {glue:text}`mem_65b_headroom:.1f` GB to spare under these
#   assumptions. The paper makes the rest of the room: bf16 adapters (12 bytes per adapter parameter
#   instead of 16), gradient checkpointing for the activations, and paged optimizers for the spikes. The same model with a bf16 base (LoRA, r = 16) needs
#   {glue:text}`mem_65b_lora:.0f` GB, and full fine-tuning {glue:text}`mem_65b_full:,.0f` GB — the
#   paper's "> 780 GB" is 12 bytes per parameter ({glue:text}`mem_65b_full_12:.0f` GB), i.e. without
#   the fp32 master copy.
# - **"QLoRA lets you fine-tune 70B on one A100 80 GB"**: {glue:text}`mem_70b_qlora:.1f` GB — **✔**.
# - **"LoRA on 7B needs 2× A100 80 GB with full precision"**: a bf16 base plus adapters is
#   {glue:text}`mem_7b_lora:.1f` GB — one GPU, even a 24 GB one with modest activations — **✘**.
# - **"LoRA: ~100× less memory"**: for a 7B model the total falls from {glue:text}`mem_7b_full:.0f`
#   to {glue:text}`mem_7b_lora:.1f` GB, {glue:text}`mem_7b_ratio_full_lora:.1f`× — the frozen bf16
#   weights dominate. The optimizer state does shrink by {glue:text}`mem_7b_opt_ratio:.0f`×
#   (measured on the MiniGPT above: {glue:text}`opt_bytes_ratio:.0f`×). "100×" is true of trainable
#   parameters and optimizer state, **✘** of memory.
# - **"A 70B model needs ~140 GB for weights, ~280 GB for fp32 AdamW state"**: 140 GB of bf16 weights
#   ✔, but two fp32 moments are 8 bytes per parameter, {glue:text}`mem_70b_adam_fp32:.0f` GB, plus
#   an fp32 master copy in mixed precision — **✘** (the seeds themselves also say 560 GB and 840 GB).
#
# :::{admonition} Interview angle: "how does QLoRA fit a 65B model on one GPU?"
# :class: tip
# Do the arithmetic out loud. Full fine-tuning: 16 bytes per parameter (bf16 weights and gradients,
# fp32 master and two Adam moments) — {glue:text}`mem_65b_full:,.0f` GB for 65B. LoRA removes
# gradients and optimizer state for the frozen weights, leaving 2 bytes per parameter —
# {glue:text}`mem_65b_lora:.0f` GB, still too much. QLoRA stores the frozen weights in NF4 with double
# quantization, ≈ 0.52 bytes per parameter — {glue:text}`mem_65b_qlora_r64_weights:.0f` GB — and
# trains bf16/fp32 adapters (≈ 1% of the parameters) on top; gradient checkpointing keeps activations
# small and paged optimizers absorb the spikes. Quality holds because the base is only read, never
# updated, and the adapter can compensate for its rounding.
# :::
#
# ## 9. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** How many trainable parameters does LoRA with r = 8 add to one 4096 × 11008 MLP matrix?

# %%
answer_1 = ...
check(answer_1, lora.lora_parameter_count([(11008, 4096)], 8))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $r(d_\text{in} + d_\text{out}) = 8 \times (4096 + 11008) = 120{,}832$, against 45,088,768 for the
# full matrix (373× fewer).
# :::
#
# **2.** A LoRA layer has r = 16 and α = 32. What is the factor on $BA$ — and what is it with
# rsLoRA?  Give the rsLoRA factor.

# %%
answer_2 = ...
check(answer_2, lora.lora_scaling(16, 32, rslora=True))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# Plain LoRA: α / r = 2. rsLoRA: α / √r = 32 / 4 = 8. With rsLoRA, raising r from 16 to 64 halves
# the factor instead of quartering it, so a larger rank does not learn more slowly.
# :::
#
# **3.** Using this chapter's calculator assumptions, how many GB (10⁹ bytes) does full
# fine-tuning of a 1B-parameter model with mixed-precision AdamW hold, activations excluded?

# %%
answer_3 = ...
check(answer_3, lora.finetune_memory(1e9, "full").total / 1e9)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# 16 GB: 2 (bf16 weights) + 2 (bf16 gradients) + 4 (fp32 master) + 4 + 4 (Adam's two fp32 moments)
# = 16 bytes per parameter.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(120_832, lora.lora_parameter_count([(11008, 4096)], 8))
assert check(8.0, lora.lora_scaling(16, 32, rslora=True))
assert check(16.0, lora.finetune_memory(1e9, "full").total / 1e9)

# %% [markdown]
# ## Summary
#
# - A fine-tuning update is far from random: its top few singular directions hold most of its
#   energy. LoRA trains exactly such an update, $\frac{\alpha}{r}BA$, beside a frozen $W_0$, with $B$
#   at zero so training starts at the pretrained model.
# - It trains $r(d_\text{in}+d_\text{out})$ numbers per matrix: 128× fewer for r = 16 on 4096²,
#   0.52% of Llama-3-8B on all projections. Small ranks already recover most of full fine-tuning's
#   gain on a new format, and LoRA forgets less of the original data.
# - It saves gradient and optimizer memory and storage, not compute: a step still costs about two
#   thirds of a full one. Merged, an adapter costs nothing at inference — the base model's FLOPs
#   exactly; unmerged, it costs extra launches per layer.
# - Our implementation matches `peft` to 1e-6 in counts, outputs and merges, at the same speed.
# - QLoRA puts the frozen base in NF4 with double quantization (≈ 4.1 bits) and trains as well;
#   that is what brings 65B fine-tuning under 48 GB and 70B under 80 GB.

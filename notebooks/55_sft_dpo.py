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
# # SFT and preference optimization
#
# A pretrained model continues text; the model behind a product answers questions, in a format,
# with a tone someone chose. Two stages of post-training get from one to the other. **Supervised
# fine-tuning (SFT)** trains on (prompt, answer) pairs with the loss on the answer only, and
# **preference optimization** — RLHF with a reward model and PPO, or DPO without either — moves
# the model towards answers people preferred. Every team that ships a model runs both, usually
# with LoRA, and pays for them in compute and in what the model forgets. Interviews ask about them
# in detail: "why mask the prompt", "what is packing", "derive DPO", "DPO or PPO", "what does β
# do", "what is the alignment tax". This chapter runs the whole pipeline on the book's MiniGPT with
# an instruction set built from the Python documentation and a preference with a known answer, and
# measures each of those claims.
#
# **You will learn**
# - how an SFT example becomes ids and labels, why the prompt's labels are −100, and what packing
#   does to them — checked against cross-entropy by hand;
# - what the model learns with and without prompt masking, measured on held-out answers;
# - full fine-tuning against LoRA at several ranks: validation loss against trainable parameters;
# - the Bradley–Terry reward model and its accuracy on held-out preference pairs;
# - DPO as code — the loss, implicit rewards, log 2 at initialization — checked against trl;
# - what DPO changes in sampled answers, how far it moves from the reference (KL), and what β does;
# - the alignment tax: what SFT and DPO cost on the pretraining distribution.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/55_sft_dpo.ipynb)
# · Runtime budget on 2 CPU cores: under 60 s with `SMOKE=True` (including training the small
# model the first time), under 5 minutes in full mode once the book's model is cached.

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

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import Code, Markdown
from plotly.subplots import make_subplots

from companion import dpo, lm, lora, sft, viz
from companion.book import check, glue
from companion.config import pick, seed_everything
from companion.decoding import SamplingConfig

seed_everything(0)
torch.set_num_threads(1)  # matrices this small finish faster on one core, and the machine is shared
pre = lm.pretrained(SMOKE)  # the book's MiniGPT: loaded from the cache, or trained from its seed once
base, tok = pre.model, pre.tokenizer
BLOCK = base.cfg.block_size
EVAL_TOKENS = pick(SMOKE, 4096, 8192)
glue("n_params", base.n_params())
glue("block", BLOCK)
print(f"SMOKE={SMOKE}: MiniGPT with {base.n_params():,} parameters, context {BLOCK} tokens")

# %% [markdown]
# ## 1. An instruction set from the Python documentation
#
# SFT needs (prompt, answer) pairs. `companion.sft.instruction_set` builds them offline from the
# Python reference that ships with every Python install, with three kinds of question: what a
# documented method does (answered by the first sentence of its entry), what a section of the
# reference says (its first prose sentence), and the grammar rule of a non-terminal. The template is
# fixed — `Q: …↵A:` then the answer and a newline, which is where generation stops. The split is by
# **documentation topic**, so every validation question comes from a topic the model never saw
# answered: a test of the format and of generalization, not of memory.

# %%
train_ex, val_ex = sft.instruction_set()
SO_LEN = len(tok.encode_ordinary(dpo.SIGN_OFF))  # room for the sign-off of section 5
train_rows = sft.encode_all(tok, train_ex, BLOCK - SO_LEN)
val_rows = sft.encode_all(tok, val_ex, BLOCK - SO_LEN)
glue("n_pairs_train", len(train_ex))
glue("n_pairs_val", len(val_ex))
glue("n_topics_val", len({e.topic for e in val_ex}))
glue("n_fit_train", len(train_rows))
glue("n_fit_val", len(val_rows))
fits = [e for e in train_ex if len(sft.encode_example(tok, e)[0]) <= BLOCK - SO_LEN]
show = [next(e for e in fits if e.kind == k) for k in ("method", "section", "grammar")]
Markdown("| kind | prompt | answer |\n|---|---|---|\n" + "\n".join(
    f"| {e.kind} | `{e.prompt.replace(chr(10), '↵')}` | `{e.answer.replace(chr(10), '↵').replace('|', '¦')}` |"
    for e in show))

# %% [markdown]
# There are {glue:text}`n_pairs_train` training and {glue:text}`n_pairs_val` validation pairs
# ({glue:text}`n_topics_val` held-out topics); {glue:text}`n_fit_train` and {glue:text}`n_fit_val`
# of them fit the model's {glue:text}`block`-token context with room for a sign-off, and those are
# the ones used. Small — real SFT sets hold 10⁴–10⁶ pairs — but the mechanics are the same.
#
# ## 2. Prompt masking and packing
#
# An example becomes token ids and labels exactly as in pretraining — `labels[t]` is the token
# that position `t` must predict, `ids[t + 1]` — except that every label whose token belongs to
# the prompt is set to **−100**, PyTorch's `ignore_index`: those positions drop out of the mean.

# %%
Code(inspect.getsource(sft.example_tokens), language="python")

# %%
ids_ex, labels_ex = sft.encode_example(tok, show[0])
n_prompt = len(tok.encode_ordinary(show[0].prompt))
x, y = sft.pad([(ids_ex, labels_ex)], len(ids_ex))
logits = base(x).float()
loss_masked = sft.sft_loss(base, x, y).item()
by_hand = -torch.log_softmax(logits[0], -1)[torch.arange(len(ids_ex) - 1), torch.tensor(ids_ex[1:])][n_prompt - 1:].mean()
assert abs(loss_masked - by_hand.item()) < 1e-5, "the masked loss is the mean NLL of the answer tokens only"
assert labels_ex[: n_prompt - 1] == [-100] * (n_prompt - 1) and labels_ex[n_prompt - 1] == ids_ex[n_prompt]
glue("ex_prompt_tokens", n_prompt)
glue("ex_answer_tokens", len(ids_ex) - n_prompt)
print(f"{n_prompt} prompt tokens, {len(ids_ex) - n_prompt} answer tokens; the loss over the answer tokens only: "
      f"{loss_masked:.4f} nats, by hand {by_hand.item():.4f}")

# %% [markdown]
# **Packing.** Padding every example to the context wastes compute on pad tokens. Packing
# concatenates examples into rows of the full context. Because each example's labels were shifted
# *inside* the example, the last token of one example never learns to predict the first token of
# the next, and every answer token is a target exactly once (the unit tests check both on random
# examples). An example never straddles two rows here. Attention is **not** isolated: a packed
# example can attend to the ones before it in its row, as in plain concatenation packing;
# isolating them takes a block-diagonal mask or variable-length attention kernels. The figure shows
# the first packed rows: prompt tokens (no loss), answer tokens (loss), padding.

# %%
pack_ids, pack_labels = sft.pack(train_rows, BLOCK)
pad_ids, pad_labels = sft.pad(train_rows, BLOCK)
real = sum(len(r[0]) for r in train_rows)
pad_share_padded = 1 - real / pad_ids.numel()
pad_share_packed = 1 - real / pack_ids.numel()
assert int((pack_labels != -100).sum()) == int((pad_labels != -100).sum()), "same answer tokens either way"
glue("rows_padded", len(pad_ids))
glue("rows_packed", len(pack_ids))
glue("pad_share_padded", pad_share_padded)
glue("pad_share_packed", pad_share_packed)

n_show = 6
is_real, _ = sft.pack([([1] * len(i), l) for i, l in train_rows], BLOCK)  # 1 on every real token, 0 on padding
role = np.where((pack_labels[:n_show] != -100).numpy(), 2, is_real[:n_show].numpy())  # 0 pad, 1 prompt, 2 answer
fig = go.Figure(go.Heatmap(z=role, colorscale=[[0, "#eeeeee"], [0.33, "#eeeeee"], [0.34, viz.PALETTE[0]],
                                               [0.66, viz.PALETTE[0]], [0.67, viz.PALETTE[2]], [1, viz.PALETTE[2]]],
                           showscale=False, hovertemplate="row %{y}, position %{x}<extra></extra>"))
for name, color in (("prompt (label −100)", viz.PALETTE[0]), ("answer (in the loss)", viz.PALETTE[2]),
                    ("padding (label −100)", "#cccccc")):
    fig.add_scatter(x=[None], y=[None], mode="markers", marker=dict(size=12, color=color, symbol="square"), name=name)
fig.update_layout(title=f"Packed rows of {BLOCK} tokens: {len(pack_ids)} rows instead of {len(pad_ids)} padded ones",
                  xaxis_title="position", yaxis_title="row", height=300, legend=dict(orientation="h", y=-0.35))
fig

# %% [markdown]
# Padded one per row, the {glue:text}`n_fit_train` training examples take {glue:text}`rows_padded`
# rows, {glue:text}`pad_share_padded:.0%` of them padding; packed, {glue:text}`rows_packed` rows
# with {glue:text}`pad_share_packed:.0%` padding — the same answer tokens in the loss. (Packing
# pays when examples are short against the context; an example longer than half of it leaves a
# row to itself.)
#
# ## 3. What prompt masking changes
#
# Train the same model twice for the same steps, once with the prompt masked and once with the loss
# on every token, and evaluate both on the held-out pairs, separately on the answer tokens and on the
# prompt tokens.

# %%
SFT_STEPS = pick(SMOKE, 20, 40)
sft_cfg = sft.SFTConfig(steps=SFT_STEPS, batch_size=8, peak_lr=pick(SMOKE, 1e-3, 5e-4), warmup_steps=3,
                        eval_every=10)
val_ids, val_labels = sft.pad(val_rows, BLOCK)
val_full = sft.encode_all(tok, val_ex, BLOCK - SO_LEN, mask_prompt=False)
_, val_all_labels = sft.pad(val_full, BLOCK)
val_prompt_labels = torch.where(val_labels == -100, val_all_labels, -100)  # the prompt's own next tokens


def answer_and_prompt_loss(model) -> tuple[float, float]:
    return sft.masked_loss(model, val_ids, val_labels), sft.masked_loss(model, val_ids, val_prompt_labels)


masked_model = copy.deepcopy(base)
hist_full = sft.train_sft(masked_model, pack_ids, pack_labels, sft_cfg, val=(val_ids, val_labels))
unmasked_model = copy.deepcopy(base)
unmasked_rows = sft.encode_all(tok, train_ex, BLOCK - SO_LEN, mask_prompt=False)
sft.train_sft(unmasked_model, *sft.pack(unmasked_rows, BLOCK), sft_cfg)
mask_table = {name: answer_and_prompt_loss(m) for name, m in
              (("pretrained", base), ("SFT, prompt masked", masked_model), ("SFT, no masking", unmasked_model))}
for name, (a, p) in mask_table.items():
    key = {"pretrained": "pre", "SFT, prompt masked": "masked", "SFT, no masking": "unmasked"}[name]
    glue(f"ans_{key}", a)
    glue(f"prm_{key}", p)
fig = go.Figure()
for i, (what, col) in enumerate((("answer tokens", 0), ("prompt tokens", 1))):
    fig.add_bar(x=list(mask_table), y=[v[col] for v in mask_table.values()], name=what, marker_color=viz.PALETTE[i],
                text=[f"{v[col]:.2f}" for v in mask_table.values()], textposition="outside")
fig.update_layout(barmode="group", title="Held-out loss (nats/token) on answers and on prompts",
                  yaxis_title="nats / token", height=380)
fig

# %%
(a_pre, p_pre), (a_m, p_m), (a_u, p_u) = mask_table.values()
assert a_m < a_pre and a_u < a_pre, "both fine-tuned models answer better than the pretrained one"
assert p_u < p_m, "only the unmasked model learns to predict the prompts"
glue("prompt_gap", p_m - p_u)
glue("answer_gap", a_u - a_m);

# %% [markdown]
# Both fine-tuned models answer held-out questions better than the pretrained model (answer loss
# {glue:text}`ans_pre:.2f` → {glue:text}`ans_masked:.2f` masked, {glue:text}`ans_unmasked:.2f`
# unmasked). The difference is where the unmasked model's capacity went: it also learned to write
# the *questions* (prompt loss {glue:text}`prm_unmasked:.2f` against {glue:text}`prm_masked:.2f`) — the
# template `Q: What does … do?` is easy to predict, so a share of its gradient went to text it
# will never be asked to write. With masking every gradient step is spent on answers; the answer
# loss of the unmasked model differs by {glue:text}`answer_gap:+.3f` nats. On a dataset with long
# prompts (retrieved documents, long system prompts, multi-turn history) the prompt tokens outnumber
# the answer tokens many times and the unmasked loss is dominated by them; masking also keeps the
# model from learning to imitate users, and it is the default in trl's SFT trainer for
# prompt–completion data.
#
# ## 4. Full fine-tuning against LoRA
#
# LoRA (`companion.lora`, its own chapter) freezes the model and learns a low-rank update
# $\Delta W = \tfrac{\alpha}{r} BA$ on each adapted matrix {cite}`hu2022lora`. Here it adapts every
# linear layer (attention q, k, v, out and both MLP matrices) at ranks 1, 4 and 16, with
# α = 2r and a learning rate 6× that of full fine-tuning (LoRA's usual range is about 10× the full
# fine-tuning rate), for the same steps on the same packed rows.

# %%
RANKS = (1, 4, 16)
TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc", "proj")
curves = {"full fine-tuning": (hist_full, sft.trainable_count(masked_model))}
lora_models = {}
for r in RANKS:
    m = copy.deepcopy(base)
    lora.add_lora(m, r=r, alpha=2 * r, targets=TARGETS)
    cfg_r = sft.SFTConfig(**{**sft_cfg.__dict__, "peak_lr": 6 * sft_cfg.peak_lr})
    curves[f"LoRA r = {r}"] = (sft.train_sft(m, pack_ids, pack_labels, cfg_r, val=(val_ids, val_labels)),
                               lora.trainable_parameters(m))
    lora_models[r] = m

fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.12,
                    subplot_titles=("held-out answer loss during SFT", "final loss against trainable parameters"))
for color, (name, (h, n)) in zip(viz.PALETTE, curves.items()):
    fig.add_scatter(x=h.eval_step, y=h.val_loss, mode="lines+markers", name=name, line=dict(color=color),
                    legendgroup=name, row=1, col=1)
    fig.add_scatter(x=[n], y=[h.val_loss[-1]], mode="markers+text", text=[name], textposition="top center",
                    marker=dict(size=12, color=color), legendgroup=name, showlegend=False, row=1, col=2)
fig.update_xaxes(title_text="step", row=1, col=1)
fig.update_xaxes(title_text="trainable parameters", type="log", row=1, col=2)
fig.update_yaxes(title_text="nats / token", row=1, col=1)
fig.update_layout(height=430, legend=dict(orientation="h", y=-0.2), title="SFT: full fine-tuning against LoRA")
fig

# %%
final = {name: h.val_loss[-1] for name, (h, _) in curves.items()}
params = {name: n for name, (_, n) in curves.items()}
for name in curves:
    key = "full" if name.startswith("full") else "r" + name.split("= ")[1]
    glue(f"sft_loss_{key}", final[name])
    glue(f"sft_params_{key}", params[name])
    glue(f"sft_share_{key}", params[name] / base.n_params())
start_loss = hist_full.val_loss[0]
for r in RANKS:
    glue(f"lora_gain_r{r}", (start_loss - final[f"LoRA r = {r}"]) / (start_loss - final["full fine-tuning"]))
best_lora = min((n for n in final if n.startswith("LoRA")), key=final.get)
glue("best_lora", best_lora)
glue("sft_steps", SFT_STEPS)
assert all(h.val_loss[-1] < h.val_loss[0] for h, _ in curves.values()), "every run improves the held-out answers"
assert params["LoRA r = 1"] < params["LoRA r = 4"] < params["LoRA r = 16"] < params["full fine-tuning"]
assert params["LoRA r = 16"] < 0.5 * params["full fine-tuning"]

# %% [markdown]
# After {glue:text}`sft_steps` steps the held-out answer loss is {glue:text}`sft_loss_full:.3f`
# with full fine-tuning ({glue:text}`sft_params_full:,` trainable parameters), and
# {glue:text}`sft_loss_r1:.3f`, {glue:text}`sft_loss_r4:.3f` and {glue:text}`sft_loss_r16:.3f` with
# LoRA at ranks 1, 4 and 16 ({glue:text}`sft_params_r1:,`, {glue:text}`sft_params_r4:,` and
# {glue:text}`sft_params_r16:,` parameters: {glue:text}`sft_share_r1:.1%` to
# {glue:text}`sft_share_r16:.1%` of the model). The best LoRA run is {glue:text}`best_lora`. What
# SFT teaches here — a format, a register, where to stop — is a small change to the weights, which
# is the observation behind LoRA: rank 16 gets {glue:text}`lora_gain_r16:.0%` of full fine-tuning's
# improvement in held-out answer loss, rank 1 {glue:text}`lora_gain_r1:.0%`, with
# {glue:text}`sft_share_r1:.1%` of the trainable parameters. (LoRA's saving is in optimizer state and gradients, not in
# compute: the backward pass still runs through every frozen layer.)
#
# ### Before and after, on held-out questions
#
# Greedy answers of the pretrained model and of the fine-tuned one (full fine-tuning) to questions
# from topics outside the training set, cut at the first newline:

# %%
N_NEW = pick(SMOKE, 24, 32)
probe = [e for e in val_ex if len(tok.encode_ordinary(e.prompt)) + N_NEW <= BLOCK]
probe = [next(e for e in probe if e.kind == k) for k in ("method", "section", "grammar")] + \
        [e for e in probe if e.kind == "grammar"][1:2]
greedy = SamplingConfig(greedy=True)
before = sft.sample_answers(base, tok, [e.prompt for e in probe], N_NEW, greedy)
after = sft.sample_answers(masked_model, tok, [e.prompt for e in probe], N_NEW, greedy)


def cell(text: str) -> str:
    return "`" + text.replace("\n", "↵").replace("|", "¦").replace("`", "'") + "`"


Markdown("| question | reference answer | pretrained | after SFT |\n|---|---|---|---|\n" + "\n".join(
    f"| {cell(e.prompt.split(chr(10))[0][3:])} | {cell(e.answer.strip())} | {cell(b[0])} | {cell(a[0])} |"
    for e, b, a in zip(probe, before, after)))

# %%
ends_sft = np.mean([a[0].endswith("\n") for a in after])
ends_pre = np.mean([b[0].endswith("\n") for b in before])
glue("stop_rate_pre", ends_pre)
glue("stop_rate_sft", ends_sft)
glue("n_new", N_NEW)
print(f"answers that end with a newline within {N_NEW} tokens: pretrained {ends_pre:.0%}, after SFT {ends_sft:.0%}")

# %% [markdown]
# A model of {glue:text}`n_params:,` parameters does not learn the Python reference in a few dozen
# steps; what SFT visibly teaches it is the *register* of an answer — a grammar rule written as
# `name ::= …` when asked for one, a sentence in the documentation's voice when asked about a topic.
# Within {glue:text}`n_new` new tokens, {glue:text}`stop_rate_pre:.0%` of the pretrained model's
# answers and {glue:text}`stop_rate_sft:.0%` of the fine-tuned model's reach a newline.
#
# ## 5. Preferences: a reward model, and DPO
#
# The preference data has a known ground truth so that its effect can be measured exactly: for
# every training question, the **chosen** answer is the reference answer followed by the sign-off
# `" Hope this helps."`, the **rejected** one is the same answer without it. Nothing else differs,
# so the rate of signed-off answers in samples measures what preference training did.
#
# **The reward model.** The Bradley–Terry model {cite}`bradley1952rank` says
# $P(y_w \succ y_l \mid x) = \sigma(r(x, y_w) - r(x, y_l))$; RLHF fits $r$ by minimizing
# $-\log\sigma(r_w - r_l)$ {cite}`christiano2017deep,ouyang2022training`. `dpo.RewardModel` is a copy of
# the SFT model whose final hidden state at the answer's last token feeds a new scalar head.

# %%
train_pairs = dpo.encode_preferences(tok, dpo.sign_off_pairs(train_ex), BLOCK)
val_pairs = dpo.encode_preferences(tok, dpo.sign_off_pairs(val_ex), BLOCK)
PREF_STEPS = pick(SMOKE, 15, 30)
rm = dpo.RewardModel(masked_model)
rm_hist = dpo.train_reward_model(rm, train_pairs, dpo.PrefConfig(steps=PREF_STEPS, batch_size=8, peak_lr=1e-3))
rm_acc = dpo.reward_accuracy(rm, val_pairs)
glue("rm_acc", rm_acc)
glue("n_val_pairs", len(val_pairs))
glue("rm_loss_end", rm_hist.loss[-1])
assert abs(rm_hist.loss[0] - math.log(2)) < 1e-6, "a zero head: every pair a coin flip, loss log 2"
assert rm_acc >= 0.9, "the sign-off is an easy preference to learn"
print(f"reward model: Bradley–Terry loss {rm_hist.loss[0]:.3f} → {rm_hist.loss[-1]:.4f}; "
      f"held-out pair accuracy {rm_acc:.0%} on {len(val_pairs)} pairs")

# %% [markdown]
# The reward model starts at loss log 2 = 0.693 (its head is zero, every pair a coin flip) and ranks
# {glue:text}`rm_acc:.0%` of the {glue:text}`n_val_pairs` held-out pairs correctly. In RLHF this
# model would now score samples from the policy inside a PPO loop {cite}`schulman2017proximal`, with
# a KL penalty keeping the policy near the SFT model.
#
# **DPO** {cite}`rafailov2023direct` removes that loop. The KL-regularized objective has the closed
# form optimum $\pi^*(y|x) \propto \pi_{\text{ref}}(y|x)\,e^{r(x,y)/\beta}$; solved for $r$ it gives
# $r(x,y) = \beta \log \frac{\pi(y|x)}{\pi_{\text{ref}}(y|x)} + \beta\log Z(x)$, and $Z(x)$ cancels
# in the Bradley–Terry difference. The policy is trained directly with
#
# $$\mathcal{L}_{\text{DPO}} = -\log\sigma\Big(\beta\big[(\log\pi(y_w) - \log\pi_{\text{ref}}(y_w)) - (\log\pi(y_l) - \log\pi_{\text{ref}}(y_l))\big]\Big),$$
#
# where each $\log\pi(y)$ sums the log-probabilities of the answer's tokens only (the prompt is
# masked as in SFT). The bracket times β is the difference of **implicit rewards**. The unit tests
# check this function against the direct formula, log 2 and the gradient's sign at initialization,
# and against `trl`'s `DPOTrainer` loss on the same model and pairs (equal within 10⁻⁶).

# %%
Code(inspect.getsource(dpo.dpo_loss), language="python")

# %%
BETA = 0.1
kl_rows = (val_ids[:32], val_labels[:32])
policy = copy.deepcopy(masked_model)
pref_cfg = dpo.PrefConfig(steps=PREF_STEPS, batch_size=8, peak_lr=pick(SMOKE, 1e-3, 1e-4), beta=BETA, eval_every=5)
dpo_hist = dpo.train_dpo(policy, masked_model, train_pairs, pref_cfg, kl_rows=kl_rows)
assert abs(dpo_hist.loss[0] - math.log(2)) < 1e-6, "policy = reference at the start: the loss is log 2"

so_rows = [sft.example_tokens(tok.encode_ordinary(e.prompt + e.answer.rstrip("\n")), tok.encode_ordinary(dpo.SIGN_OFF))
           for e in val_ex]
so_ids, so_labels = sft.pad([r for r in so_rows if len(r[0]) <= BLOCK], BLOCK)
prompts_rate = [e.prompt for e in val_ex if len(tok.encode_ordinary(e.prompt)) + N_NEW <= BLOCK][: pick(SMOKE, 16, 24)]


@torch.no_grad()
def behaviour(model) -> dict:
    """Sign-off probability after the reference answer (exact), and greedy answers' sign-off rate and length."""
    answers = [a[0] for a in sft.sample_answers(model, tok, prompts_rate, N_NEW, greedy)]
    return dict(p_sign_off=dpo.sequence_logprob(model, so_ids, so_labels).exp().mean().item(),
                rate=float(np.mean([a.rstrip("\n").endswith(dpo.SIGN_OFF.strip()) for a in answers])),
                length=float(np.mean([len(tok.encode_ordinary(a)) for a in answers])))


def implicit_accuracy(model) -> float:
    with torch.no_grad():
        out = dpo.dpo_loss(*(dpo.sequence_logprob(m, i, l) for m, i, l in (
            (model, val_pairs.chosen_ids, val_pairs.chosen_labels), (model, val_pairs.rejected_ids, val_pairs.rejected_labels),
            (masked_model, val_pairs.chosen_ids, val_pairs.chosen_labels),
            (masked_model, val_pairs.rejected_ids, val_pairs.rejected_labels))), BETA)
    return out.accuracy


b_sft, b_dpo = behaviour(masked_model), behaviour(policy)
dpo_acc = implicit_accuracy(policy)
for name, b in (("sft", b_sft), ("dpo", b_dpo)):
    for k, v in b.items():
        glue(f"{k}_{name}", v)
glue("dpo_acc", dpo_acc)
glue("dpo_kl_end", dpo_hist.kl[-1])
glue("beta_main", BETA)
glue("pref_steps", PREF_STEPS)

fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                    subplot_titles=("DPO loss and implicit-reward margin", "KL(π ‖ π_ref) on held-out answers"))
fig.add_scatter(x=dpo_hist.step, y=dpo_hist.loss, name="DPO loss", line=dict(color=viz.PALETTE[0]), row=1, col=1)
fig.add_scatter(x=dpo_hist.step, y=dpo_hist.margin, name="reward margin β·Δ", line=dict(color=viz.PALETTE[2]),
                row=1, col=1)
fig.add_scatter(x=[0, PREF_STEPS], y=[math.log(2)] * 2, mode="lines", name="log 2", line=dict(color="gray", dash="dot"),
                row=1, col=1)
fig.add_scatter(x=dpo_hist.eval_step, y=dpo_hist.kl, mode="lines+markers", name="token KL",
                line=dict(color=viz.PALETTE[1]), row=1, col=2)
fig.update_xaxes(title_text="DPO step")
fig.update_yaxes(title_text="nats / token", row=1, col=2)
fig.update_layout(height=400, legend=dict(orientation="h", y=-0.25), title=f"DPO at β = {BETA}")
fig

# %%
assert b_dpo["p_sign_off"] > 10 * b_sft["p_sign_off"], "DPO makes the preferred ending far more likely"
assert dpo_hist.kl[0] < 1e-6 < dpo_hist.kl[-1] and dpo_hist.margin[-1] > 0
assert dpo_acc >= 0.9, "the implicit reward ranks held-out pairs without any reward model"
if not SMOKE:
    assert b_dpo["rate"] > b_sft["rate"], "and the sampled answers sign off more often"
Markdown("| | after SFT | after DPO |\n|---|---|---|\n"
         f"| P(sign-off \\| reference answer), held-out | {b_sft['p_sign_off']:.2e} | {b_dpo['p_sign_off']:.2e} |\n"
         f"| greedy answers ending with the sign-off | {b_sft['rate']:.0%} | {b_dpo['rate']:.0%} |\n"
         f"| mean greedy answer length (tokens) | {b_sft['length']:.1f} | {b_dpo['length']:.1f} |")

# %% [markdown]
# In {glue:text}`pref_steps` steps at β = {glue:text}`beta_main` the probability of the sign-off
# after a held-out reference answer goes from {glue:text}`p_sign_off_sft:.1e` to
# {glue:text}`p_sign_off_dpo:.1e`, and the share of greedy answers to held-out questions that end
# with it from {glue:text}`rate_sft:.0%` to {glue:text}`rate_dpo:.0%`. The implicit reward
# $\beta\log\pi/\pi_{\text{ref}}$ ranks {glue:text}`dpo_acc:.0%` of the held-out pairs correctly —
# a reward model that was never trained as one. Meanwhile the policy drifts: the token-level KL to
# the SFT model on held-out answers grows from 0 to {glue:text}`dpo_kl_end:.3f` nats per token.
# The greedy answers also change length ({glue:text}`length_sft:.1f` → {glue:text}`length_dpo:.1f`
# tokens): the cheapest way to raise $\log\pi(y_w) - \log\pi(y_l)$ on these pairs is to make the
# newline after an answer unlikely and the sign-off likely, which moves where answers stop — a small
# instance of the way preference optimization exploits whatever separates chosen from rejected,
# length included.
#
# :::{admonition} Interview angle: "DPO or PPO?"
# :class: tip
# PPO-based RLHF trains a reward model, then samples from the policy, scores the samples, estimates
# advantages with a value model and updates the policy under a KL penalty — four models in memory
# (policy, reference, reward, value) and a generation loop inside training. DPO trains the policy
# directly on the preference pairs with a classification loss: two models (policy and a frozen
# reference whose log-probs can be precomputed), no sampling, no reward model, the stability of
# supervised learning. What DPO gives up: it learns only from the fixed pairs (off-policy), so it
# cannot explore beyond them, and its implicit reward can be satisfied by lowering the rejected
# answer rather than raising the chosen one. Online variants (iterative DPO, or PPO/GRPO with a
# verifier) come back to sampling when the data must follow the policy.
# :::
#
# ## 6. What β does
#
# β scales the implicit reward. The gradient of the DPO loss is
# $-\beta\,\sigma(-\beta\Delta)\,(\nabla\log\pi(y_w) - \nabla\log\pi(y_l))$ with $\Delta$ the
# difference of log-ratios: with a small β a pair counts as learned only once $\Delta$ is large, so
# the policy moves far from the reference; with a large β a small $\Delta$ already saturates the
# sigmoid and training stops pushing. The sweep trains a policy per β for the same steps and
# learning rate.

# %%
BETAS = (0.02, 0.1, 0.5)
sweep = {}
for beta in BETAS:
    if beta == BETA:
        sweep[beta] = dict(kl=dpo_hist.kl[-1], **b_dpo, model=policy)
        continue
    pol = copy.deepcopy(masked_model)
    h = dpo.train_dpo(pol, masked_model, train_pairs, dpo.PrefConfig(**{**pref_cfg.__dict__, "beta": beta,
                                                                        "eval_every": PREF_STEPS}), kl_rows=kl_rows)
    sweep[beta] = dict(kl=h.kl[-1], **behaviour(pol), model=pol)

fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                    subplot_titles=("behaviour against KL, one point per β", "KL and sign-off probability against β"))
fig.add_scatter(x=[s["kl"] for s in sweep.values()], y=[s["p_sign_off"] for s in sweep.values()],
                mode="lines+markers+text", text=[f"β = {b}" for b in sweep], textposition="top center",
                name="P(sign-off)", line=dict(color=viz.PALETTE[0]), row=1, col=1)
fig.add_scatter(x=list(sweep), y=[s["kl"] for s in sweep.values()], mode="lines+markers", name="KL (nats/token)",
                line=dict(color=viz.PALETTE[1]), row=1, col=2)
fig.add_scatter(x=list(sweep), y=[s["rate"] for s in sweep.values()], mode="lines+markers",
                name="greedy sign-off rate", line=dict(color=viz.PALETTE[2]), row=1, col=2)
fig.update_xaxes(title_text="KL(π ‖ π_ref), nats / token", row=1, col=1)
fig.update_xaxes(title_text="β", type="log", row=1, col=2)
fig.update_yaxes(title_text="P(sign-off | reference answer)", row=1, col=1)
fig.update_layout(height=420, legend=dict(orientation="h", y=-0.25), title="The β sweep")
fig

# %%
kls = [sweep[b]["kl"] for b in BETAS]
if not SMOKE:  # the tiny SMOKE model takes 15 steps at a high learning rate: too few for the ordering to settle
    assert kls[0] > kls[-1], "a smaller β lets the policy move further from the reference"
for b in BETAS:
    key = str(b).replace(".", "_")
    glue(f"sweep_kl_{key}", sweep[b]["kl"])
    glue(f"sweep_p_{key}", sweep[b]["p_sign_off"])
    glue(f"sweep_rate_{key}", sweep[b]["rate"])

# %% [markdown]
# At β = 0.02 the policy ends {glue:text}`sweep_kl_0_02:.3f` nats per token from the reference; at
# β = 0.5, {glue:text}`sweep_kl_0_5:.3f`. The sign-off probability after a reference answer is
# {glue:text}`sweep_p_0_02:.1e` at β = 0.02, {glue:text}`sweep_p_0_1:.1e` at β = 0.1 and
# {glue:text}`sweep_p_0_5:.1e` at β = 0.5 (greedy sign-off rates {glue:text}`sweep_rate_0_02:.0%`,
# {glue:text}`sweep_rate_0_1:.0%` and {glue:text}`sweep_rate_0_5:.0%`). This is the knob's whole
# job: β is the price of moving away from the reference, the same coefficient as the KL penalty in
# the RLHF objective that DPO solves in closed form.
#
# :::{admonition} Interview angle: "what does β do in DPO?"
# :class: tip
# β is the inverse temperature of the implicit reward $\beta\log\pi/\pi_{\text{ref}}$ and the weight
# of the KL constraint in the objective DPO optimizes. Small β: a pair is satisfied only by a
# large change in log-ratios, so the policy moves far (more behaviour change, more KL, more risk of
# degenerate outputs); large β: small log-ratio changes saturate the loss and the policy stays near
# the reference. Typical values are 0.1–0.5. Track the KL to the reference and a held-out metric
# while tuning it, not the training loss, which is easy to drive to zero.
# :::
#
# ## 7. The alignment tax
#
# Fine-tuning on a narrow distribution moves the model away from the one it was pretrained on.
# Measured as the validation loss on the pretraining corpus (Python docs and standard-library
# code) for each model of this chapter:

# %%
tax = {"pretrained": base, "SFT (full)": masked_model, f"SFT (LoRA r = {RANKS[-1]})": lora_models[RANKS[-1]],
       f"SFT + DPO β = {BETA}": policy, f"SFT + DPO β = {BETAS[0]}": sweep[BETAS[0]]["model"]}
tax_loss = {name: lm.evaluate(m, pre.data, BLOCK, EVAL_TOKENS) for name, m in tax.items()}
fig = go.Figure(go.Bar(x=list(tax_loss), y=list(tax_loss.values()), marker_color=viz.PALETTE[:len(tax_loss)],
                       text=[f"{v:.3f}" for v in tax_loss.values()], textposition="outside"))
fig.update_layout(title="Validation loss on the pretraining corpus after each stage", yaxis_title="nats / token",
                  height=380, yaxis_range=[min(tax_loss.values()) * 0.9, max(tax_loss.values()) * 1.05])
fig

# %%
t = list(tax_loss.values())
glue("tax_pre", t[0])
glue("tax_sft", t[1])
glue("tax_lora", t[2])
glue("tax_dpo", t[3])
glue("tax_dpo_small_beta", t[4])
glue("tax_sft_delta", t[1] - t[0])
glue("tax_dpo_delta", t[3] - t[1])
assert t[1] > t[0], "SFT costs pretraining loss"
if not SMOKE:
    assert t[4] > t[3], "a smaller β moves further and costs more"

# %% [markdown]
# SFT raises the pretraining validation loss from {glue:text}`tax_pre:.3f` to
# {glue:text}`tax_sft:.3f` nats per token (+{glue:text}`tax_sft_delta:.3f`); LoRA at rank 16 ends at
# {glue:text}`tax_lora:.3f`. DPO at β = {glue:text}`beta_main` adds {glue:text}`tax_dpo_delta:+.3f`
# ({glue:text}`tax_dpo:.3f`), and at β = 0.02, which moves furthest, it reaches
# {glue:text}`tax_dpo_small_beta:.3f`. That is the alignment tax in its plainest form; the usual
# mitigations follow from it — fewer steps, lower learning rates, a larger β, LoRA, and mixing some
# pretraining data into the fine-tuning batches (InstructGPT's "PPO-ptx" {cite}`ouyang2022training`).
#
# ## 8. The circulating claims, measured
#
# Interview notes repeat a set of claims about post-training. Each is checked against this
# chapter's measurements:
#
# | claim | measured here | verdict |
# |---|---|---|
# | "Labels −100 are ignored" by the loss | the masked loss equals the hand mean over answer tokens; masked positions get exactly zero gradient (unit tests) | holds |
# | SFT: "loss is computed only on the response tokens" | masked vs unmasked: answer loss {glue:text}`ans_masked:.2f` vs {glue:text}`ans_unmasked:.2f`; only the unmasked model learns the prompts ({glue:text}`prm_unmasked:.2f` vs {glue:text}`prm_masked:.2f`) | holds as practice; the reason is where the gradient goes |
# | LoRA is enough for SFT, "r = 4 light, 16 standard, 64 heavy" | held-out answer loss {glue:text}`sft_loss_r1:.3f` / {glue:text}`sft_loss_r4:.3f` / {glue:text}`sft_loss_r16:.3f` at r = 1/4/16, full FT {glue:text}`sft_loss_full:.3f` | holds here: rank matters little for a format-teaching task |
# | "DPO needs no reward model" | DPO's implicit reward ranks {glue:text}`dpo_acc:.0%` of held-out pairs; the explicit reward model {glue:text}`rm_acc:.0%` | holds |
# | "β: high β stays close to reference, low β maximizes preference signal" | KL {glue:text}`sweep_kl_0_02:.3f` at β = 0.02 vs {glue:text}`sweep_kl_0_5:.3f` at β = 0.5 | holds |
# | "Alignment tax: aligned models slightly underperform" | pretraining loss +{glue:text}`tax_sft_delta:.3f` after SFT, {glue:text}`tax_dpo_delta:+.3f` more after DPO | holds; its size depends on steps, learning rate and β |
# | "DPO 4× cheaper than PPO", "PPO +3% win rate at 6× compute" | not measurable without a PPO run; by count, a DPO step is 2 policy forward+backward passes per pair (reference log-probs precomputed once), a PPO step adds generation (one forward per new token), reward, reference and value passes | plausible order of magnitude, unmeasured |
#
# ## 9. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** What is the DPO loss at the first step, when the policy is a copy of the reference, for any
# β? (Three decimals.)

# %%
answer_1 = ...
check(answer_1, dpo_hist.loss[0])

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $\log 2 \approx 0.693$: both log-ratios are 0, so the loss is $-\log\sigma(0) = \log 2$ whatever
# β is, and the gradient is $\beta/2$ per pair, pushing the chosen answer up and the rejected down.
# :::
#
# **2.** Three examples, each with a 10-token prompt and a 6-token answer, are packed into one
# row of 64 tokens. How many positions of the row contribute to the SFT loss?

# %%
answer_2 = ...
three = [sft.example_tokens(list(range(1, 11)), list(range(20, 26))) for _ in range(3)]
check(answer_2, int((sft.pack(three, 64)[1] != -100).sum()))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# 18: six answer tokens per example, each a target exactly once (predicted from the position before
# it). The 27 other real positions and the 16 padding positions have label −100.
# :::
#
# **3.** With β = 0.1, a pair's policy log-ratio is +2 nats on the chosen answer and −1 nat on the
# rejected one. What is its DPO loss? (Three decimals.)

# %%
answer_3 = ...
t1 = torch.tensor([2.0], dtype=torch.float64)
check(answer_3, dpo.dpo_loss(t1, -t1 / 2, 0 * t1, 0 * t1, 0.1).loss.item())

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $-\log\sigma(0.1 \times (2 - (-1))) = -\log\sigma(0.3) \approx 0.554$. With β = 1 the same pair
# would cost $-\log\sigma(3) \approx 0.049$: a larger β counts it as nearly learned already.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(round(math.log(2), 3), dpo_hist.loss[0])
assert check(18, int((sft.pack(three, 64)[1] != -100).sum()))
assert check(0.554, dpo.dpo_loss(t1, -t1 / 2, 0 * t1, 0 * t1, 0.1).loss.item())

# %% [markdown]
# ## Summary
#
# - SFT is the pretraining loss on (prompt, answer) pairs with the prompt's labels set to −100;
#   packing fills the context with whole examples and, with labels shifted inside each example,
#   keeps every answer token a target exactly once.
# - Masking spends the gradient on answers; without it the model also learns to write the prompts.
# - LoRA at ranks 1–16 trains {glue:text}`sft_share_r1:.1%`–{glue:text}`sft_share_r16:.1%` of the
#   parameters and reaches a held-out answer loss of {glue:text}`sft_loss_r1:.3f`–{glue:text}`sft_loss_r16:.3f`
#   against full fine-tuning's {glue:text}`sft_loss_full:.3f`.
# - A Bradley–Terry reward model and DPO's implicit reward both learn the preference; DPO needs
#   neither the reward model nor a sampling loop, starts at log 2, and trades behaviour change
#   against KL to the reference through β.
# - Every stage costs loss on the pretraining distribution — the alignment tax — and more so the
#   further it moves.

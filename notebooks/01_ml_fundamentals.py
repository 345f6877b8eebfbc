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
# # 1 · ML fundamentals: losses, the training loop, loss landscapes and numerics
#
# Every production model, from a click predictor to a 70B transformer, is a loss function, an
# optimizer loop and a pile of floating-point arithmetic. When a model misbehaves in production —
# the loss goes NaN at step 50, the fraud model never flags anything, mixed precision silently
# zeroes gradients — the cause is almost always in one of these three places. Interviews open here
# for the same reason: "which loss and why", "walk me through the training loop", "why is
# BCE-with-logits stable", "why bf16 and not fp16" are the questions that separate people who have
# trained models from people who have read about it. This chapter measures each answer.
#
# **You will learn**
# - which loss each of the four task shapes implies, and what each loss does to the gradient;
# - the production training loop line by line: AdamW, warmup + cosine, gradient clipping;
# - why the learning rate is the hyperparameter that matters, from a measured sweep;
# - how optimizers move on a loss landscape, and what a real network's loss surface looks like;
# - how regularization and the bias–variance trade-off show up in measured curves;
# - where floating point bites: overflow, fp16 accumulation, underflowing gradients and loss scaling;
# - how weighted cross-entropy and focal loss compare on a 1:10,000 fraud problem.
# - which rules of thumb about training survive measurement, and which do not.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/01_ml_fundamentals.ipynb)
# · Runtime budget on 2 CPU cores: under 60 s with `SMOKE=True` (enforced by the test suite), under 5 minutes in full mode.

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

SMOKE = smoke_default()  # True: small data and few steps (≤ 60 s on 2 cores); False: the full chapter

# %%
import inspect

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import torch
import torch.nn.functional as F
from IPython.display import Code, Markdown, display
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from companion import biasvar, calibration, imbalance, landscape, losses, numerics, optim, training, viz, widgets
from companion.book import check, glue
from companion.config import pick, seed_everything
from companion.data import digits, make_fraud, noisy_labels

seed_everything(0)
print(f"SMOKE={SMOKE}, torch {torch.__version__}, {torch.get_num_threads()} threads")

# %% [markdown]
# ## 1. Tasks and targets
#
# The first clarifying question in any ML design interview — *what exactly are we predicting?* —
# fixes the label, the output head, the loss, the metric, and much of the system around the model.
# Four shapes cover almost every case:
#
# | shape | label | output head | loss | offline metric | typical system |
# |---|---|---|---|---|---|
# | binary classification | 0/1 (click, fraud, spam) | 1 logit → sigmoid | BCE (logit form) | PR-AUC, log-loss, calibration | feature store → model → calibration → threshold or bidder |
# | multi-class | one of K (intent, language) | K logits → softmax | categorical CE | accuracy, macro-F1 | router in front of K downstream handlers |
# | regression | a real number (ETA, price) | 1 linear output | MSE, MAE, Huber | MAE, RMSE, quantile error | online features → model → business rule on the number |
# | ranking / retrieval | an order over items | a score per (query, item) | pairwise / listwise, InfoNCE | NDCG@k, recall@k, MRR | candidate generation → ranker → re-ranker |
#
# Name the shape in the first two minutes and the rest of a design follows; leave it vague and the
# design drifts. The rest of this chapter is about the losses in the fourth column.

# %% [markdown]
# ## 2. Losses you must know
#
# A loss is the contract between the task and the gradient. For classification it is easiest to
# compare losses as a function of the **margin** $m = y \cdot f(x)$ with $y \in \{-1, +1\}$: positive
# margins are correct, negative are wrong. The logistic loss (BCE written in margin form) is
# $\log(1 + e^{-m})$, the hinge loss is $\max(0, 1 - m)$, and the focal loss {cite}`lin2017focal`
# multiplies BCE by $(1 - p_t)^\gamma$, which shrinks the loss of examples that are already right.
# Move the slider to change the focal $\gamma$; at $\gamma = 0$ it is exactly BCE.

# %%
margins = torch.linspace(-4, 4, 401)
ones = torch.ones_like(margins)  # label y=+1, so the logit equals the margin


def classification_traces(gamma: float) -> list[go.Scatter]:
    curves = {
        "zero-one": (margins <= 0).float(),
        "logistic (BCE)": losses.bce_with_logits(margins, ones, reduction="none"),
        "hinge": losses.hinge(margins, ones, reduction="none"),
        f"focal (γ={gamma:g})": losses.focal_loss(margins, ones, gamma=gamma, reduction="none"),
    }
    return [go.Scatter(x=margins.numpy(), y=c.numpy(), mode="lines", name=name) for name, c in curves.items()]


fig = viz.slider_figure(classification_traces, [0.0, 0.5, 1.0, 2.0, 5.0], "focal γ", active=3,
                        layout=dict(title="Classification losses against the margin y·f(x)",
                                    xaxis_title="margin y·f(x)", yaxis_title="loss", yaxis_range=[0, 4.5]))
fig

# %% [markdown]
# For regression the argument is the error $e = \hat y - y$. MSE grows quadratically, so one
# outlier with a large error can dominate a batch; MAE grows linearly but its gradient is the same
# size everywhere, so it does not slow down near the optimum; Huber {cite}`huber1964robust` is
# quadratic inside $|e| \le \delta$ and linear outside, taking the best of both. The slider moves
# $\delta$.

# %%
errors = torch.linspace(-5, 5, 401)
zeros = torch.zeros_like(errors)


def regression_traces(delta: float) -> list[go.Scatter]:
    curves = {
        "MSE": losses.mse(errors, zeros, reduction="none"),
        "MAE": losses.mae(errors, zeros, reduction="none"),
        f"Huber (δ={delta:g})": losses.huber(errors, zeros, delta=delta, reduction="none"),
    }
    return [go.Scatter(x=errors.numpy(), y=c.numpy(), mode="lines", name=name) for name, c in curves.items()]


fig = viz.slider_figure(regression_traces, [0.5, 1.0, 2.0, 4.0], "Huber δ", active=1,
                        layout=dict(title="Regression losses against the error ŷ − y",
                                    xaxis_title="error ŷ − y", yaxis_title="loss", yaxis_range=[0, 10]))
fig

# %% [markdown]
# Each loss in `companion.losses` is written from its formula and tested against PyTorch (and
# scikit-learn's `hinge_loss`); here is the check on fresh random data. How fast they run next to
# PyTorch's fused kernels is measured on the {doc}`90_benchmarks` page.

# %%
g = torch.Generator().manual_seed(1)
logits, targets = torch.randn(256, generator=g) * 5, torch.randint(0, 2, (256,), generator=g).float()
pred, label = torch.randn(256, generator=g), torch.randn(256, generator=g)
class_logits, classes = torch.randn(256, 10, generator=g), torch.randint(0, 10, (256,), generator=g)
agreement = {
    "BCE with logits": (losses.bce_with_logits(logits, targets), F.binary_cross_entropy_with_logits(logits, targets)),
    "cross-entropy": (losses.cross_entropy(class_logits, classes), F.cross_entropy(class_logits, classes)),
    "MSE": (losses.mse(pred, label), F.mse_loss(pred, label)),
    "Huber": (losses.huber(pred, label, delta=1.0), F.huber_loss(pred, label, delta=1.0)),
}
for name, (ours, ref) in agreement.items():
    print(f"{name:16s} ours={ours.item():.6f}  torch={ref.item():.6f}")
    assert torch.allclose(ours, ref, atol=1e-6), name

# %% [markdown]
# ### Why BCE is computed from logits
#
# The textbook recipe — apply a sigmoid, then take $-\log p$ — fails in float32 long before the
# numbers look extreme. For a negative example ($y = 0$) with logit $x$, the loss is
# $-\log(1 - \sigma(x))$, which is simply about $x$ for large $x$. But $\sigma(x)$ rounds to exactly
# 1.0 in float32 once $1 - \sigma(x)$ drops below half a unit in the last place, and then
# $\log(0) = -\infty$. PyTorch's `binary_cross_entropy` clamps the log at −100, so the loss jumps to
# 100 and **the gradient becomes zero**: the most confidently wrong examples stop teaching the model.
# The logit form, $\max(x, 0) - x y + \log(1 + e^{-|x|})$, never forms $\sigma(x)$ at all.

# %%
x = torch.linspace(0, 40, 801, requires_grad=True)
y0 = torch.zeros_like(x)
naive = losses.bce_naive(x, y0, reduction="none")
stable = losses.bce_with_logits(x, y0, reduction="none")
(grad_naive,) = torch.autograd.grad(naive.sum(), x)
(grad_stable,) = torch.autograd.grad(stable.sum(), x)
saturated = naive.detach() >= 100.0  # the clamped value of log(0)
first_bad = x[saturated][0].item()
glue("bce_break_logit", first_bad)
glue("bce_error_at_15", abs(naive[300] - stable[300]).item())  # x[300] = 15.0

fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "gradient dloss/dx"), horizontal_spacing=0.12)
for col, (naive_y, stable_y) in enumerate([(naive.detach(), stable.detach()), (grad_naive, grad_stable)], start=1):
    fig.add_scatter(x=x.detach(), y=naive_y, name="sigmoid, then BCE (naive)", line=dict(color=viz.PALETTE[1], dash="dash"),
                    legendgroup="naive", showlegend=col == 1, row=1, col=col)
    fig.add_scatter(x=x.detach(), y=stable_y, name="BCE with logits", line=dict(color=viz.PALETTE[0]),
                    legendgroup="stable", showlegend=col == 1, row=1, col=col)
fig.update_xaxes(title_text="logit x")
fig.update_layout(title="A confidently wrong negative (y = 0) in float32", legend=dict(orientation="h", y=-0.2))
fig

# %%
beyond = saturated
assert torch.all(grad_naive[beyond] == 0), "the naive gradient should vanish once sigmoid saturates"
assert torch.allclose(grad_stable[beyond], torch.ones_like(grad_stable[beyond]), atol=1e-6)
assert torch.allclose(stable.detach()[beyond], x.detach()[beyond], rtol=1e-4)

# %% [markdown]
# Measured: from a logit of {glue:text}`bce_break_logit:.2f` on, the naive loss is the clamped
# 100 and its gradient is exactly zero, while the logit form keeps a gradient of 1. Even before
# that the naive form is inaccurate: at a logit of 15 it is off by {glue:text}`bce_error_at_15:.2f`
# because $1 - \sigma(x)$ cancels catastrophically. The same saturation appears in any hand-written
# pairwise ranking loss that applies a sigmoid before BCE.
#
# ### InfoNCE: retrieval as classification over the batch
#
# Two-tower retrievers are trained with InfoNCE {cite}`oord2018cpc`: for a batch of $B$
# (query, item) pairs, score every query against every item in the batch, and treat the matching
# item as the correct class among $B$. The loss is cross-entropy over the rows of $QK^\top/\tau$. At
# chance — when the scores carry no information — it equals $\log B$, a number worth remembering
# when reading a training curve. The temperature $\tau$ controls how sharply the softmax separates
# the positive from the hardest negatives.

# %%
B, D = pick(SMOKE, 128, 512), 64
g = torch.Generator().manual_seed(2)
queries = torch.randn(B, D, generator=g)
keys_matched = queries + 0.8 * torch.randn(B, D, generator=g)  # related pairs
keys_random = torch.randn(B, D, generator=g)  # no relation at all
taus = np.geomspace(0.01, 1.0, 15)


def recall_at_1(q, k):
    return (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T).argmax(1).eq(torch.arange(len(q))).float().mean().item()


matched = [losses.info_nce(queries, keys_matched, temperature=t).item() for t in taus]
random_ = [losses.info_nce(queries, keys_random, temperature=t).item() for t in taus]
glue("infonce_B", B)
glue("infonce_logB", float(np.log(B)))
glue("infonce_random_tau1", random_[-1])
glue("infonce_recall1", recall_at_1(queries, keys_matched))

fig = viz.line_figure(taus, {"related pairs": matched, "random pairs": random_, "log B (chance)": [np.log(B)] * len(taus)},
                      title=f"InfoNCE loss against temperature, batch of {B}", xaxis_title="temperature τ",
                      yaxis_title="loss", log_x=True)
fig

# %%
assert abs(random_[-1] - np.log(B)) < 0.05 * np.log(B), "random pairs at τ=1 should sit near log B"
assert max(matched) < np.log(B) < max(random_), "related pairs must beat chance"
assert recall_at_1(queries, keys_matched) > 0.9

# %% [markdown]
# With a batch of {glue:text}`infonce_B` the chance level is $\log B$ =
# {glue:text}`infonce_logB:.2f`; random pairs at $\tau = 1$ measure {glue:text}`infonce_random_tau1:.2f`.
# The related pairs reach recall@1 of {glue:text}`infonce_recall1:.2f` within the batch.
#
# **Listwise losses** score a whole list at once. ListNet {cite}`cao2007listnet` takes the
# cross-entropy between the softmax of the relevance labels and the softmax of the scores, so it
# rewards putting probability mass where the relevant items are; LambdaRank (Part IV) weights each
# pair by the NDCG change of swapping it. A perfect ordering must cost less than a reversed one:

# %%
relevance = torch.tensor([[3.0, 2.0, 1.0, 0.0, 0.0]])
good, reversed_ = (losses.listnet(relevance * 2, relevance), losses.listnet(-relevance * 2, relevance))
print(f"ListNet: ideal order {good.item():.3f}, reversed order {reversed_.item():.3f}")
assert good < reversed_

# %% [markdown]
# :::{admonition} Interview angle: "which loss would you use?"
# :class: tip
# Answer with the task shape, then the loss, then the failure mode you are guarding against:
# "binary, so BCE on logits — never sigmoid-then-log, which in fp32 loses its gradient from a logit
# of {glue:text}`bce_break_logit:.1f` on;
# with 1:10⁴ positives I would weight the positives or use focal loss and judge by PR-AUC, not
# accuracy." For regression with heavy-tailed labels (ETA, spend), say Huber and how you would
# choose δ (about the noise scale of the label).
# :::
#
# ## 3. The training loop
#
# Every model in this book is trained by the same loop: sample a batch, forward, loss, backward,
# clip, step. Production adds four things to the textbook loop: **AdamW** {cite}`loshchilov2019adamw`
# with weight decay applied only to matrices; a **linear warmup** {cite}`goyal2017accurate` so the
# first steps, taken while Adam's moment estimates are still poor, are small; a **cosine decay**
# {cite}`loshchilov2017sgdr` to a floor; and **gradient-norm clipping** so one bad batch cannot
# throw the weights across the landscape. Here is the whole loop, as `companion.training` runs it:

# %%
Code(inspect.getsource(training.train), language="python")

# %% [markdown]
# We train a two-layer MLP on scikit-learn's 8×8 handwritten digits ({glue:text}`digits_n:,` real
# images, 10 classes), features standardized with training statistics only.

# %%
(x_train, y_train), (x_val, y_val) = digits(seed=0)
cfg = training.TrainConfig(steps=pick(SMOKE, 200, 800), peak_lr=3e-3, eval_every=pick(SMOKE, 10, 20))
torch.manual_seed(0)
model = training.mlp(64, 128, 10, depth=2)
hist = training.train(model, (x_train, y_train), (x_val, y_val), cfg)
glue("digits_val_acc", hist.val_acc[-1] * 100)
glue("digits_steps", cfg.steps)
glue("digits_n", len(x_train) + len(x_val))

fig = viz.training_curves({"step": hist.step, "train loss": hist.train_loss, "val loss": hist.val_loss,
                           "val accuracy": hist.val_acc}, title="MLP on digits: AdamW, warmup + cosine, clip 1.0")
fig

# %%
assert hist.val_acc[-1] > 0.9, f"validation accuracy {hist.val_acc[-1]:.3f} should exceed 0.9"
assert hist.val_loss[-1] < np.log(10) / 4, "the validation loss should end far below chance, ln 10"

# %% [markdown]
# After {glue:text}`digits_steps` steps the network classifies {glue:text}`digits_val_acc:.1f`% of
# held-out digits correctly.
#
# ## 4. The learning rate is the hyperparameter that matters
#
# With an hour to tune a model, spend it on the learning rate. The sweep below trains the same
# network at learning rates across four and a half decades, with AdamW and with SGD + momentum 0.9,
# and records the final validation loss. Runs that diverge are drawn at the top of the plot.

# %%
lrs = np.geomspace(1e-4, 3.0, pick(SMOKE, 13, 25))
sweep_cfg = dict(steps=pick(SMOKE, 100, 400), eval_every=pick(SMOKE, 100, 400))
final = {}
for opt_name in ("adamw", "sgd"):
    final[opt_name] = []
    for lr in tqdm(lrs, desc=opt_name, leave=False):
        torch.manual_seed(0)
        run = training.train(training.mlp(64, 128, 10), (x_train, y_train), (x_val, y_val),
                             training.TrainConfig(peak_lr=float(lr), optimizer=opt_name, **sweep_cfg), progress=False)
        final[opt_name].append(np.nan if run.diverged else run.val_loss[-1])
CAP = 3.0
shown = {name: [min(v, CAP) if np.isfinite(v) else CAP for v in vals] for name, vals in final.items()}
fig = viz.line_figure(lrs, {"AdamW": shown["adamw"], "SGD + momentum": shown["sgd"]},
                      title="Final validation loss against the peak learning rate", xaxis_title="peak learning rate",
                      yaxis_title=f"val loss (capped at {CAP})", log_x=True)
fig

# %%
best_lr = {name: float(lrs[int(np.nanargmin(v))]) for name, v in final.items()}
band = {name: training.lr_band_decades(lrs, v, factor=1.5) for name, v in final.items()}
glue("best_lr_adamw", best_lr["adamw"])
glue("best_lr_sgd", best_lr["sgd"])
glue("band_adamw", band["adamw"])
glue("band_sgd", band["sgd"])
glue("band_wider", "AdamW" if band["adamw"] > band["sgd"] else "SGD + momentum")
glue("band_ratio", max(band.values()) / min(band.values()))
for name in final:
    v = np.array([x if np.isfinite(x) else np.inf for x in final[name]])
    assert v.min() < v[0] and v.min() < v[-1], f"{name}: the sweep should be U-shaped (best LR inside the range)"
    assert 0 < band[name] < np.log10(lrs[-1] / lrs[0]), f"{name}: the good band should be narrower than the sweep"

# %% [markdown]
# Measured: AdamW is best at a peak LR of {glue:text}`best_lr_adamw:.2g` and SGD + momentum at
# {glue:text}`best_lr_sgd:.2g`. Both curves are U-shaped: too small and the run has not finished
# learning, too large and it bounces or diverges. The band of learning rates whose loss is within
# 1.5× of the best is {glue:text}`band_adamw:.1f` decades wide for AdamW and
# {glue:text}`band_sgd:.1f` for SGD + momentum, so the wider band belongs to
# **{glue:text}`band_wider`** ({glue:text}`band_ratio:.1f`× wider).
#
# One of the source checklists claims Adam is "10–100× less sensitive" to the learning rate. This
# sweep does not support that as a general rule: the width of the band is a property of the
# problem. What Adam does buy is independence from the *scale* of the gradient — its per-coordinate
# normalization makes the step size roughly the learning rate itself — so a default near 1e-3
# lands inside the band for most networks, while SGD's best learning rate moves with the gradient
# scale of each model. Rules of thumb — Adam at 1e-4 to 1e-3 for transformers, SGD at 0.1 with
# momentum 0.9 for convolutional nets — are starting points for a sweep like this one, not
# substitutes for it.
#
# ## 5. Loss landscapes
#
# ### Optimizers on a 2-D landscape
#
# Three classic test functions show what each optimizer is good at: a **saddle**, where the
# gradient vanishes but the point is not a minimum; **Rosenbrock's banana**, a curved narrow valley;
# and an **ill-conditioned bowl**, fifty times steeper in one direction than the other. The slider
# switches function; each uses one learning rate for all three optimizers.

# %%
steps_2d = pick(SMOKE, 200, 500)
lr_2d = {"saddle": 0.02, "rosenbrock": 1e-3, "bowl": 0.03}


def landscape_traces(name: str):
    fn = optim.TEST_FUNCTIONS[name]
    paths = {o: optim.trajectory(fn, o, lr_2d[name], steps_2d) for o in ("sgd", "momentum", "adam")}
    xs, ys, z = optim.grid(fn)
    return viz.landscape_figure(xs, ys, z, paths).data


fig = viz.slider_figure(landscape_traces, list(lr_2d), "function",
                        layout=dict(title=f"SGD, momentum and Adam, {steps_2d} steps", height=520,
                                    xaxis_title="x", yaxis_title="y"))
fig

# %%
OPTIMIZERS_2D = ("sgd", "momentum", "adam")
rosen, bowl = optim.TEST_FUNCTIONS["rosenbrock"], optim.TEST_FUNCTIONS["bowl"]
rosen_paths = {o: optim.trajectory(rosen, o, lr_2d["rosenbrock"], steps_2d) for o in OPTIMIZERS_2D}
dist = {o: float(np.linalg.norm(path[-1] - np.array(rosen.minimum))) for o, path in rosen_paths.items()}
adam_travel = float(np.linalg.norm(np.diff(rosen_paths["adam"], axis=0), axis=1).sum())


def steps_to_reach(path: np.ndarray, target, tol: float = 1e-3) -> int | None:
    """First step at which the path is within tol of target; None if it never gets there."""
    close = np.flatnonzero(np.linalg.norm(path - np.array(target), axis=1) < tol)
    return int(close[0]) if len(close) else None


bowl_steps = {o: steps_to_reach(optim.trajectory(bowl, o, lr_2d["bowl"], 2000), bowl.minimum) for o in OPTIMIZERS_2D}
lr_limit = 2 / optim.BOWL_CONDITION  # 2 / λ_max: the bowl's Hessian has eigenvalues 1 and BOWL_CONDITION
past_factor, past_steps = 1.05, 300
past_limit = {o: float(np.linalg.norm(optim.trajectory(bowl, o, past_factor * lr_limit, past_steps)[-1]))
              for o in OPTIMIZERS_2D}
glue("past_pct", 100 * (past_factor - 1))
glue("past_steps", past_steps)
glue("rosen_sgd_dist", dist["sgd"])
glue("rosen_momentum_dist", dist["momentum"])
glue("rosen_adam_travel", adam_travel)
for o in OPTIMIZERS_2D:
    glue(f"bowl_steps_{o}", bowl_steps[o])
glue("bowl_lr", lr_2d["bowl"])
glue("bowl_lr_limit", lr_limit)
glue("bowl_kappa", optim.BOWL_CONDITION)
glue("bowl_sgd_past_limit", past_limit["sgd"])
assert dist["momentum"] < dist["sgd"], "momentum should travel further along the Rosenbrock valley than SGD"
assert adam_travel < 1.5 * steps_2d * lr_2d["rosenbrock"], "Adam's steps are about lr long"
assert None not in bowl_steps.values() and bowl_steps["sgd"] > max(bowl_steps["momentum"], bowl_steps["adam"])
assert past_limit["sgd"] > 10 and past_limit["momentum"] < 1e-2 and past_limit["adam"] < 0.1

# %% [markdown]
# On Rosenbrock, after the same steps at the same learning rate, plain SGD ends
# {glue:text}`rosen_sgd_dist:.2f` from the minimum and momentum {glue:text}`rosen_momentum_dist:.2f`:
# momentum accumulates velocity along the gently sloping valley floor, where the gradient is small
# but consistent. Adam, at the same learning rate, has travelled only {glue:text}`rosen_adam_travel:.2f`
# in total: it divides each coordinate's step by that coordinate's recent gradient size, so every
# step is about the learning rate long whatever the gradient — a handicap at a learning rate this
# small, and a strength on badly scaled problems.
#
# On the ill-conditioned bowl at a learning rate of {glue:text}`bowl_lr`, getting within 10⁻³ of
# the minimum takes SGD {glue:text}`bowl_steps_sgd` steps, momentum {glue:text}`bowl_steps_momentum`
# and Adam {glue:text}`bowl_steps_adam`. SGD cannot simply take bigger steps: along the steepest
# direction (curvature λ_max = {glue:text}`bowl_kappa:g`) each step multiplies the error by $1 - \eta\lambda_{\max}$, which
# exceeds 1 in size once the learning rate passes $2/\lambda_{\max}$ = {glue:text}`bowl_lr_limit:.2f`.
# {glue:text}`past_pct:.0f`% past that limit, SGD ends {glue:text}`past_steps` steps at distance {glue:text}`bowl_sgd_past_limit:.2g`
# from the minimum — diverged — while momentum and Adam still converge. In a real network the
# sharpest direction of the loss sets the same ceiling, which is one reason warmup exists.
#
# In Jupyter or Colab, the widget below redraws the same picture for any learning rate and step
# budget (its callback, `widgets.optimizer_paths_figure`, is a plain function tested in
# `tests/unit`). Pick the bowl and push the learning rate past {glue:text}`bowl_lr_limit:.2f` to
# watch SGD diverge.

# %% tags=["remove-output"]
widgets.optimizer_paths_widget(function="rosenbrock", lr=1e-3, steps=300)

# %% [markdown]
# ### The loss surface of a real network
#
# A network has thousands of parameters, so we look at a 2-D slice: pick two random directions
# $d_1, d_2$ in weight space and plot $L(\theta + \alpha d_1 + \beta d_2)$. Raw random directions
# mislead, because a network's scale is arbitrary per filter (ReLU layers can be rescaled without
# changing the function). Li et al. {cite}`li2018visualizing` therefore **filter-normalize**: each
# filter of the direction is rescaled to the norm of the corresponding filter of the weights. Here
# is the slice around the digits MLP trained above.

# %%
n_grid = pick(SMOKE, 15, 31)
alphas = np.linspace(-1, 1, n_grid)
betas = np.linspace(-1, 1, n_grid)


def train_loss_of(m):
    return F.cross_entropy(m(x_train), y_train).item()


surface = landscape.loss_surface(model, train_loss_of, alphas, betas, seed=0)
center = surface[n_grid // 2, n_grid // 2]
glue("surface_center", center)
glue("surface_max", float(surface.max()))
glue("surface_ratio", float(surface.max() / center))

viz.surface_figure(alphas, betas, np.log10(surface), title="log10 training loss on a filter-normalized 2-D slice").update_layout(
    scene_zaxis_title="log10 loss")

# %%
viz.landscape_figure(alphas, betas, surface, log_z=True, title="The same slice as contours: trained weights at (0, 0)").update_layout(
    xaxis_title="α (direction 1)", yaxis_title="β (direction 2)")

# %%
assert center <= np.quantile(surface, 0.05), "the trained weights should sit in the basin of the slice"
assert abs(center - train_loss_of(model)) < 1e-6, "the slice must pass through the trained weights"

# %% [markdown]
# The trained weights sit at the bottom of a basin: training loss {glue:text}`surface_center:.3f`
# at the centre, rising to {glue:text}`surface_max:.1f` at the edge of the slice
# ({glue:text}`surface_ratio:.0f`× higher). Li et al. use the same picture to show why skip
# connections and wide layers train more easily: their slices stay smooth and convex-looking while
# deep plain networks turn chaotic.
#
# ## 6. Overfitting, regularization and the bias–variance trade-off
#
# Give a wide network a small training set whose labels are partly wrong, and it will memorise
# them — wrong labels included. That is overfitting in its purest form, and production data always
# carries some label noise (mislabelled fraud, accidental clicks). Every regularizer is one of three
# ideas — shrink the hypothesis space (weight decay), add noise (dropout), or stop early — and each
# is measured below on the same {glue:text}`n_small` training images, {glue:text}`noise_pct:.0f`% of whose labels
# were replaced at random.

# %%
n_small, noise_rate = 300, 0.3
(x_small, y_clean), _ = digits(seed=0, n_train=n_small)
y_small = noisy_labels(y_clean, rate=noise_rate, n_classes=10, seed=0)
glue("n_small", n_small)
glue("noise_pct", 100 * noise_rate)
reg_steps = pick(SMOKE, 300, 1000)
variants = {"none": dict(weight_decay=0.0, dropout=0.0), "weight decay 5": dict(weight_decay=5.0, dropout=0.0),
            "dropout 0.5": dict(weight_decay=0.0, dropout=0.5)}
reg = {}
for name, v in tqdm(variants.items(), desc="regularizers", leave=False):
    torch.manual_seed(0)
    net = training.mlp(64, 512, 10, depth=2, dropout=v["dropout"])
    reg[name] = training.train(net, (x_small, y_small), (x_val, y_val),
                               training.TrainConfig(steps=reg_steps, peak_lr=1e-3, weight_decay=v["weight_decay"],
                                                    eval_every=15, min_lr_frac=1.0), progress=False)
fig = go.Figure()
for i, (name, h) in enumerate(reg.items()):
    color = viz.PALETTE[i]
    fig.add_scatter(x=h.step, y=h.val_loss, name=f"val, {name}", line=dict(color=color))
    fig.add_scatter(x=h.step, y=h.train_loss, name=f"train, {name}", line=dict(color=color, dash="dot"))
fig.add_vline(x=reg["none"].best_step, line_dash="dash", line_color="gray",
              annotation_text="early stop (no regularization)")
fig.update_layout(title="300 images, 30% noisy labels, 512-wide MLP: train (dotted) and validation loss",
                  xaxis_title="step", yaxis_title="cross-entropy")
fig

# %%
none, decay, dropout = reg["none"], reg["weight decay 5"], reg["dropout 0.5"]
rise = none.val_loss[-1] / min(none.val_loss)
glue("overfit_rise", rise)
glue("overfit_best_step", none.best_step)
glue("overfit_best_acc", 100 * none.val_acc[none.step.index(none.best_step)])
glue("overfit_final_acc", 100 * none.val_acc[-1])
for name, h in reg.items():
    key = name.split()[0]
    print(f"{name:15s} train loss {h.train_loss[-1]:.3f}   val loss: best {min(h.val_loss):.3f} "
          f"(step {h.best_step}), final {h.val_loss[-1]:.3f}   final val acc {h.val_acc[-1]:.3f}")
    glue(f"reg_final_{key}", h.val_loss[-1])
    glue(f"reg_train_{key}", h.train_loss[-1])
assert none.train_loss[-1] < 0.1, "the unregularized net should memorise its noisy labels"
assert rise > 1.5, "memorising noise should drive the validation loss well above its best"
assert decay.val_loss[-1] < none.val_loss[-1], "weight decay should limit the damage"
assert dropout.train_loss[-1] > none.train_loss[-1], "dropout should slow memorisation"
assert min(none.val_loss) < min(h.val_loss[-1] for h in reg.values()), "early stopping beats every final model"

# %% [markdown]
# The unregularized network drives its training loss to {glue:text}`reg_train_none:.3f` — it has
# memorised the wrong labels too — while its validation loss bottoms out at step
# {glue:text}`overfit_best_step` and then climbs {glue:text}`overfit_rise:.1f`×; validation accuracy
# falls from {glue:text}`overfit_best_acc:.1f`% at that step to {glue:text}`overfit_final_acc:.1f`%.
# Final validation losses: none {glue:text}`reg_final_none:.2f`, weight decay
# {glue:text}`reg_final_weight:.2f`, dropout {glue:text}`reg_final_dropout:.2f`. Weight decay limits
# the damage; dropout slows memorisation (training loss {glue:text}`reg_train_dropout:.3f` against
# {glue:text}`reg_train_none:.3f`) but, given enough steps, does not stop it. The cheapest and
# strongest regularizer here is **early stopping**: keep the checkpoint with the best validation
# loss, which is why every production training job evaluates on a held-out split as it goes.
#
# ### Bias–variance, measured
#
# "Error = bias² + variance + noise" is an identity about the *expected* error over training sets
# {cite}`hastie2009elements`, so it can be measured: fit polynomials of increasing degree to many
# independent training sets drawn from the same noisy function, and decompose the test error.

# %%
degrees = list(range(1, pick(SMOKE, 11, 16)))
bv = biasvar.bias_variance(degrees, n_rounds=pick(SMOKE, 100, 400), seed=0)
fig = viz.line_figure(degrees, {"bias²": [r["bias2"] for r in bv], "variance": [r["variance"] for r in bv],
                                "noise": [r["noise"] for r in bv],
                                "bias² + variance + noise": [r["bias2"] + r["variance"] + r["noise"] for r in bv],
                                "measured test MSE": [r["test_mse"] for r in bv],
                                "train MSE": [r["train_mse"] for r in bv]},
                      title="Polynomial regression: the decomposition of test error", xaxis_title="degree",
                      yaxis_title="squared error", log_y=True)
fig.update_traces(line_dash="dash", selector=dict(name="bias² + variance + noise"))  # it lies on the measured MSE

# %%
gap = max(abs(r["bias2"] + r["variance"] + r["noise"] - r["test_mse"]) / r["test_mse"] for r in bv)
best_degree = bv[int(np.argmin([r["test_mse"] for r in bv]))]["degree"]
glue("bv_max_gap_pct", 100 * gap)
glue("bv_best_degree", best_degree)
assert gap < 0.05, f"bias² + variance + noise should match the test MSE (worst gap {gap:.1%})"
assert bv[0]["bias2"] > bv[best_degree - 1]["bias2"] and bv[-1]["variance"] > bv[best_degree - 1]["variance"]

# %% [markdown]
# The sum of the three measured parts matches the measured test error within
# {glue:text}`bv_max_gap_pct:.1f`% at every degree. Low degrees are all bias, high degrees all
# variance, and the best degree here is {glue:text}`bv_best_degree`.
#
# | symptom | diagnosis | first fixes |
# |---|---|---|
# | train and val loss both high, close together | high bias (underfit) | bigger model, better features, less regularization, train longer |
# | train loss low, val loss high | high variance (overfit) | more data, regularization, early stopping, smaller model |
# | val loss fine, online metric bad | train/serve skew or leakage | compare features logged at serving with training features |
# | loss becomes NaN early | divergence or bad numerics | lower LR, warmup, clip gradients, check for log(0) and fp16 overflow |
#
# ## 7. Numerics: where floating point bites
#
# Mixed-precision training {cite}`micikevicius2018mixed` is standard, and its failure modes are
# easy to reproduce. The formats first, measured with `torch.finfo`:

# %%
formats = numerics.float_formats()
header = f"{'format':16s}{'bits':>5s}{'exp':>5s}{'mant':>5s}{'max':>12s}{'min normal':>13s}{'eps':>11s}"
print(header)
for f in formats:
    print(f"{f['name']:16s}{f['bits']:5d}{f['exponent_bits']:5d}{f['mantissa_bits']:5d}"
          f"{f['max']:12.4g}{f['smallest_normal']:13.4g}{f['eps']:11.3g}")
fp16 = next(f for f in formats if f["name"] == "float16")
bf16 = next(f for f in formats if f["name"] == "bfloat16")
glue("fp16_max", fp16["max"])
glue("bf16_max", bf16["max"])
glue("bf16_eps", bf16["eps"])
glue("exp_limit_fp32", numerics.exp_overflow_threshold(torch.float32))
glue("exp_limit_fp16", numerics.exp_overflow_threshold(torch.float16))
assert fp16["max"] == 65504.0 and bf16["max"] > 3e38

# %% [markdown]
# fp16 tops out at {glue:text}`fp16_max:,.0f`; bf16 keeps float32's 8 exponent bits and reaches
# {glue:text}`bf16_max:.3g`, paying with precision (machine epsilon {glue:text}`bf16_eps:.3g`).
# That range is why bf16 training needs no loss scaling. For softmax, $e^x$ overflows above
# {glue:text}`exp_limit_fp32:.2f` in float32 and above only {glue:text}`exp_limit_fp16:.2f` in
# float16, so attention logits overflow a naive fp16 softmax easily. Subtracting the row maximum
# first changes nothing mathematically and removes the overflow:

# %%
scores = torch.tensor([2.0, 10.0, 12.0])
for dtype in (torch.float32, torch.float16):
    s = scores.to(dtype)
    print(f"{str(dtype):14s} naive {numerics.softmax_naive(s).tolist()}   stable {numerics.softmax_stable(s).tolist()}")
assert torch.isnan(numerics.softmax_naive(scores.half())).any(), "e^12 overflows fp16, so the naive softmax is NaN"
assert torch.allclose(numerics.softmax_stable(scores.half()).float(), torch.softmax(scores, -1), atol=1e-3)

# The same trick makes log-sum-exp (the normalizer inside cross-entropy) safe; logits of a
# confident float32 classifier reach the hundreds.
big = torch.tensor([100.0, 90.0, -5.0])
lse = {"naive": numerics.logsumexp_naive(big).item(), "stable": numerics.logsumexp_stable(big).item(),
       "torch.logsumexp": torch.logsumexp(big, -1).item()}
print("float32 log-sum-exp of [100, 90, -5]:", lse)
assert lse["naive"] == float("inf") and abs(lse["stable"] - lse["torch.logsumexp"]) < 1e-5

# %% [markdown]
# ### Accumulating in fp16
#
# A long sum in fp16 stalls: once the running total is large, adding a small number changes
# nothing, because the gap between neighbouring fp16 values exceeds it. This is why matmul kernels
# accumulate in fp32 even when inputs are fp16, and why mixed precision keeps master weights and
# reductions in fp32. Kahan's compensated summation rescues fp16, and numpy's pairwise summation
# helps; fp32 accumulation is the production answer. (The sweep stops at {glue:text}`sum_n:,` terms: their sum,
# about n/2, must stay below fp16's largest value, {glue:text}`fp16_max:,.0f`, or even a perfect fp16 sum overflows.)

# The same stall hits the weights themselves. A step of lr × gradient that is smaller than half
# the spacing of fp16 numbers around a weight is rounded away; an fp32 master copy keeps it:

# %%
n_updates, update = 1000, 1e-4  # e.g. lr 1e-3 times a gradient of 0.1
w16, w32 = torch.tensor(1.0, dtype=torch.float16), torch.tensor(1.0, dtype=torch.float32)
for _ in range(n_updates):
    w16 += update
    w32 += update
glue("master_expected", 1 + n_updates * update)
glue("master_n", n_updates)
glue("master_update", update)
glue("master_fp16", w16.item())
glue("master_fp32", w32.item())
glue("fp16_spacing_at_1", torch.finfo(torch.float16).eps)
print(f"after {n_updates} updates of {update:g}: fp16 weight {w16.item()}, fp32 weight {w32.item():.5f}")
assert w16.item() == 1.0 and abs(w32.item() - 1.1) < 1e-4

# %% [markdown]
# Starting from 1.0, {glue:text}`master_n:,` updates of {glue:text}`master_update:g` should give {glue:text}`master_expected:.1f`. The
# fp16 weight stays at {glue:text}`master_fp16:.1f`: near 1.0 the fp16 spacing is
# {glue:text}`fp16_spacing_at_1:.2g`, so each update is rounded away. The fp32 copy reaches
# {glue:text}`master_fp32:.4f`. That is why mixed-precision training keeps fp32 master weights and
# applies the optimizer step there, casting to fp16 or bf16 only for the forward and backward passes.
# Now the sums themselves:

# %%
ns = np.unique(np.geomspace(100, pick(SMOKE, 20_000, 100_000), pick(SMOKE, 6, 10)).astype(int))
assert ns[-1] / 2 < torch.finfo(torch.float16).max, "the expected sum must be representable in fp16"
methods = {"fp16 sequential": (np.float16, "sequential"), "fp16 pairwise": (np.float16, "pairwise"),
           "fp16 Kahan": (np.float16, "kahan"), "fp32 sequential": (np.float32, "sequential")}
sum_err = {label: [numerics.relative_sum_error(int(n), dt, m, seed=0) for n in ns] for label, (dt, m) in methods.items()}
fig = viz.line_figure(ns, {k: np.maximum(v, 1e-9) for k, v in sum_err.items()},
                      title="Relative error of a sum of n uniform(0, 1) values", xaxis_title="n", yaxis_title="relative error",
                      log_x=True, log_y=True)
fig

# %%
glue("fp16_sum_err_pct", 100 * sum_err["fp16 sequential"][-1])
glue("fp32_sum_err", sum_err["fp32 sequential"][-1])
glue("sum_n", int(ns[-1]))
assert sum_err["fp16 sequential"][-1] > 100 * sum_err["fp32 sequential"][-1]
assert sum_err["fp16 Kahan"][-1] < sum_err["fp16 sequential"][-1] / 10

# %% [markdown]
# Summing {glue:text}`sum_n:,` values one by one in fp16 is off by
# {glue:text}`fp16_sum_err_pct:.0f`%; in fp32 the error is {glue:text}`fp32_sum_err:.1e`.
#
# ### Underflowing gradients and loss scaling
#
# Gradients of a large model are often tiny. fp16's smallest positive value is the subnormal
# $2^{-24} \approx$ {glue:text}`fp16_tiny:.1e`; anything below half of it rounds to exactly zero and
# that part of the update is lost, and anything below the smallest *normal* value,
# {glue:text}`fp16_min_normal:.1e`, keeps only a few significant bits. Loss scaling multiplies the
# loss (hence every gradient) by a large factor $S$ before the backward pass and divides the fp32
# gradients by $S$ before the step. Too small an $S$ leaves gradients underflowing; too large
# overflows to infinity. The curves below use log-normally distributed gradient magnitudes centred
# at {glue:text}`grad_centre:.0e`:

# %%
fp16_info = torch.finfo(torch.float16)
glue("fp16_tiny", 2.0**-24)
glue("fp16_min_normal", fp16_info.smallest_normal)
g = torch.Generator().manual_seed(3)
grad_centre = 1e-7
glue("grad_centre", grad_centre)
grads = torch.exp(torch.randn(200_000, generator=g) * 2.0 + np.log(grad_centre)) * torch.sign(torch.randn(200_000, generator=g))
log2_scales = list(range(0, 41, 2))
outcomes = [numerics.cast_fractions(grads, torch.float16, scale=2.0**k) for k in log2_scales]
under, subnormal, over = ([o[key] for o in outcomes] for key in ("underflow", "subnormal", "overflow"))
under_bf16 = numerics.underflow_fraction(grads, torch.bfloat16, scale=1.0)
fig = viz.line_figure(log2_scales, {"rounded to 0 (fp16)": under, "subnormal: precision lost (fp16)": subnormal,
                                    "overflow to inf (fp16)": over},
                      title="fp16 gradients against the loss scale", xaxis_title="log2 of the loss scale S",
                      yaxis_title="fraction of gradients")
fig

# %%
safe = [k for k, u, o in zip(log2_scales, under, over) if u < 1e-3 and o == 0]
glue("underflow_unscaled_pct", 100 * under[0])
glue("subnormal_unscaled_pct", 100 * subnormal[0])
glue("underflow_2_16_pct", 100 * under[log2_scales.index(16)])
glue("underflow_bf16_pct", 100 * under_bf16)
glue("safe_lo", min(safe))
glue("safe_hi", max(safe))
assert under[0] > 0.2 and under[0] + subnormal[0] > 0.9, "unscaled, most of these gradients vanish or lose precision"
assert under[log2_scales.index(16)] < under[0] / 100, "scaling by 2**16 should rescue the underflowing gradients"
assert over[-1] > 0.1, "a huge scale overflows"
assert under_bf16 == 0, "bf16 has float32's exponent range: nothing here underflows"

# %% [markdown]
# Without scaling {glue:text}`underflow_unscaled_pct:.0f`% of these gradients become exactly zero
# in fp16 and {glue:text}`subnormal_unscaled_pct:.0f`% are subnormal; at $S = 2^{16}$,
# {glue:text}`underflow_2_16_pct:.1f`% underflow; in bf16, unscaled, {glue:text}`underflow_bf16_pct:.0f`%.
# Every scale with $\log_2 S$ from {glue:text}`safe_lo` to {glue:text}`safe_hi` keeps both underflow
# (below 0.1%) and overflow (none) in check here, but where that window sits depends on the model
# and moves during training. Production therefore uses **dynamic** loss scaling: start high, halve
# the scale and skip the step whenever an overflow appears, and double it after a run of clean
# steps. `companion.numerics.DynamicLossScaler` implements that rule and is tested step for step
# against `torch.amp.GradScaler`:

# %%
scaler = numerics.DynamicLossScaler(init_scale=2.0**16, growth_interval=5)
overflow_steps = {3, 4, 12}
trace = []
for step in range(20):
    found_inf = step in overflow_steps
    scaler.update(found_inf)
    trace.append(scaler.scale)
print("scale after each step:", [f"2^{int(np.log2(s))}" for s in trace])
assert trace[3] == 2.0**15 and trace[4] == 2.0**14, "each overflow halves the scale"
assert trace[9] == 2.0**15, "five clean steps double it"

# %% [markdown]
# :::{admonition} Interview angle: "fp16 or bf16?"
# :class: tip
# bf16 when the hardware has it (A100, H100, TPU): same exponent range as fp32, so no loss scaling
# and no overflow in attention logits; its 7-bit mantissa is enough because master weights,
# optimizer state and reductions stay in fp32. fp16 has three more mantissa bits but tops out at
# {glue:text}`fp16_max:,.0f`, so it needs max-subtracted softmax, fp32 accumulation and dynamic loss
# scaling — the three failure modes measured above.
# :::
#
# ## 8. Imbalanced classes: weighted cross-entropy vs focal loss
#
# Payment fraud is the classic 1-in-10,000 problem. A model that predicts "legitimate" for everything
# is 99.99% accurate and useless, so accuracy and ROC-AUC are the wrong lenses; **precision–recall**
# is the right one. Two standard remedies change the loss: weight the positives (here by the
# inverse class ratio) or use focal loss, which down-weights the flood of easy negatives. Which one
# wins is an empirical question, so we measure on a synthetic 1:10,000 problem whose best possible
# scorer is known (`companion.data.make_fraud`: the classes are two Gaussians with a shared
# covariance, so the Bayes-optimal score is the sum of the four informative features). With one
# positive in 10,000 rows, a test set of a few hundred thousand rows holds only a handful of frauds
# and its PR-AUC is mostly noise; so the test set here is a separate draw of
# {glue:text}`fraud_test_rows:,` rows, and each loss is trained on several independent training draws.

# %%
n_train, n_test, n_seeds = pick(SMOKE, 200_000, 1_000_000), pick(SMOKE, 500_000, 2_000_000), pick(SMOKE, 2, 5)
X_te, y_te = make_fraud(n_test, fraud_rate=1e-4, seed=10_000)  # never seen in training
bayes = imbalance.pr_metrics(y_te, X_te[:, :4].sum(1))
setups = {"BCE": dict(loss="bce"), "weighted BCE": dict(loss="weighted"), "focal (γ=2)": dict(loss="focal", gamma=2.0)}
pr_auc = {name: [] for name in setups}
first = {}  # the scorers from the first training draw, for the curves and the threshold table
for seed in tqdm(range(n_seeds), desc="training draws", leave=False):
    X_tr, y_tr = make_fraud(n_train, fraud_rate=1e-4, seed=seed)
    for name, kw in setups.items():
        scorer = imbalance.fit_linear_scorer(X_tr, y_tr, seed=seed, batch_size=4096, lr=0.05, **kw)
        proba = imbalance.predict_proba(scorer, X_te)
        metrics = imbalance.pr_metrics(y_te, proba)
        pr_auc[name].append(metrics["pr_auc"])
        first.setdefault(name, (proba, metrics))
glue("fraud_train_rows", n_train)
glue("fraud_test_rows", n_test)
glue("fraud_test_pos", int(y_te.sum()))
glue("fraud_train_pos", int(round(n_train * 1e-4)))
glue("fraud_seeds", n_seeds)

fig = make_subplots(rows=1, cols=2, subplot_titles=("precision–recall, first training draw",
                                                    f"PR-AUC over {n_seeds} training draws"), horizontal_spacing=0.12)
curves = {"Bayes-optimal": bayes} | {name: metrics for name, (_, metrics) in first.items()}
for i, (name, r) in enumerate(curves.items()):
    color = "black" if name == "Bayes-optimal" else viz.PALETTE[i - 1]
    recall, precision = viz.thin_runs(r["recall_curve"], r["precision_curve"])  # ~2 points per fraud, not per row
    fig.add_scatter(x=recall, y=precision, name=name, mode="lines", legendgroup=name,
                    line=dict(color=color, dash="dot" if name == "Bayes-optimal" else "solid"), row=1, col=1)
    if name != "Bayes-optimal":
        fig.add_scatter(x=[name] * n_seeds, y=pr_auc[name], mode="markers", marker=dict(color=color, size=9),
                        legendgroup=name, showlegend=False, row=1, col=2)
fig.add_hline(y=bayes["pr_auc"], line_dash="dot", annotation_text="Bayes-optimal", row=1, col=2)
fig.update_xaxes(title_text="recall", row=1, col=1)
fig.update_yaxes(title_text="precision", row=1, col=1)
fig.update_yaxes(title_text="PR-AUC on the test draw", row=1, col=2)
fig.update_layout(title=f"1:10,000 fraud: {int(y_te.sum())} frauds among {n_test:,} test rows",
                  legend=dict(orientation="h", y=-0.2))
fig

# %%
mean_auc = {name: float(np.mean(v)) for name, v in pr_auc.items()}
winner = max(mean_auc, key=mean_auc.get)
for name, v in pr_auc.items():
    print(f"{name:14s} PR-AUC {np.mean(v):.3f} ± {np.std(v):.3f} over {n_seeds} draws   (Bayes-optimal {bayes['pr_auc']:.3f})")
    glue(f"prauc_{name.split()[0].lower()}", mean_auc[name])
    glue(f"prauc_std_{name.split()[0].lower()}", float(np.std(v)))
glue("prauc_bayes", bayes["pr_auc"])
glue("fraud_winner", winner)
glue("fraud_base_rate", float(y_te.mean()))
assert all(m > 100 * y_te.mean() for m in mean_auc.values()), "every loss should beat the base rate by far"
assert all(m <= bayes["pr_auc"] * 1.1 for m in mean_auc.values()), "no scorer should beat the Bayes-optimal one"

# %% [markdown]
# Mean PR-AUC over {glue:text}`fraud_seeds` training draws: plain BCE {glue:text}`prauc_bce:.3f`
# (± {glue:text}`prauc_std_bce:.3f`), weighted BCE {glue:text}`prauc_weighted:.3f`
# (± {glue:text}`prauc_std_weighted:.3f`), focal {glue:text}`prauc_focal:.3f`
# (± {glue:text}`prauc_std_focal:.3f`), against {glue:text}`prauc_bayes:.3f` for the Bayes-optimal
# scorer and a base rate of {glue:text}`fraud_base_rate:.1e`. The best mean here belongs to
# **{glue:text}`fraud_winner`**. Neither remedy is a free win: on a problem the model can represent
# exactly, plain BCE already ranks nearly as well as anything can, and re-weighting mostly adds
# variance, because it makes the {glue:text}`fraud_train_pos` training positives count for more. The
# remedies earn their keep when the model is too small for the data or training stops early, and
# their largest effect is not on the ranking at all but on the scores, as the threshold shows:

# %%
rows = []
for name, (proba, _) in first.items():
    flagged = proba >= 0.5
    true_pos = int((flagged & (y_te == 1)).sum())
    rows.append((name, int(flagged.sum()), true_pos / max(1, int(flagged.sum())), true_pos / int(y_te.sum())))
    print(f"{name:14s} at threshold 0.5: flags {rows[-1][1]:6,d} rows, precision {rows[-1][2]:.3f}, recall {rows[-1][3]:.3f}")
flags = {name: n for name, n, _, _ in rows}
glue("flag_bce", flags["BCE"])
glue("flag_weighted", flags["weighted BCE"])
assert flags["weighted BCE"] > 10 * max(1, flags["BCE"]), "weighting by 1:10,000 moves the scores, so 0.5 flags far more"

# %% [markdown]
# At the default threshold of 0.5 the plain BCE model flags {glue:text}`flag_bce:,` rows and the
# weighted one {glue:text}`flag_weighted:,`: weighting positives by the inverse class ratio shifts
# every score up, so the model is no longer calibrated and its threshold must be chosen again on
# validation data, at the precision or recall the business needs. The robust lessons: judge by
# PR-AUC and precision at the operating point, compare against the best achievable where you can,
# and measure a loss change over several seeds before believing it.
#
# :::{admonition} Interview angle: "our fraud model has 99.99% accuracy"
# :class: tip
# That is the all-negative baseline. Ask for precision at the recall the business needs (or the
# reverse), and PR-AUC across thresholds. Then discuss the levers: class weights or focal loss,
# negative down-sampling with a calibration correction, and — usually the biggest — better features.
# :::
#
# ## 9. Claims you will hear, measured
#
# Interview-prep notes repeat a handful of rules about training. Some are right, some are half
# right, some are wrong; each takes a few lines to check. The table at the end of this section is
# generated from the measurements, so it cannot drift from them.

# %%
claims = []  # (claim, measurement, verdict), rendered as a table below

# "Adam's state is twice the size of the weights."
probe = training.mlp(64, 256, 10)
state_ratio = {}
for label, make in {"SGD": lambda p: torch.optim.SGD(p, lr=0.1),
                    "SGD + momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                    "AdamW": lambda p: torch.optim.AdamW(p)}.items():
    opt = make(probe.parameters())
    probe(torch.randn(8, 64)).sum().backward()
    opt.step()
    weight_bytes = sum(p.numel() * p.element_size() for p in probe.parameters())
    state_ratio[label] = optim.state_bytes(opt) / weight_bytes
    probe.zero_grad()
assert abs(state_ratio["AdamW"] - 2) < 0.01 and abs(state_ratio["SGD + momentum"] - 1) < 0.01 and state_ratio["SGD"] == 0
claims.append(("Adam's optimizer state is 2× the weights",
               ", ".join(f"{k}: {v:.2f}×" for k, v in state_ratio.items()) + " the fp32 weight bytes", "holds"))

# %%
# "The backward pass costs 2–3× the forward pass."
net = training.mlp(64, 256, 10, depth=3)
batch = torch.randn(512, 64)
with FlopCounterMode(display=False) as forward_flops:
    out = net(batch)
with FlopCounterMode(display=False) as backward_flops:
    out.sum().backward()
bwd_ratio = backward_flops.get_total_flops() / forward_flops.get_total_flops()
assert 1.5 < bwd_ratio <= 2.0
claims.append(("The backward pass costs 2–3× the forward pass",
               f"{bwd_ratio:.2f}× the forward FLOPs (one matmul for the weight gradient and one for the input "
               "gradient per layer; the first layer needs no input gradient)", "about 2× in FLOPs; time varies"))

# %%
# "Dropout in eval mode makes predictions non-deterministic."
drop_net = training.mlp(64, 256, 10, dropout=0.5)
x_probe = x_val[:64]
drop_net.eval()
eval_same = torch.equal(drop_net(x_probe), drop_net(x_probe))
drop_net.train()
train_same = torch.equal(drop_net(x_probe), drop_net(x_probe))
drop_layer = torch.nn.Dropout(0.5).train()
kept_mean = drop_layer(torch.ones(1_000_000)).mean().item()  # inverted dropout rescales the survivors by 1/(1-p)
assert eval_same and not train_same and abs(kept_mean - 1) < 0.01
claims.append(("Dropout in eval mode makes predictions non-deterministic",
               f"two eval-mode passes identical: {eval_same}; two train-mode passes identical: {train_same}; "
               f"mean activation in train mode {kept_mean:.3f} (eval: 1)", "wrong: train mode is the random one"))

# %%
# "Xavier initialization draws weights with std 1/sqrt(fan_in + fan_out)."
w = torch.empty(512, 256)
torch.nn.init.xavier_normal_(w)
fan_sum = 512 + 256
assert abs(w.std().item() - (2 / fan_sum) ** 0.5) < 0.002
claims.append(("Xavier init has std 1/√(fan_in + fan_out)",
               f"torch's xavier_normal_ gives std {w.std().item():.4f}; 1/√(fan_in + fan_out) = {fan_sum ** -0.5:.4f}, "
               f"√(2/(fan_in + fan_out)) = {(2 / fan_sum) ** 0.5:.4f}", "wrong: it is √(2/(fan_in + fan_out))"))

# %%
# "Sigmoid's gradient is about zero for |x| > 3", and where vanishing gradients really come from.
sig_grad_3 = (torch.sigmoid(torch.tensor(3.0)) * (1 - torch.sigmoid(torch.tensor(3.0)))).item()
sig_ratio = sig_grad_3 / 0.25
assert 0.15 < sig_ratio < 0.2  # the table row comes after the depth experiment below

# %%
# "BatchNorm with batch size 1 divides by a zero variance."
try:
    torch.nn.BatchNorm1d(8).train()(torch.randn(1, 8))
    bn1d = "ran"
except ValueError as err:
    bn1d = f"raises ValueError ({str(err).split(',')[0]})"
bn2d_finite = bool(torch.nn.BatchNorm2d(8).train()(torch.randn(1, 8, 4, 4)).isfinite().all())
assert bn1d.startswith("raises") and bn2d_finite
claims.append(("BatchNorm at batch size 1 divides by zero",
               f"BatchNorm1d in train mode {bn1d}; BatchNorm2d on a 1×8×4×4 batch averages over H×W and is finite: "
               f"{bn2d_finite}; eps keeps the division safe either way", "wrong"))

# %% [markdown]
# The sigmoid claim deserves its picture. In a deep stack, each layer multiplies the backward signal
# by the activation's derivative (at most 0.25 for a sigmoid) times a weight matrix, so gradient
# norms shrink geometrically with depth; ReLU (derivative 1 where active) with residual connections
# passes the signal through unchanged. Here are the gradient norms per layer of two 20-layer networks
# at initialization:

# %%
def layer_grad_norms(act: type[torch.nn.Module], residual: bool, depth: int = 20, width: int = 64) -> list[float]:
    torch.manual_seed(0)
    layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(depth))
    h = x_train[:256] @ torch.randn(64, width) / 8
    for layer in layers:
        h = h + act()(layer(h)) if residual else act()(layer(h))
    h.pow(2).mean().backward()
    return [layer.weight.grad.norm().item() for layer in layers]


deep = {"sigmoid, plain": layer_grad_norms(torch.nn.Sigmoid, residual=False),
        "ReLU + residual": layer_grad_norms(torch.nn.ReLU, residual=True)}
fig = viz.line_figure(list(range(1, 21)), deep, title="Gradient norm of each layer's weights, 20 layers at init",
                      xaxis_title="layer (1 = nearest the input)", yaxis_title="‖∂L/∂W‖", log_y=True)
fig

# %%
grad_decay = {k: v[-1] / v[0] for k, v in deep.items()}  # last layer's gradient over the first layer's
assert grad_decay["sigmoid, plain"] > 1e4 and grad_decay["ReLU + residual"] < 100
claims.append(("Sigmoid's gradient is ≈ 0 beyond x = ±3",
               f"σ′(3) = {sig_grad_3:.3f}, {100 * sig_ratio:.0f}% of the peak σ′(0) = 0.25. What vanishes is the product "
               f"over layers: in a 20-layer sigmoid net the last layer's gradient is {grad_decay['sigmoid, plain']:.1e}× "
               f"the first layer's; with ReLU + residual, {grad_decay['ReLU + residual']:.1f}×",
               "half right: depth, not one sigmoid, kills the gradient"))

# %%
# "Label smoothing hurts calibration slightly."
def top1_on_val(eps: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train the digits MLP with label smoothing eps; (confidence, correct) of its top-1 predictions."""
    torch.manual_seed(seed)
    net = training.mlp(64, 256, 10)
    smooth = lambda logits, y: losses.cross_entropy(logits, y, label_smoothing=eps)  # noqa: E731
    training.train(net, (x_train, y_train), (x_val, y_val), progress=False, loss_fn=smooth,
                   cfg=training.TrainConfig(steps=pick(SMOKE, 200, 400), eval_every=400, seed=seed))
    with torch.no_grad():
        probs = torch.softmax(net.eval()(x_val), -1).numpy()
    return calibration.top1(probs, y_val.numpy())


ls_seeds = range(pick(SMOKE, 1, 3))
ls_runs = {eps: [top1_on_val(eps, seed) for seed in tqdm(ls_seeds, desc=f"label smoothing {eps}", leave=False)]
           for eps in (0.0, 0.1)}
ls = {eps: np.mean([(calibration.expected_calibration_error(c, ok), c.mean(), ok.mean()) for c, ok in runs], axis=0)
      for eps, runs in ls_runs.items()}  # per eps: mean (ECE, confidence, accuracy) over seeds
fig = go.Figure()
fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line=dict(color="gray", dash="dot"))
for i, (eps, runs) in enumerate(ls_runs.items()):
    bins = calibration.reliability(*runs[0], n_bins=10)
    fig.add_scatter(x=bins["confidence"], y=bins["accuracy"], mode="lines+markers", name=f"ε = {eps:g}",
                    marker=dict(size=4 + 20 * np.sqrt(bins["count"] / bins["count"].sum()), color=viz.PALETTE[i]),
                    line=dict(color=viz.PALETTE[i]))
fig.update_layout(title="Reliability diagram on validation digits (marker size ∝ √ rows in the bin)",
                  xaxis_title="mean confidence in bin", yaxis_title="accuracy in bin")
display(fig)
assert ls[0.1][0] > ls[0.0][0], "on this problem, smoothing pushes confidence below accuracy"
claims.append(("Label smoothing hurts calibration slightly",
               f"digits MLP, ECE {ls[0.0][0]:.3f} → {ls[0.1][0]:.3f} with ε = 0.1 (mean confidence {ls[0.0][1]:.2f} → "
               f"{ls[0.1][1]:.2f}, accuracy {ls[0.0][2]:.3f} → {ls[0.1][2]:.3f})",
               "holds here (underconfidence); for overconfident large nets it helps (Müller et al., 2019)"))

# %%
Markdown("| claim | measured | verdict |\n|---|---|---|\n" + "\n".join(f"| {c} | {m} | {v} |" for c, m, v in claims))

# %% [markdown]
# The label-smoothing row is the instructive one: the claim in interview notes is that smoothing
# "hurts calibration", while the paper usually cited for it {cite}`muller2019label` finds it
# *improves* the calibration of large image classifiers. Both are right for their model. Smoothing
# caps the target probability at $1 - \varepsilon + \varepsilon/K$, which pulls an overconfident
# network back towards its accuracy — and pushes a network that was already calibrated, like this
# small MLP, into underconfidence. Calibration is a property of a model on data, to be measured
# with a reliability diagram, not predicted from a rule.
#
# ## 10. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** AdamW keeps two fp32 moments per parameter. How many bytes of optimizer state does it hold
# for a 7-billion-parameter model (not counting the weights or master copy)?

# %%
answer_1 = ...
probe = torch.nn.Linear(100, 10)
probe_opt = torch.optim.AdamW(probe.parameters())
probe(torch.randn(4, 100)).sum().backward()
probe_opt.step()
bytes_per_param = (optim.state_bytes(probe_opt) - 8 * len(list(probe.parameters()))) / sum(p.numel() for p in probe.parameters())
check(answer_1, 7e9 * bytes_per_param)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# Two fp32 tensors (m and v) the size of the weights: 2 × 4 bytes × 7·10⁹ = 5.6·10¹⁰ bytes, 56 GB —
# measured above from a real `torch.optim.AdamW`. With fp32 master weights for mixed precision add
# another 28 GB.
# :::
#
# **2.** Above which logit $x$ does $e^x$ overflow in float16? (Two decimals.)

# %%
answer_2 = ...
check(answer_2, numerics.exp_overflow_threshold(torch.float16))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $\ln(65504) \approx$ {glue:text}`exp_limit_fp16:.2f`. This is why fp16 attention always subtracts
# the row maximum before the exponential.
# :::
#
# **3.** InfoNCE with a batch of 1,024 and uninformative scores: what loss do you expect?

# %%
answer_3 = ...
check(answer_3, losses.info_nce(torch.randn(1024, 32), torch.randn(1024, 32), temperature=100.0).item(), rel_tol=0.01)

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# Chance is a uniform guess among the batch, so the loss is $\ln 1024 \approx 6.93$. A training
# curve that starts near $\ln B$ is healthy; one that stays there has learned nothing.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(2 * 4 * 7e9, 7e9 * bytes_per_param)
assert check(11.09, numerics.exp_overflow_threshold(torch.float16))
assert check(np.log(1024), losses.info_nce(torch.randn(1024, 32), torch.randn(1024, 32), temperature=100.0).item())

# %% [markdown]
# ## Summary
#
# - The task shape fixes the loss: BCE on logits, softmax CE, MSE/Huber, or a pairwise/listwise or
#   contrastive loss. Compute BCE from logits: the sigmoid-then-log form loses its gradient.
# - The training loop is fixed; AdamW, warmup + cosine and clipping are its production parts, and
#   the learning rate dominates everything else you can tune.
# - Landscapes explain optimizers: momentum for long shallow valleys, Adam for badly scaled ones.
# - Regularization is measured by the gap between train and validation curves; with noisy labels,
#   early stopping is the cheapest and strongest regularizer; bias² + variance + noise adds up to
#   the test error.
# - fp16 needs max-subtraction, fp32 accumulation and loss scaling; bf16 trades precision for range.
# - On rare positives, judge by precision–recall, compare with the best achievable, and measure a
#   loss change over several seeds; class weights move the threshold more than the ranking.
# - Rules of thumb are hypotheses: Adam's 2× state and the 2× backward hold; "dropout is random at
#   eval", "Xavier std 1/√(fan_in + fan_out)" and "BatchNorm divides by zero at batch 1" do not.

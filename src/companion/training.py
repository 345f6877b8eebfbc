"""The training loop every model in the book shares, in its production form.

Sample a batch, forward, loss, backward, clip, step: the five lines never change. What production
adds is here too: AdamW with weight decay only on matrices (decaying biases and norm gains only
hurts), linear warmup then cosine decay of the learning rate, gradient-norm clipping, periodic
validation, and a record of everything for the curves.

References: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (2019); Loshchilov &
Hutter, "SGDR" (2017) for the cosine schedule; Goyal et al., "Accurate, Large Minibatch SGD"
(2017) for warmup.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


@dataclass
class TrainConfig:
    steps: int = 600
    batch_size: int = 64
    peak_lr: float = 3e-3
    warmup_frac: float = 0.05  # share of steps spent ramping the LR up linearly
    min_lr_frac: float = 0.1  # the cosine ends at peak_lr * min_lr_frac
    weight_decay: float = 1e-2
    clip_norm: float | None = 1.0
    optimizer: str = "adamw"  # "adamw" or "sgd" (momentum 0.9)
    eval_every: int = 25
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.peak_lr > 0:
            raise ValueError(f"peak_lr must be > 0, got {self.peak_lr}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if not 0 <= self.min_lr_frac <= 1:
            raise ValueError(f"min_lr_frac must be in [0, 1], got {self.min_lr_frac}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")


@dataclass
class History:
    """What happened during training; every list is indexed like ``step``."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    diverged: bool = False  # the loss became inf/nan and training stopped early

    @property
    def best_step(self) -> int:
        """The step with the lowest validation loss: where early stopping would have kept the weights."""
        return self.step[min(range(len(self.val_loss)), key=self.val_loss.__getitem__)]

    def as_dict(self) -> dict[str, list]:
        return asdict(self)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate at ``step``: linear warmup to ``peak_lr``, then cosine decay to ``min_lr``.

    Example: ``warmup_cosine(0, 100, 10, 1.0)`` -> 0.1; step 9 -> 1.0; step 99 -> min_lr.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
    if not 0 <= step < total_steps:
        raise ValueError(f"step must be in [0, {total_steps}), got {step}")
    if not 0 <= min_lr <= peak_lr:
        raise ValueError(f"need 0 <= min_lr <= peak_lr, got min_lr={min_lr}, peak_lr={peak_lr}")
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - 1 - warmup_steps)
    return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups: matrices (dim >= 2) decay, vectors (biases, norm gains) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def mlp(d_in: int, d_hidden: int, d_out: int, depth: int = 2, dropout: float = 0.0) -> nn.Sequential:
    """A ReLU MLP with ``depth`` hidden layers: (B, d_in) -> (B, d_out) logits."""
    if min(d_in, d_hidden, d_out, depth) < 1:
        raise ValueError(f"d_in, d_hidden, d_out and depth must be >= 1, got {d_in}, {d_hidden}, {d_out}, {depth}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    width = d_in
    for _ in range(depth):
        layers += [nn.Linear(width, d_hidden), nn.ReLU()]
        layers += [nn.Dropout(dropout)] if dropout else []
        width = d_hidden
    return nn.Sequential(*layers, nn.Linear(width, d_out))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=F.cross_entropy) -> tuple[float, float]:
    """(mean loss, accuracy) of a classifier on (x: (N, D), y: (N,)), in eval mode."""
    x, y = _check_xy((x, y), "(x, y)")
    was_training = model.training
    model.eval()
    logits = model(x)
    model.train(was_training)
    return loss_fn(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


def train(
    model: nn.Module,
    train_data: tuple[torch.Tensor, torch.Tensor],
    val_data: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig = TrainConfig(),
    loss_fn=F.cross_entropy,
    progress: bool = True,
) -> History:
    """Train a classifier on (x: (N, D) float, y: (N,) long) and return its History."""
    x, y = _check_xy(train_data, "train_data")
    x_val, y_val = _check_xy(val_data, "val_data")
    gen = torch.Generator().manual_seed(cfg.seed)
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.peak_lr)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.peak_lr, momentum=0.9)
    warmup = int(cfg.warmup_frac * cfg.steps)
    hist, running = History(), []
    model.train()
    for step in tqdm(range(cfg.steps), desc="train", disable=not progress, leave=False):
        lr = warmup_cosine(step, cfg.steps, warmup, cfg.peak_lr, cfg.peak_lr * cfg.min_lr_frac)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(x), (cfg.batch_size,), generator=gen)
        loss = loss_fn(model(x[idx]), y[idx])  # 1. sample, 2. forward
        opt.zero_grad(set_to_none=True)
        loss.backward()  # 3. backward
        max_norm = cfg.clip_norm if cfg.clip_norm is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)  # 4. clip (norm before clipping)
        opt.step()  # 5. step
        running.append(loss.item())
        if not math.isfinite(running[-1]):
            hist.diverged = True  # stop here; the history says so rather than holding NaNs
            break
        if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
            val_loss, val_acc = evaluate(model, x_val, y_val, loss_fn)
            hist.step.append(step + 1)
            hist.train_loss.append(sum(running) / len(running))
            hist.val_loss.append(val_loss)
            hist.val_acc.append(val_acc)
            hist.lr.append(lr)
            hist.grad_norm.append(float(norm))
            running = []
    return hist


def lr_band_decades(lrs, losses, factor: float = 1.5) -> float:
    """Width, in decades, of the learning-rate band whose final loss is within ``factor`` of the best.

    ``lrs`` (n,) increasing and positive, ``losses`` (n,) with NaN or inf for diverged runs. The
    curve is interpolated linearly in log10(lr) on a fine grid, so the width does not jump in
    steps of the sweep's spacing. Only the contiguous band around the best LR counts.

        >>> lr_band_decades([1e-3, 1e-2, 1e-1], [1.0, 1.0, 9.0])  # (about) one decade
    """
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if lrs.ndim != 1 or losses.shape != lrs.shape or len(lrs) < 2:
        raise ValueError(f"lrs and losses must be 1-D of the same length >= 2, got {lrs.shape} and {losses.shape}")
    if not (np.all(lrs > 0) and np.all(np.diff(lrs) > 0)):
        raise ValueError("lrs must be positive and strictly increasing")
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    losses = np.where(np.isfinite(losses), losses, np.inf)
    if not np.isfinite(losses).any():
        raise ValueError("every run diverged: there is no best learning rate")
    log_lr = np.log10(lrs)
    fine = np.linspace(log_lr[0], log_lr[-1], 2001)
    capped = np.minimum(losses, 10 * factor * losses.min())  # diverged runs: far above the band
    curve = np.interp(fine, log_lr, capped)
    inside = curve <= factor * losses.min()
    best = int(np.argmin(np.abs(fine - log_lr[int(np.argmin(losses))])))
    lo = hi = best
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    while hi < len(fine) - 1 and inside[hi + 1]:
        hi += 1
    return float(fine[hi] - fine[lo])


def _check_xy(data, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (x, y) of tensors")
    x, y = data
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise TypeError(f"{name} must hold torch tensors, got {type(x).__name__}, {type(y).__name__}")
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"{name}[0] must be a float tensor of shape (N, D), got {tuple(x.shape)} {x.dtype}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name}[1] has shape {tuple(y.shape)} but x has {x.shape[0]} rows; expected ({x.shape[0]},)")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    return x, y

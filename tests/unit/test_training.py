"""companion.training: the schedule, the parameter groups and the loop itself."""

from __future__ import annotations

import math

import pytest
import torch

from companion import training
from companion.data import digits


def test_warmup_cosine_shape():
    lrs = [training.warmup_cosine(s, 100, 10, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])), "monotone decay after warmup"
    mid = 10 + (100 - 1 - 10) / 2
    assert training.warmup_cosine(int(mid), 100, 10, 1.0, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * (int(mid) - 10) / 89)))


@pytest.mark.parametrize("args, match", [((5, 10, 10, 1.0), "warmup_steps < total_steps"), ((10, 10, 1, 1.0), "step must be"),
                                         ((1, 10, 1, 1.0, 2.0), "min_lr <= peak_lr")])
def test_warmup_cosine_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        training.warmup_cosine(*args)


def test_param_groups_decay_only_matrices():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    decay, no_decay = training.param_groups(model, 0.1)
    assert all(p.dim() == 2 for p in decay["params"]) and len(decay["params"]) == 2
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="no trainable parameters"):
        training.param_groups(torch.nn.ReLU(), 0.1)


def test_train_learns_digits_and_is_deterministic():
    train_data, val_data = digits(seed=0)
    cfg = training.TrainConfig(steps=120, eval_every=40)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(training.train(training.mlp(64, 64, 10), train_data, val_data, cfg, progress=False))
    assert runs[0].val_loss == runs[1].val_loss, "same seed, same history"
    assert runs[0].val_acc[-1] > 0.85 and runs[0].step == [40, 80, 120]
    assert runs[0].lr[-1] == pytest.approx(cfg.peak_lr * cfg.min_lr_frac)


def test_clipping_bounds_the_update():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    x, y = torch.randn(32, 2) * 1e4, torch.randint(0, 2, (32,))
    before = [p.detach().clone() for p in model.parameters()]
    cfg = training.TrainConfig(steps=1, batch_size=32, peak_lr=0.1, warmup_frac=0.0, optimizer="sgd", clip_norm=1.0,
                                weight_decay=0.0)
    hist = training.train(model, (x, y), (x, y), cfg, progress=False)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert hist.grad_norm[0] > 100, "the raw gradient is huge"
    assert moved <= 0.1 * 1.0 + 1e-6, "one SGD step with a clipped gradient moves at most lr * clip_norm"


def test_divergence_is_reported_not_hidden():
    torch.manual_seed(0)
    train_data, val_data = digits(seed=0)
    cfg = training.TrainConfig(steps=50, peak_lr=1e6, optimizer="sgd", clip_norm=None, warmup_frac=0.0)
    hist = training.train(training.mlp(64, 32, 10), train_data, val_data, cfg, progress=False)
    assert hist.diverged


@pytest.mark.parametrize("field, value", [("steps", 0), ("peak_lr", 0.0), ("warmup_frac", 1.0), ("optimizer", "lion"), ("clip_norm", -1.0)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        training.TrainConfig(**{field: value})


def test_train_rejects_mismatched_data():
    x, y = torch.randn(10, 3), torch.zeros(9, dtype=torch.long)
    with pytest.raises(ValueError, match="train_data\\[1\\] has shape \\(9,\\) but x has 10 rows"):
        training.train(torch.nn.Linear(3, 2), (x, y), (x, y[:0]), progress=False)


def test_mlp_shapes_and_validation():
    assert training.mlp(5, 7, 3, depth=3, dropout=0.1)(torch.randn(4, 5)).shape == (4, 3)
    with pytest.raises(ValueError, match="dropout"):
        training.mlp(5, 7, 3, dropout=1.0)


def test_lr_band_is_measured_in_decades_between_interpolated_crossings():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    # within 1.5x of the best (1.0) means loss <= 1.5: crossings halfway between 1e-4..1e-3 and 1e-2..1e-1
    assert training.lr_band_decades(lrs, [2.0, 1.0, 1.0, 2.0, float("nan")]) == pytest.approx(2.0, abs=1e-2)
    assert training.lr_band_decades(lrs, [9.0, 9.0, 1.0, 9.0, 9.0]) == pytest.approx(0.0625 * 2, abs=1e-2)
    # a second good region that is not connected to the best one does not count
    assert training.lr_band_decades(lrs, [1.1, 9.0, 1.0, 9.0, 9.0]) < 0.2


def test_lr_band_rejects_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        training.lr_band_decades([1e-2, 1e-3], [1.0, 2.0])
    with pytest.raises(ValueError, match="same length"):
        training.lr_band_decades([1e-3, 1e-2], [1.0])
    with pytest.raises(ValueError, match="every run diverged"):
        training.lr_band_decades([1e-3, 1e-2], [float("nan"), float("inf")])
    with pytest.raises(ValueError, match="factor"):
        training.lr_band_decades([1e-3, 1e-2], [1.0, 2.0], factor=1.0)


def test_evaluate_names_bad_data():
    model = training.mlp(4, 8, 3)
    loss, acc = training.evaluate(model, torch.randn(10, 4), torch.randint(0, 3, (10,)))
    assert loss > 0 and 0 <= acc <= 1
    with pytest.raises(ValueError, match="has shape \\(9,\\) but x has 10 rows"):
        training.evaluate(model, torch.randn(10, 4), torch.randint(0, 3, (9,)))

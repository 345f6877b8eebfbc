"""companion.losses: every loss equals the library's, at ordinary and at extreme inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import hinge_loss

from companion import losses

G = torch.Generator().manual_seed(0)


def randn(*shape, scale=1.0, dtype=torch.float64):
    return scale * torch.randn(*shape, generator=G, dtype=dtype)


def binary_targets(*shape):
    return (torch.rand(*shape, generator=G) < 0.3).to(torch.float64)


# ----------------------------------------------------------------------------- binary cross-entropy


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_torch_up_to_huge_logits(scale, reduction):
    x, y = randn(64, scale=scale), binary_targets(64)
    x[:2] = torch.tensor([1000.0, -1000.0])
    ours = losses.bce_with_logits(x, y, reduction=reduction)
    ref = F.binary_cross_entropy_with_logits(x, y, reduction=reduction)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref)


def test_bce_with_logits_pos_weight_matches_torch_scalar_and_per_class():
    x, y = randn(32, 3, scale=20.0), binary_targets(32, 3)
    for w in (5.0, torch.tensor([0.5, 1.0, 10.0], dtype=torch.float64)):
        ref = F.binary_cross_entropy_with_logits(x, y, pos_weight=torch.as_tensor(w, dtype=torch.float64))
        torch.testing.assert_close(losses.bce_with_logits(x, y, pos_weight=w), ref)


def test_bce_with_logits_gradient_matches_torch():
    x = randn(16, scale=50.0).requires_grad_()
    y = binary_targets(16)
    (g_ours,) = torch.autograd.grad(losses.bce_with_logits(x, y, pos_weight=3.0), x)
    (g_ref,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(x, y, pos_weight=torch.tensor(3.0)), x)
    torch.testing.assert_close(g_ours, g_ref)


def test_bce_naive_equals_torch_bce_on_sigmoid_and_saturates():
    x = torch.linspace(-120, 120, 241)  # float32, as in training
    y = binary_targets(241).float()
    torch.testing.assert_close(losses.bce_naive(x, y), F.binary_cross_entropy(torch.sigmoid(x), y))
    # Gradients agree too, where the naive form still has one.
    x = torch.linspace(-15, 15, 61, requires_grad=True)
    y = binary_targets(61).float()
    (g_ours,) = torch.autograd.grad(losses.bce_naive(x, y), x)
    (g_ref,) = torch.autograd.grad(F.binary_cross_entropy(torch.sigmoid(x), y), x)
    torch.testing.assert_close(g_ours, g_ref)
    assert torch.sigmoid(torch.tensor(16.7)) == 1.0 and torch.sigmoid(torch.tensor(16.5)) < 1.0
    # A confidently wrong positive: the naive loss is clamped at 100 and its gradient is zero.
    x_wrong = torch.tensor([20.0], requires_grad=True)
    naive = losses.bce_naive(x_wrong, torch.zeros(1))
    assert naive.item() == pytest.approx(100.0)
    assert torch.autograd.grad(naive, x_wrong)[0].item() == 0.0
    stable = losses.bce_with_logits(x_wrong, torch.zeros(1))
    assert stable.item() == pytest.approx(20.0, rel=1e-6)
    assert torch.autograd.grad(stable, x_wrong)[0].item() == pytest.approx(1.0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-80, 80), min_size=1, max_size=20), st.integers(0, 2**31 - 1))
def test_bce_forms_agree_where_the_naive_one_is_safe(values, seed):
    x = torch.tensor(values, dtype=torch.float64).clamp(-15, 15)
    y = (torch.rand(len(values), generator=torch.Generator().manual_seed(seed)) < 0.5).double()
    torch.testing.assert_close(losses.bce_naive(x, y), losses.bce_with_logits(x, y))


def test_bce_rejects_bad_inputs():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"logits has shape \(4, 3\) but targets has shape \(4,\)"):
        losses.bce_with_logits(x, torch.zeros(4))
    with pytest.raises(TypeError, match="targets must be a torch.Tensor"):
        losses.bce_with_logits(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"targets must hold values in \[0, 1\]"):
        losses.bce_with_logits(x, torch.full((4, 3), 2.0))
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.bce_with_logits(x, torch.zeros(4, 3), reduction="avg")
    with pytest.raises(ValueError, match="pos_weight must be finite and >= 0"):
        losses.bce_with_logits(x, torch.zeros(4, 3), pos_weight=-1.0)
    with pytest.raises(ValueError, match="one weight per class"):
        losses.bce_with_logits(x, torch.zeros(4, 3), pos_weight=torch.ones(4))
    with pytest.raises(TypeError, match="logits must be a floating point tensor"):
        losses.bce_naive(torch.zeros(3, dtype=torch.long), torch.zeros(3))


# ----------------------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(smoothing, reduction):
    logits, targets = randn(20, 7, scale=30.0), torch.randint(0, 7, (20,), generator=G)
    ref = F.cross_entropy(logits, targets, label_smoothing=smoothing, reduction=reduction)
    torch.testing.assert_close(losses.cross_entropy(logits, targets, smoothing, reduction), ref)


def test_cross_entropy_rejects_bad_inputs():
    logits = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"expected targets of shape \(4,\)"):
        losses.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="targets must be a long tensor"):
        losses.cross_entropy(logits, torch.zeros(4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        losses.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.cross_entropy(logits, torch.zeros(4, dtype=torch.long), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"logits must have shape \(B, K\)"):
        losses.cross_entropy(torch.zeros(4), torch.zeros(4, dtype=torch.long))


# ----------------------------------------------------------------------------- regression


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses_match_torch(reduction):
    pred, target = randn(50, scale=3.0), randn(50, scale=3.0)
    torch.testing.assert_close(losses.mse(pred, target, reduction), F.mse_loss(pred, target, reduction=reduction))
    torch.testing.assert_close(losses.mae(pred, target, reduction), F.l1_loss(pred, target, reduction=reduction))
    for delta in (0.5, 1.0, 2.5):
        ref = F.huber_loss(pred, target, reduction=reduction, delta=delta)
        torch.testing.assert_close(losses.huber(pred, target, delta, reduction), ref)


def test_regression_losses_reject_bad_inputs():
    with pytest.raises(ValueError, match=r"pred has shape \(3,\) but target has shape \(4,\)"):
        losses.mse(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="delta must be a number > 0"):
        losses.huber(torch.zeros(3), torch.zeros(3), delta=0.0)


# ----------------------------------------------------------------------------- hinge


def test_hinge_matches_sklearn():
    scores = randn(40, scale=2.0)
    labels = torch.where(torch.rand(40, generator=G) < 0.5, -1, 1)
    ref = hinge_loss(labels.numpy(), scores.numpy())
    assert losses.hinge(scores, labels).item() == pytest.approx(ref, rel=1e-12)


def test_hinge_rejects_zero_one_labels():
    with pytest.raises(ValueError, match=r"labels must be -1 or \+1, got values \[0, 1\]"):
        losses.hinge(torch.zeros(2), torch.tensor([0, 1]))


# ----------------------------------------------------------------------------- InfoNCE


def test_info_nce_matches_cross_entropy_over_similarities():
    q, k = randn(16, 8), randn(16, 8)
    for normalize in (True, False):
        qq, kk = (F.normalize(q, dim=1), F.normalize(k, dim=1)) if normalize else (q, k)
        ref = F.cross_entropy(qq @ kk.T / 0.1, torch.arange(16))
        torch.testing.assert_close(losses.info_nce(q, k, temperature=0.1, normalize=normalize), ref)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 64), st.integers(1, 16), st.integers(0, 2**31 - 1))
def test_info_nce_tends_to_log_batch_size_at_high_temperature(batch, dim, seed):
    emb = torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    loss = losses.info_nce(emb, emb, temperature=1e6)
    assert loss.item() == pytest.approx(math.log(batch), abs=1e-4)


def test_info_nce_rejects_bad_inputs():
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        losses.info_nce(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0)
    with pytest.raises(ValueError, match=r"queries has shape \(2, 3\) but keys has shape \(2, 4\)"):
        losses.info_nce(torch.zeros(2, 3), torch.zeros(2, 4))


# ----------------------------------------------------------------------------- ListNet


def test_listnet_is_cross_entropy_with_soft_targets():
    scores, relevance = randn(6, 10), torch.randint(0, 4, (6, 10), generator=G).double()
    target = torch.softmax(relevance, dim=1)
    ref = F.cross_entropy(scores, target)
    torch.testing.assert_close(losses.listnet(scores, relevance), ref)
    # Cross-entropy = KL divergence + entropy of the target distribution.
    kl = F.kl_div(torch.log_softmax(scores, 1), target, reduction="batchmean")
    entropy = -(target * target.log()).sum(1).mean()
    torch.testing.assert_close(losses.listnet(scores, relevance), kl + entropy)


def test_listnet_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"shape \(B, N\)"):
        losses.listnet(torch.zeros(5), torch.zeros(5))


# ----------------------------------------------------------------------------- focal


def focal_reference(x, y, gamma, alpha):
    """The formula of torchvision.ops.sigmoid_focal_loss, re-derived."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def test_focal_with_gamma_zero_is_bce():
    x, y = randn(100, scale=10.0), binary_targets(100)
    torch.testing.assert_close(losses.focal_loss(x, y, gamma=0.0), losses.bce_with_logits(x, y))


@pytest.mark.parametrize("gamma, alpha", [(2.0, None), (2.0, 0.25), (0.5, 0.75), (5.0, None)])
def test_focal_matches_the_torchvision_formula(gamma, alpha):
    x, y = randn(200, scale=4.0), binary_targets(200)
    ref = focal_reference(x, y, gamma, alpha)
    torch.testing.assert_close(losses.focal_loss(x, y, gamma, alpha, reduction="none"), ref)


def test_focal_down_weights_easy_examples_and_stays_finite():
    x = torch.tensor([4.0, -4.0, 1000.0, -1000.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    focal = losses.focal_loss(x, y, gamma=2.0, reduction="none")
    bce = losses.bce_with_logits(x, y, reduction="none")
    assert (focal[:2] < 1e-3 * bce[:2]).all()
    (grad,) = torch.autograd.grad(losses.focal_loss(x, y, gamma=0.5), x)
    assert torch.isfinite(grad).all()


def test_focal_rejects_bad_parameters():
    x, y = torch.zeros(3), torch.zeros(3)
    with pytest.raises(ValueError, match="gamma must be a number >= 0"):
        losses.focal_loss(x, y, gamma=-1.0)
    with pytest.raises(ValueError, match=r"alpha must be None or a number in \[0, 1\]"):
        losses.focal_loss(x, y, alpha=1.5)

"""The losses of chapter 1, each written out from its formula and each equal to torch's.

Tensors in, tensor out, differentiable. ``reduction`` is ``"mean"`` (default), ``"sum"`` or
``"none"`` (per-example values), as in ``torch.nn.functional``.

    >>> bce_with_logits(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]))
    tensor(0.2201)

References:
- PyTorch docs, ``torch.nn.functional``: binary_cross_entropy(_with_logits), cross_entropy,
  mse_loss, l1_loss, huber_loss (the formulas and the numerically stable forms used here).
- Huber, "Robust Estimation of a Location Parameter" (1964).
- Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (2016): label smoothing.
- van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding"
  (2018): InfoNCE.
- Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach" (2007): ListNet.
- Lin et al., "Focal Loss for Dense Object Detection" (2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")


# ----------------------------------------------------------------------------- checks


def _check_tensor(name: str, x, *, floating: bool = True) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")


def _check_pair(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    _check_tensor(a_name, a)
    _check_tensor(b_name, b)
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} has shape {tuple(a.shape)} but {b_name} has shape {tuple(b.shape)}; they must match"
        )


def _is_real(x) -> bool:
    """A plain int or float (bool excluded)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_probabilities(name: str, y: torch.Tensor) -> None:
    if y.numel() and not bool(((y >= 0) & (y <= 1)).all()):
        raise ValueError(f"{name} must hold values in [0, 1] (labels or probabilities)")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


# ----------------------------------------------------------------------------- binary


def bce_with_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pos_weight: float | torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary cross-entropy from logits, in the form that never overflows.

    Per element, with x the logit and y the target in [0, 1]:
        ``max(x, 0) - x*y + log1p(exp(-|x|))``
    which is ``-[y log σ(x) + (1-y) log(1-σ(x))]`` rearranged so that ``exp`` only ever sees
    non-positive numbers. With ``pos_weight`` w the positive term is weighted by w (as torch):
        ``(1-y)*x + (1 + (w-1)*y) * softplus(-x)``.
    ``pos_weight`` is a number or a tensor broadcast along the last dimension (one per class).
    Shapes: logits (...), targets (...) -> scalar, or (...) with ``reduction="none"``.
    Class weighting for imbalanced data (``weighted_bce``) is this function with ``pos_weight``.
    """
    _check_pair("logits", logits, "targets", targets)
    _check_probabilities("targets", targets)
    _check_reduction(reduction)
    softplus_neg = torch.clamp(-logits, min=0) + torch.log1p(torch.exp(-logits.abs()))  # log(1 + e^-x)
    if pos_weight is None:
        loss = (1 - targets) * logits + softplus_neg
    else:
        pos_weight = _as_pos_weight(pos_weight, logits)
        loss = (1 - targets) * logits + (1 + (pos_weight - 1) * targets) * softplus_neg
    return _reduce(loss, reduction)


def _as_pos_weight(pos_weight, logits: torch.Tensor) -> torch.Tensor:
    if not (_is_real(pos_weight) or isinstance(pos_weight, torch.Tensor)):
        raise TypeError(f"pos_weight must be a number, a tensor or None, got {type(pos_weight).__name__}")
    w = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    if w.dim() > 1 or (w.dim() == 1 and (logits.dim() == 0 or w.shape[0] != logits.shape[-1])):
        raise ValueError(
            f"pos_weight has shape {tuple(w.shape)}; expected a number or one weight per class "
            f"(last dimension of logits, shape {tuple(logits.shape)})"
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"pos_weight must be finite and >= 0, got {pos_weight}")
    return w


def bce_naive(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy the textbook way: squash with a sigmoid, then take logs.

    Equal to ``F.binary_cross_entropy(torch.sigmoid(logits), targets)``, including torch's clamp
    of each log at -100. It is here to show why nobody trains like this: in float32
    ``σ(x)`` rounds to exactly 1.0 once x ≳ 16.6, so ``log(1 - σ(x))`` is clamped at -100 and a
    confidently wrong positive prediction (target 0) gets a constant loss and zero gradient;
    for x ≲ -88.7 ``σ(x)`` underflows to 0 and the same happens to a wrong negative (target 1).
    ``bce_with_logits`` has neither problem.
    """
    _check_pair("logits", logits, "targets", targets)
    _check_probabilities("targets", targets)
    _check_reduction(reduction)
    p = torch.sigmoid(logits)
    return _reduce(-(targets * _log_floored(p) + (1 - targets) * _log_floored(1 - p)), reduction)


def _log_floored(p: torch.Tensor) -> torch.Tensor:
    """``log(p)`` floored at -100 as torch's BCE does, with a zero (not NaN) gradient at p = 0."""
    safe = torch.where(p > 0, p, torch.ones_like(p))  # log(0) would send 0 * inf = NaN backwards
    return torch.where(p > 0, torch.log(safe).clamp(min=-100), torch.full_like(p, -100.0))


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary focal loss (Lin et al., 2017), computed from logits.

    ``FL = α_t · (1 - p_t)^γ · BCE``, where p_t is the probability given to the true class and
    α_t = α for positives, 1-α for negatives (no weighting when ``alpha`` is None). Easy examples
    (p_t near 1) are down-weighted by ``(1 - p_t)^γ``; ``gamma=0, alpha=None`` is plain BCE.
    ``1 - p_t`` is taken as ``σ(-x)`` for positives and ``σ(x)`` for negatives, which never
    cancels. Same formula as ``torchvision.ops.sigmoid_focal_loss``.
    Shapes: logits (...), targets (...) with values in [0, 1] -> scalar or (...).
    """
    _check_pair("logits", logits, "targets", targets)
    _check_probabilities("targets", targets)
    _check_reduction(reduction)
    if not _is_real(gamma) or not gamma >= 0:
        raise ValueError(f"gamma must be a number >= 0, got {gamma!r}")
    if alpha is not None and (not _is_real(alpha) or not 0 <= alpha <= 1):
        raise ValueError(f"alpha must be None or a number in [0, 1], got {alpha!r}")
    ce = bce_with_logits(logits, targets, reduction="none")
    p_wrong = targets * torch.sigmoid(-logits) + (1 - targets) * torch.sigmoid(logits)  # 1 - p_t
    # The clamp only touches values that are exactly 0 (where ce is 0 too); it keeps the gradient
    # of p_wrong**gamma finite when gamma < 1.
    p_wrong = p_wrong.clamp_min(torch.finfo(logits.dtype).tiny)
    loss = ce * p_wrong**gamma
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


def hinge(scores: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The SVM hinge loss ``max(0, 1 - y·s)`` for labels y in {-1, +1}.

    Shapes: scores (...), labels (...) -> scalar or (...). Equal to ``sklearn.metrics.hinge_loss``
    for binary labels. Labels 0/1 are rejected rather than silently mis-read.
    """
    _check_tensor("scores", scores)
    _check_tensor("labels", labels, floating=False)
    if scores.shape != labels.shape:
        raise ValueError(
            f"scores has shape {tuple(scores.shape)} but labels has shape {tuple(labels.shape)}; they must match"
        )
    _check_reduction(reduction)
    if labels.numel() and not bool(((labels == 1) | (labels == -1)).all()):
        raise ValueError(f"labels must be -1 or +1, got values {torch.unique(labels).tolist()}")
    return _reduce(torch.clamp(1 - labels.to(scores.dtype) * scores, min=0), reduction)


# ----------------------------------------------------------------------------- multi-class


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, reduction: str = "mean"
) -> torch.Tensor:
    """Softmax cross-entropy for classes, via ``log_softmax = x - logsumexp(x)``.

    Shapes: logits (B, K) float, targets (B,) long class indices -> scalar or (B,).
    With label smoothing ε the target distribution is ``(1-ε)·onehot + ε/K``, so
    ``loss = (1-ε)·(-log p_y) + ε·mean_k(-log p_k)``, as ``F.cross_entropy``.
    """
    _check_tensor("logits", logits)
    _check_tensor("targets", targets, floating=False)
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, K), got {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"logits has shape {tuple(logits.shape)} but targets has shape {tuple(targets.shape)}; "
            f"expected targets of shape ({logits.shape[0]},)"
        )
    if targets.dtype != torch.long:
        raise TypeError(f"targets must be a long tensor of class indices, got dtype {targets.dtype}")
    n_classes = logits.shape[1]
    if targets.numel() and not bool(((targets >= 0) & (targets < n_classes)).all()):
        raise ValueError(f"targets must be class indices in [0, {n_classes}), got {targets.tolist()}")
    if not _is_real(label_smoothing) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    _check_reduction(reduction)
    log_probs = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (B, K)
    nll = -log_probs.gather(1, targets[:, None]).squeeze(1)  # (B,)
    loss = (1 - label_smoothing) * nll + label_smoothing * -log_probs.mean(dim=1)
    return _reduce(loss, reduction)


# ----------------------------------------------------------------------------- regression


def mse(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error ``(pred - target)²``. Shapes: (...) and (...) -> scalar or (...)."""
    _check_pair("pred", pred, "target", target)
    return _reduce((pred - target) ** 2, reduction)


def mae(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute error ``|pred - target|`` (torch's ``l1_loss``). Shapes as ``mse``."""
    _check_pair("pred", pred, "target", target)
    return _reduce((pred - target).abs(), reduction)


def huber(pred: torch.Tensor, target: torch.Tensor, delta: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Huber loss: quadratic ``0.5·d²`` for |d| < delta, linear ``delta·(|d| - 0.5·delta)`` beyond.

    Robust to outliers like MAE, smooth at zero like MSE. Shapes as ``mse``.
    """
    _check_pair("pred", pred, "target", target)
    if not _is_real(delta) or not delta > 0:
        raise ValueError(f"delta must be a number > 0, got {delta!r}")
    d = (pred - target).abs()
    return _reduce(torch.where(d < delta, 0.5 * d**2, delta * (d - 0.5 * delta)), reduction)


# ----------------------------------------------------------------------------- contrastive, ranking


def info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float = 0.07,
    normalize: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """InfoNCE with in-batch negatives: query i should pick key i among all B keys.

    Shapes: queries (B, D), keys (B, D) -> scalar or (B,). The logits are ``q @ k.T / τ``
    (cosine similarities when ``normalize``) and the loss is cross-entropy with the diagonal as
    the target class. Its value is at most about log B for random embeddings; that is its ceiling.
    """
    _check_pair("queries", queries, "keys", keys)
    if queries.dim() != 2 or queries.shape[0] < 1:
        raise ValueError(f"queries and keys must have shape (B, D) with B >= 1, got {tuple(queries.shape)}")
    if not _is_real(temperature) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if normalize:
        queries, keys = F.normalize(queries, dim=1), F.normalize(keys, dim=1)
    logits = queries @ keys.T / temperature  # (B, B)
    positives = torch.arange(len(queries), device=queries.device)
    return cross_entropy(logits, positives, reduction=reduction)


def listnet(scores: torch.Tensor, relevance: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Top-one ListNet: cross-entropy between ``softmax(relevance)`` and ``softmax(scores)`` per list.

    Shapes: scores (B, N), relevance (B, N) float graded labels -> scalar or (B,).
    Each row is one query's list of N candidates; the loss is minimised when the predicted
    top-one probabilities match those implied by the relevance labels.
    """
    _check_pair("scores", scores, "relevance", relevance)
    if scores.dim() != 2:
        raise ValueError(f"scores and relevance must have shape (B, N), got {tuple(scores.shape)}")
    target = torch.softmax(relevance, dim=1)
    log_pred = scores - torch.logsumexp(scores, dim=1, keepdim=True)
    return _reduce(-(target * log_pred).sum(dim=1), reduction)

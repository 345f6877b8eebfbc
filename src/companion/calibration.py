"""Calibration: does a predicted probability of 0.8 come true 80% of the time?

Bin the predictions by confidence, compare each bin's mean confidence with its accuracy (the
reliability diagram), and average the gaps weighted by bin size: the expected calibration error,

    ECE = Σ_b (n_b / N) · |acc(b) − conf(b)|.

For a multi-class model the usual convention (Guo et al., 2017) scores the top-1 prediction:
confidence = max softmax probability, correct = (argmax == label).

    >>> expected_calibration_error(np.array([0.9, 0.9]), np.array([1, 0]), n_bins=10)
    0.4

References:
- Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks" (ICML 2017).
- Müller, Kornblith & Hinton, "When Does Label Smoothing Help?" (NeurIPS 2019).
- scikit-learn docs, ``sklearn.calibration.calibration_curve`` (the same uniform binning).
"""

from __future__ import annotations

import numpy as np


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin statistics over ``n_bins`` equal-width bins of [0, 1]; empty bins are dropped.

    confidence (N,) in [0, 1], correct (N,) of 0/1. Returns ``confidence`` (mean per bin),
    ``accuracy`` (mean of correct per bin) and ``count`` (rows per bin), each (n_nonempty,).
    Bins and edges are those of ``sklearn.calibration.calibration_curve(strategy="uniform")``.
    """
    confidence, correct = _check(confidence, correct, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)  # the same edges as scikit-learn, to the last digit
    bins = np.searchsorted(edges[1:-1], confidence)  # bin b holds (e_b, e_{b+1}]; 0 joins bin 0
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    hit_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    full = count > 0
    return {"confidence": conf_sum[full] / count[full], "accuracy": hit_sum[full] / count[full], "count": count[full]}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE in [0, 1]: the bin-size-weighted mean gap between accuracy and confidence."""
    r = reliability(confidence, correct, n_bins)
    return float(np.sum(r["count"] * np.abs(r["accuracy"] - r["confidence"])) / np.sum(r["count"]))


def top1(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence (N,), correct (N,)) of the top-1 prediction from probs (N, K) and labels (N,)."""
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"probs must be (N, K) and labels (N,), got {probs.shape} and {labels.shape}")
    if not np.allclose(probs.sum(1), 1.0, atol=1e-4):
        raise ValueError("probs rows must sum to 1 (pass softmax probabilities, not logits)")
    return probs.max(1), (probs.argmax(1) == labels).astype(float)


def _check(confidence, correct, n_bins) -> tuple[np.ndarray, np.ndarray]:
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    if confidence.ndim != 1 or correct.shape != confidence.shape or len(confidence) == 0:
        raise ValueError(
            f"confidence and correct must be non-empty 1-D arrays of one length, got {confidence.shape} and {correct.shape}"
        )
    if not ((confidence >= 0) & (confidence <= 1)).all():
        raise ValueError("confidence must hold probabilities in [0, 1]")
    if not np.isin(correct, (0, 1)).all():
        raise ValueError("correct must hold 0/1 values")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    return confidence, correct

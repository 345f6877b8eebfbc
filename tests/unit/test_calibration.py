"""companion.calibration against scikit-learn's calibration_curve."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve

from companion.calibration import expected_calibration_error, reliability, top1


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(20, 500), st.integers(2, 20))
def test_reliability_bins_match_sklearn(seed, n, n_bins):
    rng = np.random.default_rng(seed)
    confidence = rng.random(n) ** 2
    confidence[: n // 4] = rng.integers(0, n_bins + 1, n // 4) / n_bins  # values exactly on bin edges
    correct = (rng.random(n) < confidence).astype(int)
    correct[:2] = [0, 1]  # sklearn needs both classes
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform")
    r = reliability(confidence, correct, n_bins)
    np.testing.assert_allclose(r["accuracy"], prob_true, atol=1e-12)
    np.testing.assert_allclose(r["confidence"], prob_pred, atol=1e-12)
    assert r["count"].sum() == n


def test_ece_is_zero_when_calibrated_and_the_gap_when_not():
    rng = np.random.default_rng(0)
    conf = np.full(100_000, 0.7)
    assert expected_calibration_error(conf, rng.random(100_000) < 0.7) < 0.01
    assert expected_calibration_error(conf, np.ones(100_000)) == pytest.approx(0.3)


def test_top1_scores_the_argmax():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    conf, correct = top1(probs, np.array([0, 1]))
    assert conf.tolist() == [0.7, 0.6] and correct.tolist() == [1.0, 0.0]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="confidence must hold probabilities"):
        expected_calibration_error(np.array([1.5]), np.array([1]))
    with pytest.raises(ValueError, match="correct must hold 0/1"):
        expected_calibration_error(np.array([0.5]), np.array([2]))
    with pytest.raises(ValueError, match="n_bins"):
        reliability(np.array([0.5]), np.array([1]), n_bins=0)
    with pytest.raises(ValueError, match="one length"):
        reliability(np.array([0.5, 0.2]), np.array([1]))
    with pytest.raises(ValueError, match="sum to 1"):
        top1(np.array([[2.0, 3.0]]), np.array([0]))

"""companion.data.synthetic: the fraud table is exact in its counts, seeded, and validated."""

from __future__ import annotations

import numpy as np
import pytest

from companion.data.synthetic import FRAUD_SHIFT, N_INFORMATIVE, make_fraud, train_val_test_split


def test_make_fraud_shapes_dtypes_and_exact_positive_count():
    X, y = make_fraud(50_000, fraud_rate=1e-3, n_features=8, seed=0)
    assert X.shape == (50_000, 8) and X.dtype == np.float32
    assert y.shape == (50_000,) and y.dtype == np.int64
    assert y.sum() == 50 and set(np.unique(y)) == {0, 1}
    assert y[:1000].sum() < 50  # shuffled, not stacked at the front


def test_make_fraud_has_the_documented_ground_truth():
    X, y = make_fraud(40_000, fraud_rate=0.25, seed=1)
    shift = X[y == 1].mean(0) - X[y == 0].mean(0)
    np.testing.assert_allclose(shift[:N_INFORMATIVE], FRAUD_SHIFT, atol=0.1)
    np.testing.assert_allclose(shift[N_INFORMATIVE:], 0.0, atol=0.1)
    np.testing.assert_allclose(X[y == 0].std(0), 1.0, atol=0.05)


def test_make_fraud_is_deterministic_by_seed():
    a, b, c = make_fraud(2000, 0.01, seed=3), make_fraud(2000, 0.01, seed=3), make_fraud(2000, 0.01, seed=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_make_fraud_rejects_bad_inputs():
    with pytest.raises(ValueError, match="too few positives: .* gives 2 frauds; need at least 5, so raise n to 50000"):
        make_fraud(20_000, fraud_rate=1e-4)
    with pytest.raises(ValueError, match=r"fraud_rate must be a number in \(0, 0.5\]"):
        make_fraud(1000, fraud_rate=0.0)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        make_fraud(-5)
    with pytest.raises(ValueError, match="n_features must be an int >= 4"):
        make_fraud(1000, 0.1, n_features=2)


def test_split_is_stratified_and_covers_everything():
    X, y = make_fraud(10_000, fraud_rate=0.01, seed=0)
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = train_val_test_split(X, y, seed=0)
    assert (len(y_tr), len(y_va), len(y_te)) == (6000, 2000, 2000)
    assert (y_tr.sum(), y_va.sum(), y_te.sum()) == (60, 20, 20)
    rows = np.concatenate([X_tr, X_va, X_te])
    assert np.array_equal(np.sort(rows[:, 0]), np.sort(X[:, 0]))  # a partition: nothing lost or repeated
    again = train_val_test_split(X, y, seed=0)
    assert np.array_equal(again[1][0], X_va)


def test_split_rejects_bad_inputs():
    X, y = make_fraud(1000, fraud_rate=0.1)
    with pytest.raises(ValueError, match="fractions must sum to 1"):
        train_val_test_split(X, y, fractions=(0.6, 0.2, 0.3))
    with pytest.raises(ValueError, match="fractions must be three numbers > 0"):
        train_val_test_split(X, y, fractions=(0.8, 0.2))
    with pytest.raises(ValueError, match=r"y shape \(n,\)"):
        train_val_test_split(X, y[:10])
    with pytest.raises(TypeError, match="X and y must be numpy arrays"):
        train_val_test_split(X.tolist(), y)


def test_request_trace_caps_prompt_and_output_separately_without_a_spike_at_the_cap():
    from companion.data import request_trace

    trace = request_trace(4000, seed=0, prompt_median=20, output_median=24, sigma=1.0, max_len=128,
                          prompt_sigma=0.6, max_prompt_len=48, max_output_len=80)
    assert trace.prompt_len.max() <= 48 and trace.output_len.max() <= 80
    assert (trace.output_len == 80).mean() < 0.01  # redrawn, not clipped onto the cap
    assert abs(np.log(trace.prompt_len).std() - 0.6) < abs(np.log(trace.output_len).std() - 0.6)
    for bad in (dict(max_prompt_len=0), dict(max_output_len=2.5), dict(prompt_sigma=-1.0)):
        with pytest.raises(ValueError, match="must be None or"):
            request_trace(10, **bad)

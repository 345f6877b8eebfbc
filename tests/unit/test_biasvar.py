"""companion.biasvar: the decomposition adds up, and bias and variance move the way theory says."""

from __future__ import annotations

import numpy as np
import pytest

from companion.biasvar import bias_variance

DEGREES = [1, 3, 5, 9, 12]


@pytest.fixture(scope="module")
def rows():
    return {row["degree"]: row for row in bias_variance(DEGREES, seed=0)}


def test_rows_have_the_documented_keys(rows):
    assert list(rows) == DEGREES
    for row in rows.values():
        assert set(row) == {"degree", "bias2", "variance", "noise", "test_mse", "train_mse"}
        assert row["noise"] == pytest.approx(0.3**2)


def test_bias2_plus_variance_plus_noise_is_the_test_error(rows):
    for row in rows.values():
        total = row["bias2"] + row["variance"] + row["noise"]
        assert total == pytest.approx(row["test_mse"], rel=0.03)  # measured within 0.6%


def test_bias_falls_and_variance_rises_with_degree(rows):
    # sin(πx) is odd, so each odd degree adds the terms that matter.
    assert rows[1]["bias2"] > 10 * rows[3]["bias2"] > 10 * rows[5]["bias2"]
    assert rows[3]["variance"] < rows[5]["variance"] < rows[9]["variance"] < rows[12]["variance"]
    assert rows[12]["variance"] > 100 * rows[3]["variance"]
    # Training error only goes down with capacity; test error is U-shaped.
    train = [rows[d]["train_mse"] for d in DEGREES]
    assert train == sorted(train, reverse=True)
    best = min(DEGREES, key=lambda d: rows[d]["test_mse"])
    assert best in (3, 5)


def test_without_noise_a_matching_polynomial_has_no_error():
    (row,) = bias_variance([2], true_fn=lambda x: 1 - 2 * x**2, noise_std=0.0, n_rounds=5)
    assert row["bias2"] < 1e-20 and row["variance"] < 1e-20 and row["test_mse"] < 1e-20


def test_results_are_reproducible_by_seed():
    a = bias_variance([3], n_rounds=20, seed=1)
    assert a == bias_variance([3], n_rounds=20, seed=1)
    assert a != bias_variance([3], n_rounds=20, seed=2)


def test_bias_variance_rejects_bad_inputs():
    with pytest.raises(ValueError, match="degrees must be a non-empty sequence"):
        bias_variance([])
    with pytest.raises(ValueError, match="degrees must be ints >= 0, got -1"):
        bias_variance([-1])
    with pytest.raises(ValueError, match="degree 30 needs more than 30 training points but n_train is 30"):
        bias_variance([30])
    with pytest.raises(ValueError, match="n_rounds must be an int >= 2"):
        bias_variance([1], n_rounds=1)
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0"):
        bias_variance([1], noise_std=-0.1)
    with pytest.raises(ValueError, match="true_fn must return one value per input"):
        bias_variance([1], true_fn=lambda x: np.zeros(3))
    with pytest.raises(ValueError, match="true_fn returned non-finite values"):
        bias_variance([1], true_fn=lambda x: np.full_like(x, np.inf))

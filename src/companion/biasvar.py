"""The bias-variance decomposition, measured: refit a polynomial on many fresh training sets.

For squared error, at each test point x,
    E[(ŷ(x) - y)²] = (E[ŷ(x)] - f(x))²  +  Var[ŷ(x)]  +  σ²
                      bias²                 variance     noise
where the expectation runs over training sets and over the noise in y. We estimate each term
by Monte Carlo: ``n_rounds`` training sets drawn fresh from the data distribution (not
bootstrap resamples of one pool, whose spread would understate the variance and whose mean
would be biased towards that pool), each fitted by least squares with a polynomial of degree d,
and all predicting on the same test inputs. With fresh draws the identity holds in expectation
exactly, so bias² + variance + noise matches the measured test MSE up to Monte Carlo error.

    >>> rows = bias_variance([1, 3, 9])  # [{"degree": 1, "bias2": ..., "variance": ..., ...}, ...]

References:
- Geman, Bienenstock & Doursat, "Neural Networks and the Bias/Variance Dilemma" (1992).
- Hastie, Tibshirani & Friedman, "The Elements of Statistical Learning", 2nd ed., Section 7.3.
- NumPy docs, ``numpy.polynomial.legendre.legfit``: Legendre polynomials are orthogonal on
  [-1, 1], so the least-squares problem stays well conditioned at high degree where a raw
  monomial (Vandermonde) basis does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.polynomial import legendre


def _sine(x: np.ndarray) -> np.ndarray:
    return np.sin(np.pi * x)


def bias_variance(
    degrees: Sequence[int],
    *,
    n_train: int = 30,
    n_rounds: int = 200,
    noise_std: float = 0.3,
    n_test: int = 200,
    seed: int = 0,
    true_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[dict]:
    """Bias², variance, noise, test and train MSE of degree-d polynomial regression, per degree.

    Data: x ~ U(-1, 1), y = f(x) + N(0, noise_std²), f = ``true_fn`` (default sin(πx)).
    Test inputs are an evenly spaced grid of ``n_test`` points on [-1, 1]; each round gets fresh
    noisy test targets. All rounds share the same training sets across degrees, so the curves
    differ only by the model. Returns one dict per degree with keys
    ``degree, bias2, variance, noise, test_mse, train_mse`` (floats except degree).
    Near degree n_train - 1 the fits swing wildly between training points and near ±1, and the
    variance grows by orders of magnitude per degree: plot these curves on a log scale.
    """
    degrees = _check_degrees(degrees, n_train)
    for name, value, low in (("n_train", n_train, 2), ("n_rounds", n_rounds, 2), ("n_test", n_test, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    is_number = isinstance(noise_std, (int, float)) and not isinstance(noise_std, bool)
    if not (is_number and noise_std >= 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    f = _sine if true_fn is None else true_fn
    if not callable(f):
        raise TypeError(f"true_fn must be callable on a numpy array, got {type(f).__name__}")

    rng = np.random.default_rng(seed)
    x_test = np.linspace(-1, 1, n_test)
    f_test = _evaluate(f, x_test)
    x_train = rng.uniform(-1, 1, (n_rounds, n_train))
    f_train = _evaluate(f, x_train.ravel()).reshape(n_rounds, n_train)
    y_train = f_train + noise_std * rng.standard_normal((n_rounds, n_train))
    y_test = f_test + noise_std * rng.standard_normal((n_rounds, n_test))
    return [_decompose(d, x_train, y_train, x_test, f_test, y_test, noise_std) for d in degrees]


def _decompose(degree, x_train, y_train, x_test, f_test, y_test, noise_std) -> dict:
    """Fit degree ``degree`` on every round's training set and split its test error."""
    preds = np.empty_like(y_test)  # (n_rounds, n_test)
    train_mse = np.empty(len(x_train))
    for r, (x, y) in enumerate(zip(x_train, y_train)):
        coef = legendre.legfit(x, y, degree)
        preds[r] = legendre.legval(x_test, coef)
        train_mse[r] = np.mean((legendre.legval(x, coef) - y) ** 2)
    mean_pred = preds.mean(axis=0)
    return dict(
        degree=degree,
        bias2=float(np.mean((mean_pred - f_test) ** 2)),
        variance=float(np.mean(preds.var(axis=0))),  # ddof=0, so bias² + variance = E(ŷ - f)² exactly
        noise=float(noise_std**2),
        test_mse=float(np.mean((preds - y_test) ** 2)),
        train_mse=float(train_mse.mean()),
    )


def _check_degrees(degrees, n_train) -> list[int]:
    if isinstance(degrees, (str, bytes)) or not isinstance(degrees, Sequence) or len(degrees) == 0:
        raise ValueError(f"degrees must be a non-empty sequence of ints, got {degrees!r}")
    checked = []
    for d in degrees:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"degrees must be ints >= 0, got {d!r}")
        if isinstance(n_train, int) and d >= n_train:
            raise ValueError(
                f"degree {d} needs more than {d} training points but n_train is {n_train}; "
                "use degree < n_train so least squares has a unique solution"
            )
        checked.append(int(d))
    return checked


def _evaluate(f, x: np.ndarray) -> np.ndarray:
    values = np.asarray(f(x), dtype=np.float64)
    if values.shape != x.shape:
        raise ValueError(f"true_fn must return one value per input: got shape {values.shape} for input {x.shape}")
    if not np.isfinite(values).all():
        raise ValueError("true_fn returned non-finite values on [-1, 1]")
    return values

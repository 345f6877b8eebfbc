"""Seeded synthetic data with a known ground truth: a fraud-detection table with rare positives.

Legitimate rows are N(0, I). Fraud rows are N(μ, I) with μ = ``FRAUD_SHIFT`` on the first
``N_INFORMATIVE`` features and 0 elsewhere, so the classes overlap but can be told apart. Because
both classes share the covariance, the Bayes-optimal score is linear: the sum of the first
``N_INFORMATIVE`` features (its ROC-AUC is Φ(FRAUD_SHIFT·√N_INFORMATIVE / √2) ≈ 0.993). The rest
of the features are noise. What makes the task hard is the base rate, not the geometry.

    >>> X, y = make_fraud(100_000, fraud_rate=1e-3)  # (100000, 16) float32, exactly 100 ones in y

References:
- scikit-learn docs, ``sklearn.model_selection.train_test_split`` (stratified splitting).
- Saito & Rehmsmeier, "The Precision-Recall Plot Is More Informative than the ROC Plot When
  Evaluating Binary Classifiers on Imbalanced Datasets" (PLOS ONE, 2015).
"""

from __future__ import annotations

import math

import numpy as np

FRAUD_SHIFT = 1.75
N_INFORMATIVE = 4
MIN_PER_CLASS = 5


def make_fraud(
    n: int, fraud_rate: float = 1e-4, n_features: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``X (n, n_features) float32, y (n,) int64`` with exactly ``round(n·fraud_rate)`` frauds (y = 1), shuffled.

    Raises ValueError when that count is below 5 rather than return a set no metric can judge.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(fraud_rate, bool) or not isinstance(fraud_rate, (int, float)) or not 0 < fraud_rate <= 0.5:
        raise ValueError(f"fraud_rate must be a number in (0, 0.5], got {fraud_rate!r}")
    if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features < N_INFORMATIVE:
        raise ValueError(f"n_features must be an int >= {N_INFORMATIVE} (the informative ones), got {n_features!r}")
    n_fraud = round(n * fraud_rate)
    if n_fraud < MIN_PER_CLASS:
        raise ValueError(
            f"too few positives: n * fraud_rate = {n} * {fraud_rate} gives {n_fraud} frauds; "
            f"need at least {MIN_PER_CLASS}, so raise n to {math.ceil(MIN_PER_CLASS / fraud_rate)} or more"
        )

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = np.zeros(n, dtype=np.int64)
    y[:n_fraud] = 1
    X[:n_fraud, :N_INFORMATIVE] += FRAUD_SHIFT
    order = rng.permutation(n)
    return X[order].astype(np.float32), y[order]


def train_val_test_split(
    X: np.ndarray,
    y: np.ndarray,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    stratify: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split into ``(X_train, y_train), (X_val, y_val), (X_test, y_test)`` with scikit-learn.

    With ``stratify`` every split keeps the class proportions of y, which matters when positives
    are rare: an unstratified split can leave the validation set with none.
    """
    from sklearn.model_selection import train_test_split

    if not isinstance(X, np.ndarray) or not isinstance(y, np.ndarray):
        raise TypeError(f"X and y must be numpy arrays, got {type(X).__name__} and {type(y).__name__}")
    if X.ndim != 2 or y.shape != (len(X),):
        raise ValueError(f"X must have shape (n, d) and y shape (n,); got X {X.shape} and y {y.shape}")
    if len(fractions) != 3 or not all(isinstance(f, (int, float)) and f > 0 for f in fractions):
        raise ValueError(f"fractions must be three numbers > 0 (train, val, test), got {fractions!r}")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fractions)})")
    train_frac, val_frac, test_frac = fractions

    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=test_frac, random_state=seed, stratify=y if stratify else None
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest,
        y_rest,
        test_size=val_frac / (train_frac + val_frac),
        random_state=seed,
        stratify=y_rest if stratify else None,
    )
    return (X_train, y_train), (X_val, y_val), (X_test, y_test)

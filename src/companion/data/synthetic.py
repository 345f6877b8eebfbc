"""Seeded synthetic data with a known ground truth: a fraud-detection table with rare positives, and
a stream of LLM requests for the serving chapters.

Legitimate rows are N(0, I). Fraud rows are N(μ, I) with μ = ``FRAUD_SHIFT`` on the first
``N_INFORMATIVE`` features and 0 elsewhere, so the classes overlap but can be told apart. Because
both classes share the covariance, the Bayes-optimal score is linear: the sum of the first
``N_INFORMATIVE`` features (its ROC-AUC is Φ(FRAUD_SHIFT·√N_INFORMATIVE / √2) ≈ 0.993). The rest
of the features are noise. What makes the task hard is the base rate, not the geometry.

    >>> X, y = make_fraud(100_000, fraud_rate=1e-3)  # (100000, 16) float32, exactly 100 ones in y

``request_trace`` draws LLM requests: prompt and output lengths log-normal (production traces are
right-skewed: most replies are short, a few are long), arrivals all at once or a Poisson process.

    >>> trace = request_trace(1000, rate=20.0)  # arrival, prompt_len, output_len: (1000,) each

References:
- scikit-learn docs, ``sklearn.model_selection.train_test_split`` (stratified splitting).
- Kwon et al., "Efficient Memory Management for Large Language Model Serving with PagedAttention"
  (SOSP 2023), Fig. 11: ShareGPT and Alpaca input/output lengths, long-tailed.
- Saito & Rehmsmeier, "The Precision-Recall Plot Is More Informative than the ROC Plot When
  Evaluating Binary Classifiers on Imbalanced Datasets" (PLOS ONE, 2015).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

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


# ---------------------------------------------------------------------------------------------
# LLM request traces
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestTrace:
    """n requests: ``arrival`` (n,) float64 seconds, non-decreasing; ``prompt_len`` and ``output_len``
    (n,) int64, each >= 1, with prompt_len + output_len <= ``max_len`` (the model's context)."""

    arrival: np.ndarray
    prompt_len: np.ndarray
    output_len: np.ndarray
    max_len: int

    def __post_init__(self):
        arrival = np.asarray(self.arrival, dtype=np.float64)
        prompt, output = np.asarray(self.prompt_len), np.asarray(self.output_len)
        if arrival.ndim != 1 or len(arrival) == 0 or prompt.shape != arrival.shape or output.shape != arrival.shape:
            raise ValueError(f"arrival, prompt_len and output_len must be 1-D, non-empty and of one length, got shapes "
                             f"{arrival.shape}, {prompt.shape} and {output.shape}")
        for name, a in (("prompt_len", prompt), ("output_len", output)):
            if not np.issubdtype(a.dtype, np.integer) or a.min() < 1:
                raise ValueError(f"{name} must hold integers >= 1, got dtype {a.dtype} with minimum {a.min()}")
        if not np.isfinite(arrival).all() or arrival.min() < 0 or np.any(np.diff(arrival) < 0):
            raise ValueError("arrival must be finite, >= 0 and non-decreasing (requests in arrival order)")
        longest = int((prompt + output).max())
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, (int, np.integer)) or self.max_len < longest:
            raise ValueError(f"max_len must be an int >= the longest prompt_len + output_len ({longest}), "
                             f"got {self.max_len!r}")
        object.__setattr__(self, "arrival", arrival)
        object.__setattr__(self, "prompt_len", prompt.astype(np.int64))
        object.__setattr__(self, "output_len", output.astype(np.int64))
        object.__setattr__(self, "max_len", int(self.max_len))

    def __len__(self) -> int:
        return len(self.arrival)

    def subset(self, idx) -> RequestTrace:
        """The requests at ``idx`` (a slice, an index array or a boolean mask), kept in arrival order."""
        keep = np.sort(np.arange(len(self))[idx])
        return RequestTrace(self.arrival[keep], self.prompt_len[keep], self.output_len[keep], self.max_len)


def request_trace(
    n: int,
    seed: int = 0,
    prompt_median: float = 24,
    output_median: float = 32,
    sigma: float = 0.8,
    max_len: int = 128,
    rate: float | None = None,
    prompt_sigma: float | None = None,
    max_prompt_len: int | None = None,
    max_output_len: int | None = None,
) -> RequestTrace:
    """n requests with log-normal lengths and, when ``rate`` is given, Poisson arrivals (requests/s).

    Each length is ``round(median · exp(sigma · z))``, z ~ N(0, 1), at least 1 (``prompt_sigma``, if
    given, replaces ``sigma`` for prompts). A (prompt, output) pair longer than ``max_len`` in total,
    or past ``max_prompt_len`` / ``max_output_len``, is drawn again, both lengths, until it fits:
    the lengths follow the log-normal conditioned on fitting. (Clipping would instead pile the
    excess mass up at the cap, a spike of max-length requests no real trace has.) Separate caps
    keep every static batch within the context: its longest prompt plus its longest output fits.

    With ``rate=None`` every request arrives at t = 0 (an offline batch job); otherwise the gaps
    between arrivals are exponential with mean 1 / rate. Lengths and arrivals use separate random
    streams, so the same seed gives the same lengths at every rate.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    for name, value in (("prompt_median", prompt_median), ("output_median", output_median)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not 0 <= sigma < math.inf:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 2:
        raise ValueError(f"max_len must be an int >= 2 (one prompt token and one output token), got {max_len!r}")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 < rate < math.inf):
        raise ValueError(f"rate must be None (all arrive at t = 0) or a finite number > 0, got {rate!r}")
    prompt_sigma = sigma if prompt_sigma is None else prompt_sigma
    if isinstance(prompt_sigma, bool) or not isinstance(prompt_sigma, numbers.Real) or not 0 <= prompt_sigma < math.inf:
        raise ValueError(f"prompt_sigma must be None or a finite number >= 0, got {prompt_sigma!r}")
    caps = {"max_prompt_len": max_prompt_len, "max_output_len": max_output_len}
    for name, value in caps.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
    max_prompt = max_len if max_prompt_len is None else max_prompt_len
    max_output = max_len if max_output_len is None else max_output_len

    length_seed, arrival_seed = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(length_seed)
    prompt, output = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    for _ in range(1000):  # each round redraws only the pairs that did not fit
        p = _lognormal_lengths(rng, prompt_median, prompt_sigma, len(todo))
        o = _lognormal_lengths(rng, output_median, sigma, len(todo))
        prompt[todo], output[todo] = p, o
        todo = todo[(p + o > max_len) | (p > max_prompt) | (o > max_output)]
        if len(todo) == 0:
            break
    else:
        raise ValueError(f"prompt_median={prompt_median} and output_median={output_median} (sigma={sigma}) rarely "
                         f"fit max_len={max_len} (caps {max_prompt}, {max_output}); lower the medians or raise the caps")
    if rate is None:
        arrival = np.zeros(n)
    else:
        arrival = np.cumsum(np.random.default_rng(arrival_seed).exponential(1.0 / rate, size=n))
    return RequestTrace(arrival, prompt, output, int(max_len))


def _lognormal_lengths(rng: np.random.Generator, median: float, sigma: float, size: int) -> np.ndarray:
    """round(median · exp(sigma · z)) clipped below at 1: (size,) int64."""
    return np.maximum(1, np.rint(median * np.exp(sigma * rng.standard_normal(size)))).astype(np.int64)


__all__ = ["FRAUD_SHIFT", "N_INFORMATIVE", "RequestTrace", "make_fraud", "request_trace", "train_val_test_split"]

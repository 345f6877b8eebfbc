"""The interface every vector index in ``companion.ann`` implements, and the shared input checks.

An index is built once over a database ``x`` of n vectors (n, d) and then answers k-nearest-
neighbour queries. Two metrics: ``"l2"`` ranks by squared Euclidean distance, ``"ip"`` by inner
product, reported as the distance ``-ip`` so that smaller is always better and rows come back
ascending. Search-time knobs (``nprobe`` for IVF, ``ef`` for HNSW) are plain attributes:

    >>> index = SomeIndex(...).build(x)        # x (n, d) float32
    >>> index.nprobe = 8
    >>> dists, ids = index.search(q, k=10)     # (m, 10) float32 ascending, (m, 10) int64
"""

from __future__ import annotations

import numpy as np

METRICS = ("l2", "ip")


def check_metric(metric: str) -> str:
    """``metric`` if it is "l2" or "ip", else ValueError."""
    if metric not in METRICS:
        raise ValueError(f"metric must be 'l2' or 'ip', got {metric!r}")
    return metric


def check_vectors(x, name: str = "x", d: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, d) array; ValueError for a wrong rank, dtype, NaN/inf or width.

    ``d``: the dimension the index was built with (checked when given).
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of shape (n, d), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have dimension d >= 1, got shape {x.shape}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{name} has dimension {x.shape[1]} but the index has dimension {d}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def check_k(k, n: int) -> int:
    """``k`` if it is an int with 1 <= k <= n (the number of indexed vectors), else ValueError."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if k > n:
        raise ValueError(f"k must be <= the number of indexed vectors ({n}), got {k}")
    return int(k)


def check_positive_int(value, name: str, upper: int | None = None) -> int:
    """``value`` if it is an int >= 1 (and <= ``upper`` when given), else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if upper is not None and value > upper:
        raise ValueError(f"{name} must be <= {upper}, got {value}")
    return int(value)


def top_k(dists: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest entries of each row of ``dists`` (m, n): (dists (m, k) ascending, ids (m, k) int64).

    Ties are broken by the smaller id, so results are deterministic.
    """
    m, n = dists.shape
    if k < n:
        part = np.argpartition(dists, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(dists, part, 1).max(1)
        for r in np.flatnonzero((dists <= kth[:, None]).sum(1) > k):  # ties at the boundary: smallest ids win
            tied = np.flatnonzero(dists[r] <= kth[r])
            part[r] = tied[np.lexsort((tied, dists[r, tied]))[:k]]
    else:
        part = np.broadcast_to(np.arange(n), (m, n))
    d = np.take_along_axis(dists, part, axis=1)
    order = np.lexsort((part, d), axis=1)  # by distance, then by id
    return (np.take_along_axis(d, order, 1).astype(np.float32, copy=False),
            np.take_along_axis(part, order, 1).astype(np.int64, copy=False))


class Index:
    """Base class: ``build(x)`` once, then ``search(q, k)``; subclasses implement ``_build`` and ``_search``.

    Attributes after ``build``: ``d`` (dimension), ``ntotal`` (number of vectors). ``metric`` is "l2"
    (squared Euclidean) or "ip" (inner product; distances returned as -ip).
    """

    metric: str = "l2"
    d: int | None = None
    ntotal: int = 0

    def build(self, x: np.ndarray) -> "Index":
        """Index the database ``x`` (n, d); returns self."""
        x = check_vectors(x, "x")
        if len(x) == 0:
            raise ValueError("x must contain at least one vector, got 0 rows")
        self.d, self.ntotal = x.shape[1], len(x)
        self._build(x)
        return self

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest indexed vectors of each query q (m, d): (dists (m, k) float32 ascending, ids (m, k) int64).

        Approximate indexes may return fewer than k hits for a query; missing slots hold
        distance +inf and id -1.
        """
        if self.d is None or self.ntotal == 0:
            raise ValueError(f"the {type(self).__name__} index is empty: call build(x) before search")
        q = check_vectors(q, "q", self.d)
        k = check_k(k, self.ntotal)
        return self._search(q, k)

    def memory_bytes(self) -> int:
        """Bytes of everything the index keeps for search (vectors or codes, centroids, tables, lists)."""
        raise NotImplementedError

    @property
    def params(self) -> dict:
        """The index's knobs (build-time and search-time), e.g. for hover text in a figure."""
        return {}

    def _build(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        knobs = ", ".join(f"{key}={value}" for key, value in self.params.items())
        return f"{type(self).__name__}({knobs})"


__all__ = ["Index", "METRICS", "check_k", "check_metric", "check_positive_int", "check_vectors", "top_k"]

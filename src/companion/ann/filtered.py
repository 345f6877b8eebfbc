"""Filtered vector search: the k nearest vectors *whose attribute passes a predicate*.

Every stored vector carries an attribute (a tenant, a language, a price band); a query asks for
the nearest neighbours among those that pass a filter. Two classical plans:

* **pre-filtering** — select the passing ids first (an attribute index gives them), then search
  exactly among them. Always correct (recall 1); its cost is proportional to the number of
  passing vectors, s·n for selectivity s, so it is cheap for selective filters and becomes a
  full brute-force scan for broad ones.
* **post-filtering** — ask the ANN index for k' > k neighbours, then drop the ones that fail.
  Cheap per query, but when only a fraction s passes, the k' candidates hold about s·k' passing
  ones: below s ≈ k/k' the query comes back short and recall collapses. Growing k' as k/s
  (``postfilter_search(..., k_prime=None)``) buys recall back at the cost of a wider search.

Engines mix the two (a query planner picks by estimated selectivity) or filter inside the graph
walk (Qdrant's payload-aware HNSW, ACORN); the measurements in the chapter show why.
"""

from __future__ import annotations

import numpy as np

from .base import Index, check_k, check_metric, check_vectors
from .flat import Flat


def check_mask(mask, n: int) -> np.ndarray:
    """``mask`` as a bool array (n,), else ValueError."""
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise ValueError(f"mask must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}")
    return mask


def prefilter_search(x: np.ndarray, q: np.ndarray, mask: np.ndarray, k: int, metric: str = "l2"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN of q (m, d) among the rows of x (n, d) where mask (n,) is True.

    Returns (dists, ids) (m, k) with original ids; when fewer than k rows pass, the missing slots
    hold +inf and -1.
    """
    x, q = check_vectors(x, "x"), check_vectors(q, "q", x.shape[1])
    keep = np.flatnonzero(check_mask(mask, len(x)))
    k = check_k(k, len(x))
    out_d = np.full((len(q), k), np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    if len(keep):
        kk = min(k, len(keep))
        d, i = Flat(check_metric(metric)).build(x[keep]).search(q, kk)
        out_d[:, :kk], out_i[:, :kk] = d, keep[i]
    return out_d, out_i


def postfilter_search(index: Index, q: np.ndarray, mask: np.ndarray, k: int, k_prime: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Search ``index`` for k' neighbours of q (m, d), keep those whose mask is True, return the first k.

    ``k_prime``: how many to fetch (>= k); None picks ``ceil(2·k / selectivity)`` capped at the
    index size — the adaptive choice. Short rows are padded with +inf and -1.
    """
    mask = check_mask(mask, index.ntotal)
    k = check_k(k, index.ntotal)
    if k_prime is None:
        selectivity = max(mask.mean(), 1 / index.ntotal)
        k_prime = int(np.ceil(2 * k / selectivity))
    k_prime = min(max(check_k(k_prime, index.ntotal), k), index.ntotal)
    d, i = index.search(q, k_prime)
    ok = (i >= 0) & mask[np.maximum(i, 0)]
    rank = np.cumsum(ok, axis=1) - 1  # position of each passing hit among the passing ones
    take = ok & (rank < k)
    out_d = np.full((len(q), k), np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    rows, cols = np.nonzero(take)
    out_d[rows, rank[rows, cols]], out_i[rows, rank[rows, cols]] = d[rows, cols], i[rows, cols]
    return out_d, out_i


def attribute_mask(attributes: np.ndarray, selectivity: float) -> np.ndarray:
    """Mask (n,) of vectors whose attribute (uniform in [0, 1)) is below ``selectivity``."""
    if not 0 < selectivity <= 1:
        raise ValueError(f"selectivity must be in (0, 1], got {selectivity}")
    return np.asarray(attributes) < selectivity


__all__ = ["attribute_mask", "check_mask", "postfilter_search", "prefilter_search"]

"""Approximate nearest-neighbour search: flat, IVF, PQ, IVF-PQ, LSH, HNSW and filtered search.

Every index implements ``companion.ann.base.Index``: ``build(x)``, ``search(q, k)``,
``memory_bytes()`` and ``params``. ``companion.ann.eval`` measures recall against QPS.
"""

from .base import Index, check_k, check_metric, check_positive_int, check_vectors, top_k

__all__ = ["Index", "check_k", "check_metric", "check_positive_int", "check_vectors", "top_k"]

"""Approximate nearest-neighbour search: flat, IVF, PQ, IVF-PQ, LSH, HNSW and filtered search.

Every index implements ``companion.ann.base.Index``: ``build(x)``, ``search(q, k)``,
``memory_bytes()`` and ``params``. ``companion.ann.eval`` measures recall against QPS, with faiss
and hnswlib behind the same interface.
"""

from .base import Index, check_k, check_metric, check_positive_int, check_vectors, top_k
from .filtered import postfilter_search, prefilter_search
from .flat import Flat, pairwise
from .ivf import IVF, kmeans
from .lsh import LSH
from .pq import IVFPQ, PQ


def __getattr__(name: str):
    if name == "HNSW":  # imported on first use: companion.ann.hnsw
        from .hnsw import HNSW

        return HNSW
    raise AttributeError(f"module 'companion.ann' has no attribute {name!r}")


__all__ = ["Flat", "HNSW", "IVF", "IVFPQ", "Index", "LSH", "PQ", "check_k", "check_metric", "check_positive_int",
           "check_vectors", "kmeans", "pairwise", "postfilter_search", "prefilter_search", "top_k"]

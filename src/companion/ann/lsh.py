"""Locality-sensitive hashing with random hyperplanes, several tables, multi-probe and exact re-ranking.

A random hyperplane through the data's mean splits space in two; two vectors at angle θ land on
the same side with probability 1 − θ/π (Charikar, 2002). ``nbits`` hyperplanes give each vector
an ``nbits``-bit code — its bucket — and close vectors share buckets far more often than far
ones (Indyk & Motwani, 1998). One table misses true neighbours that fall across a plane, so we
keep ``ntables`` independent tables and, per table, also probe the buckets one bit-flip away on
the bits where the query sits closest to the plane (query-directed multi-probe, Lv et al. 2007).
The union of the probed buckets is the candidate set; its vectors are then re-ranked exactly, so
LSH trades memory (the raw vectors plus ntables·n ids) and candidate count for recall.

    >>> index = LSH(nbits=12, ntables=8).build(x)
    >>> index.probes = 4           # buckets per table: the query's own + 3 one-bit neighbours
    >>> dists, ids = index.search(q, 10)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .base import Index, check_metric, check_positive_int
from .ivf import _insert


@njit(cache=True, fastmath=True)
def _lsh_search(q, mean, planes, codes, bucket_ids, x, x_sqnorms, probes, ip, out_d, out_i, n_candidates):
    ntables, nbits, d = planes.shape
    n = x.shape[0]
    seen = np.zeros(n, np.bool_)
    cand = np.empty(n, np.int64)
    proj = np.empty(nbits, np.float32)
    qc = np.empty(d, np.float32)
    for qi in range(q.shape[0]):
        qv = q[qi]
        for t in range(d):
            qc[t] = qv[t] - mean[t]
        nc = 0
        for tb in range(ntables):
            code = 0
            for b in range(nbits):
                s = np.float32(0.0)
                for t in range(d):
                    s += qc[t] * planes[tb, b, t]
                proj[b] = abs(s)
                if s > 0:
                    code |= 1 << b
            order = np.argsort(proj)  # the bits nearest their plane flip first
            for p in range(probes):
                probe = code if p == 0 else code ^ (1 << order[p - 1])
                lo = np.searchsorted(codes[tb], probe, side="left")
                hi = np.searchsorted(codes[tb], probe, side="right")
                for r in range(lo, hi):
                    i = bucket_ids[tb, r]
                    if not seen[i]:
                        seen[i] = True
                        cand[nc] = i
                        nc += 1
        n_candidates[qi] = nc
        bd, bi = out_d[qi], out_i[qi]
        bd[:] = np.inf
        bi[:] = -1
        qq = np.float32(0.0)
        for t in range(d):
            qq += qv[t] * qv[t]
        for c in range(nc):  # exact re-ranking of the candidates
            i = cand[c]
            seen[i] = False
            s = np.float32(0.0)
            for t in range(d):
                s += qv[t] * x[i, t]
            _insert(bd, bi, -s if ip else max(x_sqnorms[i] - 2 * s + qq, np.float32(0.0)), i)


class LSH(Index):
    """Random-hyperplane LSH: ``ntables`` tables of ``nbits``-bit buckets, ``probes`` buckets per table.

    ``probes`` (search time, 1..nbits+1): the query's bucket plus its one-bit neighbours.
    After a search, ``last_candidates`` (m,) holds how many vectors were re-ranked per query.
    """

    def __init__(self, nbits: int = 12, ntables: int = 8, probes: int = 1, metric: str = "l2", seed: int = 0):
        self.metric = check_metric(metric)
        self.nbits = check_positive_int(nbits, "nbits", 62)
        self.ntables = check_positive_int(ntables, "ntables")
        self.probes, self.seed = probes, seed

    def _build(self, x: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        self.mean = x.mean(0).astype(np.float32)
        self.planes = rng.standard_normal((self.ntables, self.nbits, x.shape[1])).astype(np.float32)
        bits = np.einsum("nd,tbd->tnb", x - self.mean, self.planes) > 0  # (ntables, n, nbits)
        codes = (bits.astype(np.int64) << np.arange(self.nbits)).sum(-1)  # (ntables, n)
        order = np.argsort(codes, axis=1, kind="stable")
        self.codes = np.take_along_axis(codes, order, 1)  # (ntables, n) sorted bucket codes
        self.bucket_ids = order.astype(np.int64)  # (ntables, n) ids in bucket order
        self.x = x
        self.x_sqnorms = np.einsum("ij,ij->i", x, x)

    def hash(self, x: np.ndarray) -> np.ndarray:
        """Bucket codes (ntables, n) of vectors x (n, d)."""
        bits = np.einsum("nd,tbd->tnb", x - self.mean, self.planes) > 0
        return (bits.astype(np.int64) << np.arange(self.nbits)).sum(-1)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        probes = check_positive_int(self.probes, "probes", self.nbits + 1)
        out_d, out_i = np.empty((len(q), k), np.float32), np.empty((len(q), k), np.int64)
        self.last_candidates = np.empty(len(q), np.int64)
        _lsh_search(q, self.mean, self.planes, self.codes, self.bucket_ids, self.x, self.x_sqnorms, probes,
                    self.metric == "ip", out_d, out_i, self.last_candidates)
        return out_d, out_i

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in (self.mean, self.planes, self.codes, self.bucket_ids, self.x, self.x_sqnorms))

    @property
    def params(self) -> dict:
        return {"nbits": self.nbits, "ntables": self.ntables, "probes": self.probes, "metric": self.metric}


__all__ = ["LSH"]

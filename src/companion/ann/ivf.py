"""IVF, the inverted file: cluster the database with k-means, search only the closest clusters.

Build: k-means splits the n vectors into ``nlist`` Voronoi cells (Sivic & Zisserman's "video
Google" inverted file, as used for vectors by Jégou et al. and faiss). Each cell's vectors are
stored together — one contiguous (n, d) array sorted by cell, with ``offsets`` (nlist + 1,)
marking where each cell starts — the *inverted lists*. Search: score the query against the
``nlist`` centroids, then scan only the ``nprobe`` closest cells exactly. A query costs about
``nlist·d + nprobe·(n/nlist)·d`` multiply-adds instead of ``n·d``; recall rises with nprobe
and reaches the exact answer at ``nprobe = nlist``.

    >>> index = IVF(nlist=128).build(x)
    >>> index.nprobe = 8
    >>> dists, ids = index.search(q, 10)

The scan is one numba kernel per call (coarse step, list scan and a k-sized sorted buffer), so a
single query pays one dispatch and no per-query allocation besides its output.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .base import Index, check_metric, check_positive_int, check_vectors

# ---------------------------------------------------------------------------------------------
# k-means (Lloyd), shared with PQ


def kmeans(x: np.ndarray, k: int, niter: int = 20, seed: int = 0, init: str = "random",
           max_points: int | None = None) -> np.ndarray:
    """Centroids (k, d) float32 of ``x`` (n, d) after ``niter`` Lloyd iterations.

    ``init``: "random" (k distinct points, as faiss does) or "kmeans++" (D² sampling).
    ``max_points``: train on a seeded random sample of at most this many points. An empty
    cluster is re-seeded with a point from the largest one.
    """
    x = check_vectors(x, "x")
    k = check_positive_int(k, "k (number of centroids)", len(x))
    if init not in ("random", "kmeans++"):
        raise ValueError(f"init must be 'random' or 'kmeans++', got {init!r}")
    rng = np.random.default_rng(seed)
    if max_points is not None and len(x) > max_points:
        x = x[np.sort(rng.choice(len(x), max_points, replace=False))]
    n, d = x.shape
    c = x[rng.choice(n, k, replace=False)].copy() if init == "random" else _kmeanspp(x, k, rng)
    for _ in range(niter):
        assign = assign_nearest(x, c)
        counts = np.bincount(assign, minlength=k)
        sums = np.bincount((assign[:, None] * d + np.arange(d)).ravel(), weights=x.ravel(), minlength=k * d)
        nonempty = counts > 0
        c[nonempty] = (sums.reshape(k, d)[nonempty] / counts[nonempty, None]).astype(np.float32)
        for empty in np.flatnonzero(~nonempty):  # steal a point from the largest cell
            members = np.flatnonzero(assign == np.argmax(counts))
            c[empty] = x[rng.choice(members)] * (1 + 1e-4 * rng.standard_normal(d)).astype(np.float32)
            counts[np.argmax(counts)] -= 1
    return c


def _kmeanspp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    c = np.empty((k, x.shape[1]), np.float32)
    c[0] = x[rng.integers(len(x))]
    closest = ((x - c[0]) ** 2).sum(1)
    for i in range(1, k):
        c[i] = x[rng.choice(len(x), p=closest / closest.sum())]
        np.minimum(closest, ((x - c[i]) ** 2).sum(1), out=closest)
    return c


def assign_nearest(x: np.ndarray, c: np.ndarray, block: int = 8192) -> np.ndarray:
    """Index (n,) of the nearest centroid (squared L2) of each row of x (n, d); c (k, d)."""
    if x.shape[1] <= 32:  # thin slices (PQ): a compiled loop beats a thin matrix multiply
        return _assign_small(x, np.ascontiguousarray(c.T))
    c_sq = np.einsum("ij,ij->i", c, c)
    out = np.empty(len(x), np.int64)
    for s in range(0, len(x), block):
        out[s:s + block] = np.argmin(c_sq[None, :] - 2 * (x[s:s + block] @ c.T), axis=1)
    return out


@njit(cache=True, fastmath=True)
def _assign_small(x, ct):
    """Nearest centroid of each row of x (n, d) for centroids given transposed, ct (d, k)."""
    n, d = x.shape
    k = ct.shape[1]
    out = np.empty(n, np.int64)
    c_sq = np.zeros(k, np.float32)
    for t in range(d):
        for c in range(k):
            c_sq[c] += ct[t, c] * ct[t, c]
    dist = np.empty(k, np.float32)
    for i in range(n):
        dist[:] = c_sq  # ‖c‖² − 2⟨x, c⟩: same argmin as ‖x − c‖²
        for t in range(d):
            v = -2 * x[i, t]
            for c in range(k):  # contiguous over centroids: vectorizes
                dist[c] += v * ct[t, c]
        out[i] = np.argmin(dist)
    return out


# ---------------------------------------------------------------------------------------------
# the search kernel


@njit(cache=True, fastmath=True)
def _insert(bd, bi, dist, idx):
    """Insert (dist, idx) into the ascending buffers bd, bi (k,) if it beats the last entry."""
    k = bd.shape[0]
    if dist > bd[k - 1] or (dist == bd[k - 1] and idx >= bi[k - 1]):
        return
    j = k - 1
    while j > 0 and (bd[j - 1] > dist or (bd[j - 1] == dist and bi[j - 1] > idx)):
        bd[j] = bd[j - 1]
        bi[j] = bi[j - 1]
        j -= 1
    bd[j] = dist
    bi[j] = idx


@njit(cache=True, fastmath=True)
def _coarse(qv, centroids, c_sqnorms, ip, cd):
    """Distances (nlist,) from one query to the centroids, without the constant ‖q‖²."""
    for c in range(centroids.shape[0]):
        s = np.float32(0.0)
        for j in range(qv.shape[0]):
            s += qv[j] * centroids[c, j]
        cd[c] = -s if ip else c_sqnorms[c] - 2 * s


@njit(cache=True, fastmath=True)
def _ivf_search(q, centroids, c_sqnorms, offsets, xs, x_sqnorms, ids, nprobe, ip, out_d, out_i):
    m, d = q.shape
    cd = np.empty(centroids.shape[0], np.float32)
    for qi in range(m):
        qv = q[qi]
        _coarse(qv, centroids, c_sqnorms, ip, cd)
        probe = np.argsort(cd)[:nprobe]
        bd, bi = out_d[qi], out_i[qi]
        bd[:] = np.inf
        bi[:] = -1
        for p in probe:
            for r in range(offsets[p], offsets[p + 1]):
                s = np.float32(0.0)
                for j in range(d):
                    s += qv[j] * xs[r, j]
                dist = -s if ip else x_sqnorms[r] - 2 * s
                if dist <= bd[-1]:
                    _insert(bd, bi, dist, ids[r])
        if not ip:
            qq = np.float32(0.0)
            for j in range(d):
                qq += qv[j] * qv[j]
            for t in range(bd.shape[0]):
                bd[t] = max(bd[t] + qq, np.float32(0.0))


class IVF(Index):
    """Inverted file with exact (float32) vectors in the lists: faiss's ``IndexIVFFlat``.

    ``nlist`` cells from k-means (``niter`` Lloyd iterations, ``seed``), or the given
    ``centroids`` (nlist, d). ``nprobe`` (search time): cells scanned per query, 1..nlist.
    """

    def __init__(self, nlist: int = 100, nprobe: int = 1, metric: str = "l2", niter: int = 20, seed: int = 0,
                 init: str = "random", centroids: np.ndarray | None = None):
        self.metric = check_metric(metric)
        if centroids is not None:
            centroids = check_vectors(centroids, "centroids")
            nlist = len(centroids)
        self.nlist = check_positive_int(nlist, "nlist")
        self.nprobe, self.niter, self.seed, self.init = nprobe, niter, seed, init
        self.centroids = centroids

    def _build(self, x: np.ndarray) -> None:
        if self.centroids is None:
            if self.nlist > len(x):
                raise ValueError(f"nlist must be <= the number of vectors ({len(x)}), got {self.nlist}")
            self.centroids = kmeans(x, self.nlist, self.niter, self.seed, self.init)
        elif self.centroids.shape[1] != x.shape[1]:
            raise ValueError(f"centroids have dimension {self.centroids.shape[1]} but x has dimension {x.shape[1]}")
        self.c_sqnorms = np.einsum("ij,ij->i", self.centroids, self.centroids)
        assign = self.assign(x)
        order = np.argsort(assign, kind="stable")
        self.offsets = np.zeros(self.nlist + 1, np.int64)
        np.cumsum(np.bincount(assign, minlength=self.nlist), out=self.offsets[1:])
        self.ids = order.astype(np.int64)  # (n,) original id of each stored row
        self.xs = np.ascontiguousarray(x[order])  # (n, d) rows grouped by cell
        self.x_sqnorms = np.einsum("ij,ij->i", self.xs, self.xs)

    def assign(self, x: np.ndarray) -> np.ndarray:
        """The cell (n,) of each vector: nearest centroid under the index's metric."""
        if self.metric == "ip":
            return np.argmax(x @ self.centroids.T, axis=1)
        return assign_nearest(x, self.centroids)

    def list_sizes(self) -> np.ndarray:
        """Vectors per cell (nlist,)."""
        return np.diff(self.offsets)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        nprobe = check_positive_int(self.nprobe, "nprobe", self.nlist)
        out_d = np.empty((len(q), k), np.float32)
        out_i = np.empty((len(q), k), np.int64)
        _ivf_search(q, self.centroids, self.c_sqnorms, self.offsets, self.xs, self.x_sqnorms, self.ids, nprobe,
                    self.metric == "ip", out_d, out_i)
        return out_d, out_i

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in (self.centroids, self.c_sqnorms, self.offsets, self.ids, self.xs, self.x_sqnorms))

    @property
    def params(self) -> dict:
        return {"nlist": self.nlist, "nprobe": self.nprobe, "metric": self.metric}


__all__ = ["IVF", "assign_nearest", "kmeans"]

"""Product quantization (PQ) and IVF-PQ: vectors compressed to m bytes, searched through lookup tables.

PQ (Jégou, Douze & Schmid, 2011) cuts a d-dimensional vector into ``m`` sub-vectors of
``d/m`` dimensions and replaces each by the index of its nearest centroid in a 256-entry
codebook learned by k-means for that slice: a float32 vector of 4·d bytes becomes ``m`` bytes.
The distance from an uncompressed query to a code — *asymmetric distance computation* (ADC) —
needs no decoding: build a table ``T[j, c] = ‖q_j − C_j[c]‖²`` (m × 256 entries) once per query,
and each code's distance is then m table lookups and adds,

    ‖q − x̂‖² = Σ_j T[j, code_j],   x̂ = the concatenated centroids (the reconstruction).

IVF-PQ puts PQ inside an inverted file: each vector is encoded as its *residual* from its
cell's centroid, r = x − c, which is smaller and so quantizes better. With per-cell terms
precomputed at build time, ``‖q − c − r̂‖² = ‖q − c‖² + Σ_j (‖r̂_j‖² + 2⟨c_j, r̂_j⟩) − 2 Σ_j ⟨q_j, r̂_j⟩``,
a probed cell costs only an (m × 256) table add before its codes are scanned.

    >>> index = IVFPQ(nlist=128, m=16).build(x)     # 16 bytes per vector
    >>> index.nprobe = 16
    >>> dists, ids = index.search(q, 10)             # dists are ADC estimates, not exact
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .base import Index, check_metric, check_positive_int, check_vectors
from .ivf import IVF, _coarse, _insert, assign_nearest, kmeans

KSUB = 256  # centroids per sub-quantizer: 8-bit codes


def train_codebooks(x: np.ndarray, m: int, niter: int = 20, seed: int = 0, max_points: int = 256 * 40) -> np.ndarray:
    """Codebooks (m, 256, d/m): k-means on each of the m slices of x (n, d)."""
    d = x.shape[1]
    if d % m:
        raise ValueError(f"m must divide the dimension d = {d}, got m = {m}")
    if len(x) < KSUB:
        raise ValueError(f"PQ needs at least {KSUB} training vectors, got {len(x)}")
    ds = d // m
    return np.stack([kmeans(np.ascontiguousarray(x[:, j * ds:(j + 1) * ds]), KSUB, niter, seed + j,
                            max_points=max_points) for j in range(m)])


def encode(x: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Codes (n, m) uint8: the nearest centroid of each slice of x (n, d)."""
    m, _, ds = codebooks.shape
    return np.stack([assign_nearest(np.ascontiguousarray(x[:, j * ds:(j + 1) * ds]), codebooks[j])
                     for j in range(m)], axis=1).astype(np.uint8)


def decode(codes: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Reconstructions (n, d) from codes (n, m): the concatenated chosen centroids."""
    return np.concatenate([codebooks[j][codes[:, j]] for j in range(codebooks.shape[0])], axis=1)


@njit(cache=True, fastmath=True)
def _dot_table(qv, codebooks, table):
    """table[j, c] = ⟨q_j, C_j[c]⟩ for one query qv (d,); codebooks (m, 256, ds)."""
    m, ksub, ds = codebooks.shape
    for j in range(m):
        for c in range(ksub):
            s = np.float32(0.0)
            for t in range(ds):
                s += qv[j * ds + t] * codebooks[j, c, t]
            table[j, c] = s


@njit(cache=True, fastmath=True)
def _scan_codes(codes, start, stop, table, base, ids, bd, bi):
    """ADC over codes[start:stop]: distance = base + Σ_j table[j, code_j]; keep the best in bd, bi."""
    m = codes.shape[1]
    for r in range(start, stop):
        s = base
        for j in range(m):
            s += table[j, codes[r, j]]
        if s <= bd[-1]:
            _insert(bd, bi, s, ids[r])


@njit(cache=True, fastmath=True)
def _pq_search(q, codebooks, c_sqnorms, codes, ids, ip, out_d, out_i):
    m, ksub, _ = codebooks.shape
    dots = np.empty((m, ksub), np.float32)
    table = np.empty((m, ksub), np.float32)
    for qi in range(q.shape[0]):
        _dot_table(q[qi], codebooks, dots)
        qq = np.float32(0.0)
        for t in range(q.shape[1]):
            qq += q[qi, t] * q[qi, t]
        for j in range(m):
            for c in range(ksub):
                table[j, c] = -dots[j, c] if ip else c_sqnorms[j, c] - 2 * dots[j, c]
        out_d[qi, :] = np.inf
        out_i[qi, :] = -1
        _scan_codes(codes, 0, codes.shape[0], table, np.float32(0.0) if ip else qq, ids, out_d[qi], out_i[qi])


@njit(cache=True, fastmath=True)
def _ivfpq_search(q, centroids, c_sqnorms, codebooks, term1, offsets, codes, ids, nprobe, ip, out_d, out_i):
    m, ksub, _ = codebooks.shape
    cd = np.empty(centroids.shape[0], np.float32)
    dots = np.empty((m, ksub), np.float32)
    table = np.empty((m, ksub), np.float32)
    for qi in range(q.shape[0]):
        qv = q[qi]
        _coarse(qv, centroids, c_sqnorms, ip, cd)
        probe = np.argsort(cd)[:nprobe]
        _dot_table(qv, codebooks, dots)  # ⟨q_j, C_j[c]⟩, shared by every probed cell
        qq = np.float32(0.0)
        for t in range(qv.shape[0]):
            qq += qv[t] * qv[t]
        bd, bi = out_d[qi], out_i[qi]
        bd[:] = np.inf
        bi[:] = -1
        for p in probe:
            for j in range(m):
                for c in range(ksub):
                    table[j, c] = -dots[j, c] if ip else term1[p, j, c] - 2 * dots[j, c]
            base = cd[p] if ip else cd[p] + qq  # −⟨q, c⟩, or ‖q − c‖²
            _scan_codes(codes, offsets[p], offsets[p + 1], table, base, ids, bd, bi)


class PQ(Index):
    """Product quantizer over the whole database (no IVF): ``m`` bytes per vector, exhaustive ADC scan."""

    def __init__(self, m: int = 16, metric: str = "l2", niter: int = 20, seed: int = 0):
        self.metric = check_metric(metric)
        self.m = check_positive_int(m, "m")
        self.niter, self.seed = niter, seed

    def _build(self, x: np.ndarray) -> None:
        self.codebooks = train_codebooks(x, self.m, self.niter, self.seed)  # (m, 256, d/m)
        self.c_sqnorms = np.einsum("jcs,jcs->jc", self.codebooks, self.codebooks)
        self.codes = encode(x, self.codebooks)  # (n, m) uint8
        self.ids = np.arange(len(x), dtype=np.int64)

    def reconstruct(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Decoded vectors (len(ids), d) — what ADC measures the distance to."""
        return decode(self.codes if ids is None else self.codes[ids], self.codebooks)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_d, out_i = np.empty((len(q), k), np.float32), np.empty((len(q), k), np.int64)
        _pq_search(q, self.codebooks, self.c_sqnorms, self.codes, self.ids, self.metric == "ip", out_d, out_i)
        return out_d, out_i

    def memory_bytes(self) -> int:
        return self.codes.nbytes + self.codebooks.nbytes

    @property
    def params(self) -> dict:
        return {"m": self.m, "bytes/code": self.m, "metric": self.metric}


class IVFPQ(IVF):
    """IVF whose lists hold PQ codes of residuals x − c (faiss's ``IndexIVFPQ``, 8-bit codes)."""

    def __init__(self, nlist: int = 100, m: int = 16, nprobe: int = 1, metric: str = "l2", niter: int = 20,
                 seed: int = 0, centroids: np.ndarray | None = None):
        super().__init__(nlist, nprobe, metric, niter, seed, "random", centroids)
        self.m = check_positive_int(m, "m")

    def _build(self, x: np.ndarray) -> None:
        if self.centroids is None:
            if self.nlist > len(x):
                raise ValueError(f"nlist must be <= the number of vectors ({len(x)}), got {self.nlist}")
            self.centroids = kmeans(x, self.nlist, self.niter, self.seed)
        self.c_sqnorms = np.einsum("ij,ij->i", self.centroids, self.centroids)
        assign = self.assign(x)
        residuals = x - self.centroids[assign]
        self.codebooks = train_codebooks(residuals, self.m, self.niter, self.seed + 1)
        order = np.argsort(assign, kind="stable")
        self.offsets = np.zeros(self.nlist + 1, np.int64)
        np.cumsum(np.bincount(assign, minlength=self.nlist), out=self.offsets[1:])
        self.ids = order.astype(np.int64)
        self.codes = encode(residuals[order], self.codebooks)  # (n, m) uint8, grouped by cell
        ds = x.shape[1] // self.m
        c_split = self.centroids.reshape(self.nlist, self.m, ds)  # (nlist, m, ds)
        # term1[l, j, c] = ‖C_j[c]‖² + 2⟨c_l,j , C_j[c]⟩: the query-independent part of the table per cell
        self.term1 = (np.einsum("jcs,jcs->jc", self.codebooks, self.codebooks)[None]
                      + 2 * np.einsum("ljs,jcs->ljc", c_split, self.codebooks)).astype(np.float32)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Decoded vectors (len(ids), d) for original ids: centroid + decoded residual."""
        ids = np.asarray(ids)
        row = np.empty(self.ntotal, np.int64)
        row[self.ids] = np.arange(self.ntotal)
        cell = np.searchsorted(self.offsets, row[ids], side="right") - 1
        return self.centroids[cell] + decode(self.codes[row[ids]], self.codebooks)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        nprobe = check_positive_int(self.nprobe, "nprobe", self.nlist)
        out_d, out_i = np.empty((len(q), k), np.float32), np.empty((len(q), k), np.int64)
        _ivfpq_search(q, self.centroids, self.c_sqnorms, self.codebooks, self.term1, self.offsets, self.codes,
                      self.ids, nprobe, self.metric == "ip", out_d, out_i)
        return out_d, out_i

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in (self.centroids, self.c_sqnorms, self.codebooks, self.term1, self.offsets,
                                      self.ids, self.codes))

    @property
    def params(self) -> dict:
        return {"nlist": self.nlist, "m": self.m, "nprobe": self.nprobe, "metric": self.metric}


__all__ = ["IVFPQ", "KSUB", "PQ", "decode", "encode", "train_codebooks"]

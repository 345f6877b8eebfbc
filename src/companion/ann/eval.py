"""Measuring vector indexes the way ann-benchmarks does: recall@k against queries per second.

* **Datasets** — ``clustered`` (Gaussian clusters, each spread along a few directions: the
  structure real embeddings have), ``isotropic`` (one Gaussian blob: no structure, the hard case),
  and ``minilm_docs`` (all-MiniLM-L6-v2 embeddings of the Python documentation's sentences,
  inner product on unit vectors). Each holds out its queries and the exact top-k (``Flat``).
* **Recall@k** (Aumüller et al., 2020): the fraction of returned ids whose *true* distance is
  within the k-th true distance plus ε, so ties at the boundary count as hits whichever tied id
  an index returns.
* **QPS** — single-query (one ``search`` call per query, the latency-bound serving case) and
  batch (all queries in one call), on one thread for every library.
* **Adapters** — faiss (``IndexFlatL2``, ``IndexIVFFlat``, ``IndexIVFPQ``, ``IndexHNSWFlat``,
  ``IndexLSH``) and hnswlib behind the same ``Index`` interface, so ``sweep`` draws all curves.

    >>> data = clustered(20_000, 500)
    >>> rows = sweep(lambda nlist: IVF(nlist), [{"nlist": 141}], data, {"nprobe": [1, 4, 16]})
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .base import Index, check_metric
from .flat import Flat, pairwise

K = 10
EPSILON = 1e-3

# ---------------------------------------------------------------------------------------------
# datasets


@dataclass
class Dataset:
    """A database x (n, d), held-out queries q (m, d), the metric, and the exact top-k (gt_d, gt_i (m, K))."""

    name: str
    x: np.ndarray
    q: np.ndarray
    metric: str
    gt_d: np.ndarray
    gt_i: np.ndarray

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def d(self) -> int:
        return self.x.shape[1]


def with_ground_truth(name: str, x: np.ndarray, q: np.ndarray, metric: str = "l2", k: int = K) -> Dataset:
    """A Dataset with its exact top-k computed by brute force."""
    gt_d, gt_i = Flat(check_metric(metric)).build(x).search(q, k)
    return Dataset(name, x, q, metric, gt_d, gt_i)


def clustered(n: int = 20_000, nq: int = 500, d: int = 128, n_clusters: int = 256, rank: int = 16,
              spread: float = 2.0, noise: float = 0.3, seed: int = 0) -> Dataset:
    """Gaussian clusters: centres ~ N(0, I), each cluster spread along ``rank`` random directions
    (total spread² ≈ rank·spread²/… ) plus isotropic ``noise``; queries drawn from the same clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)).astype(np.float32)
    basis = (rng.standard_normal((n_clusters, rank, d)) * spread / np.sqrt(d)).astype(np.float32)
    label = rng.integers(n_clusters, size=n + nq)
    z = rng.standard_normal((n + nq, rank)).astype(np.float32)
    v = centres[label] + np.einsum("nr,nrd->nd", z, basis[label]) + noise * rng.standard_normal((n + nq, d))
    v = v.astype(np.float32)
    return with_ground_truth("clustered Gaussian", v[:n], v[n:])


def isotropic(n: int = 20_000, nq: int = 500, d: int = 128, seed: int = 0) -> Dataset:
    """One isotropic Gaussian N(0, I): every point's neighbours are barely closer than the rest."""
    v = np.random.default_rng(seed).standard_normal((n + nq, d)).astype(np.float32)
    return with_ground_truth("isotropic Gaussian", v[:n], v[n:])


def docs_sentences(min_chars: int = 30) -> list[str]:
    """The Python docs' paragraphs split into sentences of >= ``min_chars`` characters, deduplicated, in order."""
    from ..data.corpora import python_docs_paragraphs

    out, seen = [], set()
    for paragraph in python_docs_paragraphs(min_chars=min_chars):
        for sentence in re.split(r"(?<=[.!?:])\s+(?=[A-Z])", paragraph):
            if len(sentence) >= min_chars and sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
    return out


def minilm_docs(n_max: int | None = None, nq: int = 200, seed: int = 0) -> Dataset:
    """MiniLM embeddings (384-d, unit norm, inner product) of the docs' sentences; ``nq`` held out as queries.

    ``n_max`` keeps the first n_max sentences (a smaller set to encode in SMOKE mode).
    """
    from .. import sentence

    texts = docs_sentences()[:n_max]
    v = sentence.encode(texts, progress=False)
    order = np.random.default_rng(seed).permutation(len(v))
    return with_ground_truth("MiniLM: Python docs", np.ascontiguousarray(v[order[nq:]]),
                             np.ascontiguousarray(v[order[:nq]]), "ip")


# ---------------------------------------------------------------------------------------------
# metrics


def recall(data: Dataset, ids: np.ndarray, k: int = K, epsilon: float = EPSILON) -> float:
    """Mean recall@k of ids (m, >= k): returned ids whose true distance is <= the k-th true distance + ε."""
    ids = np.asarray(ids)[:, :k]
    valid = ids >= 0
    true = np.stack([pairwise(data.q[i:i + 1], data.x[np.maximum(ids[i], 0)], data.metric)[0]
                     for i in range(len(ids))])  # (m, k) exact distances of what was returned
    hits = valid & (true <= data.gt_d[: len(ids), k - 1:k] + epsilon)
    return float(hits.sum(1).mean() / k)


def set_threads(n: int = 1) -> None:
    """One thread count for every library: faiss (OpenMP), numpy's BLAS via threadpoolctl when present."""
    import faiss

    faiss.omp_set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass


def single_query_qps(index: Index, q: np.ndarray, k: int = K, repeat: int = 1) -> tuple[float, np.ndarray]:
    """Queries per second answering q one ``search`` call per query (best of ``repeat``), and the ids (m, k)."""
    best = np.inf
    ids = np.empty((len(q), k), np.int64)
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(len(q)):
            ids[i] = index.search(q[i:i + 1], k)[1][0]
        best = min(best, time.perf_counter() - start)
    return len(q) / best, ids


def batch_qps(index: Index, q: np.ndarray, k: int = K) -> float:
    """Queries per second answering all of q in one call."""
    start = time.perf_counter()
    index.search(q, k)
    return len(q) / (time.perf_counter() - start)


def evaluate(index: Index, data: Dataset, k: int = K, batch: bool = True, repeat: int = 1) -> dict:
    """One operating point of a built index: recall@k, single-query and batch QPS, memory."""
    qps, ids = single_query_qps(index, data.q, k, repeat)
    row = {"recall": recall(data, ids, k), "qps": qps, "bytes_per_vector": index.memory_bytes() / data.n,
           "params": dict(index.params)}
    if batch:
        row["batch_qps"] = batch_qps(index, data.q, k)
    return row


def sweep(index_factory: Callable[..., Index], param_grid: list[dict] | dict, data: Dataset,
          search_grid: dict | None = None, name: str | None = None, k: int = K, batch: bool = False,
          progress: bool = True) -> list[dict]:
    """Build ``index_factory(**build_params)`` for each build setting, then evaluate every search setting.

    ``param_grid``: a list of keyword dicts, or a dict of lists (its product). ``search_grid``: a
    dict of lists of attributes set on the built index (e.g. {"nprobe": [1, 4, 16]}). Rows: index
    (name), dataset, recall, qps, params, build_s, bytes_per_vector (and batch_qps when ``batch``).
    """
    builds = _grid(param_grid)
    searches = _grid(search_grid or {})
    rows = []
    bar = tqdm(total=len(builds) * len(searches), desc=f"sweep {name or ''}".strip(), disable=not progress,
               leave=False)
    for build_params in builds:
        start = time.perf_counter()
        index = index_factory(**build_params).build(data.x)
        build_s = time.perf_counter() - start
        for search_params in searches:
            for attr, value in search_params.items():
                setattr(index, attr, value)
            row = evaluate(index, data, k, batch)
            rows.append({"index": name or type(index).__name__, "dataset": data.name, **row, "build_s": build_s})
            bar.update()
    bar.close()
    return rows


def _grid(grid: list[dict] | dict) -> list[dict]:
    if isinstance(grid, dict):
        keys = list(grid)
        return [dict(zip(keys, values)) for values in itertools.product(*grid.values())] or [{}]
    if not isinstance(grid, list) or not all(isinstance(g, dict) for g in grid):
        raise ValueError(f"a grid must be a dict of lists or a list of dicts, got {type(grid).__name__}")
    return grid or [{}]


# ---------------------------------------------------------------------------------------------
# the libraries behind the same interface


class Faiss(Index):
    """A faiss index as an ``Index``: kind "Flat", "IVFFlat", "IVFPQ", "HNSWFlat" or "LSH".

    Build knobs: nlist (IVF*), m (IVFPQ sub-quantizers, 8-bit), M and ef_construction (HNSW),
    nbits (LSH). Search knobs as attributes: ``nprobe`` (IVF*), ``ef`` (HNSW). Inner-product
    results come back as −ip, like ours.
    """

    KINDS = ("Flat", "IVFFlat", "IVFPQ", "HNSWFlat", "LSH")

    def __init__(self, kind: str, metric: str = "l2", nlist: int = 100, m: int = 16, M: int = 16,
                 ef_construction: int = 40, nbits: int = 256, nprobe: int = 1, ef: int = 16,
                 centroids: np.ndarray | None = None):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.kind, self.metric = kind, check_metric(metric)
        self.nlist, self.m, self.M, self.ef_construction, self.nbits = nlist, m, M, ef_construction, nbits
        self.nprobe, self.ef, self.centroids = nprobe, ef, centroids

    def _build(self, x: np.ndarray) -> None:
        import faiss

        d = x.shape[1]
        ip = self.metric == "ip"
        metric = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
        if self.kind == "Flat":
            index = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
        elif self.kind in ("IVFFlat", "IVFPQ"):
            self._quantizer = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
            index = (faiss.IndexIVFFlat(self._quantizer, d, self.nlist, metric) if self.kind == "IVFFlat"
                     else faiss.IndexIVFPQ(self._quantizer, d, self.nlist, self.m, 8, metric))
            if self.centroids is not None and self.kind == "IVFFlat":
                self._quantizer.add(np.ascontiguousarray(self.centroids, np.float32))
                index.is_trained = True
            index.cp.seed = 1234
            index.cp.min_points_per_centroid = 1  # only sets when faiss warns about small training sets
            if self.kind == "IVFPQ":
                index.pq.cp.min_points_per_centroid = 1
        elif self.kind == "HNSWFlat":
            index = faiss.IndexHNSWFlat(d, self.M, metric)
            index.hnsw.efConstruction = self.ef_construction
        else:
            index = faiss.IndexLSH(d, self.nbits)
        if not index.is_trained:
            index.train(x)
        index.add(x)
        self.index, self._ip = index, ip and self.kind != "LSH"

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind in ("IVFFlat", "IVFPQ"):
            self.index.nprobe = self.nprobe
        elif self.kind == "HNSWFlat":
            self.index.hnsw.efSearch = self.ef
        dists, ids = self.index.search(q, k)
        return (-dists if self._ip else dists), ids

    def memory_bytes(self) -> int:
        """The serialized index, plus IVF-PQ's per-cell distance table, which faiss keeps in RAM but does not save."""
        import faiss

        size = faiss.serialize_index(self.index).nbytes
        if self.kind == "IVFPQ":
            size += self.index.precomputed_table.size() * 4  # nlist × m × 256 float32, as ours counts
        return int(size)

    @property
    def params(self) -> dict:
        knobs = {"Flat": {}, "IVFFlat": {"nlist": self.nlist, "nprobe": self.nprobe},
                 "IVFPQ": {"nlist": self.nlist, "m": self.m, "nprobe": self.nprobe},
                 "HNSWFlat": {"M": self.M, "ef_construction": self.ef_construction, "ef": self.ef},
                 "LSH": {"nbits": self.nbits}}[self.kind]
        return {**knobs, "metric": self.metric}


class Hnswlib(Index):
    """hnswlib's HNSW as an ``Index`` (one thread); ``ef`` is the search-time beam width."""

    def __init__(self, M: int = 16, ef_construction: int = 200, ef: int = 10, metric: str = "l2", seed: int = 100):
        self.metric = check_metric(metric)
        self.M, self.ef_construction, self.ef, self.seed = M, ef_construction, ef, seed

    def _build(self, x: np.ndarray) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="l2" if self.metric == "l2" else "ip", dim=x.shape[1])
        self.index.init_index(max_elements=len(x), M=self.M, ef_construction=self.ef_construction,
                              random_seed=self.seed)
        self.index.set_num_threads(1)
        self.index.add_items(x, np.arange(len(x)))

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.set_ef(max(self.ef, k))
        ids, dists = self.index.knn_query(q, k, num_threads=1)
        if self.metric == "ip":
            dists = dists - 1  # hnswlib's "ip" distance is 1 − ip; ours is −ip
        return dists.astype(np.float32), ids.astype(np.int64)

    def memory_bytes(self) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.bin")
            self.index.save_index(path)
            return os.path.getsize(path)

    @property
    def params(self) -> dict:
        return {"M": self.M, "ef_construction": self.ef_construction, "ef": self.ef, "metric": self.metric}


__all__ = ["Dataset", "EPSILON", "Faiss", "Hnswlib", "K", "batch_qps", "clustered", "docs_sentences", "evaluate",
           "isotropic", "minilm_docs", "recall", "set_threads", "single_query_qps", "sweep", "with_ground_truth"]

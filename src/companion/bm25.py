"""Okapi BM25 over an inverted index: the lexical half of hybrid search.

BM25 (Robertson & Zaragoza, 2009) scores a document d for a query q as a sum over query terms t:

    score(q, d) = Σ_t idf(t) · f(t, d) · (k1 + 1) / (f(t, d) + k1 · (1 − b + b · |d| / avgdl))

where f(t, d) is how often t occurs in d, |d| the document's length in terms and avgdl the mean
length. ``k1`` saturates term frequency (the tenth occurrence adds little), ``b`` normalises for
length (b = 0: none, b = 1: full). The IDF is the one of ``rank_bm25.BM25Okapi``, so scores can be
checked against it to the last bit:

    idf(t) = log(N − n_t + 0.5) − log(n_t + 0.5)

with N documents of which n_t contain t; a term in more than half of the documents would get a
negative IDF, so it is floored at ``epsilon`` × the mean IDF over the vocabulary.

The index stores, for each term, a *posting list*: the ids of the documents containing it and the
term's frequency in each, as two numpy arrays. A query touches only the postings of its own terms,
so its cost grows with how many documents contain those terms, not with the corpus size:

    >>> index = BM25Index(["the cat sat", "the dog sat", "a bird flew"])
    >>> ids, scores = index.search("dog", k=1)      # ids -> array([1])
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

# A short English stopword list (articles, pronouns, auxiliaries, prepositions, conjunctions).
STOPWORDS = frozenset("""
a an the and or but if then else when while of at by for with about against between into through
during before after above below to from up down in out on off over under again further once here
there all any both each few more most other some such no nor not only own same so than too very
can will just should now is are was were be been being have has had having do does did doing i me
my we our you your he him his she her it its they them their what which who whom this that these
those am as until also may might must would could shall
""".split())

_WORD = re.compile(r"\w+")


def tokenize(text: str, stopwords: Iterable[str] | None = None) -> list[str]:
    """Lowercase word split: ``"The `for` loop, again"`` -> ``['the', 'for', 'loop', 'again']``.

    Words are runs of letters, digits and underscores, so identifiers such as ``__init__`` stay
    whole. ``stopwords`` (e.g. ``STOPWORDS``) are dropped after lowercasing.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    words = _WORD.findall(text.lower())
    if stopwords is None:
        return words
    stop = stopwords if isinstance(stopwords, (set, frozenset)) else set(stopwords)
    return [w for w in words if w not in stop]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first; ties go to the smaller index.

    Same order as a stable ``np.argsort(-scores)[:k]``, in O(n + k log k) with ``argpartition``.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    n = len(scores)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, {n}] (the number of scores), got {k!r}")
    if k < n:
        kth = np.partition(scores, n - k)[n - k]  # the k-th largest value
        cand = np.flatnonzero(scores >= kth)  # every index that can make the top k, ties included
    else:
        cand = np.arange(n)
    order = np.lexsort((cand, -scores[cand]))  # by score descending, then by index
    return cand[order[:k]]


class BM25Index:
    """An inverted index over tokenized documents with Okapi BM25 scoring.

    ``docs``: strings (tokenized with ``tokenize`` and ``stopwords``) or lists of tokens.
    Attributes: ``n_docs``; ``doc_len`` (n_docs,) float; ``avgdl``; ``idf`` {term: float};
    ``postings`` {term: (doc_ids (m,) int32 ascending, term_freqs (m,) float64)}.
    """

    def __init__(self, docs: Sequence[str] | Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75,
                 epsilon: float = 0.25, stopwords: Iterable[str] | None = None):
        if isinstance(docs, str) or not isinstance(docs, Sequence) or len(docs) == 0:
            raise ValueError("docs must be a non-empty list of strings or of token lists")
        if not (isinstance(k1, (int, float)) and k1 >= 0):
            raise ValueError(f"k1 must be a number >= 0, got {k1!r}")
        if not (isinstance(b, (int, float)) and 0 <= b <= 1):
            raise ValueError(f"b must be a number in [0, 1], got {b!r}")
        if not (isinstance(epsilon, (int, float)) and epsilon >= 0):
            raise ValueError(f"epsilon must be a number >= 0, got {epsilon!r}")
        self.k1, self.b, self.epsilon = float(k1), float(b), float(epsilon)
        self.stopwords = frozenset(stopwords) if stopwords is not None else None
        tokens = [self._as_tokens(d, f"docs[{i}]") for i, d in enumerate(docs)]
        self.n_docs = len(tokens)
        self.doc_len = np.array([len(t) for t in tokens], dtype=np.float64)
        self.avgdl = float(self.doc_len.mean())
        if self.avgdl == 0:
            raise ValueError("docs must contain at least one token in total")

        # Build the postings: term -> (doc ids, term frequencies), doc ids ascending.
        lists: dict[str, tuple[list[int], list[int]]] = {}
        for doc_id, toks in enumerate(tokens):
            for term, tf in Counter(toks).items():
                ids, tfs = lists.setdefault(term, ([], []))
                ids.append(doc_id)
                tfs.append(tf)
        self.postings = {t: (np.array(ids, dtype=np.int32), np.array(tfs, dtype=np.float64))
                         for t, (ids, tfs) in lists.items()}

        # IDF exactly as rank_bm25.BM25Okapi: log(N - n + 0.5) - log(n + 0.5), negatives floored.
        n = self.n_docs
        raw = {t: math.log(n - len(ids) + 0.5) - math.log(len(ids) + 0.5) for t, (ids, _) in self.postings.items()}
        self.average_idf = sum(raw.values()) / len(raw)
        floor = self.epsilon * self.average_idf
        self.idf = {t: (floor if v < 0 else v) for t, v in raw.items()}
        # Length normalisation of each document, computed once: k1 * (1 - b + b * |d| / avgdl).
        self._norm = self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl)

    def _as_tokens(self, doc, what: str) -> list[str]:
        if isinstance(doc, str):
            return tokenize(doc, self.stopwords)
        if isinstance(doc, Sequence) and all(isinstance(t, str) for t in doc):
            return list(doc)
        raise ValueError(f"{what} must be a string or a list of string tokens, got {type(doc).__name__}")

    def query_tokens(self, query: str | Sequence[str]) -> list[str]:
        """The query as tokens (tokenized like the documents when it is a string); never empty."""
        toks = self._as_tokens(query, "query")
        if not toks:
            raise ValueError(f"query must contain at least one token, got {query!r}")
        return toks

    def scores(self, query: str | Sequence[str]) -> np.ndarray:
        """BM25 score of every document (n_docs,), touching only the postings of the query's terms.

        A repeated query term counts once per occurrence, and an unknown term adds 0 (as in rank_bm25).
        """
        out = np.zeros(self.n_docs)
        for term in self.query_tokens(query):
            if term not in self.postings:
                continue
            ids, tf = self.postings[term]
            out[ids] += self.idf[term] * tf * (self.k1 + 1) / (tf + self._norm[ids])
        return out

    def search(self, query: str | Sequence[str], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents: (ids (k,), scores (k,)), best first, ties to the smaller id."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.n_docs:
            raise ValueError(f"k must be an int in [1, {self.n_docs}] (the number of documents), got {k!r}")
        scores = self.scores(query)
        ids = top_k(scores, k)
        return ids, scores[ids]

    def n_postings(self) -> int:
        """Total entries over all posting lists (the index's size, one per distinct (term, doc))."""
        return sum(len(ids) for ids, _ in self.postings.values())


__all__ = ["BM25Index", "STOPWORDS", "tokenize", "top_k"]

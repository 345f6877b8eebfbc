"""Offline text corpora: English prose from the Python docs, and code from the stdlib.

Both ship with every Python install, so no chapter ever needs the network:
``pydoc_data.topics`` holds the text of the language reference's topics (about 1 MB of prose),
and the standard library's own ``.py`` files are a large corpus of real code.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path


def python_docs(max_chars: int | None = None) -> str:
    """English prose: every topic of ``pydoc_data.topics``, in sorted order, joined by blank lines."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key].strip() for key in sorted(topics))
    return _limit(text, max_chars)


def python_docs_paragraphs(min_chars: int = 200) -> list[str]:
    """The docs split into paragraphs of at least ``min_chars`` characters (items for retrieval)."""
    if min_chars < 1:
        raise ValueError(f"min_chars must be >= 1, got {min_chars}")
    paragraphs = (p.strip() for p in python_docs().split("\n\n"))
    return [" ".join(p.split()) for p in paragraphs if len(p) >= min_chars]


def stdlib_code(max_files: int | None = None, max_chars: int | None = None) -> str:
    """Python source code: stdlib modules (no tests, no site-packages), sorted by path."""
    if max_files is not None and max_files < 1:
        raise ValueError(f"max_files must be >= 1 or None, got {max_files}")
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if not p.name.startswith("test"))
    if not files:
        raise FileNotFoundError(f"no stdlib .py files found under {root}")
    files = files[:max_files] if max_files else files
    text = "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)
    return _limit(text, max_chars)


def _limit(text: str, max_chars: int | None) -> str:
    if max_chars is None:
        return text
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1 or None, got {max_chars}")
    return text[:max_chars]

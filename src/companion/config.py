"""Run-time configuration shared by every chapter: SMOKE mode, seeding and the device.

SMOKE mode shrinks data and steps so that a chapter runs in under a minute on two CPU cores; it
keeps the idea intact. Its default comes from the environment variable ``COMPANION_SMOKE`` (set
by ``make test``), and papermill can override it through a notebook's ``parameters`` cell.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

SMOKE_ENV = "COMPANION_SMOKE"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def smoke_default(environ: dict[str, str] | None = None) -> bool:
    """SMOKE default read from ``COMPANION_SMOKE``: "1"/"true"/"yes"/"on" -> True; unset -> False."""
    env = os.environ if environ is None else environ
    value = env.get(SMOKE_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{SMOKE_ENV}={env.get(SMOKE_ENV)!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off"
    )


def pick(smoke: bool, smoke_value, full_value):
    """Choose a size by mode: ``pick(SMOKE, 200, 5000)`` -> 200 in SMOKE mode, else 5000."""
    if not isinstance(smoke, bool):
        raise TypeError(f"smoke must be a bool, got {type(smoke).__name__}")
    return smoke_value if smoke else full_value


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator seeded the same way."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def device(prefer: str | None = None) -> torch.device:
    """The compute device: CUDA when present (e.g. on Colab), else CPU. ``prefer`` forces one."""
    if prefer is not None:
        if prefer not in {"cpu", "cuda"}:
            raise ValueError(f"prefer must be 'cpu', 'cuda' or None, got {prefer!r}")
        if prefer == "cuda" and not torch.cuda.is_available():
            raise ValueError("prefer='cuda' but no CUDA device is available")
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cache_dir() -> Path:
    """Where chapters cache artefacts (checkpoints, embeddings): ``$COMPANION_CACHE`` or ``~/.cache/companion``."""
    root = os.environ.get("COMPANION_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "companion"
    path.mkdir(parents=True, exist_ok=True)
    return path

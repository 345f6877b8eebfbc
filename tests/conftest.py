"""Shared fixtures, and the per-chapter run times printed at the end of `make test`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SESSION_START = time.time()


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a test module: tiny models step faster on one core than split across two,
    and a second thread only waits when the machine is shared. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    path = ROOT / "_build" / "executed" / "timings.json"
    if not path.is_file():
        return
    timings = {k: v for k, v in json.loads(path.read_text()).items() if v["at"] >= _SESSION_START}
    if not timings:
        return
    terminalreporter.write_sep("-", "notebook run times (papermill)")
    for name, t in sorted(timings.items()):
        mode = "smoke" if t["smoke"] else "full"
        terminalreporter.write_line(f"{t['seconds']:7.1f} s  {name}  ({mode}; budget 60 s in smoke on 2 cores)")

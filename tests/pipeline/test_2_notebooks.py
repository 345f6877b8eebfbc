"""Execute every chapter in _toc.yml through papermill with SMOKE=True injected.

The executed copies are kept in _build/executed/ (the book is built from them next) and each
chapter's wall time is recorded; `make test` prints the times at the end.
"""

from __future__ import annotations

import pytest

from companion import pipeline
from tests.conftest import ROOT

SMOKE_BUDGET_S = 60


@pytest.mark.pipeline
@pytest.mark.parametrize("source", pipeline.toc_notebooks(ROOT), ids=lambda p: p.stem)
def test_chapter_executes_in_smoke_mode(source):
    seconds = pipeline.execute(ROOT, source, smoke=True)
    # Timing is noisy on shared machines: fail only on a gross overrun of the 60 s budget.
    assert seconds < 2 * SMOKE_BUDGET_S, f"{source.name} took {seconds:.0f} s in SMOKE mode (budget {SMOKE_BUDGET_S} s)"

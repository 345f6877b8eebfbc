"""Helpers the chapters use to talk to the book: glued numbers and exercise checks.

``glue`` records a value computed in the notebook under a name; the prose then quotes it with
``{glue:text}`name:.2f``` so no measured number is ever typed by hand. In the rendered book
myst-nb substitutes it; elsewhere (plain Jupyter, Colab) the value is simply displayed.

``check`` is the "Check yourself" helper: it compares a reader's answer with the expected
value and says plainly whether it is right.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Real
from typing import Any

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
GLUED: dict[str, Any] = {}


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Record ``value`` under ``name`` for the prose and return it.

    Numbers must be finite; a NaN or infinity in prose is a bug in the experiment, not a result.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be an identifier-like string, got {name!r}")
    if isinstance(value, Real) and not isinstance(value, bool) and not math.isfinite(float(value)):
        raise ValueError(f"glue({name!r}) got a non-finite value {value!r}")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalars -> Python numbers, so formats like :.2f work
    GLUED[name] = value
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:  # e.g. on Colab: nothing to substitute into, so just show it when asked
        if display:
            print(f"{name} = {value!r}")
        return value
    _myst_glue(name, value, display=display)
    return value


@dataclass(frozen=True)
class Verdict:
    """The result of ``check``: true when the answer is right; shown in a notebook as its message."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return self.message


def check(answer: Any, expected: Any, rel_tol: float = 1e-2, abs_tol: float = 1e-9) -> Verdict:
    """Compare a "Check yourself" answer with the expected value.

    Numbers compare within ``rel_tol`` (1% by default); anything else compares with ``==``. The
    Verdict displays as a sentence at the end of a cell and is truthy when the answer is right,
    so notebooks and tests can also ``assert check(...)``.
    """
    if rel_tol < 0 or abs_tol < 0:
        raise ValueError(f"rel_tol and abs_tol must be >= 0, got {rel_tol}, {abs_tol}")
    if answer is None or answer is Ellipsis:
        return Verdict(False, "Not answered yet: replace the ... with your answer and run the cell again.")
    numeric = isinstance(answer, Real) and isinstance(expected, Real)
    ok = math.isclose(float(answer), float(expected), rel_tol=rel_tol, abs_tol=abs_tol) if numeric else answer == expected
    if ok:
        return Verdict(True, f"Correct: {answer!r}")
    return Verdict(False, f"Not quite: got {answer!r}. Look again at the cell above, or open the solution.")

"""The book pipeline: pair, execute, stage, build.

    notebooks/*.py  --sync-->  notebooks/*.ipynb (no outputs, committed, what Colab opens)
                    --papermill (SMOKE or full)-->  _build/executed/notebooks/*.ipynb + timings.json
                    --stage-->  _build/stage/ (config, toc, book/, executed notebooks, _static/plotly.min.js, _extra/mathjax)
                    --jupyter-book build-->  _build/html

``make test`` executes in SMOKE mode (from the tests) and builds from those executed copies;
``make book`` executes in full mode and builds. Command line::

    python -m companion.pipeline sync [--check]
    python -m companion.pipeline execute [--smoke] [NOTEBOOK ...]
    python -m companion.pipeline build          # from already-executed notebooks
    python -m companion.pipeline book [--smoke] # execute, then build
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

BUILD = "_build"
EXECUTED = f"{BUILD}/executed"
STAGE = f"{BUILD}/stage"
HTML = f"{BUILD}/html"
CACHE = f"{BUILD}/cache"  # artefacts chapters share, such as the trained MiniGPT


def find_root(start: Path | None = None) -> Path:
    """The book's root: the nearest folder at or above ``start`` (default: cwd) holding ``_toc.yml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    raise FileNotFoundError(f"no _toc.yml found at or above {here}; run from inside the book repository")


def toc_files(root: Path) -> list[str]:
    """Every ``file:`` entry of ``_toc.yml`` (root first), without extension, in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    found.append(str(node[key]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def toc_notebooks(root: Path) -> list[Path]:
    """The chapters: toc entries that are jupytext notebooks, as paths to their ``.py`` source."""
    notebooks = []
    for entry in toc_files(root):
        source = root / f"{entry}.py"
        if source.is_file():
            if not (root / f"{entry}.ipynb").is_file():
                raise FileNotFoundError(f"{source} has no paired .ipynb; run `make sync`")
            notebooks.append(source)
        elif not any((root / f"{entry}{ext}").is_file() for ext in (".md", ".ipynb")):
            raise FileNotFoundError(f"_toc.yml lists {entry!r} but no .py, .ipynb or .md file exists for it")
    return notebooks


# --- pairing ---------------------------------------------------------------------------------


def paired_ipynb_text(source: Path) -> str:
    """The .ipynb text that ``make sync`` writes for a percent-format .py source (no outputs)."""
    import jupytext

    notebook = jupytext.read(source)
    notebook.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:03d}"  # nbformat draws random ids; fixed ones keep the pair reproducible
    return jupytext.writes(notebook, fmt="ipynb")


def sync(root: Path, check: bool = False) -> list[Path]:
    """Regenerate every notebook's .ipynb from its .py; with ``check``, only list the stale ones."""
    stale = []
    for source in sorted((root / "notebooks").rglob("*.py")):
        if "jupytext" not in source.read_text():
            continue
        target = source.with_suffix(".ipynb")
        text = paired_ipynb_text(source)
        if not target.is_file() or target.read_text() != text:
            stale.append(target)
            if not check:
                target.write_text(text)
    return stale


# --- execution -------------------------------------------------------------------------------


class NotebookFailed(RuntimeError):
    """A chapter raised while executing; the message carries the failing cell's error."""


def execute(root: Path, source: Path, smoke: bool) -> float:
    """Run one chapter through papermill with ``SMOKE`` injected; return the wall time in seconds.

    The executed copy is kept at ``_build/executed/<same path>.ipynb``; a failure raises
    NotebookFailed naming the notebook and the cell's error (the copy keeps the traceback too).
    """
    import papermill as pm

    notebook = source.with_suffix(".ipynb")
    out = root / EXECUTED / notebook.relative_to(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("COMPANION_CACHE", str(root / CACHE))  # the kernel inherits it
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook), str(out), parameters={"SMOKE": smoke}, kernel_name="python3",
            cwd=str(notebook.parent), progress_bar=False, log_output=False,
        )
    except pm.PapermillExecutionError as err:
        trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback[-5:]))  # drop terminal colours
        raise NotebookFailed(
            f"{notebook.relative_to(root)} failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n{trace}"
        ) from None
    seconds = time.perf_counter() - start
    record_timing(root, notebook.relative_to(root).as_posix(), seconds, smoke)
    return seconds


def record_timing(root: Path, name: str, seconds: float, smoke: bool) -> None:
    path = root / EXECUTED / "timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[name] = {"seconds": round(seconds, 2), "smoke": smoke, "at": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timings, indent=2))


# --- staging and building ----------------------------------------------------------------------


def stage(root: Path) -> Path:
    """Assemble the build tree: config, toc, prose pages, executed chapters, plotly.js once."""
    import jupyter_server_mathjax
    import plotly

    target = root / STAGE
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "README.md"):
        shutil.copy2(root / name, target / name)
    shutil.copytree(root / "book", target / "book")
    for source in toc_notebooks(root):
        rel = source.with_suffix(".ipynb").relative_to(root)
        executed = root / EXECUTED / rel
        if not executed.is_file():
            raise FileNotFoundError(
                f"{rel} has not been executed ({executed} is missing); run `make test` or "
                "`python -m companion.pipeline execute` first"
            )
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        notebook = json.loads(executed.read_text())
        # Saved widget state only bloats a static page: widgets need a kernel to do anything.
        notebook["metadata"].pop("widgets", None)
        (target / rel).write_text(json.dumps(notebook, indent=1))
    static = target / "_static"
    static.mkdir()
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / "plotly.min.js")
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", target / "_extra" / "mathjax")
    return target


def build(root: Path) -> Path:
    """Build the HTML book from already-executed chapters into ``_build/html``."""
    staged = stage(root)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(staged), "--all"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    html = root / HTML
    if html.exists():
        shutil.rmtree(html)
    shutil.copytree(staged / "_build" / "html", html)
    missing = [f for f in toc_files(root) if not (html / f"{f}.html").is_file()]
    if missing:
        raise RuntimeError(f"the build produced no page for {missing}")
    return html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_sync = sub.add_parser("sync", help="regenerate .ipynb from .py")
    p_sync.add_argument("--check", action="store_true", help="only report stale pairs (exit 1 if any)")
    p_exec = sub.add_parser("execute", help="run chapters through papermill")
    p_exec.add_argument("--smoke", action="store_true")
    p_exec.add_argument("notebooks", nargs="*", help="chapter .py paths (default: all in _toc.yml)")
    sub.add_parser("build", help="build HTML from executed chapters")
    p_book = sub.add_parser("book", help="execute every chapter, then build")
    p_book.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    root = find_root()

    if args.command == "sync":
        stale = sync(root, check=args.check)
        verb = "stale" if args.check else "written"
        print("\n".join(f"{verb}: {p.relative_to(root)}" for p in stale) or "all pairs in sync")
        return 1 if (args.check and stale) else 0
    if args.command in ("execute", "book"):
        chosen = [Path(p).resolve() for p in getattr(args, "notebooks", [])] or toc_notebooks(root)
        for source in chosen:
            seconds = execute(root, source, smoke=args.smoke)
            print(f"{seconds:7.1f} s  {source.relative_to(root)}  ({'smoke' if args.smoke else 'full'})")
    if args.command in ("build", "book"):
        print(f"built {build(root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Load every page of the built book in headless Chromium and check that every plotly figure drew.

The book is served on 127.0.0.1; Chromium runs with no network beyond it. For each page the DOM
after scripts ran is dumped and a screenshot is saved under _build/screenshots/. In CI a missing
Chromium is a failure; locally the test skips and says how to install it.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from companion import pipeline
from tests.conftest import ROOT

HTML = ROOT / pipeline.HTML
SHOTS = ROOT / "_build" / "screenshots"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--hide-scrollbars", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("Chromium is not installed; .ci/run must `apt-get install -y chromium`")
    pytest.skip("Chromium not found: install it with `apt-get install -y chromium` to run the browser check")


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file() and not any(HTML.glob("**/*.html")):
        pytest.fail(f"{HTML} holds no built book; run tests/pipeline/test_3_book.py first (make test does)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def run_chromium(args: list[str], user_dir: Path) -> str:
    cmd = [chromium(), *FLAGS, f"--user-data-dir={user_dir}", "--virtual-time-budget=15000", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed: {result.stderr[-2000:]}"
    return result.stdout


# What must have drawn on a chapter's page: plotly figures in all, 2-D contour landscapes, and 3-D
# WebGL scenes (the loss surface). Chapters not listed need at least one drawn figure.
SIGNATURE_VISUALS = {
    "notebooks/01_ml_fundamentals": dict(figures=5, contours=2, scenes=1),
    "notebooks/30_embeddings": dict(figures=8),
    "notebooks/31_vector_search": dict(figures=8),
    "notebooks/32_hybrid_rag": dict(figures=5),
    "notebooks/50_tokenization": dict(figures=3),
    "notebooks/51_attention": dict(figures=5),
    "notebooks/52_small_llm": dict(figures=4),
    "notebooks/53_decoding": dict(figures=4),
    "notebooks/54_lora": dict(figures=6),
    "notebooks/55_sft_dpo": dict(figures=6),
    "notebooks/60_kv_cache": dict(figures=7),
    "notebooks/61_paged_attention": dict(figures=6),
    "notebooks/62_batching": dict(figures=8),
    "notebooks/63_speculative_decoding": dict(figures=5),
    "notebooks/64_quantization": dict(figures=5),
    "notebooks/70_roofline": dict(figures=6),
    "notebooks/71_flash_attention": dict(figures=7),
}


def figures(dom: str) -> tuple[int, int]:
    """(plotly figure containers, containers that hold a drawn plotly SVG)."""
    parts = re.split(r'(?=<div id="companion-plotly-\d+")', dom)[1:]
    return len(parts), sum('class="main-svg"' in part for part in parts)


@pytest.mark.pipeline
@pytest.mark.parametrize("entry", pipeline.toc_files(ROOT))
def test_page_loads_and_every_figure_renders(entry, server, tmp_path):
    url = f"{server}/{entry}.html"
    dom = run_chromium(["--dump-dom", url], tmp_path / "dom")
    assert "<title>" in dom and "404" not in dom.split("<title>", 1)[1][:80], f"{url} did not load"
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{entry.replace('/', '__')}.png"
    run_chromium([f"--screenshot={shot}", "--window-size=1280,2400", url], tmp_path / "shot")
    assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot for {url}"
    n_figures, n_drawn = figures(dom)
    if entry.startswith("notebooks/"):
        assert n_figures >= 1, f"{entry}: a chapter with no plotly figure"
    assert n_drawn == n_figures, f"{entry}: only {n_drawn} of {n_figures} plotly figures rendered"
    want = SIGNATURE_VISUALS.get(entry)
    if want:
        assert n_drawn >= want["figures"], f"{entry}: {n_drawn} figures drawn, expected at least {want['figures']}"
        contours = dom.count('class="contour"')
        assert contours >= want.get("contours", 0), f"{entry}: {contours} contour landscapes drawn, expected {want.get('contours', 0)}"
        scenes = len(re.findall(r'id="scene\d*"[^>]*>.*?<canvas', dom, re.S))
        assert scenes >= want.get("scenes", 0), f"{entry}: {scenes} 3-D scenes drew a WebGL canvas, expected {want.get('scenes', 0)}"
    has_math = 'class="math notranslate' in (HTML / f"{entry}.html").read_text()
    if has_math:
        assert re.search(r'class="MathJax(_CHTML|_SVG)?"', dom), f"{entry}: a page with math, but MathJax typeset nothing"

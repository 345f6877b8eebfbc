"""Build the HTML book from the chapters test_2 executed (no second execution) and check it."""

from __future__ import annotations

import re

import pytest

from companion import pipeline
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def html():
    return pipeline.build(ROOT)


@pytest.mark.pipeline
def test_every_toc_page_is_built(html):
    for entry in pipeline.toc_files(ROOT):
        assert (html / f"{entry}.html").is_file(), entry


@pytest.mark.pipeline
def test_plotly_js_is_shipped_once_not_inlined(html):
    assert (html / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    for source in pipeline.toc_notebooks(ROOT):
        page = (html / source.relative_to(ROOT).with_suffix(".html")).read_text()
        assert "_static/plotly.min.js" in page, f"{source.stem}: plotly.min.js not loaded"
        assert page.count("Plotly.newPlot") >= 1, f"{source.stem}: no plotly figures on the page"
        assert len(page) < 5_000_000 and "plotly.js v" not in page, f"{source.stem}: plotly.js inlined into the page"
        assert "cdn.plot.ly" not in re.sub(r's\.src = "https://cdn\.plot\.ly[^"]+"', "", page), (
            f"{source.stem}: loads plotly from a CDN outside the live-notebook fallback"
        )


@pytest.mark.pipeline
def test_math_and_glue_render_offline(html):
    for source in pipeline.toc_notebooks(ROOT):
        page = (html / source.relative_to(ROOT).with_suffix(".html")).read_text()
        assert "mathjax/MathJax.js" in page and "cdn.jsdelivr.net/npm/mathjax" not in page, f"{source.stem}: MathJax not served locally"
        assert "{glue" not in page, f"{source.stem}: a glue reference was not substituted"
        assert "require.min.js" not in page, f"{source.stem}: require.js would hide plotly's global"

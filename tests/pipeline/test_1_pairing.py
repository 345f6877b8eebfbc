"""Notebook pairs and conventions: .py is the source, .ipynb its output-free pair, one repo URL."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from companion import pipeline


def chapters(root):
    return pipeline.toc_notebooks(root)


def test_toc_lists_only_existing_pages(root):
    files = pipeline.toc_files(root)
    assert files, "_toc.yml lists no pages"
    for entry in files:
        assert any((root / f"{entry}{ext}").is_file() for ext in (".md", ".py", ".ipynb")), entry


def test_every_pair_is_in_sync(root):
    stale = pipeline.sync(root, check=True)
    assert not stale, f"these .ipynb differ from their .py source; run `make sync`: {stale}"


def test_committed_notebooks_carry_no_outputs(root):
    for source in chapters(root):
        nb = json.loads(source.with_suffix(".ipynb").read_text())
        with_outputs = [i for i, c in enumerate(nb["cells"]) if c.get("outputs") or c.get("execution_count")]
        assert not with_outputs, f"{source.with_suffix('.ipynb').name} has outputs in cells {with_outputs}"


def test_every_source_is_valid_python(root):
    """A markdown line that lost its '# ' still renders, but breaks the .py as a script and in editors."""
    for source in chapters(root):
        try:
            compile(source.read_text(), str(source), "exec")
        except SyntaxError as err:
            pytest.fail(f"{source.name}:{err.lineno}: {err.msg} (a markdown line without its '# '?)")


def test_every_chapter_has_a_smoke_parameter_cell(root):
    for source in chapters(root):
        nb = json.loads(source.with_suffix(".ipynb").read_text())
        params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(params) == 1, f"{source.name}: expected one cell tagged 'parameters', found {len(params)}"
        assert re.search(r"^SMOKE\s*=", "".join(params[0]["source"]), re.M), f"{source.name}: no SMOKE = ..."


def test_repository_url_lives_in_one_place(root):
    url = yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"]
    slug = url.removeprefix("https://github.com/")
    for source in chapters(root):
        text = source.read_text()
        for found in re.findall(r"github\.com/([\w-]+/[\w.-]+)", text):
            found = found.removesuffix(".git").rstrip(".")
            assert found == slug, f"{source.name} mentions github.com/{found}, but _config.yml says {slug}"
        assert f"git+{url}" in text, f"{source.name}: the setup cell must install companion from {url}"
        assert f"colab.research.google.com/github/{slug}/blob/main/{source.relative_to(root).with_suffix('.ipynb').as_posix()}" in text, (
            f"{source.name}: no Colab link to its own notebook"
        )


def test_find_root_fails_clearly_outside_the_book(tmp_path):
    with pytest.raises(FileNotFoundError, match="no _toc.yml"):
        pipeline.find_root(tmp_path)


def test_toc_with_a_missing_page_is_an_error(tmp_path):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/99_missing\n")
    (tmp_path / "intro.md").write_text("# hi\n")
    with pytest.raises(FileNotFoundError, match="99_missing"):
        pipeline.toc_notebooks(tmp_path)

"""companion.viz: the offline book renderer and the figure helpers."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import pytest

from companion import viz


def test_figures_render_as_self_drawing_html_without_plotly_js():
    bundle = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))._repr_mimebundle_()
    html = bundle["text/html"]
    assert 'class="companion-plotly"' in html and "Plotly.newPlot" in html
    assert len(html) < 20_000, "plotly.js itself must not be inlined"
    spec = json.loads(re.search(r"var spec = (\{.*?\});\n", html, re.S).group(1))
    assert spec["data"][0]["y"] == [3, 4]


def test_each_figure_gets_its_own_div():
    a = viz.figure_html(go.Figure())
    b = viz.figure_html(go.Figure())
    assert re.search(r'id="([^"]+)"', a).group(1) != re.search(r'id="([^"]+)"', b).group(1)


def test_slider_figure_shows_one_group_per_step():
    fig = viz.slider_figure(lambda k: [go.Scatter(y=[k, k]), go.Scatter(y=[0, k])], [1, 2, 3], "k", active=1)
    assert len(fig.data) == 6
    assert [t.visible for t in fig.data] == [False, False, True, True, False, False]
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["1", "2", "3"]
    assert steps[2].args[0]["visible"] == [False, False, False, False, True, True]


@pytest.mark.parametrize("values, active, match", [([], 0, "at least one"), ([1], 3, "active must index")])
def test_slider_figure_rejects_bad_input(values, active, match):
    with pytest.raises(ValueError, match=match):
        viz.slider_figure(lambda v: [go.Scatter()], values, "v", active=active)


def test_landscape_figure_checks_shapes():
    xs, ys = np.linspace(0, 1, 5), np.linspace(0, 1, 4)
    fig = viz.landscape_figure(xs, ys, np.ones((4, 5)), {"sgd": np.zeros((3, 2))})
    assert len(fig.data) == 2
    with pytest.raises(ValueError, match="expected \\(len\\(ys\\), len\\(xs\\)\\)"):
        viz.landscape_figure(xs, ys, np.ones((5, 4)))
    with pytest.raises(ValueError, match="expected \\(n_steps, 2\\)"):
        viz.landscape_figure(xs, ys, np.ones((4, 5)), {"bad": np.zeros((3, 3))})


def test_attention_heatmap_has_a_slider_over_heads():
    w = np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 4))
    fig = viz.attention_heatmap(w, tokens=list("abcd"))
    assert len(fig.data) == 2 and len(fig.layout.sliders[0].steps) == 2
    with pytest.raises(ValueError, match="3 tokens given"):
        viz.attention_heatmap(w, tokens=list("abc"))


def test_recall_qps_curve_sorts_by_recall_and_requires_fields():
    recs = [{"method": "hnsw", "recall": 0.9, "qps": 100, "params": {"ef": 64}},
            {"method": "hnsw", "recall": 0.5, "qps": 1000, "params": {"ef": 8}}]
    fig = viz.recall_qps_figure(recs)
    assert list(fig.data[0].x) == [0.5, 0.9] and fig.layout.yaxis.type == "log"
    with pytest.raises(ValueError, match="lacks"):
        viz.recall_qps_figure([{"method": "x", "recall": 1.0}])


def test_training_curves_and_line_figure_validate_lengths():
    fig = viz.training_curves({"step": [1, 2], "train": [1.0, 0.5], "val": [1.1, 0.7]})
    assert {t.name for t in fig.data} == {"train", "val"}
    with pytest.raises(ValueError, match="no 'step' key"):
        viz.training_curves({"x": [1]})
    with pytest.raises(ValueError, match="has 1 points but x has 2"):
        viz.line_figure([1, 2], {"a": [1]})


def test_thin_runs_keeps_the_ends_of_each_vertical_segment():
    x = np.array([0.0, 0.0, 0.0, 0.5, 0.5, 1.0])
    y = np.array([1.0, 0.9, 0.8, 0.8, 0.4, 0.3])
    tx, ty = viz.thin_runs(x, y)
    assert tx.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0] and ty.tolist() == [1.0, 0.8, 0.8, 0.4, 0.3]
    with pytest.raises(ValueError, match="same length"):
        viz.thin_runs([0, 1], [0])


def test_thin_runs_shrinks_a_real_pr_curve_without_moving_it():
    from sklearn.metrics import precision_recall_curve

    rng = np.random.default_rng(0)
    y = (rng.random(100_000) < 1e-3).astype(int)
    precision, recall, _ = precision_recall_curve(y, rng.random(100_000) + y)
    r, p = viz.thin_runs(recall, precision)
    assert len(r) <= 2 * y.sum() + 2 < len(recall) / 10
    for level in np.unique(recall):  # the same vertical extent at every recall level
        assert p[r == level].max() == precision[recall == level].max()
        assert p[r == level].min() == precision[recall == level].min()


def _shown_text(markup: str) -> str:
    """The characters a reader sees in token_html's output, newline marks removed."""
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", "", markup)).replace("↵", "")


def test_token_html_shows_every_character_once_with_alternating_colours():
    pieces = [b"Hello", b",", b" <world>", b"\n", b"  x"]
    markup = viz.token_html(pieces)
    assert _shown_text(markup) == b"".join(pieces).decode()
    assert "&lt;world&gt;" in markup, "token text must be HTML-escaped"
    colours = re.findall(r"background:(#[0-9a-f]{6})", markup)
    assert len(colours) == len(pieces) and all(a != b for a, b in zip(colours, colours[1:]))
    assert "↵\n" in markup and "dashed" not in markup


def test_token_html_keeps_a_split_character_in_one_outlined_box():
    word = "日本".encode()  # 6 bytes; cut the first character's 3 bytes across two tokens
    markup = viz.token_html([word[:2], word[2:3], word[3:]])
    spans = re.findall(r"<span[^>]*>.*?</span>", markup)
    assert len(spans) == 2 and "dashed" in spans[0] and "2 tokens share" in spans[0]
    assert _shown_text(markup) == "日本"
    assert "\ufffd" in _shown_text(viz.token_html([word[:2]])), "a character cut off at the end shows as U+FFFD"


def test_token_html_rejects_bad_input():
    with pytest.raises(TypeError, match="sequence of bytes"):
        viz.token_html(b"abc")
    with pytest.raises(TypeError, match=r"pieces\[1\] must be bytes, got str"):
        viz.token_html([b"a", "b"])
    with pytest.raises(ValueError, match="at least 2"):
        viz.token_html([b"a"], colors=["#fff"])


def test_attention_heatmap_over_layers_and_heads_keeps_repeated_tokens_apart():
    w = np.random.default_rng(0).dirichlet(np.ones(5), size=(2, 3, 5))  # (L=2, H=3, T=5, T=5)
    tokens = ["a", "␣b", "a", "␣b", "a"]
    fig = viz.attention_heatmap(w, tokens, active=4)
    steps = fig.layout.sliders[0].steps
    assert len(fig.data) == 6 and [s.label for s in steps][:4] == ["L0 H0", "L0 H1", "L0 H2", "L1 H0"]
    assert [t.visible for t in fig.data] == [i == 4 for i in range(6)]
    np.testing.assert_allclose(np.asarray(fig.data[4].z), w[1, 1], atol=1e-3)
    x = list(fig.data[0].x)
    assert len(set(x)) == 5 and [label.rstrip("\u200b") for label in x] == tokens, "one column per position"
    last_two = viz.attention_heatmap(w[0, 0, 3:], tokens)  # queries are the last 2 positions
    assert list(last_two.data[0].y) == x[3:]
    with pytest.raises(ValueError, match=r"\(L, H, T_q, T_k\)"):
        viz.attention_heatmap(np.ones((1, 1, 1, 2, 2)))


def test_visible_whitespace():
    assert viz.visible_whitespace(" if\n\t") == "␣if↵⇥"


def test_layer_head_figure_draws_one_annotated_panel_per_score():
    scores = {"entropy": np.arange(6.0).reshape(2, 3), "previous token": np.ones((2, 3))}
    fig = viz.layer_head_figure(scores, reference={"entropy": 1.5})
    assert len(fig.data) == 2 and np.array_equal(np.asarray(fig.data[0].z), scores["entropy"])
    assert fig.layout.annotations[0].text == "entropy (uniform: 1.5)"
    with pytest.raises(ValueError, match="same shape"):
        viz.layer_head_figure({"a": np.ones((2, 3)), "b": np.ones((3, 2))})
    with pytest.raises(ValueError, match="scores is empty"):
        viz.layer_head_figure({})


def test_attention_views_reject_bad_input():
    with pytest.raises(ValueError, match="1 <= T_q <= T_k"):
        viz.attention_heatmap(np.ones((5, 2)) / 2)
    with pytest.raises(ValueError, match="finite"):
        viz.attention_heatmap(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="not one str"):
        viz.attention_heatmap(np.eye(2), tokens="ab")
    with pytest.raises(ValueError, match="piece must be a str"):
        viz.visible_whitespace(b" if")
    with pytest.raises(ValueError, match="reference names"):
        viz.layer_head_figure({"entropy": np.ones((2, 2))}, reference={"entropi": 1.0})


def test_gantt_figure_draws_each_timeline_by_kind_with_a_dropdown():
    from companion.batchsim import Span

    static = [Span(0, 0.0, 6.0, "prefill"), Span(0, 6.0, 8.0, "held"), Span(1, 0.0, 6.0, "prefill"),
              Span(1, 6.0, 8.0, "decode"), Span(2, 0.0, 8.0, "queued"), Span(2, 8.0, 9.0, "prefill")]
    continuous = [Span(0, 0.0, 5.0, "prefill"), Span(1, 0.0, 5.0, "prefill"), Span(1, 5.0, 7.5, "decode")]
    fig = viz.gantt_figure({"static": static, "continuous": continuous})
    assert [t.name for t in fig.data] == ["queued", "prefill", "decode", "held", "prefill", "decode"]
    assert [t.visible for t in fig.data] == [True] * 4 + [False] * 2
    prefill = fig.data[1]
    assert list(prefill.y) == [0, 1, 2] and list(prefill.base) == [0.0, 0.0, 8.0] and list(prefill.x) == [6.0, 6.0, 1.0]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["static", "continuous"]
    assert buttons[1].args[0]["visible"] == [False] * 4 + [True] * 2
    assert fig.layout.xaxis.range[0] < 0 < 9 < fig.layout.xaxis.range[1]  # one axis for both timelines
    few = viz.gantt_figure({"static": static}, max_requests=2)
    assert all(max(t.y) <= 1 for t in few.data) and "queued" not in [t.name for t in few.data]


@pytest.mark.parametrize("timelines, kwargs, match", [
    ({}, {}, "timelines is empty"),
    ({"a": []}, {}, "timeline 'a' has no spans"),
    ({"a": [(0, 0.0, 1.0, "decode")]}, {}, "every span needs request, start, end and a kind"),
    ({"a": [SimpleNamespace(request=0, start=0.0, end=1.0, kind="running")]}, {}, "a kind in"),
    ({"a": None}, {"max_requests": 0}, "max_requests must be an int >= 1"),
])
def test_gantt_figure_rejects_bad_input(timelines, kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.gantt_figure(timelines, **kwargs)


def test_block_map_figure_draws_each_snapshot_as_a_grid_with_a_slider():
    from companion.paged import BlockAllocator, snapshot

    alloc = BlockAllocator(num_blocks=10, block_size=4)
    alloc.allocate(7, list(range(6)))  # blocks 0 (full) and 1 (2 tokens)
    first = snapshot(alloc)
    alloc.fork(7, 8)
    second = snapshot(alloc)
    alloc.free(7)
    alloc.free(8)
    third = snapshot(alloc)
    fig = viz.block_map_figure([first, second, third], block_size=4, labels=["a", "b", "c"], columns=4, active=1)
    grids, legend = fig.data[:3], fig.data[3:]
    assert len(legend) == 4 and all(t.visible is not False for t in legend)
    assert [t.visible for t in grids] == [False, True, False] and fig.layout.title.text.endswith("b")
    assert list(grids[0].x) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1] and list(grids[0].y) == [0] * 4 + [1] * 4 + [2] * 2
    assert list(grids[0].text[:3]) == ["7", "7", ""] and grids[0].marker.opacity[1] < grids[0].marker.opacity[0] == 1.0
    assert list(grids[1].text[:2]) == ["×2", "×2"] and grids[1].marker.color[0] == viz.BLOCK_COLORS["shared"]
    assert grids[0].marker.color[0] == grids[0].marker.color[1] != viz.BLOCK_COLORS["free"]
    assert grids[2].marker.color[0] == viz.BLOCK_COLORS["cached"] and grids[2].marker.color[1] == viz.BLOCK_COLORS["free"]
    assert list(grids[1].customdata[0]) == [0, "shared", "7, 8", 2, 4]
    steps = fig.layout.sliders[0].steps
    assert steps[2].args[0]["visible"] == [False, False, True] + [True] * 4 and steps[2].args[1]["title.text"].endswith("c")


@pytest.mark.parametrize("snapshots, kwargs, match", [
    ([], {}, "snapshots is empty"),
    ([[SimpleNamespace(block=0, state="free", owners=(), ref=0, filled=0)], []], {}, "the same non-empty pool"),
    ([[SimpleNamespace(block=0, state="gone", owners=(), ref=0, filled=0)]], {}, "state 'gone'"),
    ([[SimpleNamespace(block=0, state="free", owners=(), ref=0, filled=0)]], {"labels": ["a", "b"]}, "2 labels given for 1"),
    ([[SimpleNamespace(block=0, state="free", owners=(), ref=0, filled=0)]], {"columns": 0}, "columns must be an int"),
    ([[SimpleNamespace(block=0, state="free", owners=(), ref=0, filled=0)]], {"active": 1}, "active must index"),
])
def test_block_map_figure_rejects_bad_input(snapshots, kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.block_map_figure(snapshots, 4, **kwargs)
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        viz.block_map_figure([[SimpleNamespace(block=0, state="free", owners=(), ref=0, filled=0)]], 0)

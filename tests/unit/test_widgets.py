"""companion.widgets: the callbacks are plain functions; the widgets only wire controls to them."""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import pytest

from companion import widgets


def test_optimizer_paths_callback_draws_three_paths_on_a_contour():
    fig = widgets.optimizer_paths_figure("bowl", lr=0.01, steps=50)
    assert isinstance(fig.data[0], go.Contour)
    assert [t.name for t in fig.data[1:]] == ["sgd", "momentum", "adam"]
    assert all(len(t.x) == 51 for t in fig.data[1:])


def test_optimizer_paths_callback_rejects_unknown_function():
    with pytest.raises(ValueError, match="function must be one of"):
        widgets.optimizer_paths_figure("himmelblau", lr=0.01, steps=10)


def test_live_redraws_with_the_new_control_values():
    calls = []

    def callback(a, b):
        calls.append((a, b))
        return go.Figure()

    a, b = W.IntSlider(value=1, min=0, max=10), W.Dropdown(options=["x", "y"], value="x")
    widgets.live(callback, a=a, b=b)
    a.value = 5
    b.value = "y"
    assert calls == [(1, "x"), (5, "x"), (5, "y")]


def test_optimizer_paths_widget_follows_its_sliders():
    box = widgets.optimizer_paths_widget(function="saddle", lr=0.01, steps=20)
    function, lr, steps = box.children[0].children
    steps.value = 40
    assert box.figure.layout.title.text == "saddle: lr=0.01, 40 steps"
    function.value = "rosenbrock"
    assert box.figure.layout.title.text == "rosenbrock: lr=0.01, 40 steps"
    assert len(box.figure.data[1].x) < 41, "plain SGD diverges on Rosenbrock at lr=0.01; the path stops early"
    shown = box.children[1].outputs
    assert len(shown) == 1, "each redraw replaces the figure instead of stacking a new one below"
    assert "rosenbrock: lr=0.01, 40 steps" in shown[0]["data"]["text/html"]


def test_live_rejects_bad_controls():
    with pytest.raises(ValueError, match="at least one control"):
        widgets.live(lambda: go.Figure())
    with pytest.raises(TypeError, match="control 'x' must be an ipywidgets ValueWidget"):
        widgets.live(lambda x: go.Figure(), x=3)


@pytest.fixture(scope="module")
def tiny_lm():
    import torch

    from companion.model import GPTConfig, MiniGPT
    from companion.tokenizer import Tokenizer

    tok = Tokenizer().train("the cat sat on the mat. " * 20, 270)
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval(), tok


def test_attention_figure_shows_one_causal_head_with_tokens_on_the_axes(tiny_lm):
    model, tok = tiny_lm
    fig = widgets.attention_figure(model, tok, "the cat sat", layer=1, head=1)
    ids = tok.encode_ordinary("the cat sat")
    assert fig.layout.title.text == "layer 1, head 1"
    assert [x.rstrip("\u200b") for x in fig.data[0].x] == [tok.decode([i]).replace(" ", "␣") for i in ids]
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z.sum(1), 1, atol=1e-3) and np.all(np.triu(z, 1) == 0), "rows sum to 1, nothing above the diagonal"
    long = widgets.attention_figure(model, tok, "the mat " * 40, layer=0, head=0)
    assert len(long.data[0].x) == 16, "the text is cut to the block size"
    with pytest.raises(ValueError, match="layers 0..1 and heads 0..1"):
        widgets.attention_figure(model, tok, "the cat", layer=2, head=0)
    with pytest.raises(ValueError, match="text is empty"):
        widgets.attention_figure(model, tok, "", layer=0, head=0)


def test_attention_widget_follows_its_controls(tiny_lm):
    model, tok = tiny_lm
    box = widgets.attention_widget(model, tok, "the cat")
    text, layer, head = box.children[0].children
    head.value = 1
    assert box.figure.layout.title.text == "layer 0, head 1"
    text.value = "the cat sat on the mat"
    assert len(box.figure.data[0].x) == len(tok.encode_ordinary("the cat sat on the mat"))

"""companion.widgets: the callbacks are plain functions; the widgets only wire controls to them."""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import pytest
import torch

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


# --- the next-token explorer ------------------------------------------------------------------


def _logits(v: int = 60):
    import torch

    return torch.randn(v, generator=torch.Generator().manual_seed(0)) * 2


def test_next_token_state_agrees_with_the_filters():
    import torch

    from companion import decoding

    logits = _logits()
    state = widgets.next_token_state(logits, temperature=0.7, top_k=20, top_p=0.9)
    expected = decoding.top_p_filter(decoding.top_k_filter(logits[None].double() / 0.7, 20), 0.9)[0]
    assert torch.equal(state["kept"], torch.isfinite(expected)) and state["n_kept"] == int(state["kept"].sum())
    assert state["sampled"][~state["kept"]].sum() == 0 and abs(float(state["sampled"].sum()) - 1) < 1e-9
    assert state["entropy"] < state["entropy_before"], "filtering the tail lowers the entropy"
    off = widgets.next_token_state(logits, 1.0, top_k=0, top_p=1.0, min_p=0.0)
    assert off["n_kept"] == 60 and abs(off["entropy"] - off["entropy_before"]) < 1e-9
    with pytest.raises(ValueError, match="one non-empty row"):
        widgets.next_token_state(logits[None], 1.0)


def test_next_token_figure_colours_a_prefix_kept_and_reports_it():
    logits = _logits()
    labels = [f"tok{i}" for i in range(60)]
    fig = widgets.next_token_figure(logits, labels, temperature=1.0, top_k=5, n_show=12)
    kept, filtered = fig.data
    assert [y is not None for y in kept.y] == [True] * 5 + [False] * 7
    assert [y is not None for y in filtered.y] == [False] * 5 + [True] * 7
    assert list(kept.x)[0] == labels[int(logits.argmax())] and "keeps 5 of 60 tokens" in fig.layout.title.text
    with pytest.raises(ValueError, match="one label per token"):
        widgets.next_token_figure(logits, labels[:10])
    same = widgets.next_token_figure(logits, ["\ufffd"] * 60, n_show=12)  # e.g. tokens that are partial UTF-8
    assert len(set(same.data[0].x)) == 12, "equal labels would stack into one bar on a category axis"


def test_next_token_widget_redraws_on_every_slider():
    logits = _logits()
    box = widgets.next_token_widget(logits, [str(i) for i in range(60)])
    temperature, top_k, top_p, min_p = box.children[0].children
    assert "keeps 60 of 60" in box.figure.layout.title.text
    top_k.value = 3
    assert "top-k = 3" in box.figure.layout.title.text and "keeps 3 of 60" in box.figure.layout.title.text
    top_k.value, top_p.value = 0, 0.01
    assert "keeps 1 of 60" in box.figure.layout.title.text
    top_p.value, min_p.value, temperature.value = 1.0, 0.2, 2.0
    assert "min-p = 0.2" in box.figure.layout.title.text and "T = 2" in box.figure.layout.title.text


def test_next_token_explorer_nests_one_slider_per_setting_above_it():
    logits = _logits()
    labels = [str(i) for i in range(60)]
    temps, ks, ps = [0.5, 1.0, 2.0], [1, 10, None], [0.5, 1.0]
    fig = widgets.next_token_explorer(logits, labels, temps, ks, ps, active=(1, 2, 1))
    sliders = fig.layout.sliders
    assert len(sliders) == 1 + 3 + 3 * 3
    assert [i for i, s in enumerate(sliders) if s.visible is not False] == [0, 2, 1 + 3 + 1 * 3 + 2]
    # T = 2 shows temperature 2's top-k slider and its (k = off) top-p slider, and draws that state
    update, layout = sliders[0].steps[2].args
    shown = sorted(int(key[8:-9]) for key, v in layout.items() if key.endswith(".visible") and v)
    assert shown == [3, 1 + 3 + 2 * 3 + 2]
    state = widgets.next_token_state(logits, 2.0, None, 1.0)
    assert f"keeps {state['n_kept']} of 60" in layout["title.text"] and "T = 2 · top-k = off" in layout["title.text"]
    # every top-p step of every (T, k) draws its own state
    for i, t in enumerate(temps):
        for j, k in enumerate(ks):
            for step, p in zip(sliders[1 + 3 + i * 3 + j].steps, ps):
                n = widgets.next_token_state(logits, t, k, p)["n_kept"]
                assert f"keeps {n} of 60" in step.args[1]["title.text"]
    assert [s.label for s in sliders[1].steps] == ["1", "10", "off"]
    assert [s.label for s in sliders[4].steps] == ["0.5", "off"]
    with pytest.raises(ValueError, match="active"):
        widgets.next_token_explorer(logits, labels, temps, ks, ps, active=(3, 0, 0))


def test_next_token_views_reject_bad_rows_and_sizes():
    logits = torch.randn(10)
    labels = [str(i) for i in range(10)]
    with pytest.raises(ValueError, match="n_show must be an int >= 1"):
        widgets.next_token_figure(logits, labels, n_show=0)
    with pytest.raises(ValueError, match="non-empty row"):
        widgets.next_token_state(torch.zeros(0), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        widgets.next_token_state(torch.full((4,), float("nan")), 1.0)
    with pytest.raises(ValueError, match="non-empty row"):
        widgets.next_token_explorer(logits[None], labels, [1.0], [None], [1.0])
    with pytest.raises(ValueError, match="index triple"):
        widgets.next_token_explorer(logits, labels, [1.0], [None], [1.0], active=(0,))


# --- the KV cache calculator ------------------------------------------------------------------


def test_kv_cache_figure_reports_the_calculator_and_highlights_the_model():
    from companion import kvcache

    fig = widgets.kv_cache_figure("Llama-3-8B", 8192, 1, "fp16")
    bars = fig.data[0]
    assert list(bars.y) == list(kvcache.MODELS)
    row = list(bars.y).index("Llama-3-8B")
    assert bars.x[row] == 2 * 32 * 8 * 128 * 2 * 8192 / 1e9, "1 GiB: 32 layers, 8 KV heads of 128, fp16, 8k tokens"
    assert "1,073,741,824 bytes" in fig.layout.title.text and "1.00 GiB" in fig.layout.title.text
    assert len({c for i, c in enumerate(bars.marker.color) if i != row}) == 1 != bars.marker.color[row]
    int8 = widgets.kv_cache_figure("Llama-3-8B", 8192, 4, "int8")
    assert int8.data[0].x[row] == 2 * bars.x[row], "batch 4 in int8 = 4 × the bytes at half the width"
    with pytest.raises(ValueError, match="model must be one of"):
        widgets.kv_cache_figure("GPT-5", 10, 1, "fp16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        widgets.kv_cache_figure("Llama-3-8B", 10, 1, "fp4")
    with pytest.raises(ValueError, match="batch >= 1"):
        widgets.kv_cache_figure("Llama-3-8B", 10, 0, "fp16")


def test_kv_cache_widget_follows_its_controls():
    box = widgets.kv_cache_widget()
    model, context, batch, dtype = box.children[0].children
    assert "Llama-3-8B: 8,192 tokens × 1 sequence, fp16" in box.figure.layout.title.text
    model.value, batch.value = "Llama-2-7B", 32
    assert "Llama-2-7B: 8,192 tokens × 32 sequences" in box.figure.layout.title.text
    dtype.value = "fp32"
    assert f"{2 * 32 * 32 * 128 * 4 * 8192 * 32:,} bytes" in box.figure.layout.title.text

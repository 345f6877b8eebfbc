"""Live exploration in Jupyter/Colab with ipywidgets.

The pattern: every widget is a thin shell around a plain function that takes the control values
and returns a plotly figure. The function is what the tests call; the shell only wires controls
to it. In the static book the same exploration is offered by plotly sliders (``viz.slider_figure``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import ipywidgets as W
import plotly.graph_objects as go
import torch

from . import decoding, kvcache, optim, viz


def live(callback: Callable[..., go.Figure], **controls: W.ValueWidget) -> W.VBox:
    """Wire ``controls`` to ``callback``: each change redraws ``callback(**values)`` below them."""
    if not controls:
        raise ValueError("live() needs at least one control")
    for name, control in controls.items():
        if not isinstance(control, W.ValueWidget):
            raise TypeError(f"control {name!r} must be an ipywidgets ValueWidget, got {type(control).__name__}")
    out = W.Output()
    box = W.VBox([W.HBox(list(controls.values())), out])

    def redraw(_change=None) -> None:
        fig = callback(**{name: c.value for name, c in controls.items()})
        box.figure = fig  # the figure now on screen, for tests and for readers working in code
        # Set the Output's outputs directly rather than `with out: display(fig)`: capturing into an
        # Output widget races with headless executors (nbclient can hang waiting for the cell to end).
        out.outputs = ({"output_type": "display_data", "metadata": {},
                        "data": {"text/html": viz.figure_html(fig), "text/plain": f"<figure: {fig.layout.title.text}>"}},)

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return box


def optimizer_paths_figure(function: str, lr: float, steps: int) -> go.Figure:
    """SGD, momentum and Adam from the same start on one of ``optim.TEST_FUNCTIONS``."""
    if function not in optim.TEST_FUNCTIONS:
        raise ValueError(f"function must be one of {sorted(optim.TEST_FUNCTIONS)}, got {function!r}")
    fn = optim.TEST_FUNCTIONS[function]
    paths = {name: optim.trajectory(fn, name, lr, steps) for name in ("sgd", "momentum", "adam")}
    xs, ys, z = optim.grid(fn)
    return viz.landscape_figure(xs, ys, z, paths, title=f"{function}: lr={lr:g}, {steps} steps")


def optimizer_paths_widget(function: str = "rosenbrock", lr: float = 1e-3, steps: int = 300) -> W.VBox:
    """Pick a test function, a learning rate and a step budget; watch the three optimizers move."""
    return live(
        optimizer_paths_figure,
        function=W.Dropdown(options=sorted(optim.TEST_FUNCTIONS), value=function, description="function"),
        lr=W.FloatLogSlider(value=lr, base=10, min=-4, max=0, step=0.25, description="lr"),
        steps=W.IntSlider(value=steps, min=10, max=2000, step=10, description="steps"),
    )


def attention_figure(model, tokenizer, text: str, layer: int, head: int) -> go.Figure:
    """One head's attention over ``text`` in a trained MiniGPT, tokens on both axes.

    ``model``: a ``companion.model.MiniGPT``; ``tokenizer``: its ``companion.tokenizer.Tokenizer``.
    The text is cut to the model's block size.
    """
    import torch

    n_layers, n_heads = model.cfg.n_layer, model.cfg.n_head
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (layer, head)) or \
            not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise ValueError(f"the model has layers 0..{n_layers - 1} and heads 0..{n_heads - 1}; got layer {layer}, head {head}")
    ids = tokenizer.encode_ordinary(text)[: model.cfg.block_size]
    if not ids:
        raise ValueError("text is empty: type a sentence to see where the model looks")
    with torch.no_grad():
        _, maps = model(torch.tensor([ids]), return_attention=True)
    labels = [viz.visible_whitespace(tokenizer.decode([i])) for i in ids]
    return viz.attention_heatmap(maps[layer][0, head].numpy(), labels, title=f"layer {layer}, head {head}")


def attention_widget(model, tokenizer, text: str, layer: int = 0, head: int = 0) -> W.VBox:
    """Type a sentence, pick a layer and a head; the heatmap follows (see ``attention_figure``)."""
    attention_figure(model, tokenizer, text, layer, head)  # checks the arguments before a slider can clamp them
    return live(
        partial(attention_figure, model, tokenizer),
        text=W.Text(value=text, description="text", continuous_update=False, layout=W.Layout(width="60%")),
        layer=W.IntSlider(value=layer, min=0, max=model.cfg.n_layer - 1, description="layer"),
        head=W.IntSlider(value=head, min=0, max=model.cfg.n_head - 1, description="head"),
    )


# ---------------------------------------------------------------------------------------------
# Serving: the KV cache memory calculator
# ---------------------------------------------------------------------------------------------


def kv_cache_figure(model: str, context: int, batch: int, dtype: str) -> go.Figure:
    """KV cache bytes of every model in ``kvcache.MODELS`` at one setting, ``model`` highlighted.

    ``context`` tokens per sequence, ``batch`` sequences, ``dtype`` one of ``kvcache.DTYPE_BYTES``.
    The title gives the highlighted model's bytes exactly (GB = 1e9 bytes, GiB = 2³⁰).
    """
    if model not in kvcache.MODELS:
        raise ValueError(f"model must be one of {list(kvcache.MODELS)}, got {model!r}")
    sizes = {name: kvcache.kv_bytes(name, context, batch, dtype) for name in kvcache.MODELS}  # checks the rest
    names = list(sizes)
    fig = go.Figure(go.Bar(
        x=[sizes[n] / 1e9 for n in names], y=names, orientation="h",
        marker_color=[viz.PALETTE[1] if n == model else viz.PALETTE[0] for n in names],
        text=[f"{sizes[n] / 1e9:,.2f} GB" for n in names], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:,.3f} GB<extra></extra>"))
    shape = kvcache.MODELS[model]
    fig.update_layout(
        title=f"{model}: {context:,} tokens × {batch} sequence{'s' * (batch != 1)}, {dtype} → "
              f"{sizes[model]:,} bytes = {sizes[model] / 1e9:,.2f} GB ({sizes[model] / 2**30:,.2f} GiB)"
              f"<br><sup>2 · {shape.n_layer} layers · {shape.n_kv_heads} KV heads · {shape.head_dim} · "
              f"{kvcache.DTYPE_BYTES[dtype]} bytes per token</sup>",
        xaxis_title="KV cache (GB)", yaxis=dict(autorange="reversed"), height=420, margin=dict(l=110, r=80))
    return fig


def kv_cache_widget(model: str = "Llama-3-8B", context: int = 8192, batch: int = 1, dtype: str = "fp16") -> W.VBox:
    """Pick a model, a context, a batch and a dtype; the KV cache bytes follow (see ``kv_cache_figure``)."""
    kv_cache_figure(model, context, batch, dtype)  # checks the arguments before a control can clamp them
    return live(
        kv_cache_figure,
        model=W.Dropdown(options=list(kvcache.MODELS), value=model, description="model"),
        context=W.IntSlider(value=context, min=0, max=131_072, step=1024, description="context"),
        batch=W.IntSlider(value=batch, min=1, max=256, description="batch"),
        dtype=W.Dropdown(options=list(kvcache.DTYPE_BYTES), value=dtype, description="dtype"),
    )


# ---------------------------------------------------------------------------------------------
# Decoding: the next-token explorer (a plain callback, its live widget, and its static twin)
# ---------------------------------------------------------------------------------------------

KEPT_COLOR, FILTERED_COLOR = viz.PALETTE[0], "#c7c7c7"


def next_token_state(logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None,
                     min_p: float | None = None) -> dict:
    """What sampling would draw from, for one row of next-token logits (V,).

    Returns ``probs`` (V,): softmax(logits / T) before any filter; ``kept`` (V,) bool: the tokens the
    filters leave; ``sampled`` (V,): the renormalized distribution actually sampled; ``n_kept``;
    ``entropy`` (nats) of ``sampled`` and ``entropy_before`` of ``probs``. top_k/top_p/min_p of None,
    0 (for k and min-p) or 1.0 (for p) switch that filter off.
    """
    _check_row(logits)
    cfg = decoding.SamplingConfig(temperature=temperature, top_k=top_k or None,
                                  top_p=None if top_p in (None, 1.0) else top_p, min_p=min_p or None)
    row = logits.detach().double()[None]
    processed = decoding.next_token_logits(row, row.new_zeros(1, 0, dtype=torch.long), cfg)  # (1, V)
    kept = torch.isfinite(processed[0])
    return {
        "probs": torch.softmax(row[0] / temperature, dim=-1),
        "kept": kept,
        "sampled": torch.softmax(processed[0], dim=-1),
        "n_kept": int(kept.sum()),
        "entropy": float(decoding.entropy(processed)[0]),
        "entropy_before": float(decoding.entropy(row / temperature)[0]),
    }


def _settings_text(temperature: float, top_k: int | None, top_p: float | None, min_p: float | None = None) -> str:
    parts = [f"T = {temperature:g}", f"top-k = {top_k if top_k else 'off'}",
             f"top-p = {'off' if top_p in (None, 1.0) else f'{top_p:g}'}"]
    if min_p:
        parts.append(f"min-p = {min_p:g}")
    return " · ".join(parts)


def _bars(state: dict, shown: torch.Tensor) -> tuple[list, list]:
    """Heights of the kept and the filtered bars for the ``shown`` token ids (None where the other colour shows)."""
    probs, kept = state["probs"][shown].tolist(), state["kept"][shown].tolist()
    return ([p if k else None for p, k in zip(probs, kept)], [None if k else p for p, k in zip(probs, kept)])


def _title(state: dict, settings: str, vocab: int) -> str:
    return (f"{settings}<br><sup>keeps {state['n_kept']:,} of {vocab:,} tokens · entropy {state['entropy']:.2f} nats "
            f"(before the filters {state['entropy_before']:.2f})</sup>")


def _check_row(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 1 or logits.numel() == 0:
        raise ValueError(f"logits must be one non-empty row (V,), got shape {tuple(getattr(logits, 'shape', ()))}")
    if bool(torch.isnan(logits).any()):
        raise ValueError("logits contain NaN")


def _check_n_show(n_show) -> None:
    if isinstance(n_show, bool) or not isinstance(n_show, int) or n_show < 1:
        raise ValueError(f"n_show must be an int >= 1, got {n_show!r}")


def next_token_figure(logits: torch.Tensor, labels: list[str], temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, min_p: float | None = None, n_show: int = 30) -> go.Figure:
    """Bars of the ``n_show`` most likely next tokens after temperature, coloured kept or filtered.

    logits: (V,) for one position; labels: the V token strings. The title gives the kept-set size
    and the entropy of the distribution sampling draws from. The callback of ``next_token_widget``.
    """
    _check_row(logits)
    _check_n_show(n_show)
    if len(labels) != logits.shape[-1]:
        raise ValueError(f"{len(labels)} labels for {logits.shape[-1]} logits; give one label per token")
    state = next_token_state(logits, temperature, top_k, top_p, min_p)
    shown = torch.argsort(logits, descending=True)[:n_show]  # temperature never reorders tokens
    kept_y, filtered_y = _bars(state, shown)
    x = _unique([labels[i] for i in shown.tolist()])
    fig = go.Figure([go.Bar(x=x, y=kept_y, name="kept", marker_color=KEPT_COLOR),
                     go.Bar(x=x, y=filtered_y, name="filtered out", marker_color=FILTERED_COLOR)])
    fig.update_layout(title=_title(state, _settings_text(temperature, top_k, top_p, min_p), len(labels)),
                      barmode="overlay", xaxis_title="next token (most likely first)",
                      yaxis_title="probability after temperature", xaxis=dict(type="category", tickangle=-60),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def next_token_widget(logits: torch.Tensor, labels: list[str], temperature: float = 1.0, top_k: int = 0,
                      top_p: float = 1.0, min_p: float = 0.0) -> W.VBox:
    """Sliders for temperature, top-k, top-p and min-p over one position's real next-token logits (0 / 1.0: off)."""
    return live(
        lambda temperature, top_k, top_p, min_p: next_token_figure(logits, labels, temperature, top_k, top_p, min_p),
        temperature=W.FloatSlider(value=temperature, min=0.1, max=3.0, step=0.05, description="temperature"),
        top_k=W.IntSlider(value=top_k, min=0, max=200, step=1, description="top-k (0 off)"),
        top_p=W.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.01, description="top-p (1 off)"),
        min_p=W.FloatSlider(value=min_p, min=0.0, max=0.5, step=0.01, description="min-p (0 off)"),
    )


def next_token_explorer(logits: torch.Tensor, labels: list[str], temperatures: list[float],
                        top_ks: list[int | None], top_ps: list[float], active: tuple[int, int, int] = (0, 0, 0),
                        n_show: int = 30) -> go.Figure:
    """The static twin of ``next_token_widget``: three plotly sliders over a precomputed grid of (T, k, p).

    Plotly sliders cannot read one another, so the grid is nested: one temperature slider, one
    top-k slider per temperature, one top-p slider per (temperature, k). Moving a slider shows
    the right slider below it and resets that one to its default (``active``). Every state is
    precomputed, so the figure stays interactive in a static page. top_ks: None means off; a top-p
    of 1.0 means off.
    """
    _check_row(logits)
    _check_n_show(n_show)
    if len(active) != 3:
        raise ValueError(f"active must be a (temperature, top-k, top-p) index triple, got {active!r}")
    nt, nk, npp = len(temperatures), len(top_ks), len(top_ps)
    if min(nt, nk, npp) < 1:
        raise ValueError("temperatures, top_ks and top_ps must each hold at least one value")
    if not all(0 <= a < n for a, n in zip(active, (nt, nk, npp))):
        raise ValueError(f"active={active} must index (temperatures, top_ks, top_ps) of sizes {(nt, nk, npp)}")
    if len(labels) != logits.shape[-1]:
        raise ValueError(f"{len(labels)} labels for {logits.shape[-1]} logits; give one label per token")
    shown = torch.argsort(logits, descending=True)[:n_show]
    x = _unique([labels[i] for i in shown.tolist()])
    frames = {}  # (i, j, l) -> (trace update, title)
    for i, t in enumerate(temperatures):
        for j, k in enumerate(top_ks):
            for l, p in enumerate(top_ps):
                state = next_token_state(logits, t, k, p)
                kept_y, filtered_y = _bars(state, shown)
                frames[i, j, l] = ({"y": [kept_y, filtered_y]}, _title(state, _settings_text(t, k, p), len(labels)))
    k_slider = {i: 1 + i for i in range(nt)}  # slider index of temperature i's top-k slider
    p_slider = {(i, j): 1 + nt + i * nk + j for i in range(nt) for j in range(nk)}
    n_sliders = 1 + nt + nt * nk
    _, dk, dp = active

    def step(label, frame, layout_extra):
        trace_update, title = frames[frame]
        return dict(method="update", label=label, args=[trace_update, {"title.text": title, **layout_extra}])

    def showing(i, j):  # layout changes that show the sliders of (i, j), at their defaults
        changes = {f"sliders[{s}].visible": s in (0, k_slider[i], p_slider[i, j]) for s in range(1, n_sliders)}
        changes[f"sliders[{k_slider[i]}].active"] = j
        changes[f"sliders[{p_slider[i, j]}].active"] = dp
        return changes

    common = dict(len=0.9, x=0.05, pad=dict(t=10, b=0), font=dict(size=11))
    sliders = [dict(active=active[0], currentvalue=dict(prefix="temperature = "), y=-0.28, **common,
                    steps=[step(_fmt_value(t), (i, dk, dp), showing(i, dk)) for i, t in enumerate(temperatures)])]
    for i in range(nt):
        sliders.append(dict(active=dk, currentvalue=dict(prefix="top-k = "), y=-0.52, visible=i == active[0], **common,
                            steps=[step(_fmt_value(k, "off"), (i, j, dp), showing(i, j)) for j, k in enumerate(top_ks)]))
    for i in range(nt):
        for j in range(nk):
            visible = (i, j) == active[:2]
            sliders.append(dict(active=dp, currentvalue=dict(prefix="top-p = "), y=-0.76,
                                visible=visible, **common,
                                steps=[step(_fmt_value(p, "off", off_at=1.0), (i, j, l), {})
                                       for l, p in enumerate(top_ps)]))
    trace_update, title = frames[active]
    fig = go.Figure([go.Bar(x=x, y=trace_update["y"][0], name="kept", marker_color=KEPT_COLOR),
                     go.Bar(x=x, y=trace_update["y"][1], name="filtered out", marker_color=FILTERED_COLOR)])
    fig.update_layout(title=title, barmode="overlay", height=720, margin=dict(b=330),
                      xaxis_title="next token (most likely first)", yaxis_title="probability after temperature",
                      xaxis=dict(type="category", tickangle=-60), sliders=sliders,
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def _fmt_value(v, off: str = "off", off_at=None) -> str:
    if v is None or (off_at is not None and v == off_at):
        return off
    return f"{v:g}" if isinstance(v, float) else str(v)


def _unique(names: list[str]) -> list[str]:
    """Category labels made distinct (a category axis would stack equal labels into one bar): a, a -> a, a (2)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out

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

from . import optim, viz


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
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
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
    return live(
        partial(attention_figure, model, tokenizer),
        text=W.Text(value=text, description="text", continuous_update=False, layout=W.Layout(width="60%")),
        layer=W.IntSlider(value=layer, min=0, max=model.cfg.n_layer - 1, description="layer"),
        head=W.IntSlider(value=head, min=0, max=model.cfg.n_head - 1, description="head"),
    )

"""Plotly figures for the book's signature visuals, in one consistent style.

Figures render in three places: live Jupyter/Colab, and the static HTML book, which must work
offline. The ``companion`` renderer registered here emits each figure as a ``<div>`` plus a short
script that draws it with ``window.Plotly``. The book ships plotly.js once as a static asset
(``_static/plotly.min.js``), so pages carry only figure data; in a live notebook without that asset
(Colab) the script loads plotly.js from its CDN instead.

Parameter sweeps use plotly sliders (``slider_figure``) so that readers of the static book can still
explore them; ipywidgets (``companion.widgets``) do the same live.
"""

from __future__ import annotations

import codecs
import html
import itertools
import json
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer
from plotly.utils import PlotlyJSONEncoder

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
_ids = itertools.count()

pio.templates["companion"] = go.layout.Template(
    layout=dict(
        font=dict(family="Inter, Helvetica, Arial, sans-serif", size=13),
        colorway=PALETTE,
        margin=dict(l=60, r=20, t=50, b=50),
        hovermode="closest",
        plot_bgcolor="white",
        xaxis=dict(gridcolor="#e5e5e5", zerolinecolor="#bbbbbb"),
        yaxis=dict(gridcolor="#e5e5e5", zerolinecolor="#bbbbbb"),
    )
)
pio.templates.default = "plotly_white+companion"


def figure_html(fig: go.Figure | Mapping, div_id: str | None = None) -> str:
    """The HTML the book embeds for one figure: an empty div and a script that draws it."""
    fig_dict = fig.to_plotly_json() if isinstance(fig, go.Figure) else dict(fig)
    if "data" not in fig_dict:
        raise ValueError("fig must be a plotly Figure or a dict with a 'data' key")
    div_id = div_id or f"companion-plotly-{next(_ids)}"
    layout = fig_dict.get("layout", {})
    height = int(layout.get("height") or 450)
    spec = json.dumps({"data": fig_dict["data"], "layout": layout}, cls=PlotlyJSONEncoder)
    cdn = f"https://cdn.plot.ly/plotly-{_plotlyjs_version()}.min.js"
    return f"""<div id="{div_id}" class="companion-plotly" style="width:100%;height:{height}px;"></div>
<script type="text/javascript">
(function () {{
  var spec = {spec};
  function draw() {{
    Plotly.newPlot("{div_id}", spec.data, spec.layout, {{responsive: true, displaylogo: false}});
  }}
  function loadThenDraw() {{
    if (window.Plotly) {{ draw(); return; }}
    var s = document.createElement("script");
    s.src = "{cdn}";
    s.onload = draw;
    document.head.appendChild(s);
  }}
  if (window.Plotly) {{ draw(); }}
  else if (document.readyState === "complete") {{ loadThenDraw(); }}
  else {{ window.addEventListener("load", loadThenDraw); }}
}})();
</script>"""


def _plotlyjs_version() -> str:
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


class _BookRenderer(MimetypeRenderer):
    """Render figures as self-drawing HTML (see module docstring)."""

    def to_mimebundle(self, fig_dict: dict) -> dict:
        return {"text/html": figure_html(fig_dict)}


pio.renderers["companion"] = _BookRenderer()
pio.renderers.default = "companion"


# ---------------------------------------------------------------------------------------------
# Generic helpers
# ---------------------------------------------------------------------------------------------


def slider_figure(
    make_traces: Callable[[object], Sequence[go.BaseTraceType]],
    values: Sequence,
    label: str,
    active: int = 0,
    layout: Mapping | None = None,
) -> go.Figure:
    """One figure, one slider: ``make_traces(v)`` gives the traces shown when the slider is at v.

    All traces are built up front and the slider toggles their visibility, so the sweep works in
    the static book with no kernel. Example: ``slider_figure(lambda d: [go.Scatter(...)], [0.5, 1, 2], "delta")``.
    """
    if len(values) == 0:
        raise ValueError("values must hold at least one slider position")
    if not 0 <= active < len(values):
        raise ValueError(f"active must index values (0..{len(values) - 1}), got {active}")
    fig = go.Figure()
    groups: list[range] = []
    for v in values:
        traces = list(make_traces(v))
        if not traces:
            raise ValueError(f"make_traces({v!r}) returned no traces")
        start = len(fig.data)
        fig.add_traces(traces)
        groups.append(range(start, len(fig.data)))
    n = len(fig.data)
    steps = []
    for v, group in zip(values, groups):
        visible = [i in group for i in range(n)]
        steps.append(dict(method="update", label=_fmt(v), args=[{"visible": visible}]))
    for i, trace in enumerate(fig.data):
        trace.visible = i in groups[active]
    fig.update_layout(
        sliders=[dict(active=active, steps=steps, currentvalue=dict(prefix=f"{label} = "), pad=dict(t=40))],
        **(layout or {}),
    )
    return fig


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def line_figure(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str = "",
    xaxis_title: str = "",
    yaxis_title: str = "",
    log_x: bool = False,
    log_y: bool = False,
) -> go.Figure:
    """Several named lines over one shared x."""
    fig = go.Figure()
    for name, ys in series.items():
        if len(ys) != len(x):
            raise ValueError(f"series {name!r} has {len(ys)} points but x has {len(x)}")
        fig.add_trace(go.Scatter(x=list(x), y=list(ys), mode="lines", name=name))
    fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title)
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def thin_runs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Drop the inner points of every run of equal ``x``; the drawn polyline is unchanged.

    Inside such a run the line is a vertical segment, so its two ends describe it exactly. A
    precision–recall curve over a million scores has a million points but changes recall only once
    per positive: ``thin_runs(recall, precision)`` keeps about two points per positive.

        >>> thin_runs([0, 0, 0, 1, 1], [5, 4, 3, 3, 2])
        (array([0, 0, 1, 1]), array([5, 3, 3, 2]))
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if len(x) < 3:
        return x, y
    same_as_prev = np.r_[False, x[1:] == x[:-1]]
    same_as_next = np.r_[x[:-1] == x[1:], False]
    keep = ~(same_as_prev & same_as_next)
    return x[keep], y[keep]


# ---------------------------------------------------------------------------------------------
# Signature visuals
# ---------------------------------------------------------------------------------------------


def training_curves(history: Mapping[str, Sequence[float]], x_key: str = "step", title: str = "") -> go.Figure:
    """Train/val curves from a history dict: ``{"step": [...], "train_loss": [...], "val_loss": [...]}``.

    Every key other than ``x_key`` holding a list as long as ``history[x_key]`` becomes a line.
    """
    if x_key not in history:
        raise ValueError(f"history has no {x_key!r} key; keys are {sorted(history)}")
    x = list(history[x_key])
    series = {k: v for k, v in history.items() if k != x_key and len(v) == len(x)}
    if not series:
        raise ValueError(f"history has no series of the same length as {x_key!r} ({len(x)})")
    return line_figure(x, series, title=title, xaxis_title=x_key, yaxis_title="value")


def landscape_figure(
    xs: np.ndarray,
    ys: np.ndarray,
    z: np.ndarray,
    paths: Mapping[str, np.ndarray] | None = None,
    title: str = "",
    log_z: bool = True,
) -> go.Figure:
    """Contour of a 2-D function with optimizer paths on top.

    xs: (nx,), ys: (ny,), z: (ny, nx) values; paths: name -> (n_steps, 2) array of (x, y) points.
    ``log_z`` colours by log10(z - min + 1e-3) so valleys stay visible on functions like Rosenbrock.
    """
    xs, ys, z = np.asarray(xs), np.asarray(ys), np.asarray(z)
    if z.shape != (len(ys), len(xs)):
        raise ValueError(f"z has shape {z.shape} but expected (len(ys), len(xs)) = {(len(ys), len(xs))}")
    shown = np.log10(z - z.min() + 1e-3) if log_z else z
    fig = go.Figure(
        go.Contour(
            x=xs, y=ys, z=shown, colorscale="Viridis", ncontours=30, showscale=False, hoverinfo="skip",
            contours=dict(coloring="heatmap"), line=dict(width=0.5),
        )
    )
    for color, (name, path) in zip(itertools.cycle(PALETTE[1:]), (paths or {}).items()):
        path = np.asarray(path)
        if path.ndim != 2 or path.shape[1] != 2:
            raise ValueError(f"path {name!r} has shape {path.shape}; expected (n_steps, 2)")
        fig.add_trace(go.Scatter(
            x=path[:, 0], y=path[:, 1], mode="lines+markers", name=name,
            marker=dict(size=3, color=color), line=dict(width=2, color=color),
        ))
    fig.update_layout(title=title, xaxis_title="x", yaxis_title="y", height=480,
                      xaxis=dict(range=[xs.min(), xs.max()]), yaxis=dict(range=[ys.min(), ys.max()]))
    return fig


def surface_figure(alphas: np.ndarray, betas: np.ndarray, z: np.ndarray, title: str = "") -> go.Figure:
    """A loss surface z (len(betas), len(alphas)) as a 3-D surface with contours projected below."""
    z = np.asarray(z)
    if z.shape != (len(betas), len(alphas)):
        raise ValueError(f"z has shape {z.shape} but expected (len(betas), len(alphas)) = {(len(betas), len(alphas))}")
    fig = go.Figure(go.Surface(
        x=alphas, y=betas, z=z, colorscale="Viridis", showscale=False,
        contours=dict(z=dict(show=True, usecolormap=True, project_z=True)),
    ))
    fig.update_layout(title=title, height=520, scene=dict(xaxis_title="α (direction 1)",
                                                          yaxis_title="β (direction 2)", zaxis_title="loss"))
    return fig


def attention_heatmap(
    weights: np.ndarray, tokens: Sequence[str] | None = None, title: str = "", active: int = 0
) -> go.Figure:
    """Attention weights as a heatmap, queries down and keys across.

    weights: (T_q, T_k); (H, T_q, T_k) with a slider over heads; or (L, H, T_q, T_k), one model's
    maps, with a slider over every (layer, head) pair. ``tokens`` label the T_k keys (queries are
    the last T_q); a repeated token gets zero-width spaces appended so that it keeps its own row and
    column. All maps are in the figure, so the slider works in the static book.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim not in (2, 3, 4):
        raise ValueError(f"weights must have shape (T_q, T_k), (H, T_q, T_k) or (L, H, T_q, T_k), got {w.shape}")
    t_q, t_k = w.shape[-2:]
    if not 1 <= t_q <= t_k:
        raise ValueError(f"weights need 1 <= T_q <= T_k (queries are the last T_q keys), got T_q={t_q}, T_k={t_k}")
    if not np.isfinite(w).all():
        raise ValueError("weights must be finite")
    if isinstance(tokens, str):
        raise ValueError("tokens must be a sequence of token strings, not one str")
    labels = list(tokens) if tokens is not None else [str(i) for i in range(t_k)]
    if len(labels) != t_k:
        raise ValueError(f"{len(labels)} tokens given but weights have {t_k} keys")
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):  # plotly merges equal category names: keep each position apart
        seen[label] = seen.get(label, -1) + 1
        labels[i] = label + "\u200b" * seen[label]
    if w.ndim == 4:
        maps = {f"L{layer} H{head}": w[layer, head] for layer in range(w.shape[0]) for head in range(w.shape[1])}
        label = "layer, head"
    else:
        maps = dict(enumerate(w if w.ndim == 3 else w[None]))
        label = "head"

    def heatmap(key):
        return [go.Heatmap(z=np.round(maps[key], 3), x=labels, y=labels[t_k - t_q:], colorscale="Blues", zmin=0, zmax=1,
                           hovertemplate="query %{y} → key %{x}: %{z:.3f}<extra></extra>")]

    layout = dict(title=title, xaxis=dict(title="key", tickangle=-60, type="category", tickfont=dict(size=10)),
                  yaxis=dict(title="query", autorange="reversed", type="category", tickfont=dict(size=10)),
                  height=max(500, 280 + 16 * t_q))
    fig = slider_figure(heatmap, list(maps), label, active=active, layout=layout)
    fig.layout.sliders[0].pad.t = 110  # below the slanted key labels
    return fig


def visible_whitespace(piece: str) -> str:
    """A token's text with its whitespace drawn, for axis labels: ``" if\\n"`` -> ``"␣if↵"``."""
    if not isinstance(piece, str):
        raise ValueError(f"piece must be a str, got {type(piece).__name__}")
    return piece.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def layer_head_figure(
    scores: Mapping[str, np.ndarray], title: str = "", reference: Mapping[str, float] | None = None
) -> go.Figure:
    """One heatmap per named (L, H) score array, side by side, each cell printed: layers down, heads across.

    ``reference`` (optional) gives each panel a baseline value shown in its subtitle, such as the
    score of a head that spreads its weight evenly.
    """
    from plotly.subplots import make_subplots

    if not scores:
        raise ValueError("scores is empty: give at least one name -> (layers, heads) array")
    arrays = {name: np.asarray(a, dtype=float) for name, a in scores.items()}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every score must be one (layers, heads) array of the same shape, got {sorted(shapes)}")
    if 0 in next(iter(shapes)):
        raise ValueError(f"scores must have at least one layer and one head, got shape {next(iter(shapes))}")
    reference = reference or {}
    unknown = set(reference) - set(arrays)
    if unknown:
        raise ValueError(f"reference names {sorted(unknown)} that are not in scores {sorted(arrays)}")
    titles = [f"{name} (uniform: {reference[name]:.3g})" if name in reference else name for name in arrays]
    fig = make_subplots(rows=1, cols=len(arrays), subplot_titles=titles, horizontal_spacing=0.08)
    n_layers, n_heads = next(iter(shapes))
    for col, a in enumerate(arrays.values(), start=1):
        fig.add_trace(go.Heatmap(z=a, x=list(range(n_heads)), y=list(range(n_layers)), text=a, texttemplate="%{text:.2f}",
                                 colorscale="Blues", showscale=False,
                                 hovertemplate="layer %{y}, head %{x}: %{z:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="head", dtick=1, row=1, col=col)
        fig.update_yaxes(title_text="layer" if col == 1 else None, dtick=1, autorange="reversed", row=1, col=col)
    fig.update_layout(title=title, height=140 + 60 * n_layers)
    return fig


def recall_qps_figure(records: Sequence[Mapping], title: str = "Recall@10 vs queries per second") -> go.Figure:
    """The ANN trade-off curve: one line per method over its parameter sweep.

    records: dicts with ``method``, ``recall``, ``qps`` and ``params`` (shown on hover).
    """
    by_method: dict[str, list[Mapping]] = {}
    for r in records:
        missing = {"method", "recall", "qps"} - set(r)
        if missing:
            raise ValueError(f"record {dict(r)} lacks {sorted(missing)}")
        by_method.setdefault(r["method"], []).append(r)
    fig = go.Figure()
    for method, rs in by_method.items():
        rs = sorted(rs, key=lambda r: r["recall"])
        fig.add_trace(go.Scatter(
            x=[r["recall"] for r in rs], y=[r["qps"] for r in rs], mode="lines+markers", name=method,
            text=[json.dumps(r.get("params", {})) for r in rs],
            hovertemplate="recall %{x:.3f}<br>%{y:.0f} QPS<br>%{text}<extra>" + method + "</extra>",
        ))
    fig.update_layout(title=title, xaxis_title="recall@10", yaxis_title="queries / s")
    fig.update_yaxes(type="log")
    return fig


def benchmark_figure(records: Sequence, title: str = "Our cores against the reference libraries") -> go.Figure:
    """Speed ratios (ours / reference, higher is better for ours) as bars, each with its goal marked.

    records: objects with ``name``, ``ratio``, ``goal_ratio`` and ``reference_name`` (``bench.Record``).
    """
    if not records:
        raise ValueError("records is empty: run companion.bench first")
    names = [r.name.rsplit(".", 1)[0] for r in records]  # "losses.mse.speed_ratio_vs_torch" -> "losses.mse"
    colors = [PALETTE[2] if r.ratio >= r.goal_ratio else PALETTE[1] for r in records]
    fig = go.Figure(go.Bar(
        x=[r.ratio for r in records], y=names, orientation="h", marker_color=colors, name="measured ratio",
        text=[f"{r.ratio:.2f}×" for r in records], textposition="inside", insidetextanchor="end",
        customdata=[r.reference_name for r in records], hovertemplate="%{y}: %{x:.3f}× of %{customdata}<extra></extra>",
    ))
    fig.add_scatter(x=[r.goal_ratio for r in records], y=names, mode="markers", name="goal",
                    marker=dict(symbol="line-ns-open", size=26, color="black", line=dict(width=3)))
    fig.add_vline(x=1, line_dash="dot", line_color="gray", annotation_text="as fast as the library")
    shown = [r.ratio for r in records] + [r.goal_ratio for r in records] + [1.0]
    fig.update_layout(title=title, xaxis_title="ratio, ours / reference (log scale)", height=160 + 50 * len(records),
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.25),
                      xaxis=dict(range=[np.log10(min(shown) / 1.5), np.log10(max(shown) * 1.5)]))
    fig.update_xaxes(type="log")
    return fig


# Light backgrounds that stay readable under dark text; neighbouring tokens never share one.
TOKEN_COLORS = ["#cfe3f7", "#fbd5c4", "#d3f0cf", "#eadcf5", "#fcefb4"]


def token_html(pieces: Sequence[bytes], colors: Sequence[str] = TOKEN_COLORS) -> str:
    """Text with its token boundaries drawn: each token on a background colour, colours cycling.

    pieces: the bytes of each token, in order (``[tok.vocab[i] for i in ids]``). Byte-level BPE can
    split one character's UTF-8 bytes across tokens; such tokens are drawn together as one box with
    a dashed outline, its tooltip giving the token count. Newlines show as ``↵`` before the break.

        >>> token_html([b"hi", b" there"]).count("<span")
        2
    """
    if isinstance(pieces, (bytes, str)):
        raise TypeError("pieces must be a sequence of bytes, one item per token, not a single bytes or str")
    if len(colors) < 2:
        raise ValueError(f"colors needs at least 2 entries so that neighbouring tokens differ, got {len(colors)}")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    groups: list[tuple[str, int]] = []  # (characters, number of tokens that carry them)
    text, n = "", 0
    for i, piece in enumerate(pieces):
        if not isinstance(piece, (bytes, bytearray)):
            raise TypeError(f"pieces[{i}] must be bytes, got {type(piece).__name__}")
        text += decoder.decode(bytes(piece))
        n += 1
        if not decoder.getstate()[0]:  # no character left half-decoded: the group is complete
            groups.append((text, n))
            text, n = "", 0
    if n:
        groups.append((text + decoder.decode(b"", final=True), n))
    spans = []
    for k, (chars, count) in enumerate(groups):
        style = f"background:{colors[k % len(colors)]};border-radius:2px;"
        title = "1 token" if count == 1 else f"{count} tokens share these characters"
        if count > 1:
            style += "outline:1px dashed #555;"
        shown = html.escape(chars).replace("\n", "↵\n")
        spans.append(f'<span style="{style}" title="{title}">{shown}</span>')
    return ('<div class="token-view" style="font-family:ui-monospace,Menlo,Consolas,monospace;'
            'white-space:pre-wrap;line-height:1.9;font-size:0.9em;">' + "".join(spans) + "</div>")


# What a request is doing, for timelines: waiting is grey, work is blue/green, waste is red.
SPAN_COLORS = {"queued": "#d9d9d9", "prefill": PALETTE[0], "decode": PALETTE[2], "held": PALETTE[1],
               "preempted": PALETTE[4]}


def gantt_figure(
    timelines: Mapping[str, Sequence], title: str = "Request timelines", max_requests: int = 40
) -> go.Figure:
    """A Gantt chart of requests over time, one row per request, with a dropdown over ``timelines``.

    timelines: name -> spans, each with ``request``, ``start``, ``end`` (seconds) and ``kind`` (a key
    of ``SPAN_COLORS``), e.g. ``{"static": result.spans, "continuous": other.spans}`` from
    ``companion.batchsim.simulate``. The first ``max_requests`` request ids of each timeline are
    drawn; every timeline shares one time axis, so switching shows which finishes first.
    """
    if not timelines:
        raise ValueError("timelines is empty: give at least one name -> list of spans")
    if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
        raise ValueError(f"max_requests must be an int >= 1, got {max_requests!r}")
    fig = go.Figure()
    groups: list[range] = []
    lo, hi, rows = np.inf, -np.inf, 0
    for name, spans in timelines.items():
        spans = list(spans)
        if not spans:
            raise ValueError(f"timeline {name!r} has no spans")
        for s in spans:
            fields = all(hasattr(s, a) for a in ("request", "start", "end"))
            if getattr(s, "kind", None) not in SPAN_COLORS or not fields:
                raise ValueError(f"timeline {name!r}: every span needs request, start, end and a kind in "
                                 f"{sorted(SPAN_COLORS)}, got {s!r}")
        shown = set(sorted({s.request for s in spans})[:max_requests])
        spans = [s for s in spans if s.request in shown]
        lo, hi, rows = min(lo, min(s.start for s in spans)), max(hi, max(s.end for s in spans)), max(rows, len(shown))
        first = len(fig.data)
        for kind, color in SPAN_COLORS.items():
            of_kind = [s for s in spans if s.kind == kind]
            if of_kind:
                fig.add_trace(go.Bar(
                    x=[s.end - s.start for s in of_kind], base=[s.start for s in of_kind],
                    y=[s.request for s in of_kind], orientation="h", name=kind, marker_color=color,
                    customdata=[[s.start, s.end] for s in of_kind],
                    hovertemplate=f"request %{{y}}: {kind}<br>%{{customdata[0]:.4g}} s → %{{customdata[1]:.4g}} s"
                                  f"<extra>{html.escape(str(name))}</extra>",
                ))
        groups.append(range(first, len(fig.data)))
    n = len(fig.data)
    buttons = [dict(label=str(name), method="update", args=[{"visible": [i in group for i in range(n)]}])
               for name, group in zip(timelines, groups)]
    for i, trace in enumerate(fig.data):
        trace.visible = i in groups[0]
    pad = 0.02 * (hi - lo) or 1.0
    fig.update_layout(
        title=dict(text=title, y=0.98, yanchor="top"), margin=dict(t=110), barmode="overlay", bargap=0.25,
        height=max(380, 180 + 14 * rows), xaxis=dict(title="time (s)", range=[lo - pad, hi + pad]),
        yaxis=dict(title="request", autorange="reversed"),
        updatemenus=[dict(buttons=buttons, direction="down", showactive=True, x=0.0, xanchor="left", y=1.02,
                          yanchor="bottom")],  # below the title, so a long title is never covered
    )
    return fig


# Physical KV blocks: free is near-white, cached (free but reusable) grey, shared dark; a block
# owned by one sequence takes that sequence's colour (the cycle skips greys and near-blacks).
BLOCK_COLORS = {"free": "#f3f3f3", "cached": "#bfc8d0", "shared": "#3a3a3a"}
OWNER_COLORS = ["#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#B68100", "#750D86", "#EB663B", "#511CB5",
                "#00A08B", "#FB00D1", "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#1616A7", "#DA60CA", "#AF0038"]


def block_map_figure(
    snapshots: Sequence[Sequence], block_size: int, labels: Sequence[str] | None = None, columns: int = 16,
    title: str = "The KV block pool", active: int = 0,
) -> go.Figure:
    """The physical blocks of a paged KV cache as a grid, one slider position per snapshot.

    snapshots: one list per moment of ``paged.BlockState``-like records (``block``, ``state`` in
    free / cached / used / shared, ``owners``, ``ref``, ``filled``), all of the same pool, e.g.
    ``[paged.snapshot(engine.cache.allocator) for each step]``. A block used by one sequence takes
    that sequence's colour and shows its id, fainter the emptier it is; a shared block is dark with
    its reference count; hover gives block id, owners, references and fill. ``labels`` (one per
    snapshot) title each position; ``active`` is the one shown first. Every position is a trace
    toggled by the slider, so the figure works in the static book.
    """
    if len(snapshots) == 0:
        raise ValueError("snapshots is empty: give at least one list of block states")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be an int >= 1, got {columns!r}")
    n_blocks = len(snapshots[0])
    if n_blocks == 0 or any(len(s) != n_blocks for s in snapshots):
        sizes = sorted({len(s) for s in snapshots})
        raise ValueError(f"every snapshot must describe the same non-empty pool; got sizes {sizes}")
    labels = [f"step {i}" for i in range(len(snapshots))] if labels is None else [str(x) for x in labels]
    if len(labels) != len(snapshots):
        raise ValueError(f"{len(labels)} labels given for {len(snapshots)} snapshots")
    if not 0 <= active < len(snapshots):
        raise ValueError(f"active must index snapshots (0..{len(snapshots) - 1}), got {active}")
    rows = -(-n_blocks // columns)
    color_of: dict = {}  # owner -> colour, in order of first appearance (stable across runs)
    for states in snapshots:
        for b in states:
            if b.state == "used" and b.owners[0] not in color_of:
                color_of[b.owners[0]] = OWNER_COLORS[len(color_of) % len(OWNER_COLORS)]

    def trace(states: Sequence) -> go.Scatter:
        colors, text, custom, opacity, outline = [], [], [], [], []
        for b in states:
            if b.state not in BLOCK_COLORS and b.state != "used":
                raise ValueError(f"block {b.block} has state {b.state!r}; expected free, cached, used or shared")
            owners = ", ".join(map(str, b.owners)) or "none"
            if b.state == "used":
                colors.append(color_of[b.owners[0]])
                text.append(str(b.owners[0]))
            else:
                colors.append(BLOCK_COLORS[b.state])
                text.append(f"×{b.ref}" if b.state == "shared" else "")
            opacity.append(round(0.35 + 0.65 * b.filled / block_size, 2) if b.state in ("used", "shared") else 1.0)
            outline.append(2.5 if b.state == "shared" else 0.5)
            custom.append([b.block, b.state, owners, b.ref, b.filled])
        return go.Scatter(
            x=[b.block % columns for b in states], y=[b.block // columns for b in states], mode="markers+text",
            marker=dict(symbol="square", size=26, color=colors, opacity=opacity,
                        line=dict(color="#111111", width=outline)),
            text=text, textfont=dict(size=10, color="white"), customdata=custom, showlegend=False,
            hovertemplate="block %{customdata[0]}: %{customdata[1]}<br>owners: %{customdata[2]}<br>"
                          f"references: %{{customdata[3]}}<br>filled: %{{customdata[4]}}/{block_size} tokens<extra></extra>",
        )

    fig = go.Figure([trace(s) for s in snapshots])
    for name, color in (("free", BLOCK_COLORS["free"]), ("cached: free, prefix reusable", BLOCK_COLORS["cached"]),
                        ("used by one sequence (its id)", OWNER_COLORS[0]), ("shared: ref > 1", BLOCK_COLORS["shared"])):
        fig.add_scatter(x=[None], y=[None], mode="markers", name=name,
                        marker=dict(symbol="square", size=14, color=color, line=dict(color="#111111", width=0.5)))
    n, legend = len(snapshots), [True] * 4
    steps = [dict(method="update", label=str(i), args=[{"visible": [j == i for j in range(n)] + legend},
                                                       {"title.text": f"{title} — {labels[i]}"}])
             for i in range(n)]
    for i, t in enumerate(fig.data[:n]):
        t.visible = i == active
    fig.update_layout(
        title=f"{title} — {labels[active]}", height=230 + 42 * rows, plot_bgcolor="white",
        xaxis=dict(range=[-0.6, columns - 0.4], showgrid=False, zeroline=False, tickmode="linear", dtick=1,
                   title=f"block id mod {columns}"),
        yaxis=dict(range=[rows - 0.4, -0.6], showgrid=False, zeroline=False, tickmode="linear", dtick=1,
                   title="block id ÷ " + str(columns)),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0),
        sliders=[dict(active=active, steps=steps, currentvalue=dict(prefix="frame "), pad=dict(t=40))],
        margin=dict(t=110),
    )
    return fig

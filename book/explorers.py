"""Interactive explorers for the book: ipywidgets that work with and without a kernel.

Every explorer precomputes all of its frames in Python (with the course's reference
implementations, so the numbers are the ones the chapters compute) and puts them in an
ipywidgets 8 ``Stack``. The controls are ``jslink``-ed to the stack's ``selected_index``,
so moving a slider is handled by the widget JavaScript alone: it works in a live
notebook and on the static website, where there is no kernel to run Python callbacks.

Frames are small HTML snippets (bars, tables, an inline SVG) rather than images: they
are a few kilobytes each, stay sharp on any screen, can be read by screen readers, and
have their own white background so that they stay legible in the site's dark mode.

A chapter adds an explorer in a couple of lines (pages run with ``book/`` as the
working directory)::

    from explorers import softmax_explorer
    softmax_explorer([2.0, 1.0, 0.5, 0.0, -1.0])

The book caches executed pages by their own source only: after changing this module,
clear the cache (``rm -rf _build/.jupyter_cache``, or ``make clean``) so that the pages
that use it run again.

Explorers: ``softmax_explorer`` (temperature), ``query_explorer`` (move one query of
the toy example), ``causal_heads_explorer`` (causal mask and attention per head),
``truncation_explorer`` (top-k and top-p truncation of a next-token distribution).
"""
from __future__ import annotations

import html
import math

import ipywidgets as widgets
import numpy as np
from matplotlib import colormaps, colors

from solutions.reference.self_attention import causal_mask, sinusoidal_positions, split_heads
from solutions.reference.similarity import softmax as softmax_with_temperature
from solutions.reference.toy_attention import attention_entropy, attention_weights, softmax

__all__ = ["softmax_explorer", "query_explorer", "causal_heads_explorer", "truncation_explorer"]

BLUE = "#1f77b4"        # matplotlib's tab:blue, as in the book's figures
ORANGE = "#d62728"      # the moving query
MASKED = "#d9d9d9"      # masked cells, as in the chapter 2 heatmaps
# Frames carry their own light background (like the matplotlib figures), so that they
# read the same in the site's light and dark modes.
FRAME_STYLE = ("background:#ffffff;color:#1a1a1a;border:1px solid #d0d7de;border-radius:6px;"
               "padding:10px 12px;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;"
               "font-size:14px;line-height:1.35;max-width:640px;overflow-x:auto;")
_BLUES = colormaps["Blues"]
# Lets frames shrink to a phone's width (a wide table then scrolls inside its frame,
# and the text above it wraps). It is a <style> in a hidden HTML widget of each explorer,
# so it works the same in a notebook and on the site.
EXPLORER_CSS = ("<style>.explorer .widget-html, .explorer .widget-html-content, "
                ".explorer .widget-box, .explorer .widget-stack {min-width: 0; max-width: 100%}"
                "</style>")


# ---------------------------------------------------------------------------
# Building blocks: a control linked (in JavaScript) to a stack of frames.
# ---------------------------------------------------------------------------

def _esc(text) -> str:
    return html.escape(str(text))


def _frame(body: str) -> str:
    return f'<div class="explorer-frame" style="{FRAME_STYLE}">{body}</div>'


def _stack(frames, index=0):
    """A Stack of HTML frames (strings) or of widgets."""
    children = [widgets.HTML(f) if isinstance(f, str) else f for f in frames]
    return widgets.Stack(children, selected_index=index)


def _slider(labels, description, index=0):
    return widgets.SelectionSlider(
        options=[str(x) for x in labels], index=index, description=description,
        continuous_update=True, style={"description_width": "initial"},
        layout=widgets.Layout(width="100%", max_width="520px"))


def _toggle(labels, index=0, description=""):
    return widgets.ToggleButtons(options=list(labels), index=index, description=description,
                                 style={"button_width": "auto", "description_width": "initial"})


def _link(control, stack):
    """Show frame i of `stack` when `control` is at position i, in the browser."""
    widgets.jslink((control, "index"), (stack, "selected_index"))


def _explorer(*children, name: str):
    style = widgets.HTML(EXPLORER_CSS, layout=widgets.Layout(display="none"))
    box = widgets.VBox([style, *children], layout=widgets.Layout(max_width="660px"))
    box.add_class("explorer")
    box.add_class(f"explorer-{name}")
    return box


# ---------------------------------------------------------------------------
# Drawing in HTML: bars and heatmaps.
# ---------------------------------------------------------------------------

def _bar_rows(labels, values, vmax=1.0, fmt="{:.3f}", colours=None, ticks=None,
              dropped=None, notes=None) -> str:
    """Horizontal bars, one row per label. `ticks` marks an earlier value on each bar;
    `dropped` labels are struck through; `notes` are printed after each value."""
    n = len(labels)
    colours = colours or [BLUE] * n
    rows = []
    for i in range(n):
        width = 100.0 * max(float(values[i]), 0.0) / vmax
        label = _esc(labels[i])
        label_style = "text-align:right;white-space:nowrap;"
        if dropped is not None and dropped[i]:
            label_style += "color:#8a8a8a;text-decoration:line-through;"
        tick = ""
        if ticks is not None:
            left = min(100.0 * float(ticks[i]) / vmax, 99.5)
            tick = (f'<span style="position:absolute;left:{left:.1f}%;top:-2px;bottom:-2px;'
                    f'width:2px;background:#1a1a1a"></span>')
        note = f' <span style="color:#6a6a6a">{_esc(notes[i])}</span>' if notes else ""
        rows.append(
            f'<span style="{label_style}">{label}</span>'
            f'<span style="position:relative;height:16px;background:#f0f0f0;border-radius:2px">'
            f'<span style="position:absolute;left:0;top:0;bottom:0;width:{width:.1f}%;'
            f'background:{colours[i]};border-radius:2px"></span>{tick}</span>'
            f'<span style="font-variant-numeric:tabular-nums;white-space:nowrap">'
            f'{fmt.format(values[i])}{note}</span>')
    return ('<div style="display:grid;grid-template-columns:max-content minmax(80px,1fr) '
            'max-content;gap:5px 8px;align-items:center">' + "".join(rows) + "</div>")


def _cell_colour(value, vmax):
    rgba = _BLUES(min(max(float(value) / vmax, 0.0), 1.0))
    return colors.to_hex(rgba), ("#ffffff" if value > 0.6 * vmax else "#1a1a1a")


def _number(x) -> str:
    """Two decimals, without the leading zero ('.42'), so that wide tables fit a phone."""
    s = f"{x:.2f}"
    return s[1:] if s.startswith("0.") else s


def _heatmap(W, rows, cols, mask=None, highlight_row=None, vmax=1.0) -> str:
    """A table coloured like the chapter's `Blues` heatmaps; masked cells grey."""
    th = "padding:2px 5px;font-weight:600;white-space:nowrap;"
    head = "".join(f'<th scope="col" style="{th}text-align:center">{_esc(c)}</th>' for c in cols)
    body = []
    for r, name in enumerate(rows):
        marked = r == highlight_row
        cells = []
        for c in range(len(cols)):
            style = "padding:4px 3px;text-align:center;min-width:2.3em;"
            if mask is not None and not mask[r, c]:
                cells.append(f'<td style="{style}background:{MASKED};color:#6a6a6a" '
                             f'title="masked">&#8211;</td>')
                continue
            bg, fg = _cell_colour(W[r, c], vmax)
            if marked:
                style += f"outline:2px solid {ORANGE};outline-offset:-2px;"
            cells.append(f'<td style="{style}background:{bg};color:{fg}">{_number(W[r, c])}</td>')
        row_style = th + "text-align:right;" + (f"color:{ORANGE};" if marked else "")
        body.append(f'<tr><th scope="row" style="{row_style}">{_esc(name)}</th>{"".join(cells)}</tr>')
    return ('<table style="border-collapse:collapse;font-size:13px;'
            'font-variant-numeric:tabular-nums;margin:0">'
            f'<thead><tr><th style="{th}text-align:right;font-weight:400;color:#6a6a6a">'
            f'query \u2193 key \u2192</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


# ---------------------------------------------------------------------------
# 1. Softmax under temperature (chapter 1).
# ---------------------------------------------------------------------------

DEFAULT_TEMPERATURES = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def softmax_explorer(scores, labels=None, temperatures=DEFAULT_TEMPERATURES, start=1.0):
    """A temperature slider over the softmax of `scores`, shown as a bar chart.

    scores: 1-D logits; labels: one name per score (default "z=..."); temperatures:
    the slider's stops; start: the temperature shown first (must be one of them).
    """
    scores = np.asarray(scores, dtype=float)
    labels = [f"z = {s:g}" for s in scores] if labels is None else [str(x) for x in labels]
    n = len(scores)
    frames = []
    for t in temperatures:
        p = softmax_with_temperature(scores, temperature=t)
        h = float(attention_entropy(p))
        summary = (f"<b>T = {t:g}</b>: the top score gets <b>{p.max():.3f}</b> of the weight; "
                   f"entropy {h:.2f} nats (one-hot: 0, uniform: log {n} = {math.log(n):.2f}).")
        frames.append(_frame(f'<p style="margin:0 0 8px">{summary}</p>' + _bar_rows(labels, p)))
    index = int(np.argmin(np.abs(np.asarray(temperatures, dtype=float) - start)))
    slider = _slider([f"{t:g}" for t in temperatures], "temperature T", index)
    stack = _stack(frames, index)
    _link(slider, stack)
    return _explorer(slider, stack, name="softmax")


# ---------------------------------------------------------------------------
# 2. The toy example's attention weights as one query moves (chapter 2).
# ---------------------------------------------------------------------------

def _vector_svg(keys, key_names, query, query_name, axis_names, radius) -> str:
    """Keys (grey) and one query (orange) as arrows in the plane, as an inline SVG."""
    size, margin = 240, 48          # the margin leaves room for the labels at the tips
    c = size / 2
    scale = (c - margin) / radius

    def xy(v):
        return c + scale * v[0], c - scale * v[1]

    parts = [f'<svg role="img" aria-label="the query of {_esc(query_name)} drawn as an arrow '
             f'among the keys" width="{size}" height="{size}" viewBox="0 0 {size} {size}" '
             f'style="flex:none;background:#ffffff" xmlns="http://www.w3.org/2000/svg">',
             f'<circle cx="{c}" cy="{c}" r="{scale * float(np.linalg.norm(query)):.1f}" '
             'fill="none" stroke="#dddddd" stroke-dasharray="3 3"/>',
             f'<line x1="8" y1="{c}" x2="{size - 8}" y2="{c}" stroke="#bbbbbb"/>',
             f'<line x1="{c}" y1="8" x2="{c}" y2="{size - 8}" stroke="#bbbbbb"/>',
             f'<text x="{size - 8}" y="{c + 15}" text-anchor="end" font-size="11" fill="#6a6a6a">'
             f'{_esc(axis_names[0])} \u2192</text>',
             f'<text x="{c - 5}" y="16" text-anchor="end" font-size="11" fill="#6a6a6a">'
             f'{_esc(axis_names[1])} \u2191</text>',
             f'<text x="6" y="{size - 22}" font-size="12" fill="{ORANGE}">\u2014 query of '
             f'\u201c{_esc(query_name)}\u201d</text>',
             f'<text x="6" y="{size - 7}" font-size="12" fill="#555555">\u2014 keys</text>']

    def arrow(v, colour, width, label=None):
        x0, y0 = xy((0.0, 0.0))
        x1, y1 = xy(v)
        if np.linalg.norm(v) < 1e-9:                 # a zero vector: a dot, label below
            parts.append(f'<circle cx="{x0}" cy="{y0}" r="3.5" fill="{colour}"/>')
            ux, uy = 0.0, 1.0
        else:
            ux, uy = (x1 - x0, y1 - y0) / np.hypot(x1 - x0, y1 - y0)   # unit vector, SVG axes
            head = 4 + 2 * width                                           # arrowhead length
            bx, by = x1 - head * ux, y1 - head * uy
            tip = (f"{x1:.1f},{y1:.1f} {bx - 0.5 * head * uy:.1f},{by + 0.5 * head * ux:.1f} "
                   f"{bx + 0.5 * head * uy:.1f},{by - 0.5 * head * ux:.1f}")
            parts.append(f'<line x1="{x0}" y1="{y0}" x2="{bx:.1f}" y2="{by:.1f}" stroke="{colour}" '
                         f'stroke-width="{width}"/><polygon points="{tip}" fill="{colour}"/>')
        if label:
            anchor = "start" if ux > 0.3 else "end" if ux < -0.3 else "middle"
            lx, ly = x1 + 7 * ux, y1 + 7 * uy + 4 + 6 * uy
            parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" font-size="12" '
                         f'fill="{colour}">{_esc(label)}</text>')

    for k, name in zip(keys, key_names):
        arrow(k, "#555555", 2, name)
    arrow(query, ORANGE, 3)
    parts.append("</svg>")
    return "".join(parts)


def query_explorer(tokens, Q, K, V=None, token=None, angles=range(0, 360, 15),
                   axis_names=("noun", "verb"), value_names=("animal", "action")):
    """Turn one token's (2-D) query around the circle and watch the attention weights.

    tokens: names of the n tokens; Q, K: (n, 2) queries and keys; V: optional (n, d_v)
    values, whose weighted average (the token's output) is printed; token: whose query
    the slider turns at first (buttons switch token; default: the last one); angles: the
    slider's stops in degrees. The query keeps its length; frame 0 of each token shows
    its original direction, the one the chapter uses.
    """
    Q, K = np.asarray(Q, dtype=float), np.asarray(K, dtype=float)
    if Q.shape[-1] != 2:
        raise ValueError("query_explorer draws 2-D queries and keys")
    angles = list(angles)
    chosen = tokens.index(token) if token is not None else len(tokens) - 1
    radius = 1.15 * max(np.linalg.norm(Q, axis=1).max(), np.linalg.norm(K, axis=1).max())
    per_token = []
    for i, name in enumerate(tokens):
        length = float(np.linalg.norm(Q[i])) or 1.0
        start = math.degrees(math.atan2(Q[i, 1], Q[i, 0]))
        frames = []
        for a in angles:
            theta = math.radians(start + a)
            q_i = length * np.array([math.cos(theta), math.sin(theta)])
            Qm = Q.copy()
            Qm[i] = q_i
            W = attention_weights(Qm, K)
            direction = "the chapter's query" if a == 0 else f"turned by {a}\u00b0"
            text = [f"<b>query of \u201c{_esc(name)}\u201d</b> = ({q_i[0]:.2f}, {q_i[1]:.2f}), "
                    f"{direction}.",
                    f"It listens most to \u201c{_esc(tokens[int(W[i].argmax())])}\u201d "
                    f"({W[i].max():.2f})."]
            if V is not None:
                out = W[i] @ np.asarray(V, dtype=float)
                parts = ", ".join(f"{n_} {x:.2f}" for n_, x in zip(value_names, out))
                text.append(f"Its output: {parts}.")
            svg = _vector_svg(K, tokens, q_i, name, axis_names, radius)
            body = (f'<div style="display:flex;flex-wrap:wrap;gap:12px;align-items:center">{svg}'
                    f'<div style="flex:1 1 220px"><p style="margin:0 0 8px">{" ".join(text)}</p>'
                    f'{_heatmap(W, tokens, tokens, highlight_row=i)}</div></div>')
            frames.append(_frame(body))
        per_token.append(frames)

    slider = _slider([f"{a}\u00b0" for a in angles], "turn the query by")
    inner = []
    for frames in per_token:
        stack = _stack(frames)
        _link(slider, stack)          # one slider drives the stack of every token
        inner.append(stack)
    buttons = _toggle(tokens, chosen, "move the query of")
    outer = _stack(inner, chosen)
    _link(buttons, outer)
    return _explorer(buttons, slider, outer, name="query")


# ---------------------------------------------------------------------------
# 3. The causal mask and the attention pattern of each head (chapter 3).
# ---------------------------------------------------------------------------

def _random_heads(tokens, n_heads, d_model, seed):
    """Queries and keys per head for `tokens` from seeded random embeddings (one per
    distinct word), sinusoidal positions and random W_Q, W_K (no training involved)."""
    rng = np.random.default_rng(seed)
    vocab = {w: i for i, w in enumerate(dict.fromkeys(tokens))}
    table = rng.standard_normal((len(vocab), d_model))
    x = table[[vocab[t] for t in tokens]] + sinusoidal_positions(len(tokens), d_model)
    w_q, w_k = (rng.standard_normal((d_model, d_model)) * 0.35 for _ in range(2))
    return split_heads(x @ w_q, n_heads), split_heads(x @ w_k, n_heads)


def causal_heads_explorer(tokens, q=None, k=None, n_heads=4, d_model=16, seed=0):
    """Attention weights of every head, with and without the causal mask.

    tokens: the sentence, one name per position; q, k: per-head queries and keys,
    shape (n_heads, T, d_head). Without them, seeded random embeddings, sinusoidal
    positions and random projections make them (the patterns then mean nothing in
    particular, but each head has its own).
    """
    if q is None or k is None:
        q, k = _random_heads(tokens, n_heads, d_model, seed)
    q, k = np.asarray(q, dtype=float), np.asarray(k, dtype=float)
    H, T = q.shape[0], q.shape[1]
    mask = causal_mask(T)
    variants = [("causal mask", mask), ("no mask", None)]
    outer = []
    for label, m in variants:
        weights = attention_weights(q, k, mask=m)       # (H, T, T)
        frames = []
        for h in range(H):
            entropy = float(attention_entropy(weights[h]).mean())
            note = ("Grey cells are masked: a query never sees a later key, and each row "
                    "still sums to one over the cells that remain." if m is not None else
                    "Without the mask every token also sees the tokens after it.")
            text = (f'<p style="margin:0 0 8px"><b>head {h + 1} of {H}</b>, {label}: mean row '
                    f'entropy {entropy:.2f} nats. {note}</p>')
            frames.append(_frame(text + _heatmap(weights[h], tokens, tokens, mask=m)))
        outer.append(frames)
    slider = _slider([f"{h + 1}" for h in range(H)], "head")
    stacks = []
    for frames in outer:
        stack = _stack(frames)
        _link(slider, stack)
        stacks.append(stack)
    buttons = _toggle([label for label, _ in variants])
    both = _stack(stacks)
    _link(buttons, both)
    return _explorer(buttons, slider, both, name="heads")


# ---------------------------------------------------------------------------
# 4. Top-k and top-p truncation of a next-token distribution (chapter 6).
# ---------------------------------------------------------------------------

def _truncation_filters():
    """top_k_filter and top_p_filter from chapter 6's reference implementation."""
    from solutions.reference.decoding import top_k_filter, top_p_filter
    return top_k_filter, top_p_filter


DEFAULT_CONTEXT = "the cat sat on the"
DEFAULT_NEXT = {"mat": 3.0, "sofa": 2.4, "floor": 2.2, "bed": 1.7, "roof": 1.1, "chair": 0.9,
                "table": 0.5, "dog": -0.4, "moon": -1.3, "idea": -2.2}


def truncation_explorer(logits=None, tokens=None, context=DEFAULT_CONTEXT,
                        ps=tuple(np.round(np.arange(0.1, 1.0001, 0.05), 2)), start_k=3,
                        start_p=0.8):
    """Top-k and top-p (nucleus) truncation of one next-token distribution.

    logits: 1-D next-token logits; tokens: their names (default: a made-up distribution
    after "the cat sat on the"); ps: the top-p slider's stops. Each bar is the
    probability after truncation and renormalisation; the black tick marks the
    probability before.
    """
    if logits is None:
        tokens, logits = list(DEFAULT_NEXT), list(DEFAULT_NEXT.values())
    logits = np.asarray(logits, dtype=float)
    order = np.argsort(-logits, kind="stable")
    names = [tokens[i] for i in order]
    logits = logits[order]                        # show the tokens best first
    probs = softmax(logits)
    top_k_filter, top_p_filter = _truncation_filters()
    vmax = 1.0

    def frame(filtered, title):
        new = softmax(filtered)
        kept = np.isfinite(filtered)
        mass = probs[kept].sum()
        text = (f'<p style="margin:0 0 8px">{title}: keeps <b>{kept.sum()}</b> of {len(names)} '
                f'tokens, which held <b>{mass:.1%}</b> of the probability; after renormalising '
                f'the top token has {new.max():.3f}. Bars: new probability; black tick: before.</p>')
        context_line = (f'<p style="margin:0 0 8px;color:#444">next token after '
                        f'\u201c{_esc(context)} \u2026\u201d</p>') if context else ""
        notes = [f"(was {p:.3f})" for p in probs]
        return _frame(context_line + text + _bar_rows(
            names, new, vmax=vmax, ticks=probs, dropped=~kept,
            colours=[BLUE if x else "#bbbbbb" for x in kept], notes=notes))

    ks = list(range(1, len(names) + 1))
    k_frames = [frame(top_k_filter(logits, k), f"<b>top-k, k = {k}</b>") for k in ks]
    p_frames = [frame(top_p_filter(logits, float(p)), f"<b>top-p, p = {p:.2f}</b>") for p in ps]
    k_slider = _slider(ks, "k", min(max(start_k, 1), len(ks)) - 1)
    p_slider = _slider([f"{p:.2f}" for p in ps], "p",
                       int(np.argmin(np.abs(np.asarray(ps, dtype=float) - start_p))))
    k_stack, p_stack = _stack(k_frames, k_slider.index), _stack(p_frames, p_slider.index)
    _link(k_slider, k_stack)
    _link(p_slider, p_stack)
    buttons = _toggle(["top-k", "top-p"])
    modes = _stack([widgets.VBox([k_slider, k_stack]), widgets.VBox([p_slider, p_stack])])
    _link(buttons, modes)
    return _explorer(buttons, modes, name="truncation")

"""The one-file HTML run report: ``write_report(run_dir)`` writes ``run_dir/report.html``.

It reads a run directory of ``python -m fnn train`` (``config.json``, ``history.json``,
``diagnostics.json`` when the probe ran, and the checkpoint, from which ``fnn.runs``
rebuilds the model and test set as ``python -m fnn evaluate`` does). The file stands alone:
figures are inline SVG (``fnn.diagnostics.svg``), images data-URI PNGs, and there is no
script and no external stylesheet, font or URL.

``SECTIONS``, each an element with that id, in order:

- ``summary``: the last epoch's numbers, the checkpoint's test loss and accuracy, the config;
- ``learning-curves``: loss and accuracy per epoch, train and test;
- ``probes``: one chart per statistic of ``diagnostics.json``, one line per layer, by step;
- ``diagnoses``: every diagnosis with its message, or a plain "no diagnosis";
- ``confusion-matrix``: test-set counts, true class by row, predicted class by column;
- ``wrong-predictions``: the misclassified test images the model was surest of (softmax
  probability of the predicted class), most confident first, ties by lower test index;
- ``weight-templates``: the first Linear layer's rows as 28×28 images when it has 784 inputs;
- ``conv-filters``: the first convolution's kernels, one image per output channel;
- ``activation-maps``: test image 0 and its feature maps after the first conv block (the
  first convolution and the BatchNorm and activation right after it), one per channel.

A missing ``history.json`` or ``diagnostics.json`` makes its sections say so; a missing
directory, config or checkpoint, or malformed JSON, raises ``fnn.runs.RunError``. Every text
from the run is HTML-escaped. The checkpoint is the one ``which`` names (the latest by
default); the confusion matrix and wrong predictions cover the whole test set in eval mode.
"""

from __future__ import annotations

import functools
import html
import itertools
import json
import math
import os
from typing import Any, NamedTuple

import numpy as np

from fnn import data, nn, runs
from fnn._checks import is_int, is_real
from fnn.diagnostics import probes, rules, svg
from fnn.train import predict

__all__ = ["SECTIONS", "write_report"]

SECTIONS = (
    "summary",
    "learning-curves",
    "probes",
    "diagnoses",
    "confusion-matrix",
    "wrong-predictions",
    "weight-templates",
    "conv-filters",
    "activation-maps",
)
CLASS_NAMES = {"mnist": data.MNIST_CLASSES, "fashion-mnist": data.FASHION_MNIST_CLASSES}

# (statistic key, chart title, y label, log axis, fraction, guide line) of each layer chart.
_LAYER_STATS = (
    ("weight_norm", "Weight norm", "‖W‖ (Frobenius)", False, False, None),
    ("grad_norm", "Weight gradient norm", "‖∂L/∂W‖ (log)", True, False, None),
    ("update_ratio", "Update-to-weight ratio", "‖ΔW‖ / ‖W‖ (log)", True, False, (1e-3, "1e-3: healthy")),
    ("mean", "Activation mean", "mean of the layer's outputs", False, False, None),
    ("std", "Activation std", "std of the layer's outputs (log)", True, False, None),
    ("dead_fraction", "Dead units", "% of units (conv: channels) never > 0", False, True, (0.5, "half")),
    ("saturated_fraction", "Saturated outputs", "% of outputs saturated", False, True, (0.5, "half")),
)
_CSS = """
body { font-family: sans-serif; margin: 0 auto; max-width: 1000px; padding: 0 16px 40px; color: #222;
       line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 1.8em; }
p.note { color: #555; max-width: 800px; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
table.numbers td.v { text-align: right; font-variant-numeric: tabular-nums; }
.tables { display: flex; gap: 32px; flex-wrap: wrap; align-items: flex-start; }
.charts { display: flex; flex-wrap: wrap; gap: 8px 16px; }
.charts svg { background: #fff; }
table.confusion td { text-align: right; min-width: 38px; font-variant-numeric: tabular-nums; }
table.confusion th { text-align: center; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; text-align: center; font-size: 0.78em; }
figure img { image-rendering: pixelated; border: 1px solid #ccc; display: block; margin: 0 auto; }
figure.wrong { width: 115px; }
figure.template { width: 90px; }
figure.filter, figure.map { min-width: 64px; }
.diagnosis-list td.message { max-width: 560px; }
.rule { font-family: monospace; white-space: nowrap; }
.missing { color: #8a4b00; background: #fff6e5; border: 1px solid #f0d9b0; padding: 8px 12px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(v: Any, digits: int = 4) -> str:
    if not is_real(v):
        return _e(v)
    if is_int(v):
        return f"{v:,}"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if is_real(v) and math.isfinite(v) else _e(v)


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


def _read_optional(path: str) -> Any:
    return runs.read_json(path) if os.path.exists(path) else None


def _history(raw: Any, path: str) -> list[dict] | None:
    """history.json holds ``{"config": ..., "history": [...]}`` (a bare list is accepted too)."""
    if raw is None:
        return None
    records = raw.get("history") if isinstance(raw, dict) else raw
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise runs.RunError(f"{path} holds no list of epoch records")
    return records


def _diagnostics(raw: Any, path: str) -> dict | None:
    if raw is None:
        return None
    ok = (
        isinstance(raw, dict)
        and isinstance(raw.get("epochs", []), list)
        and isinstance(raw.get("diagnoses", []), list)
        and all(isinstance(r, dict) for r in raw.get("epochs", []) + raw.get("diagnoses", []))
    )
    if not ok:
        raise runs.RunError(
            f"{path} is not a diagnostics file (want 'epochs' and 'diagnoses' lists of objects)"
        )
    return raw


# --- sections ------------------------------------------------------------------------


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}">\n<h2>{_e(title)}</h2>\n{body}\n</section>\n'


def _summary(config: dict, history: list[dict] | None, scores: dict, meta: dict, ckpt: str) -> str:
    rows = []
    if history:
        last = history[-1]
        rows.append(("epochs run", _num(len(history))))
        for key, label in (
            ("train_loss", "train loss (mean cross-entropy, last epoch)"),
            ("train_accuracy", "train accuracy (last epoch)"),
            ("test_loss", "test loss (mean cross-entropy, last epoch)"),
            ("test_accuracy", "test accuracy (last epoch)"),
        ):
            if key in last:
                value = last[key]
                rows.append((label, _pct(value) if key.endswith("accuracy") else _num(value)))
        tests = [(h["test_loss"], h["epoch"]) for h in history if is_real(h.get("test_loss"))]
        if tests:
            best = min(tests, key=lambda t: (not math.isfinite(t[0]), t[0]))
            rows.append(("lowest test loss", f"{_num(best[0])} at epoch {best[1]}"))
        seconds = sum(h.get("seconds", 0.0) for h in history)
        rows.append(("training time", f"{seconds:.1f} s"))
    rows.append(("checkpoint", f"{_e(os.path.basename(ckpt))} (epoch {_e(meta.get('epoch', '?'))})"))
    rows.append(("checkpoint's test loss", _num(scores["loss"])))
    rows.append(("checkpoint's test accuracy", f"{_pct(scores['accuracy'])} of {scores['n']:,} images"))
    numbers = "".join(f'<tr><th>{_e(k)}</th><td class="v">{v}</td></tr>' for k, v in rows)
    cfg = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v if isinstance(v, str) else json.dumps(v))}</td></tr>"
        for k, v in config.items()
    )
    lead = "" if history else _missing("history.json is missing: the per-epoch numbers are not available.")
    return (
        lead
        + '<div class="tables"><div><h3>Final numbers</h3><table class="numbers" id="final-numbers">'
        + numbers
        + '</table></div><div><h3>Config</h3><table id="config">'
        + cfg
        + "</table></div></div>"
    )


def _learning_curves(history: list[dict] | None) -> str:
    if not history:
        return _missing("No learning curves: history.json is missing or holds no epoch.")
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]

    def split(key):
        return [
            (name, epochs, [h.get(f"{name}_{key}", math.nan) for h in history])
            for name in ("train", "test")
            if any(f"{name}_{key}" in h for h in history)
        ]

    chart = functools.partial(svg.line_chart, xlabel="epoch", integer_x=True)
    charts = [
        chart(split("loss"), title="Loss per epoch", ylabel="mean cross-entropy (nats)"),
        chart(split("accuracy"), title="Accuracy per epoch", ylabel="accuracy", percent=True),
    ]
    if any("lr" in h for h in history):
        lrs = [("learning rate", epochs, [h.get("lr", math.nan) for h in history])]
        charts.append(chart(lrs, title="Learning rate at the end of each epoch", ylabel="learning rate"))
    note = (
        '<p class="note">The train numbers are means over the epoch\'s batches in train mode '
        "(dropout on); the test numbers are one eval-mode pass after the epoch.</p>"
    )
    return note + f'<div class="charts">{"".join(charts)}</div>'


# (statistic key, line label, chart title, y label, log axis) of the model-level charts
_MODEL_STATS = (
    ("loss", "training loss", "Training loss per probed step", "batch mean cross-entropy (nats)", False),
    ("grad_norm", "global gradient norm", "Global gradient norm", "‖∂L/∂θ‖ over all parameters (log)", True),
)


def _extend(series: dict[str, tuple[list, list]], key: str, steps: list, values: list) -> None:
    s, v = series.setdefault(key, ([], []))
    s.extend(steps[: len(values)])
    v.extend(values[: len(steps)])


def _probe_series(diagnostics: dict) -> tuple[dict, dict]:
    """Concatenate the per-epoch series: model-level {key: (steps, values)} and per layer
    {(index, name): {key: (steps, values)}}, in layer order."""
    model: dict[str, tuple[list, list]] = {}
    layers: dict[tuple, dict[str, tuple[list, list]]] = {}
    for record in diagnostics.get("epochs", []):
        steps = list(record.get("step", []))
        for key in ("loss", "grad_norm"):
            if isinstance(record.get(key), list):
                _extend(model, key, steps, record[key])
        for layer in record.get("layers", []):
            if not isinstance(layer, dict):
                continue
            stats = layers.setdefault((layer.get("index"), str(layer.get("name", "?"))), {})
            for key, values in layer.items():
                if isinstance(values, list):
                    _extend(stats, key, steps, values)
    return model, layers


def _epoch_starts(diagnostics: dict) -> list[tuple[float, str]]:
    """Epoch starts, halfway between an epoch's last probed step and the next one's first."""
    records = [r for r in diagnostics.get("epochs", []) if r.get("step")]
    return [
        ((max(prev["step"]) + min(rec["step"])) / 2, f"epoch {rec.get('epoch', '')}")
        for prev, rec in itertools.pairwise(records)
    ]


def _model_charts(model: dict, chart: Any) -> list[str]:
    return [
        chart([(label, *model[key])], title=title, ylabel=ylabel, log_y=log_y)
        for key, label, title, ylabel, log_y in _MODEL_STATS
        if key in model
    ]


def _layer_charts(layers: dict, chart: Any) -> list[str]:
    charts = []
    for key, title, ylabel, log_y, fraction, guide in _LAYER_STATS:
        series = [(f"{i} {name}", *stats[key]) for (i, name), stats in layers.items() if key in stats]
        if series:
            y_range = (0.0, 1.0) if fraction else None
            charts.append(
                chart(
                    series,
                    title=title,
                    ylabel=ylabel,
                    log_y=log_y,
                    percent=fraction,
                    y_range=y_range,
                    guide=guide,
                )
            )
    return charts


def _batchnorm_charts(layers: dict, chart: Any) -> list[str]:
    """One chart of every BatchNorm layer's running variance range: a colour per layer, its min dashed."""
    bn = []
    bn_layers = [(i, name, stats) for (i, name), stats in layers.items() if "running_var_max" in stats]
    for c, (i, name, stats) in enumerate(bn_layers):
        for key, word, dash in (("running_var_max", "max", False), ("running_var_min", "min", True)):
            if key in stats:
                bn.append((f"{i} {name} {word}", *stats[key], {"color": c, "dash": dash}))
    if not bn:
        return []
    title, ylabel = "BatchNorm running variance range", "min and max over features (log)"
    return [chart(bn, title=title, ylabel=ylabel, log_y=True)]


def _probes(diagnostics: dict | None) -> str:
    if diagnostics is None:
        return _missing(
            "No probe series: this run directory has no diagnostics.json (the run was trained with "
            "--no-monitor, or without the probe)."
        )
    model, layers = _probe_series(diagnostics)
    if not model and not layers:
        return _missing("diagnostics.json holds no probe series.")
    chart = functools.partial(svg.line_chart, xlabel="step", vlines=_epoch_starts(diagnostics))
    charts = _model_charts(model, chart) + _layer_charts(layers, chart) + _batchnorm_charts(layers, chart)
    every = diagnostics.get("every")
    every_text = f"every {every} steps" if isinstance(every, int) else "at regular steps"
    note = (
        f'<p class="note">Measured inside the compiled epoch {every_text}, one line per layer '
        '("index name"). Step is the global optimizer step. A healthy update ratio sits near the dashed '
        "1e-3 line; dead or saturated fractions above half are what the rules flag.</p>"
    )
    return note + f'<div class="charts">{"".join(charts)}</div>'


def _diagnoses(diagnostics: dict | None, history: list[dict] | None) -> str:
    if diagnostics is not None:
        found, source = diagnostics.get("diagnoses", []), "diagnostics.json"
    elif history and any("diagnoses" in h for h in history):
        found, source = [d for h in history for d in h.get("diagnoses", []) if isinstance(d, dict)], "history"
    else:
        return _missing(
            "Not checked: this run directory has no diagnostics.json (the probe was off), so the rules "
            "could not look at it."
        )
    if not found:
        return (
            f'<p id="no-diagnosis"><strong>No diagnosis.</strong> None of the rules '
            f"({_e(', '.join(rules.RULES))}) "
            f"fired on this run ({_e(source)}).</p>"
        )
    rows = []
    for d in found:
        step = d.get("step")
        value = d.get("value")
        rows.append(
            f'<tr class="diagnosis"><td>{_e(d.get("epoch", ""))}</td>'
            f"<td>{'–' if step is None else _e(step)}</td>"
            f'<td class="rule">{_e(d.get("rule", ""))}</td><td>{_e(d.get("layer") or "whole model")}</td>'
            f"<td>{_num(value, 3) if value is not None else ''}</td>"
            f'<td class="message">{_e(d.get("message", ""))}</td></tr>'
        )
    head = "".join(f"<th>{h}</th>" for h in ("epoch", "step", "rule", "layer", "value", "what was seen; try"))
    head = f"<tr>{head}</tr>"
    return (
        f'<p class="note">{len(found)} diagnos{"is" if len(found) == 1 else "es"}, in the order found. '
        "Each message says what was measured and what to try.</p>"
        f'<table class="diagnosis-list">{head}{"".join(rows)}</table>'
    )


def _confusion(matrix: np.ndarray, names: tuple[str, ...]) -> str:
    k = matrix.shape[0]
    totals = matrix.sum(axis=1)
    off = matrix * (1 - np.eye(k, dtype=matrix.dtype))
    worst = max(int(off.max()), 1)
    head = "".join(f"<th>{_e(names[j])}</th>" for j in range(k))
    rows = []
    for i in range(k):
        cells = []
        for j in range(k):
            c = int(matrix[i, j])
            if i == j:
                a = c / totals[i] if totals[i] else 0.0
                bg = f"rgba(31,119,180,{0.15 + 0.85 * a:.3f})"
                fg = "#fff" if a > 0.55 else "#000"
            else:
                a = math.sqrt(c / worst) if c else 0.0
                bg = f"rgba(214,39,40,{a:.3f})" if c else "#fff"
                fg = "#fff" if a > 0.6 else "#000"
            cells.append(f'<td style="background:{bg};color:{fg}" data-count="{c}">{c}</td>')
        recall = f"{100 * matrix[i, i] / totals[i]:.1f}%" if totals[i] else "–"
        rows.append(
            f"<tr><th>{_e(names[i])}</th>{''.join(cells)}<td>{int(totals[i])}</td><td>{recall}</td></tr>"
        )
    return (
        '<p class="note">Test-set counts: row = true class, column = predicted class. Blue diagonal: '
        "correct, darker for a higher share of the class. Red: mistakes, darker for more (square-root "
        f"scale; the darkest red is {worst} images).</p>"
        '<table class="confusion" id="confusion-table"><tr><th>true \\ predicted</th>'
        f"{head}<th>images</th><th>recall</th></tr>{''.join(rows)}</table>"
    )


def _as_images(x: np.ndarray, dataset: str) -> np.ndarray | None:
    """Normalized inputs back to uint8 28×28 pixels (None when they are not 784 values)."""
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] != 784:
        return None
    mean, std = runs.normalization(dataset)
    return np.clip(np.rint((flat * std + mean) * 255), 0, 255).astype(np.uint8).reshape(-1, 28, 28)


def _wrong(x: np.ndarray, y: np.ndarray, p: _Predictions, names, dataset: str, count: int) -> str:
    pred, conf = p.pred, p.conf
    wrong = np.flatnonzero(pred != y)
    if wrong.size == 0:
        return '<p id="no-wrong">Every test image is classified correctly: nothing to show.</p>'
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:count]
    images = _as_images(np.asarray(x[order], np.float64), dataset)
    figures = []
    for rank, i in enumerate(order):
        t, p, c = int(y[i]), int(pred[i]), float(conf[i])
        img = (
            f'<img src="{svg.png_data_uri(images[rank])}" width="84" height="84" alt="test image {i}">'
            if images is not None
            else ""
        )
        figures.append(
            f'<figure class="wrong" data-index="{i}" data-true="{t}" data-pred="{p}" '
            f'data-confidence="{c:.6f}">'
            f"{img}<figcaption>#{i}<br>true <b>{_e(names[t])}</b>, predicted <b>{_e(names[p])}</b>"
            f"<br>{100 * c:.1f}% sure</figcaption></figure>"
        )
    return (
        f'<p class="note">{len(order)} of the {wrong.size:,} misclassified test images, those the model was '
        "most sure of (softmax probability of the predicted class), most confident first.</p>"
        f'<div class="grid">{"".join(figures)}</div>'
    )


def _templates(model, params, config: dict, count: int) -> str:
    layers = list(model.layers) if isinstance(model, nn.Sequential) else [model]
    layer_params = list(params) if isinstance(model, nn.Sequential) else [params]
    first = next((i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)), None)
    if first is None:
        return '<p class="note">The model has no Linear layer: no weight templates.</p>'
    w = np.asarray(layer_params[first]["weight"], np.float64)
    if any(probes.layer_kind(layer) == "conv" for layer in layers[:first]):
        return (
            f'<p class="note">The first Linear layer reads the convolutions\' {w.shape[1]} features, not '
            "the pixels: its weights are not images, so there are no templates (the first convolution's "
            "filters are drawn below).</p>"
        )
    if w.shape[1] != 784:
        return (
            f'<p class="note">The first Linear layer has {w.shape[1]} inputs, not 784 (28×28): its weights '
            "are not images, so there are no templates.</p>"
        )
    last_linear = max(i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear))
    names = CLASS_NAMES.get(config.get("dataset"), ())
    is_output = first == last_linear and w.shape[0] == len(names)
    shown = w[:count]
    figures = []
    for u, row in enumerate(shown):
        scale = float(np.max(np.abs(row)))
        img = svg.png_data_uri(svg.diverging_rgb(row.reshape(28, 28), scale))
        label = _e(names[u]) if is_output else f"unit {u}"
        figures.append(
            f'<figure class="template" data-unit="{u}"><img src="{img}" width="84" height="84" '
            f'alt="weights of unit {u}"><figcaption>{label}<br>±{scale:.2g}</figcaption></figure>'
        )
    which = "each class's" if is_output else "each hidden unit's"
    more = (
        f"the first {len(shown)} of {w.shape[0]} units"
        if w.shape[0] > len(shown)
        else f"all {w.shape[0]} units"
    )
    return (
        f'<p class="note">Layer {first} Linear({w.shape[1]}, {w.shape[0]}): '
        f"{which} 784 input weights as a 28×28 image, "
        f"{more}. Red: a bright pixel there raises the unit's output; blue: lowers it; white: 0. Each "
        "image has its own scale, ±(largest |weight|) printed under it.</p>"
        f'<div class="grid">{"".join(figures)}</div>'
    )


# --- convolutions --------------------------------------------------------------------


class _Flat(NamedTuple):
    """One leaf layer of a model, nested Sequentials opened: its path ("3" or "1.0"), spec,
    params and state."""

    path: str
    layer: Any
    params: Any
    state: Any


def _flat_layers(model, params, state, prefix: str = "") -> list[_Flat]:
    if not isinstance(model, nn.Sequential):
        return [_Flat(prefix.rstrip(".") or "0", model, params, state)]
    out = []
    for i, (layer, p, st) in enumerate(zip(model.layers, params, state, strict=True)):
        out += (
            _flat_layers(layer, p, st, f"{prefix}{i}.")
            if isinstance(layer, nn.Sequential)
            else [_Flat(f"{prefix}{i}", layer, p, st)]
        )
    return out


def _first_conv(flat: list[_Flat]) -> int | None:
    return next((i for i, f in enumerate(flat) if probes.layer_kind(f.layer) == "conv"), None)


def _kernel_image(w: np.ndarray) -> np.ndarray:
    """One output channel's kernels (in, kh, kw) side by side as RGB, 1-px grey gaps between
    input channels, on one scale: ±max |w| of the channel."""
    rgb = svg.diverging_rgb(w, float(np.max(np.abs(w))))
    gap = np.full((w.shape[1], 1, 3), 200, np.uint8)
    parts = [p for c in range(w.shape[0]) for p in ((gap,) if c else ()) + (rgb[c],)]
    return np.concatenate(parts, axis=1)


def _img(pixels: np.ndarray, height: int, alt: str) -> str:
    """An inline PNG drawn ``height`` px high (pixelated), its width in proportion."""
    h, w = pixels.shape[:2]
    return (
        f'<img src="{svg.png_data_uri(pixels)}" width="{max(1, round(height * w / h))}" '
        f'height="{height}" alt="{_e(alt)}">'
    )


def _conv_filters(model, params, state, count: int) -> str:
    """The first convolution's weight (out, in/groups, k...) as one image per output channel."""
    flat = _flat_layers(model, params, state)
    first = _first_conv(flat)
    if first is None:
        return '<p class="note">The model has no convolution layer: no filters to draw.</p>'
    f = flat[first]
    w = np.asarray(f.params["weight"], np.float64)
    w = w.reshape(w.shape[:2] + (1,) * (4 - w.ndim) + w.shape[2:])  # Conv1d: 1×k kernels
    shown = w[:count]
    figures = []
    for o, kernels in enumerate(shown):
        scale = float(np.max(np.abs(kernels)))
        figures.append(
            f'<figure class="filter" data-channel="{o}">'
            f"{_img(_kernel_image(kernels), 60, f'filter of output channel {o}')}"
            f"<figcaption>channel {o}<br>±{scale:.2g}</figcaption></figure>"
        )
    n_in, kh, kw = w.shape[1:]
    more = f"the first {len(shown)} of {w.shape[0]}" if w.shape[0] > len(shown) else f"all {w.shape[0]}"
    per = "" if n_in == 1 else f", its {n_in} input channels' kernels side by side (grey gaps)"
    return (
        f'<p class="note">Layer {_e(f.path)} {_e(probes.layer_name(f.layer))}: {more} output '
        f"channels' {kh}×{kw} kernels, one image per output channel{per}. Red: a bright input "
        "pixel there raises the channel's output; blue: lowers it; white: 0. Each image has its own "
        "scale, ±(largest |weight|) printed under it.</p>"
        f'<div class="grid" id="filter-grid">{"".join(figures)}</div>'
    )


def _block_end(flat: list[_Flat], first: int) -> int:
    """The last layer of the first conv block: the conv, then BatchNorm layers, up to and
    including the first activation (or the conv itself when something else follows)."""
    end = first
    for j in range(first + 1, len(flat)):
        kind = probes.layer_kind(flat[j].layer)
        if kind == "batchnorm":
            end = j
        elif kind in rules.ACTIVATION_KINDS:
            return j
        else:
            break
    return end


def _feature_maps(flat: list[_Flat], end: int, x: np.ndarray) -> np.ndarray:
    """The eval-mode output of layers 0..end on a batch of one, as (C, H, W) maps."""
    h = x
    for f in flat[: end + 1]:
        h, _ = f.layer.apply(f.params, f.state, h, train=False)
    a = np.asarray(h, np.float64)[0]
    return a.reshape(a.shape[0], 1, -1) if a.ndim == 2 else a.reshape(a.shape[0], a.shape[1], -1)


def _activation_maps(model, params, state, x: np.ndarray, y: np.ndarray, config: dict, count: int) -> str:
    """Test image 0 and the first conv block's feature maps for it, one per channel."""
    flat = _flat_layers(model, params, state)
    first = _first_conv(flat)
    if first is None:
        return '<p class="note">The model has no convolution layer: no feature maps to draw.</p>'
    end = _block_end(flat, first)
    maps = _feature_maps(flat, end, np.asarray(x[:1]))
    scale = float(np.max(np.abs(maps)))
    names = CLASS_NAMES.get(config.get("dataset"), ())
    label = _e(names[int(y[0])]) if int(y[0]) < len(names) else _e(int(y[0]))
    image = _as_images(np.asarray(x[:1], np.float64), config.get("dataset", ""))
    figures = (
        [f'<figure class="map input">{_img(image[0], 84, "test image 0")}<figcaption>input<br>'
         f"true <b>{label}</b></figcaption></figure>"]
        if image is not None
        else []
    )  # fmt: skip
    for c, m in enumerate(maps[:count]):
        top = float(np.max(np.abs(m)))
        size = "all 0" if top == 0 else f"max |a| {top:.2g}"
        figures.append(
            f'<figure class="map" data-channel="{c}">{_img(svg.diverging_rgb(m, scale), 84, f"channel {c}")}'
            f"<figcaption>channel {c}<br>{size}</figcaption></figure>"
        )
    layers = ", ".join(f"{f.path} {probes.layer_name(f.layer)}" for f in flat[first : end + 1])
    more = f"the first {min(count, len(maps))} of {len(maps)}" if len(maps) > count else f"all {len(maps)}"
    return (
        f'<p class="note">Test image 0 through the first conv block ({_e(layers)}) in eval mode: '
        f"{more} channels' {maps.shape[1]}×{maps.shape[2]} maps. One scale for every map, "
        f"±{scale:.3g}: red positive, blue negative, white 0 (an all-white map is a channel that does "
        "not respond to this image).</p>"
        f'<div class="grid" id="activation-grid">{"".join(figures)}</div>'
    )


# --- the report ----------------------------------------------------------------------


class _Predictions(NamedTuple):
    """The checkpoint's eval-mode predictions on the test set."""

    pred: np.ndarray  # predicted class per image
    conf: np.ndarray  # softmax probability of the predicted class
    matrix: np.ndarray  # confusion counts, true class by row
    scores: dict  # "loss" (mean cross-entropy), "accuracy", "n" (images)


def _predictions(logits: np.ndarray, y: np.ndarray) -> _Predictions:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    pred = np.argmax(logits, axis=1)
    k = logits.shape[1]
    matrix = np.zeros((k, k), np.int64)
    np.add.at(matrix, (y, pred), 1)
    scores = {
        "loss": float(-log_probs[np.arange(len(y)), y].mean()),
        "accuracy": float(np.mean(pred == y)),
        "n": len(y),
    }
    return _Predictions(pred, np.exp(log_probs[np.arange(len(y)), pred]), matrix, scores)


def _class_names(dataset: str, k: int) -> tuple[str, ...]:
    names = CLASS_NAMES.get(dataset, ())
    return names if len(names) == k else tuple(str(i) for i in range(k))


def _read_run_files(run_dir: str) -> tuple[dict, list[dict] | None, dict | None]:
    """config.json, and history.json and diagnostics.json or None where they are missing."""
    if not os.path.isdir(run_dir):
        raise runs.RunError(
            f"{run_dir} is not a directory: DIR must be a run directory written by `python -m fnn train`"
        )
    config = runs.read_json(os.path.join(run_dir, "config.json"))
    history_path = os.path.join(run_dir, "history.json")
    history = _history(_read_optional(history_path), history_path)
    diagnostics_path = os.path.join(run_dir, "diagnostics.json")
    return config, history, _diagnostics(_read_optional(diagnostics_path), diagnostics_path)


def _page(title: str, run_dir: str, sections: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n"
        f'<p class="note">Run directory: <code>{_e(os.path.abspath(run_dir))}</code>. '
        "This file is self-contained "
        "(no scripts, no network); rebuild it with <code>python -m fnn report DIR</code>.</p>\n"
        + "".join(sections)
        + "</body>\n</html>\n"
    )


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)  # a half-written report never replaces a good one


def write_report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    which: str = "latest",
    data_dir: str | None = None,
    max_wrong: int = 24,
    max_templates: int = 60,
    max_channels: int = 64,
) -> str:
    """Write the self-contained HTML report of a run directory (see the module docstring).

    Args:
        run_dir: a directory written by ``python -m fnn train``.
        out: where to write (default ``run_dir/report.html``).
        which: the checkpoint to rebuild, ``"latest"`` or ``"best"``.
        data_dir: overrides the config's Fashion-MNIST directory.
        max_wrong: how many confidently wrong test images to show (>= 1).
        max_templates: how many first-layer weight templates to show (>= 1).
        max_channels: how many first-conv filters and feature maps to show (>= 1).

    Returns:
        The path of the written file.

    Raises:
        fnn.runs.RunError: a missing directory, config or checkpoint, malformed JSON, or a
            diagnostics/history file of the wrong shape.
        ValueError: ``max_wrong``, ``max_templates`` or ``max_channels`` below 1, or a
            checkpoint that does not match the config's model.
    """
    for name, value in (
        ("max_wrong", max_wrong),
        ("max_templates", max_templates),
        ("max_channels", max_channels),
    ):
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    run_dir = os.fspath(run_dir)
    config, history, diagnostics = _read_run_files(run_dir)
    dtype = config.get("dtype", "float32") if isinstance(config, dict) else "float32"
    with runs.numerics(dtype):
        run = runs.load_run(run_dir, which, data_dir, train_data=False)
        x, y = run.test_data
        ts = run.train_state
        logits = np.asarray(predict(run.model, ts.params, ts.state, x), np.float64)
        y = np.asarray(y)
        maps = _activation_maps(run.model, ts.params, ts.state, np.asarray(x), y, config, max_channels)
    p = _predictions(logits, y)
    dataset = config["dataset"]
    names = _class_names(dataset, logits.shape[1])
    sections = [
        _section(
            "summary",
            "The run: config and final numbers",
            _summary(config, history, p.scores, run.meta, run.checkpoint_path),
        ),
        _section("learning-curves", "Learning curves", _learning_curves(history)),
        _section("probes", "Per-layer statistics (probes)", _probes(diagnostics)),
        _section("diagnoses", "Diagnoses and remedies", _diagnoses(diagnostics, history)),
        _section("confusion-matrix", "Confusion matrix (test set)", _confusion(p.matrix, names)),
        _section(
            "wrong-predictions",
            "The most confidently wrong test images",
            _wrong(np.asarray(x), y, p, names, dataset, max_wrong),
        ),
        _section(
            "weight-templates",
            "First-layer weights as templates",
            _templates(run.model, ts.params, config, max_templates),
        ),
        _section(
            "conv-filters",
            "First convolution's filters",
            _conv_filters(run.model, ts.params, ts.state, max_channels),
        ),
        _section("activation-maps", "Feature maps of the first conv block (one test image)", maps),
    ]
    path = os.fspath(out) if out is not None else os.path.join(run_dir, "report.html")
    _write_atomic(path, _page(f"fnn run report: {config['model']} on {dataset}", run_dir, sections))
    return path

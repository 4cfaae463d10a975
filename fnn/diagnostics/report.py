"""The one-file HTML run report: ``write_report(run_dir)`` writes ``run_dir/report.html``.

The report is built from a run directory of ``python -m fnn train`` (``config.json``,
``history.json``, ``diagnostics.json`` when monitors ran, and the checkpoint, from which the
model and test set are rebuilt as ``python -m fnn evaluate`` does, through ``fnn.runs``).
It is one self-contained file: figures are inline SVG (``fnn.diagnostics.svg``) and images
are data-URI PNGs, there is no script, no stylesheet or font from elsewhere and no external
URL, so it opens the same from a mail attachment, a saved copy or a browser offline.

Sections, each an element with a stable id:

- ``summary``: the final numbers (last epoch of ``history.json``, and the checkpoint's test
  loss and accuracy recomputed here) and the config;
- ``learning-curves``: loss and accuracy per epoch, train and test;
- ``monitors``: one small chart per statistic of ``diagnostics.json`` (the contract of issue
  11), one line per layer, against the global step;
- ``diagnoses``: every diagnosis with its message (what was seen, then the remedies), or a
  plain "no diagnosis";
- ``confusion-matrix``: test-set counts, true class by row, predicted class by column;
- ``wrong-predictions``: the test images the model got wrong with the highest confidence
  (softmax probability of the predicted class), most confident first;
- ``weight-templates``: the first Linear layer's weight rows as 28×28 images when it has
  784 inputs (MNIST-shaped); otherwise a sentence says why there are none.

A missing ``history.json`` or ``diagnostics.json`` (a run written before monitors existed,
or trained with ``--no-monitor``) makes its sections say so; a missing directory, config or
checkpoint, or malformed JSON, raises ``fnn.runs.RunError``. Every text from the run (layer
names, messages, config values) is HTML-escaped. Decisions where the issue is silent: the
report reads the latest checkpoint (what ``evaluate`` reads by default), the confusion
matrix and wrong predictions are on the full test set in eval mode, and ties in confidence
keep the lower test index first.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import os
from typing import Any

import numpy as np

from fnn import data, nn, runs
from fnn.diagnostics import rules, svg
from fnn.train import predict

__all__ = ["SECTIONS", "write_report"]

SECTIONS = (
    "summary",
    "learning-curves",
    "monitors",
    "diagnoses",
    "confusion-matrix",
    "wrong-predictions",
    "weight-templates",
)
CLASS_NAMES = {"mnist": data.MNIST_CLASSES, "fashion-mnist": data.FASHION_MNIST_CLASSES}

# (statistic key, chart title, y label, log axis, fraction, guide line) for the monitors.
_LAYER_STATS = (
    ("weight_norm", "Weight norm", "‖W‖ (Frobenius)", False, False, None),
    ("grad_norm", "Weight gradient norm", "‖∂L/∂W‖ (log)", True, False, None),
    ("update_ratio", "Update-to-weight ratio", "‖ΔW‖ / ‖W‖ (log)", True, False, (1e-3, "1e-3: healthy")),
    ("mean", "Activation mean", "mean of the layer's outputs", False, False, None),
    ("std", "Activation std", "std of the layer's outputs (log)", True, False, None),
    ("dead_fraction", "Dead units", "% of units never > 0 on the batch", False, True, (0.5, "half")),
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
.diagnosis-list td.message { max-width: 560px; }
.rule { font-family: monospace; white-space: nowrap; }
.missing { color: #8a4b00; background: #fff6e5; border: 1px solid #f0d9b0; padding: 8px 12px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(v: Any, digits: int = 4) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return _e(v)
    if isinstance(v, int):
        return f"{v:,}"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, int | float) and math.isfinite(v) else _e(v)


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
        tests = [(h["test_loss"], h["epoch"]) for h in history if isinstance(h.get("test_loss"), int | float)]
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

    charts = [
        svg.line_chart(
            split("loss"),
            title="Loss per epoch",
            xlabel="epoch",
            ylabel="mean cross-entropy (nats)",
            integer_x=True,
        ),
        svg.line_chart(
            split("accuracy"),
            title="Accuracy per epoch",
            xlabel="epoch",
            ylabel="accuracy",
            percent=True,
            integer_x=True,
        ),
    ]
    if any("lr" in h for h in history):
        lrs = [("learning rate", epochs, [h.get("lr", math.nan) for h in history])]
        charts.append(
            svg.line_chart(
                lrs,
                title="Learning rate at the end of each epoch",
                xlabel="epoch",
                ylabel="learning rate",
                integer_x=True,
            )
        )
    note = (
        '<p class="note">The train numbers are means over the epoch\'s batches in train mode '
        "(dropout on); the test numbers are one eval-mode pass after the epoch.</p>"
    )
    return note + f'<div class="charts">{"".join(charts)}</div>'


def _monitor_series(diagnostics: dict) -> tuple[dict, dict]:
    """Concatenate the per-epoch series: model-level {key: (steps, values)} and per layer
    {(index, name): {key: (steps, values)}}, in layer order."""
    model: dict[str, tuple[list, list]] = {}
    layers: dict[tuple, dict[str, tuple[list, list]]] = {}
    for record in diagnostics.get("epochs", []):
        steps = list(record.get("step", []))
        for key in ("loss", "grad_norm"):
            values = record.get(key)
            if isinstance(values, list):
                s, v = model.setdefault(key, ([], []))
                s.extend(steps[: len(values)])
                v.extend(values[: len(steps)])
        for layer in record.get("layers", []):
            if not isinstance(layer, dict):
                continue
            name = (layer.get("index"), str(layer.get("name", "?")))
            stats = layers.setdefault(name, {})
            for key, values in layer.items():
                if isinstance(values, list):
                    s, v = stats.setdefault(key, ([], []))
                    s.extend(steps[: len(values)])
                    v.extend(values[: len(steps)])
    return model, layers


def _monitors(diagnostics: dict | None) -> str:
    if diagnostics is None:
        return _missing(
            "No monitor series: this run directory has no diagnostics.json (a run written before "
            "the monitors existed, or trained with --no-monitor)."
        )
    model, layers = _monitor_series(diagnostics)
    if not model and not layers:
        return _missing("diagnostics.json holds no monitor series.")
    every = diagnostics.get("every")
    # Epoch starts, halfway between an epoch's last monitored step and the next one's first.
    starts = []
    records = [r for r in diagnostics.get("epochs", []) if r.get("step")]
    for prev, rec in itertools.pairwise(records):
        starts.append(((max(prev["step"]) + min(rec["step"])) / 2, f"epoch {rec.get('epoch', '')}"))

    def line_chart(series, **kw):
        return svg.line_chart(series, vlines=starts, **kw)

    charts = []
    if "loss" in model:
        charts.append(
            line_chart(
                [("training loss", *model["loss"])],
                title="Training loss per monitored step",
                xlabel="step",
                ylabel="batch mean cross-entropy (nats)",
            )
        )
    if "grad_norm" in model:
        charts.append(
            line_chart(
                [("global gradient norm", *model["grad_norm"])],
                title="Global gradient norm",
                xlabel="step",
                ylabel="‖∂L/∂θ‖ over all parameters (log)",
                log_y=True,
            )
        )
    for key, title, ylabel, log_y, fraction, guide in _LAYER_STATS:
        series = [(f"{i} {name}", *stats[key]) for (i, name), stats in layers.items() if key in stats]
        if series:
            charts.append(
                line_chart(
                    series,
                    title=title,
                    xlabel="step",
                    ylabel=ylabel,
                    log_y=log_y,
                    percent=fraction,
                    y_range=(0.0, 1.0) if fraction else None,
                    guide=guide,
                )
            )
    bn = []  # one colour per BatchNorm layer, its min dashed
    bn_layers = [(i, name, stats) for (i, name), stats in layers.items() if "running_var_max" in stats]
    for c, (i, name, stats) in enumerate(bn_layers):
        for key, word, dash in (("running_var_max", "max", False), ("running_var_min", "min", True)):
            if key in stats:
                bn.append((f"{i} {name} {word}", *stats[key], {"color": c, "dash": dash}))
    if bn:
        charts.append(
            line_chart(
                bn,
                title="BatchNorm running variance range",
                xlabel="step",
                ylabel="min and max over features (log)",
                log_y=True,
            )
        )
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
            "Not checked: this run directory has no diagnostics.json (monitors off), so the rules "
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


def _wrong(x, y, pred, conf, names, dataset, count) -> str:
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


# --- the report ----------------------------------------------------------------------


def write_report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    which: str = "latest",
    data_dir: str | None = None,
    max_wrong: int = 24,
    max_templates: int = 60,
) -> str:
    """Write the self-contained HTML report of a run directory (see the module docstring).

    Args:
        run_dir: a directory written by ``python -m fnn train``.
        out: where to write (default ``run_dir/report.html``).
        which: the checkpoint to rebuild, ``"latest"`` or ``"best"``.
        data_dir: overrides the config's Fashion-MNIST directory.
        max_wrong: how many confidently wrong test images to show (>= 1).
        max_templates: how many first-layer weight templates to show (>= 1).

    Returns:
        The path of the written file.

    Raises:
        fnn.runs.RunError: a missing directory, config or checkpoint, malformed JSON, or a
            diagnostics/history file of the wrong shape.
        ValueError: ``max_wrong`` or ``max_templates`` below 1, or a checkpoint that does not
            match the config's model.
    """
    for name, value in (("max_wrong", max_wrong), ("max_templates", max_templates)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise runs.RunError(
            f"{run_dir} is not a directory: DIR must be a run directory written by `python -m fnn train`"
        )
    config = runs.read_json(os.path.join(run_dir, "config.json"))
    history_path = os.path.join(run_dir, "history.json")
    history = _history(_read_optional(history_path), history_path)
    diagnostics_path = os.path.join(run_dir, "diagnostics.json")
    diagnostics = _diagnostics(_read_optional(diagnostics_path), diagnostics_path)
    dtype = config.get("dtype", "float32") if isinstance(config, dict) else "float32"
    with runs.numerics(dtype):
        run = runs.load_run(run_dir, which, data_dir, train_data=False)
        x, y = run.test_data
        ts = run.train_state
        logits = np.asarray(predict(run.model, ts.params, ts.state, x), np.float64)
        params = ts.params
    y = np.asarray(y)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    pred = np.argmax(logits, axis=1)
    conf = np.exp(log_probs[np.arange(len(y)), pred])
    k = logits.shape[1]
    matrix = np.zeros((k, k), np.int64)
    np.add.at(matrix, (y, pred), 1)
    scores = {
        "loss": float(-log_probs[np.arange(len(y)), y].mean()),
        "accuracy": float(np.mean(pred == y)),
        "n": len(y),
    }
    names = CLASS_NAMES.get(config["dataset"], tuple(str(i) for i in range(k)))
    if len(names) != k:
        names = tuple(str(i) for i in range(k))

    title = f"fnn run report: {config['model']} on {config['dataset']}"
    body = [
        _section(
            "summary",
            "The run: config and final numbers",
            _summary(config, history, scores, run.meta, run.checkpoint_path),
        ),
        _section("learning-curves", "Learning curves", _learning_curves(history)),
        _section("monitors", "Per-layer monitors", _monitors(diagnostics)),
        _section("diagnoses", "Diagnoses and remedies", _diagnoses(diagnostics, history)),
        _section("confusion-matrix", "Confusion matrix (test set)", _confusion(matrix, names)),
        _section(
            "wrong-predictions",
            "The most confidently wrong test images",
            _wrong(np.asarray(x), y, pred, conf, names, config["dataset"], max_wrong),
        ),
        _section(
            "weight-templates",
            "First-layer weights as templates",
            _templates(run.model, params, config, max_templates),
        ),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n"
        f'<p class="note">Run directory: <code>{_e(os.path.abspath(run_dir))}</code>. '
        "This file is self-contained "
        "(no scripts, no network); rebuild it with <code>python -m fnn report DIR</code>.</p>\n"
        + "".join(body)
        + "</body>\n</html>\n"
    )
    path = os.fspath(out) if out is not None else os.path.join(run_dir, "report.html")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)  # a half-written report never replaces a good one
    return path

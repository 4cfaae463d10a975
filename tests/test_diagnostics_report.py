"""The one-file HTML run report (fnn.diagnostics.report): its sections, that
it is self-contained, and that its numbers and images are the run's, checked against numpy
computations on ``fnn.train.predict``'s logits and against the raw MNIST test images."""

import base64
import contextlib
import html
import io
import json
import shutil
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import jax
import numpy as np
import pytest

from fnn import data, nn, runs
from fnn.__main__ import main
from fnn.diagnostics.report import SECTIONS, _templates, write_report
from fnn.train import predict

TRAIN = ["train", "--hidden", "32", "--epochs", "1", "--batch-size", "512", "--no-progress"]
# One worker runs every test of this file, so the CLI run of the `run` fixture happens once.
# The report of a real CLI run: slow (tests/README.md, "Tiers").
pytestmark = [pytest.mark.xdist_group("diagnostics-report"), pytest.mark.slow]
EVERY, STEPS_PER_EPOCH = 12, 60000 // 512
MESSAGE = (
    'Layer 3 ReLU(): 71% of units dead for the whole batch <b>"bias -1"</b> & more. '
    "Try: a lower learning rate, LeakyReLU or ELU, or check the bias init."
)


def _diagnostics(diagnoses: list[dict]) -> dict:
    """A diagnostics.json in the probe's format for the CLI's mlp --hidden 32 (layers 1-5)."""
    steps = list(range(EVERY, STEPS_PER_EPOCH + 1, EVERY))
    n = len(steps)
    ramp = np.linspace(1.0, 0.5, n).tolist()
    layers = [
        {"index": 1, "name": "Linear(784, 32)", "kind": "linear", "weight_norm": [4.0] * n}
        | {"grad_norm": ramp, "update_ratio": [1e-3 * r for r in ramp]},
        {"index": 2, "name": "BatchNorm1d(32)", "kind": "batchnorm"}
        | {"running_var_min": [0.1] * n, "running_var_max": [3.0] * n},
        {"index": 3, "name": "ReLU()", "kind": "relu", "mean": ramp, "std": ramp, "dead_fraction": [0.7] * n},
        {"index": 5, "name": "Linear(32, 10)", "kind": "linear", "weight_norm": [2.0] * n}
        | {"grad_norm": ramp, "update_ratio": [2e-3 * r for r in ramp]},
    ]
    epoch = {"epoch": 1, "every": EVERY, "step": steps, "loss": ramp, "grad_norm": ramp, "layers": layers}
    return {"every": EVERY, "epochs": [epoch], "diagnoses": diagnoses}


DIAGNOSES = [
    {"rule": "dead-relu", "layer": "3 ReLU()", "epoch": 1, "step": 36, "value": 0.71, "message": MESSAGE},
    {
        "rule": "lr-too-small",
        "layer": None,
        "epoch": 1,
        "step": None,
        "value": 0.004,
        "message": "Loss fell 0.4%.",
    },
]


class Page(HTMLParser):
    """Tags with their attributes, the ids, and the text inside each section."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.ids, self.text, self.section = [], {}, {}, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs, self.section))
        if "id" in attrs:
            self.ids[attrs["id"]] = tag
        if tag == "section":
            self.section = attrs.get("id")

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None

    def handle_data(self, d):
        self.text[self.section] = self.text.get(self.section, "") + d

    def all(self, tag, section=None, cls=None):
        return [
            a
            for t, a, s in self.tags
            if t == tag and (section is None or s == section) and (cls is None or cls in a.get("class", ""))
        ]


def decode_png(uri: str) -> np.ndarray:
    """An 8-bit grayscale or RGB PNG (filter 0 rows, as the report writes) back to an array."""
    raw = base64.b64decode(uri.removeprefix("data:image/png;base64,"))
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        tag, body = raw[pos + 4 : pos + 8], raw[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", raw[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(tag + body)
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + length
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = {0: 1, 2: 3}[color]
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, 1 + w * channels)
    assert depth == 8 and np.all(rows[:, 0] == 0)
    return rows[:, 1:].reshape(h, w, channels).squeeze(-1 if channels == 1 else ())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real CLI run (1 epoch, MLP 784-32-10) with a hand-written diagnostics.json."""
    out = tmp_path_factory.mktemp("report") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*TRAIN, "--out", str(out)]) == 0
    (out / "diagnostics.json").write_text(json.dumps(_diagnostics(DIAGNOSES)))
    path = write_report(out)
    loaded = runs.load_run(out)
    logits = np.asarray(
        predict(loaded.model, loaded.train_state.params, loaded.train_state.state, loaded.test_data[0])
    )
    return {
        "dir": out,
        "printed": printed.getvalue(),
        "html": Path(path).read_text(encoding="utf-8"),
        "logits": logits.astype(np.float64),
        "y": np.asarray(loaded.test_data[1]),
        "params": loaded.train_state.params,
    }


def test_train_writes_the_report_and_prints_its_path(run):
    lines = run["printed"].splitlines()
    assert f"report: {run['dir'] / 'report.html'}" in lines
    assert lines[-1].startswith("test_accuracy=")


def test_every_section_is_present_in_order(run):
    page = Page(run["html"])
    assert all(page.ids.get(s) == "section" for s in SECTIONS)
    order = [a["id"] for a in page.all("section")]
    assert order == list(SECTIONS)


def test_no_script_no_external_url(run):
    text = run["html"].lower()
    page = Page(run["html"])
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "@import" not in text and "url(" not in text
    for tag, attrs, _ in page.tags:
        for key in ("src", "href"):
            assert key not in attrs or attrs[key].startswith(("data:", "#")), (tag, attrs.get(key))


def test_the_report_parses_and_opens_from_another_directory(run, tmp_path):
    # A copy alone, far from the run directory: every image is inline, and decodes.
    copy = tmp_path / "elsewhere" / "saved.html"
    copy.parent.mkdir()
    shutil.copy(run["dir"] / "report.html", copy)
    page = Page(copy.read_text(encoding="utf-8"))
    images = page.all("img")
    assert images and all(a["src"].startswith("data:image/png;base64,") for a in images)
    shapes = {decode_png(a["src"]).shape[:2] for a in images}
    assert shapes == {(28, 28)}


def test_final_numbers_and_config_are_shown(run):
    page = Page(run["html"])
    history = json.loads((run["dir"] / "history.json").read_text())["history"]
    summary = page.text["summary"]
    assert f"{100 * history[-1]['test_accuracy']:.2f}%" in summary
    accuracy = np.mean(np.argmax(run["logits"], 1) == run["y"])
    assert f"{100 * accuracy:.2f}% of 10,000 images" in summary
    assert "hidden" in summary and "[32]" in summary and "cosine" in summary


def test_confusion_matrix_counts_equal_numpy(run):
    page = Page(run["html"])
    counts = [int(a["data-count"]) for a in page.all("td", "confusion-matrix") if "data-count" in a]
    pred = np.argmax(run["logits"], axis=1)
    expected = np.zeros((10, 10), int)
    for t, p in zip(run["y"], pred, strict=True):
        expected[t, p] += 1
    np.testing.assert_array_equal(np.array(counts).reshape(10, 10), expected)


def test_wrong_grid_holds_the_most_confident_wrong_predictions(run):
    page = Page(run["html"])
    figures = page.all("figure", "wrong-predictions", "wrong")
    logits, y = run["logits"], run["y"]
    e = np.exp(logits - logits.max(1, keepdims=True))
    probs = e / e.sum(1, keepdims=True)
    pred = probs.argmax(1)
    conf = probs.max(1)
    wrong = np.flatnonzero(pred != y)
    expected = sorted(wrong, key=lambda i: (-conf[i], i))[:24]
    assert [int(f["data-index"]) for f in figures] == expected
    for f in figures:
        i = int(f["data-index"])
        assert (int(f["data-true"]), int(f["data-pred"])) == (y[i], pred[i])
        assert float(f["data-confidence"]) == pytest.approx(conf[i], abs=1e-5)
    # and the pictures are those test images: the raw uint8 pixels, up to rounding
    raw, _ = data.mnist("test")
    images = page.all("img", "wrong-predictions")
    for f, img in zip(figures, images, strict=True):
        diff = decode_png(img["src"]).astype(int) - raw[int(f["data-index"])].astype(int)
        assert np.abs(diff).max() <= 1


def test_weight_templates_are_the_first_linear_rows(run):
    page = Page(run["html"])
    weight = np.asarray(run["params"][1]["weight"])  # Flatten, then Linear(784, 32)
    images = page.all("img", "weight-templates")
    assert len(images) == 32  # all 32 units (fewer than the 60 shown at most)
    for unit in (0, 17, 31):
        rgb = decode_png(images[unit]["src"]).astype(int)
        w = weight[unit].reshape(28, 28)
        big = np.abs(w) > 0.2 * np.abs(w).max()  # clearly coloured pixels
        red_more = rgb[..., 0] > rgb[..., 2]
        np.testing.assert_array_equal(red_more[big], w[big] > 0)  # red positive, blue negative
        assert np.all(rgb[np.argmax(np.abs(w)) // 28, np.argmax(np.abs(w)) % 28] != 255)


def test_diagnoses_appear_with_their_messages_escaped(run):
    assert html.escape(MESSAGE) in run["html"] and MESSAGE not in run["html"]
    page = Page(run["html"])
    text = page.text["diagnoses"]
    assert MESSAGE in text and "Loss fell 0.4%." in text  # the parser unescapes back to the message
    assert "dead-relu" in text and "3 ReLU()" in text and "lr-too-small" in text
    assert len(page.all("tr", "diagnoses", "diagnosis")) == 2


def test_probe_charts_draw_every_series_of_diagnostics_json(run):
    page = Page(run["html"])
    charts = page.all("svg", "probes")
    titles = [a["aria-label"] for a in charts]
    assert titles == [
        "Training loss per probed step",
        "Global gradient norm",
        "Weight norm",
        "Weight gradient norm",
        "Update-to-weight ratio",
        "Activation mean",
        "Activation std",
        "Dead units",
        "BatchNorm running variance range",
    ]
    # lines: loss, grad norm, 2 Linear x 3 statistics, ReLU mean/std/dead, BN min and max
    assert len(page.all("polyline", "probes")) == 1 + 1 + 2 * 3 + 3 + 2
    assert "1e-3: healthy" in page.text["probes"] and "5 Linear(32, 10)" in page.text["probes"]


def _copy_run(run, tmp_path, without=()):
    d = tmp_path / "copy"
    shutil.copytree(run["dir"], d)
    for name in without:
        (d / name).unlink()
    return d


def test_a_run_without_diagnostics_says_so(run, tmp_path):
    d = _copy_run(run, tmp_path, without=["diagnostics.json", "report.html"])
    # A run trained without the probe: no diagnostics.json and no diagnoses in history.json.
    saved = json.loads((d / "history.json").read_text())
    saved["history"] = [{k: v for k, v in h.items() if k != "diagnoses"} for h in saved["history"]]
    (d / "history.json").write_text(json.dumps(saved))
    page = Page(Path(write_report(d)).read_text(encoding="utf-8"))
    assert all(page.ids.get(s) == "section" for s in SECTIONS)
    assert "no diagnostics.json" in page.text["probes"] and "no diagnostics.json" in page.text["diagnoses"]
    assert not page.all("svg", "probes") and not page.all("tr", "diagnoses", "diagnosis")
    assert page.all("svg", "learning-curves")  # what history.json holds is still drawn


def test_no_diagnosis_is_said_plainly(run, tmp_path):
    d = _copy_run(run, tmp_path)
    (d / "diagnostics.json").write_text(json.dumps(_diagnostics([])))
    page = Page(Path(write_report(d, d / "other.html")).read_text(encoding="utf-8"))
    assert page.ids.get("no-diagnosis") == "p" and "No diagnosis." in page.text["diagnoses"]


def test_cli_report_rebuilds_and_prints_the_path(run, tmp_path, capsys):
    d = _copy_run(run, tmp_path, without=["report.html"])
    assert main(["report", str(d)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {d / 'report.html'}"
    assert Page((d / "report.html").read_text(encoding="utf-8")).ids.get("summary") == "section"


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: shutil.rmtree(d), "is not a directory: DIR must be a run directory"),
        (lambda d: (d / "config.json").unlink(), "config.json not found: DIR must be a run directory"),
        (
            lambda d: (d / "checkpoint.npz").unlink(),
            "checkpoint.npz not found (the run wrote no latest checkpoint)",
        ),
        (lambda d: (d / "config.json").write_text("{not json"), "config.json is not valid JSON"),
        (
            lambda d: (d / "config.json").write_text('{"model": "mlp"}'),
            "config.json is not a run config: no dataset",
        ),
        (lambda d: (d / "diagnostics.json").write_text("[1, 2"), "diagnostics.json is not valid JSON"),
        (
            lambda d: (d / "diagnostics.json").write_text('{"epochs": 3}'),
            "diagnostics.json is not a diagnostics file",
        ),
        (
            lambda d: (d / "history.json").write_text('{"history": 1}'),
            "history.json holds no list of epoch records",
        ),
    ],
)
def test_cli_report_errors_are_one_line_and_status_2(run, tmp_path, capsys, break_it, message):
    d = _copy_run(run, tmp_path)
    break_it(d)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(d)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err[-1].startswith("python -m fnn report: error: ") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("name, value", [("max_wrong", 0), ("max_templates", 2.5)])
def test_bad_counts_are_refused(run, name, value):
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
        write_report(run["dir"], **{name: value})


def test_a_first_linear_without_784_inputs_gets_a_sentence():
    # The CLI only trains 784-input models, so the sentence is checked on the section's
    # builder with a small model.
    model = nn.Sequential(nn.Linear(5, 3))
    text = _templates(model, model.init(jax.random.key(0))[0], {"dataset": "mnist"}, 60)
    assert "has 5 inputs, not 784" in text and "<img" not in text

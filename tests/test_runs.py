"""fnn.runs: rebuilding a run from its directory, and the one-line RunError for each way a
run directory can be unreadable (the CLI's evaluate/report tests cover a real run)."""

import json
import math
import re
from xml.etree import ElementTree

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import assert_trees_equal

from fnn import checkpoint, nn, runs
from fnn import train as T
from fnn.train import checkpointing

CONFIG = {
    "model": "mlp",
    "dataset": "mnist",
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "epochs": 2,
    "batch_size": 128,
    "seed": 0,
    "hidden": [16, 8],
    "activation": "tanh",
    "dropout": 0.0,
    "batch_norm": False,
    "init": "xavier",
    "dtype": "float32",
}


def test_build_model_builds_the_mlp_the_config_names():
    model = runs.build_model(CONFIG)
    linears = [layer for layer in model.layers if isinstance(layer, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 16), (16, 8), (8, 10)]
    assert sum(isinstance(layer, nn.Tanh) for layer in model.layers) == 2
    assert not any(isinstance(layer, nn.BatchNorm1d | nn.Dropout) for layer in model.layers)
    assert all(m.dtype == "float32" for m in linears)


def test_build_optimizer_follows_the_cosine_schedule():
    opt = runs.build_optimizer({**CONFIG, "momentum": 0.0, "weight_decay": 0.0}, steps_per_epoch=5)
    params = {"w": jnp.ones(())}
    state = opt.init(params)
    grads = {"w": jnp.ones(())}
    steps = []
    for _ in range(3):
        updates, state = opt.update(grads, state, params)
        steps.append(-float(updates["w"]))
    # torch's CosineAnnealingLR with T_max = 2 epochs x 5 steps: lr_t = 0.05 (1 + cos(pi t / 10))
    assert steps == pytest.approx([0.05 * (1 + math.cos(math.pi * t / 10)) for t in range(3)], rel=1e-6)


def _run_dir(tmp_path, config=CONFIG):
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_read_json_of_a_missing_file(tmp_path):
    with pytest.raises(runs.RunError, match=r"config\.json not found: DIR must be a run directory"):
        runs.read_json(tmp_path / "config.json")


def test_read_json_of_malformed_json(tmp_path):
    (tmp_path / "h.json").write_text('{"a": ')
    with pytest.raises(runs.RunError, match=r"h.json is not valid JSON \(Expecting value"):
        runs.read_json(tmp_path / "h.json")


def test_load_run_of_a_missing_directory(tmp_path):
    with pytest.raises(runs.RunError, match="nope is not a directory: DIR must be a run directory"):
        runs.load_run(tmp_path / "nope")


def test_load_run_of_a_config_without_its_keys(tmp_path):
    d = _run_dir(tmp_path, {"model": "mlp", "lr": 0.1})
    with pytest.raises(runs.RunError, match="is not a run config: no dataset, optimizer, weight_decay"):
        runs.load_run(d)


def test_load_run_of_a_config_that_is_not_an_object(tmp_path):
    d = _run_dir(tmp_path, [1, 2])
    with pytest.raises(runs.RunError, match="is not a run config: no model"):
        runs.load_run(d)


def test_load_run_without_a_checkpoint(tmp_path):
    with pytest.raises(runs.RunError, match=r"best.npz not found \(the run wrote no best checkpoint\)"):
        runs.load_run(_run_dir(tmp_path), "best")


def test_load_run_of_an_unknown_checkpoint_name(tmp_path):
    with pytest.raises(ValueError, match=r"which must be one of \['best', 'latest'\], got 'first'"):
        runs.load_run(_run_dir(tmp_path), "first")


def test_load_data_of_a_missing_fashion_mnist_names_where_it_looked(tmp_path):
    with pytest.raises(runs.RunError, match=re.escape(str(tmp_path))):
        runs.load_data("fashion-mnist", str(tmp_path))


@pytest.mark.slow
def test_load_run_without_train_data_rebuilds_the_same_run(tmp_path):
    # evaluate and report read only the test set: train_data=False must leave out the
    # normalized training images and nothing else. The references are the saved state and
    # the default full load.
    run_dir = _run_dir(tmp_path)
    opt = runs.build_optimizer(CONFIG, 60000 // CONFIG["batch_size"])
    saved = T.init_train_state(runs.build_model(CONFIG), opt, jax.random.key(5))
    checkpoint.save(run_dir / "checkpoint.npz", saved, metadata={"epoch": 2})
    full = runs.load_run(run_dir)
    lean = runs.load_run(run_dir, train_data=False)
    assert lean.train_data is None and full.train_data[0].shape == (60000, 28, 28)
    assert lean.meta == full.meta == {"epoch": 2} and lean.config == full.config
    assert_trees_equal(lean.train_state, saved)
    assert_trees_equal(full.train_state, saved)
    for a, b in zip(lean.test_data, full.test_data, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_load_data_without_train_images_keeps_the_labels():
    (x_train, y_train), (x_test, _) = runs.load_data("mnist", None, train_images=False)
    assert x_train is None and y_train.shape == (60000,) and x_test.shape == (10000, 28, 28)


def test_start_run_refuses_a_directory_holding_a_run_and_writes_nothing(tmp_path):
    # One refusal for the command line and fit: fnn.train.checkpointing.check_start.
    checkpoint.save(tmp_path / "checkpoint.npz", {"w": np.zeros(1)})
    with pytest.raises(checkpointing.RunExistsError, match=r"checkpoint\.npz exists: pass resume=True"):
        runs.start_run(str(tmp_path), CONFIG, resume=False, overwrite=False)
    assert not (tmp_path / "config.json").exists()
    runs.start_run(str(tmp_path), CONFIG, resume=True, overwrite=False)
    assert json.loads((tmp_path / "config.json").read_text()) == CONFIG


def test_write_diagnostics_is_strict_json_and_without_probe_removes_the_file(tmp_path):
    probe = {"every": 2, "step": [2], "loss": [float("nan")]}
    history = [{"epoch": 1, "probe": probe, "diagnoses": [{"rule": "r", "value": float("inf")}]}]
    path = runs.write_diagnostics(str(tmp_path), history, probed=True)
    found = json.loads((tmp_path / "diagnostics.json").read_text(), parse_constant=pytest.fail)
    assert path == str(tmp_path / "diagnostics.json") and found["every"] == 2
    assert found["epochs"] == [{"epoch": 1, "every": 2, "step": [2], "loss": [None]}]
    assert found["diagnoses"] == [{"rule": "r", "value": None}]
    assert runs.write_diagnostics(str(tmp_path), history, probed=False) is None
    assert not (tmp_path / "diagnostics.json").exists()


def test_write_history_leaves_the_probe_series_out(tmp_path):
    runs.write_history(str(tmp_path), CONFIG, [{"epoch": 1, "train_loss": 0.5, "probe": {"every": 1}}])
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved == {"config": CONFIG, "history": [{"epoch": 1, "train_loss": 0.5}]}


def _svg(path):
    root = ElementTree.parse(path).getroot()  # well-formed XML, a standalone SVG document
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def test_write_curves_draws_loss_and_accuracy_as_one_svg(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.8, "test_loss": 1.1 / e, "test_accuracy": 0.7}
        for e in (1, 2, 3)
    ]
    path = runs.write_curves(str(tmp_path), history, "fnn mlp on mnist")
    root = _svg(path)
    assert path == str(tmp_path / "curves.svg")
    charts = root.findall(".//{http://www.w3.org/2000/svg}svg")
    assert [c.get("aria-label") for c in charts] == ["loss", "accuracy"]
    assert len(root.findall(".//{http://www.w3.org/2000/svg}polyline")) == 4  # train and test, twice
    assert runs.write_curves(str(tmp_path / "none"), [], "empty") is None


def test_write_lr_find_writes_the_curve_and_its_plot(tmp_path):
    from fnn.diagnostics import LRFindResult

    lrs = np.geomspace(1e-3, 1.0, 5)
    losses = np.array([2.3, 2.0, 1.5, 40.0, np.inf])
    result = LRFindResult(lrs, losses, losses, losses < 10, 3, 0.01, "the rule")
    json_path, svg_path = runs.write_lr_find(
        str(tmp_path / "find"), {"model": "mlp"}, result, min_lr=1e-3, max_lr=1.0, title="LR range test"
    )
    with open(json_path) as f:
        saved = json.load(f, parse_constant=pytest.fail)
    assert saved["losses"] == [2.3, 2.0, 1.5, 40.0, None] and saved["steps"] == 5
    assert saved["diverged_at"] == 3 and saved["suggested_lr"] == 0.01 and saved["valid"][3] is False
    text = ElementTree.tostring(_svg(svg_path), encoding="unicode")
    assert "suggested lr 0.01" in text and "diverged: lr 0.178" in text

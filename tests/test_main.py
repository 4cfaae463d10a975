"""The command line: `python -m fnn train | evaluate | gradcheck`, its files, its one-line
errors and exit codes, and --resume equal to an uninterrupted run.

The runs on the bundled MNIST are marked slow; the fast tier keeps the argument errors and
one small run (random 28x28 images) through train and evaluate."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import checkpoint
from fnn.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOFTMAX = ["train", "--model", "softmax", "--batch-size", "256", "--no-progress"]


@pytest.mark.slow
def test_train_softmax_writes_its_run_directory_and_prints_accuracy_last(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*SOFTMAX, "--epochs", "1", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("test_accuracy=")
    accuracy = float(lines[-1].split("=")[1])
    assert 0.85 < accuracy <= 1.0  # one epoch of softmax regression on the real MNIST
    history = json.loads((out / "history.json").read_text())["history"]
    assert history[0]["epoch"] == 1 and history[0]["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "softmax" and config["lr"] == 0.1 and config["batch_size"] == 256
    assert (out / "checkpoint.npz").exists() and (out / "best.npz").exists()
    assert f"curves: {out / 'curves.svg'}" in lines and f"report: {out / 'report.html'}" in lines
    assert (out / "curves.svg").read_text().startswith("<svg xmlns=")
    # Monitored by default: the series in diagnostics.json, not in history.json.
    assert config["monitor"] is True and "probe" not in history[0]
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    steps = 60000 // 256  # 234 steps: every max(1, 234 // 32) = 7, points at 7, 14, ..., 231
    assert diagnostics["every"] == 7 and diagnostics["diagnoses"] == []
    (epoch,) = diagnostics["epochs"]
    assert epoch["epoch"] == 1 and epoch["step"] == list(range(7, steps + 1, 7))
    assert [(e["index"], e["name"], e["kind"]) for e in epoch["layers"]] == [(1, "Linear(784, 10)", "linear")]
    assert len(epoch["loss"]) == len(epoch["layers"][0]["update_ratio"]) == 33

    # evaluate DIR rebuilds the model from config.json and prints the same numbers
    assert main(["evaluate", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("test_loss=") and f"test_accuracy={accuracy:.4f}" in last


@pytest.mark.slow
def test_resume_through_the_cli_equals_an_uninterrupted_run(tmp_path, capsys):
    args = [*SOFTMAX, "--schedule", "constant", "--optimizer", "adam"]
    assert main([*args, "--epochs", "2", "--out", str(tmp_path / "whole")]) == 0
    assert main([*args, "--epochs", "1", "--out", str(tmp_path / "parts")]) == 0
    assert main([*args, "--epochs", "2", "--out", str(tmp_path / "parts"), "--resume"]) == 0
    whole, _ = checkpoint.load(tmp_path / "whole" / "checkpoint.npz")
    parts, meta = checkpoint.load(tmp_path / "parts" / "checkpoint.npz")
    assert meta["epoch"] == 2
    assert whole["key"] is not None and whole["step"] == parts["step"] == 2 * (60000 // 256)
    np.testing.assert_array_equal(
        jax.random.key_data(whole.pop("key")), jax.random.key_data(parts.pop("key"))
    )
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(parts), strict=True):
        np.testing.assert_array_equal(a, b)
    capsys.readouterr()


@pytest.mark.slow
def test_no_monitor_writes_no_diagnostics_and_evaluate_still_reads_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*SOFTMAX, "--epochs", "1", "--no-monitor", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["monitor"] is False
    assert not (out / "diagnostics.json").exists()
    assert "probe" not in json.loads((out / "history.json").read_text())["history"][0]
    accuracy = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["evaluate", str(out)]) == 0
    assert accuracy in capsys.readouterr().out


@pytest.mark.slow
def test_mlp_options_build_the_model_they_name(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--hidden",
                "32",
                "--activation",
                "tanh",
                "--dropout",
                "0",
                "--no-batch-norm",
                "--init",
                "xavier",
                "--epochs",
                "1",
                "--batch-size",
                "512",
                "--early-stopping",
                "3",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert (
        config["hidden"],
        config["activation"],
        config["dropout"],
        config["batch_norm"],
        config["init"],
    ) == ([32], "tanh", 0.0, False, "xavier")
    ts, _ = checkpoint.load(out / "checkpoint.npz")
    assert [np.shape(p.get("weight", ())) for p in ts["params"]] == [(0,), (32, 784), (0,), (10, 32)]
    assert np.all(np.asarray(ts["params"][1]["bias"]) != 0)  # trained for an epoch from zero biases
    assert float(capsys.readouterr().out.strip().splitlines()[-1].split("=")[1]) > 0.85


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "fnn", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


BAD_ARGUMENTS = [
    (["--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
    (["--lr", "nan"], "argument --lr: must be a finite number > 0, got 'nan'"),
    (["--lr", "0"], "argument --lr: must be a finite number > 0, got '0'"),
    (["--lr", "-1"], "argument --lr: must be a finite number > 0, got '-1'"),
    (["--epochs", "0"], "argument --epochs: must be an integer >= 1, got '0'"),
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got '0'"),
    (["--batch-size", "70000"], "--batch-size 70000 is larger than the training set (60000 samples)"),
    (["--dropout", "1"], "argument --dropout: must be a probability in [0, 1), got '1'"),
    (["--hidden", "512,0"], "argument --hidden: must be comma-separated widths >= 1"),
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to sgd and rmsprop, not adam"),
    (
        ["--reduce-lr-on-plateau"],
        "--reduce-lr-on-plateau sets the learning rate itself: use it with --schedule constant",
    ),
    (["--model", "softmax", "--hidden", "64"], "--hidden configure --model mlp, not softmax"),
    (["--resume"], "--resume needs --out DIR"),
    (["--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
    (["--model", "vgg"], "argument --model: invalid choice: 'vgg'"),
    (["--model", "lenet5", "--dropout", "0.1"], "--dropout configure --model mlp, not lenet5"),
    (["--model", "cnn", "--init", "xavier"], "--init configure --model mlp, not cnn"),
    (["--model", "cnn", "--hidden", "64,64"], "--hidden: the cnn's head has one hidden layer, got 2 widths"),
    (["--channels", "8,16"], "--channels configure --model cnn, not mlp"),
    (
        ["--model", "softmax", "--init", "torch", "--channels", "8"],
        "--init, --channels configure other models",
    ),
    (["--model", "cnn", "--channels", "8,0"], "argument --channels: must be comma-separated widths >= 1"),
    (["--model", "cnn", "--channels", "4,4,4,4,4"], "--channels: at most 4 stages for 28x28 images"),
]


@pytest.mark.parametrize("args, message", BAD_ARGUMENTS)
def test_bad_arguments_get_one_line_and_status_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("python -m fnn train: error: ")
        and message in err[-1]
        and "Traceback" not in "\n".join(err)
    )


def test_a_missing_data_directory_lists_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FNN_DATA_DIR", raising=False)
    if os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Debian's Fashion-MNIST is installed here, so the search would find it")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                "--dataset",
                "fashion-mnist",
                "--data-dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "run"),
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and "error: Fashion-MNIST train files" in err[-1]
    assert str(tmp_path) in err[-1] and "/usr/share/datasets/fashion-mnist" in err[-1]


@pytest.mark.slow
def test_an_existing_run_directory_needs_resume_or_overwrite(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main([*SOFTMAX, "--epochs", "1", "--out", out]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main([*SOFTMAX, "--epochs", "1", "--out", out])
    assert exit_info.value.code == 2 and "already holds a run: add --resume" in capsys.readouterr().err
    assert main([*SOFTMAX, "--epochs", "1", "--out", out, "--resume", "--batch-size", "128"]) == 1
    assert "error:" in capsys.readouterr().err  # the batch size differs from the checkpoint's
    assert main([*SOFTMAX, "--epochs", "1", "--out", out, "--overwrite"]) == 0


def test_evaluate_of_a_directory_without_a_run_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path)])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith(
            f"{tmp_path}/config.json not found: DIR must be a run directory written by `python -m fnn train`"
        )
    )


@pytest.mark.slow
def test_divergence_is_one_line_and_status_3(tmp_path):
    result = run_cli(
        "train",
        "--model",
        "softmax",
        "--lr",
        "1e30",
        "--schedule",
        "constant",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert result.returncode == 3, result.stderr
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "training diverged at epoch 1, step" in err[0] and "try a smaller --lr" in err[0]
    assert (tmp_path / "run" / "diverged.npz").exists()
    # The rules read the diverged epoch too: a diagnosis line on stdout, and in strict JSON.
    assert "[lr-too-large]" in result.stdout and "learning rate is too large" in result.stdout
    text = (tmp_path / "run" / "diagnostics.json").read_text()
    diagnoses = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))["diagnoses"]
    assert [d["rule"] for d in diagnoses] == ["lr-too-large"]


@pytest.mark.slow
def test_lr_50_is_diagnosed_as_a_learning_rate_too_large(tmp_path, capsys):
    # The default MLP at --lr 50. Within the first epoch the weights grow
    # to ~1e12 (loss ~1e18 at the first monitored step, 14) and a step's gradient norm
    # overflows, so training diverges; which trigger of the rule names it first (an update
    # ratio above 1, or the non-finite gradient norm) depends on the draws, not the verdict.
    out = tmp_path / "run"
    assert main(["train", "--lr", "50", "--epochs", "1", "--no-progress", "--out", str(out)]) == 3
    lines = [line for line in capsys.readouterr().out.splitlines() if "[lr-too-large]" in line]
    assert len(lines) == 1 and lines[0].startswith("diagnosis epoch 1")
    assert "the learning rate is too large" in lines[0] and "try 4.99" in lines[0]  # 49.9 / 10


@pytest.mark.slow
def test_gradcheck_command_prints_an_agreeing_table(capsys):
    assert main(["gradcheck", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "all leaves agree" in out and "1.weight" in out and "FAIL" not in out


def _small_random_mnist(monkeypatch) -> None:
    """Replace the bundled MNIST with 256 train / 64 test random uint8 images (a fast CLI run)."""
    from fnn import data

    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 256), ("test", 64))}
    labels = {s: rng.integers(0, 10, len(images[s])).astype(np.int32) for s in images}
    monkeypatch.setattr(data, "mnist", lambda split: (images[split], labels[split]))


def test_dtype_float64_trains_evaluates_and_leaves_64_bit_mode_off(tmp_path, capsys, monkeypatch):
    # DTYPE-1: --dtype reaches every layer and the data is cast where the CLI loads it (a
    # float32 input would raise, DTYPE-2); 64-bit mode is on for the command only.
    _small_random_mnist(monkeypatch)
    out = tmp_path / "run"
    assert (
        main([*SOFTMAX, "--dtype", "float64", "--epochs", "1", "--batch-size", "64", "--out", str(out)]) == 0
    )
    assert json.loads((out / "config.json").read_text())["dtype"] == "float64"
    saved, _ = checkpoint.load(out / "checkpoint.npz")
    assert {leaf.dtype for leaf in jax.tree.leaves(saved["params"])} == {np.dtype(np.float64)}
    # SGD's momentum buffers follow the params (its scalar step and lr bookkeeping do not)
    buffers = [leaf for leaf in jax.tree.leaves(saved["opt_state"]) if np.ndim(leaf) > 0]
    assert len(buffers) == 2 and all(b.dtype == np.float64 for b in buffers)
    assert main(["evaluate", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("test_loss=")
    assert jnp.zeros(1, float).dtype == jnp.float32  # 64-bit mode did not outlive the commands


@pytest.mark.slow
def test_dtype_bfloat16_trains_with_float32_master_weights(tmp_path, capsys, monkeypatch):
    # DTYPE-4: --dtype bfloat16 is mixed precision: the config says so, the checkpoint's
    # params, BatchNorm statistics and optimizer state are float32, evaluate rebuilds the same.
    _small_random_mnist(monkeypatch)
    out = tmp_path / "run"
    args = ["train", "--hidden", "8", "--batch-size", "64", "--epochs", "1", "--no-progress", "--no-monitor"]
    assert main([*args, "--dtype", "bfloat16", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["master_weights"] is True
    saved, _ = checkpoint.load(out / "checkpoint.npz")
    arrays = jax.tree.leaves((saved["params"], saved["state"], saved["opt_state"]))
    floats = [leaf for leaf in arrays if np.issubdtype(np.asarray(leaf).dtype, np.floating)]
    assert floats and {np.asarray(leaf).dtype for leaf in floats} == {np.dtype(np.float32)}
    assert any(np.ndim(leaf) == 1 and leaf.shape == (8,) for leaf in jax.tree.leaves(saved["state"]))
    assert main(["evaluate", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("test_loss=")


def test_cnn_trains_evaluates_and_reports_from_its_config(tmp_path, capsys, monkeypatch):
    # --model cnn: the config records the model and its options, so evaluate and report
    # rebuild the same network from the run directory
    _small_random_mnist(monkeypatch)
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        "cnn",
        "--channels",
        "4",
        "--hidden",
        "8",
        "--dropout",
        "0.1",
        "--batch-size",
        "64",
    ]
    assert main([*args, "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("fnn: cnn on mnist, ") and lines[-1].startswith("test_accuracy=")
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["channels"], config["convs_per_stage"]) == ("cnn", [4], 2)
    assert (config["hidden"], config["dropout"], config["batch_norm"]) == ([8], 0.1, True)
    saved, _ = checkpoint.load(out / "checkpoint.npz")
    assert np.shape(saved["params"][2]["weight"]) == (4, 1, 3, 3) and "bias" not in saved["params"][2]
    assert f"report: {out / 'report.html'}" in lines  # train wrote the report from the run's files
    assert main(["evaluate", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(lines[-1])


@pytest.mark.slow
def test_lenet5_trains_reports_and_a_cnn_lr_find_runs(tmp_path, capsys, monkeypatch):
    _small_random_mnist(monkeypatch)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "lenet5",
                "--batch-size",
                "64",
                "--epochs",
                "1",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "config.json").read_text())["model"] == "lenet5"
    assert "61,706 params" in capsys.readouterr().out
    assert main(["evaluate", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    find = ["lr-find", "--model", "cnn", "--channels", "4", "--batch-size", "32", "--steps", "4"]
    assert main([*find, "--out", str(tmp_path / "find")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("suggested_lr=")
    assert json.loads((tmp_path / "find" / "lr_find.json").read_text())["config"]["channels"] == [4]


@pytest.mark.slow
def test_gradcheck_cnn_prints_an_agreeing_table(capsys):
    assert main(["gradcheck", "--model", "cnn"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gradient check of a small CNN on 32 MNIST images")
    assert "all leaves agree" in out and "FAIL" not in out
    for leaf in ("1.weight", "2.weight", "5.weight", "6.bias", "11.weight"):  # conv, BN2d, conv, BN2d, Linear
        assert leaf in out

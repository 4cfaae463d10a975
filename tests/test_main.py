"""The command line: `python -m fnn train` and `python -m fnn gradcheck`."""
import json
import os
import subprocess
import sys

import pytest

from fnn.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_softmax_writes_history_checkpoint_and_prints_accuracy_last(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "softmax", "--epochs", "1", "--batch-size", "256", "--out", str(out),
                 "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("test_accuracy=")
    accuracy = float(lines[-1].split("=")[1])
    assert 0.85 < accuracy <= 1.0  # one epoch of softmax regression on the real MNIST
    history = json.loads((out / "history.json").read_text())["history"]
    assert history[0]["epoch"] == 1 and history[0]["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert (out / "checkpoint.npz").exists()
    assert (out / "curves.png").exists() or pytest.importorskip("matplotlib") is None


def test_bad_arguments_exit_with_usage():
    result = subprocess.run([sys.executable, "-m", "fnn", "train", "--optimizer", "lbfgs"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 2 and "invalid choice: 'lbfgs'" in result.stderr


def test_gradcheck_command_prints_an_agreeing_table(capsys):
    assert main(["gradcheck", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "all leaves agree" in out and "1.weight" in out and "FAIL" not in out


def test_fashion_mnist_from_a_data_dir_that_lacks_it_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("FNN_DATA_DIR", raising=False)
    if os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Debian's Fashion-MNIST is installed here, so the search would find it")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path), "--epochs", "1",
              "--out", str(tmp_path / "run"), "--no-progress"])

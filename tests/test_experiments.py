"""Every experiment script runs end to end in --quick mode, so none of them rots.

Each runs in its own process (as a reader would run it), must exit 0 and write its
results.json. The full runs and their figures are recorded in experiments/README.md.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Modules the scripts import, not scripts: common.py (plumbing), benchmark_peers.py (the peer
# libraries' epochs for benchmark_training.py, tested in test_benchmark_peers.py).
MODULES = {"common.py", "benchmark_peers.py"}
SCRIPTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if p.name not in MODULES)


def test_there_are_experiments():
    assert len(SCRIPTS) >= 12


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_quick_mode_runs_and_writes_results(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results, "results.json is empty"


def test_benchmark_training_peer_row_without_its_library_is_a_one_line_error(tmp_path):
    # The peer rows are optional (the bench extra); asking for one that cannot import must say
    # which library is missing, on one line with argparse's exit status, not a traceback.
    if importlib.util.find_spec("flax") is not None:
        pytest.skip("flax is importable here: the flax-nnx row would run")
    script = ROOT / "experiments" / "benchmark_training.py"
    result = subprocess.run(
        [sys.executable, str(script), "--impls", "flax-nnx", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: --impls flax-nnx: flax" in lines[0], result.stderr
    assert "bench extra" in lines[0]

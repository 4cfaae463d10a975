"""Every experiment script runs end to end in --quick mode, so none of them rots.

Each runs in its own process (as a reader would run it), must exit 0 and write its
results.json. The full runs and their figures are recorded in experiments/README.md.
"""

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

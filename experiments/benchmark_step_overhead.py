"""Per-step overhead of a scanned training epoch: µs per step of a tiny model, where the
arithmetic is negligible and what is left is the cost of a step itself.

Issue 12 asks fnn to stay at <= 0.1 ms per step in a scanned epoch. This script measures it
on the benchmark_training workload shrunk until its matmuls cost almost nothing: the same
layers (Linear -> BatchNorm1d -> ReLU -> Dropout(0.2) twice, then Linear), loss and optimizer
(SGD lr 0.01, momentum 0.9, weight decay 1e-4 on the matrices), at 32 input features, 32
hidden units, 10 classes and batch 32, on synthetic data (32,768 rows of uniform features and
random labels, so 1024 steps an epoch). The rows are benchmark_training's own builders with
its module constants ``IN, H, OUT`` set to the tiny sizes: fnn's ``make_train_epoch``
(autodiff and manual), the hand-written pure-JAX ``lax.scan`` epoch, Flax NNX and Equinox
where importable (the ``bench`` extra), and PyTorch eager where torch is importable (one
intra-op thread: at this size more threads only add synchronization).

µs/step is the fastest timed epoch's wall time divided by its steps; every row runs
``--rounds`` times, rows interleaved, and keeps its best epoch, so a burst of load from
other processes slows one round, not one row. The whole step is in the number (shuffle
gather, forward, backward, update, divergence guard and per-step metrics for fnn), so it is
an upper bound on the overhead. Target: fnn autodiff and manual <= 100 µs/step.

``--quick`` runs 2048 rows, one round of one timed epoch, and judges nothing.
"""

from __future__ import annotations

import importlib.util
import os

import benchmark_training as bt
import common
import numpy as np

NAME = "benchmark_step_overhead"
TINY = {"IN": 32, "H": 32, "OUT": 10}
BATCH = 32
TARGET_US = 100.0
FNN_IMPLS = ("fnn-autodiff", "fnn-manual")


def _options(parser) -> None:
    parser.add_argument("--rounds", type=int, default=None, help="sweeps over the rows (default 3, quick 1)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per row and round (default 5)")
    parser.add_argument("--samples", type=int, default=None, help="rows of data (default 32768, quick 2048)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager row")


def tiny_data(samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform features and random labels: the values do not change the work."""
    rng = np.random.default_rng(0)
    x = rng.random((samples, TINY["IN"]), dtype=np.float32)
    return x, rng.integers(0, TINY["OUT"], samples).astype(np.int32)


def impls(with_torch: bool) -> list[str]:
    """The rows this interpreter can run."""
    rows = [*FNN_IMPLS, "pure-jax", *bt.peers_available()]
    if with_torch and importlib.util.find_spec("torch") is not None:
        rows.append("torch-1t")
    return rows


def run(impl: str, x: np.ndarray, y: np.ndarray, epochs: int) -> list[float]:
    """The row's timed epochs, in seconds."""
    if impl == "torch-1t":
        return bt.run_torch_row(BATCH, x, y, epochs, threads=1)["epoch_s"]
    row = bt.run_jax_row(impl, BATCH, x, y, epochs)
    if row["recompiles"]:
        raise RuntimeError(f"{impl} recompiled {row['recompiles']} time(s) during its timed epochs")
    return row["epoch_s"]


def main() -> None:
    args = common.parse_args(NAME, __doc__.split("\n")[0], _options)
    rounds = args.rounds or (1 if args.quick else 3)
    epochs = args.epochs or (1 if args.quick else 5)
    samples = args.samples or (2048 if args.quick else 32768)
    for name, value in TINY.items():  # benchmark_training's builders read these at call time
        setattr(bt, name, value)
    x, y = tiny_data(samples)
    steps = samples // BATCH
    rows = impls(with_torch=not args.no_torch)
    print(
        f"{NAME}: MLP {TINY['IN']}-{TINY['H']}-{TINY['H']}-{TINY['OUT']}, batch {BATCH}, {steps} steps "
        f"per epoch, {rounds} round(s) of {epochs} timed epoch(s), load average {os.getloadavg()[0]:.2f}"
    )
    times: dict[str, list[float]] = {impl: [] for impl in rows}
    for rnd in range(rounds):
        for impl in rows:
            times[impl] += run(impl, x, y, epochs)
            print(f"  round {rnd + 1}  {impl:13s} best epoch {min(times[impl]) * 1e3:8.1f} ms")

    us = {impl: 1e6 * min(t) / steps for impl, t in times.items()}
    table = [
        {
            "impl": impl,
            "µs/step (best)": round(us[impl], 1),
            "µs/step (median)": round(1e6 * float(np.median(times[impl])) / steps, 1),
            "vs pure-jax": round(us[impl] / us["pure-jax"], 2),
        }
        for impl in rows
    ]
    print()
    common.print_table(table)
    checks = [
        {"check": f"{impl} µs/step", "value": v, "target": f"<= {TARGET_US:.0f}", "pass": v <= TARGET_US}
        for impl, v in ((impl, us[impl]) for impl in FNN_IMPLS)
    ]
    for c in checks:
        verdict = "(quick: not judged)" if args.quick else ("PASS" if c["pass"] else "MISS")
        print(f"{c['check']:24s} {c['value']:8.1f}  target {c['target']}  {verdict}")
    results = {
        "config": {
            "model": TINY,
            "batch": BATCH,
            "samples": samples,
            "steps_per_epoch": steps,
            "rounds": rounds,
            "timed_epochs": epochs,
            "quick": args.quick,
        },
        "epoch_s": times,
        "us_per_step": us,
        "checks": checks,
        "load_average": os.getloadavg(),
    }
    print(f"results: {common.save_json(args.out, results)}")


if __name__ == "__main__":
    main()

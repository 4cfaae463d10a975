"""Learning rate: too small crawls, about right converges, too big diverges.

Course claim: gradient descent has three regimes in the step size. Too small and the loss
falls, but slowly; about right and it converges fast; too big and each step overshoots
the valley, so the loss oscillates or blows up (to inf/NaN). Plain SGD (no momentum) on an
MLP 784-512-512-10 without batch norm or dropout, MNIST, the same key for every lr.
Per-step losses come from ``fnn.train.make_train_epoch`` with ``fnn.diagnostics``' probe
on at every step (``common.train_monitored``), whose diagnoses each run records; a
diverging run is stopped at its first non-finite loss or gradient norm. The same
diverging lr is also run through ``fnn.train.fit``, which raises FloatingPointError
naming the epoch and step: the script records its message.
"""

from __future__ import annotations

import math
import time

import common
import jax
import numpy as np

import fnn.functional as F
from fnn import diagnostics, models, optim, train

NAME = "learning_rates"
LRS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
REGIMES = {1e-4: "too small", 1e-1: "about right", 10.0: "too big"}  # the three drawn bold


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    n_train, n_test, epochs = (2048, 512, 1) if args.quick else (60000, 10000, 3)
    train_data, test_data = common.mnist(n_train, n_test)
    model = models.mlp(batch_norm=False, dropout=0.0)
    batch_size, key = 128, jax.random.key(0)
    # --quick: one lr that trains and one that diverges (each lr compiles its own epoch, seconds).
    lrs = [0.1, 10.0] if args.quick else LRS
    # One optimizer object per lr: fit below reuses it, and the compiled epoch is memoized on it.
    optimizers = {lr: optim.sgd(lr=lr) for lr in lrs}

    curves, diagnoses, rows = {}, {}, []
    k_init, k_train = jax.random.split(key)
    for lr in lrs:
        t0 = time.perf_counter()
        params, state = model.init(k_init)
        params, state, losses, history, diverged_at = common.train_monitored(
            model,
            F.cross_entropy,
            optimizers[lr],
            params,
            state,
            train_data,
            epochs=epochs,
            batch_size=batch_size,
            key=k_train,
            probe=diagnostics.Probe(every=1),  # a too-big lr diverges within the first 14 steps
        )
        diverged = diverged_at is not None
        curves[lr], diagnoses[lr] = losses, common.findings(history)
        finite = np.asarray(losses)[np.isfinite(losses)]
        rows.append(
            {
                "lr": lr,
                "regime": REGIMES.get(lr, ""),
                "first loss": losses[0],
                "loss at step 100": losses[99] if len(losses) > 99 else math.nan,
                "final loss (last 50 steps)": math.nan if diverged else float(np.mean(losses[-50:])),
                "max finite loss": float(finite.max()) if finite.size else math.nan,
                "diverged at step": diverged_at or "-",
                "test acc": math.nan
                if diverged
                else train.evaluate(model, params, state, test_data)["accuracy"],
                "diagnoses": common.summarize_findings(diagnoses[lr]),
                "seconds": time.perf_counter() - t0,
            }
        )
    print(
        f"Plain SGD, MNIST MLP 784-512-512-10 (no BN/dropout), batch {batch_size}, {epochs} epoch(s), "
        f"{n_train} train / {n_test} test:"
    )
    common.print_table(rows)

    # The same divergence through fit: it raises instead of training on NaN.
    big = max(REGIMES)
    try:
        train.fit(
            model,
            F.cross_entropy,
            optimizers[big],
            train_data,
            epochs=epochs,
            batch_size=batch_size,
            key=key,
            progress=False,
        )
        fit_error = None
    except FloatingPointError as err:
        fit_error = str(err)
    print(f"\nfit at lr {big}: " + (f"FloatingPointError: {fit_error}" if fit_error else "no error raised"))

    wall = time.perf_counter() - t_start
    results = {
        "quick": args.quick,
        "epochs": epochs,
        "batch_size": batch_size,
        "n_train": n_train,
        "n_test": n_test,
        "table": rows,
        "step_losses": {str(lr): c for lr, c in curves.items()},
        "diagnoses": {str(lr): d for lr, d in diagnoses.items()},
        "fit_error_at_big_lr": fit_error,
        "wall_seconds": wall,
    }
    common.save_json(args.out, results)

    plot(results, args.out)
    print(f"wall time: {wall:.1f} s")


def plot(results: dict, out: str) -> None:
    plt = common.pyplot()
    if plt is None:
        return
    regimes = {str(k): v for k, v in REGIMES.items()}
    palette = {
        "0.0001": "tab:blue",
        "0.001": "tab:cyan",
        "0.01": "tab:olive",
        "0.1": "tab:green",
        "1.0": "tab:orange",
        "10.0": "tab:red",
    }
    gone = {str(row["lr"]): row["diverged at step"] for row in results["table"]}
    fig, (ax_all, ax_zoom) = plt.subplots(1, 2, figsize=(12, 4.8))
    for lr, losses in results["step_losses"].items():
        losses = np.asarray(losses, dtype=float)
        steps = np.arange(1, len(losses) + 1)
        finite = np.isfinite(losses)
        label = f"lr {float(lr):g}" + (f" ({regimes[lr]})" if lr in regimes else "")
        if gone[lr] != "-":  # a non-finite loss or gradient norm
            label += f": diverged at step {gone[lr]}"
        bold = lr in regimes
        kw = dict(color=palette.get(lr), lw=1.6 if bold else 0.8, alpha=1.0 if bold else 0.6, label=label)
        y = np.where(finite, losses, np.nan)
        ax_all.loglog(steps, y, **kw)
        ax_zoom.semilogy(steps[:40], y[:40], marker=".", **kw)
    ax_all.set_ylim(0.01, 30)
    ax_all.set_title("whole run (diverging runs leave the top of the plot)")
    ax_all.set_xlabel("step (batch of 128, log scale)")
    ax_zoom.set_title("first 40 steps: a too-big lr blows up")
    ax_zoom.set_xlabel("step (batch of 128)")
    for ax in (ax_all, ax_zoom):
        ax.set_ylabel("training cross-entropy per step (log)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Plain SGD on an MNIST MLP (784-512-512-10): three learning-rate regimes")
    common.save_figure(fig, out, "loss_vs_step.png")


if __name__ == "__main__":
    main()

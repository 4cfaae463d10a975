"""LR range test: one cheap sweep finds a learning rate that trains as well as a hand-picked one.

Course claim (Smith 2015, "Cyclical learning rates for training neural networks"): train a
few steps while the learning rate grows exponentially and watch the loss. It barely moves
at tiny rates, falls fast in a middle range, and blows up past the largest stable rate; a
rate somewhat below where the loss bottoms out trains well, without a grid search.

Setup: the default MLP of ``python -m fnn train`` (784-512-512-10, BatchNorm, Dropout 0.2,
ReLU, torch init) with SGD momentum 0.9 and weight decay 5e-4. ``fnn.diagnostics.lr_find``
runs 100 steps of batch 128 from 1e-7 to 10 and suggests (lr at the smoothed minimum) / 10,
read from the training loss only. Then the same model (same key, so the same init) is
trained with the CLI's default schedule (cosine annealing over 10 epochs, batch 128) at the
suggested lr and at each of the course's values from ``learning_rates.py``; a run whose
loss becomes non-finite is reported as diverged (``fit`` raises ``TrainingDiverged``).
"""

from __future__ import annotations

import time

import common
import jax
import numpy as np
from learning_rates import LRS

from fnn import models, nn, optim, train
from fnn.diagnostics import lr_find

NAME = "lr_range_test"
MOMENTUM, WEIGHT_DECAY, BATCH_SIZE = 0.9, 5e-4, 128  # python -m fnn train's defaults


def sgd(lr):
    return optim.sgd(lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def train_at(model, lr, train_data, test_data, epochs, key):
    """The CLI's default recipe at ``lr``: cosine annealing over the whole run."""
    steps_per_epoch = len(train_data[0]) // BATCH_SIZE
    opt = sgd(optim.cosine_annealing_lr(lr, T_max=epochs * steps_per_epoch))
    t0 = time.perf_counter()
    try:
        result = train.fit(
            model,
            nn.CrossEntropyLoss(),
            opt,
            train_data,
            epochs=epochs,
            batch_size=BATCH_SIZE,
            key=key,
            eval_data=test_data,
            progress=False,
        )
    except train.TrainingDiverged as err:
        return {
            "lr": lr,
            "test acc": float("nan"),
            "test loss": float("nan"),
            "diverged": f"epoch {err.epoch}, step {err.step}",
            "seconds": time.perf_counter() - t0,
        }
    last = result.history[-1]
    return {
        "lr": lr,
        "test acc": last["test_accuracy"],
        "test loss": last["test_loss"],
        "diverged": "-",
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    n_train, n_test, epochs, steps = (2048, 512, 1, 30) if args.quick else (60000, 10000, 10, 100)
    train_data, test_data = common.mnist(n_train, n_test)
    model, key = models.mlp(), jax.random.key(0)

    t0 = time.perf_counter()
    found = lr_find(
        model,
        nn.CrossEntropyLoss(),
        sgd,
        train_data,
        key=key,
        min_lr=1e-7,
        max_lr=10.0,
        steps=steps,
        batch_size=BATCH_SIZE,
    )
    find_seconds = time.perf_counter() - t0
    best = int(np.argmin(np.where(found.valid, found.smoothed, np.inf)))
    print(
        f"LR range test, {steps} steps of batch {BATCH_SIZE} from 1e-7 to 10 ({find_seconds:.1f} s): "
        f"smoothed loss lowest ({found.smoothed[best]:.3f}) at lr {found.lrs[best]:.3g}; "
        + (
            f"diverged (smoothed > 4x its minimum) at lr {found.lrs[found.diverged_at]:.3g}"
            if found.diverged_at is not None
            else "no divergence by the 4x rule within the range"
        )
    )
    print(f"suggested lr {found.suggested_lr:.4g}: {found.rule}")

    # --quick: one course value (each lr compiles its own epoch, seconds), the largest one.
    lrs = [found.suggested_lr] + ([10.0] if args.quick else LRS)
    rows = []
    for lr in lrs:
        row = train_at(model, lr, train_data, test_data, epochs, key)
        row["source"] = "suggested" if lr == found.suggested_lr else "course"
        rows.append(row)
        print(
            f"  lr {lr:.4g} ({row['source']}): test acc {row['test acc']:.4f}, "
            f"diverged {row['diverged']} ({row['seconds']:.0f} s)",
            flush=True,
        )
    print(
        f"\nDefault MLP, SGD momentum {MOMENTUM}, weight decay {WEIGHT_DECAY}, cosine over {epochs} "
        f"epoch(s) of batch {BATCH_SIZE}, {n_train} train / {n_test} test:"
    )
    common.print_table(rows, ["lr", "source", "test acc", "test loss", "diverged", "seconds"])

    wall = time.perf_counter() - t_start
    results = {
        "quick": args.quick,
        "n_train": n_train,
        "n_test": n_test,
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "momentum": MOMENTUM,
        "weight_decay": WEIGHT_DECAY,
        "range_test": {
            "min_lr": 1e-7,
            "max_lr": 10.0,
            "steps": steps,
            "seconds": find_seconds,
            "lrs": found.lrs.tolist(),
            "losses": [v if np.isfinite(v) else None for v in found.losses.tolist()],
            "smoothed": [v if np.isfinite(v) else None for v in found.smoothed.tolist()],
            "diverged_at": found.diverged_at,
            "lr_at_minimum": float(found.lrs[best]),
            "suggested_lr": found.suggested_lr,
            "rule": found.rule,
        },
        "table": rows,
        "wall_seconds": wall,
    }
    common.save_json(args.out, results)
    plot(results, args.out)
    print(f"wall time: {wall:.1f} s")


def plot(results: dict, out: str) -> None:
    plt = common.pyplot()
    if plt is None:
        return
    rt = results["range_test"]
    lrs = np.asarray(rt["lrs"])
    losses = np.asarray([np.nan if v is None else v for v in rt["losses"]])
    smoothed = np.asarray([np.nan if v is None else v for v in rt["smoothed"]])
    end = len(lrs) if rt["diverged_at"] is None else rt["diverged_at"]
    fig, (ax_curve, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.8))
    ax_curve.semilogx(lrs, losses, color="0.6", lw=0.8, label="raw loss per step")
    ax_curve.semilogx(lrs[:end], smoothed[:end], color="tab:blue", lw=2, label="smoothed (EMA, β = 0.98)")
    if end < len(lrs):
        ax_curve.semilogx(lrs[end:], smoothed[end:], color="tab:blue", lw=1, ls=":", label="after divergence")
    ax_curve.axvline(
        rt["lr_at_minimum"], color="tab:orange", ls="--", label=f"minimum: {rt['lr_at_minimum']:.3g}"
    )
    ax_curve.axvline(
        rt["suggested_lr"], color="tab:green", lw=2, label=f"suggested: {rt['suggested_lr']:.3g}"
    )
    finite = losses[np.isfinite(losses)]
    ax_curve.set_ylim(0, min(float(finite.max()), 3 * float(finite[0])) * 1.05)
    ax_curve.set(
        xlabel="learning rate (log scale)",
        ylabel="training cross-entropy",
        title=f"LR range test: {rt['steps']} steps of batch {results['batch_size']}",
    )
    ax_curve.legend(fontsize=8)
    ax_curve.grid(alpha=0.3)

    floor = 88.0  # zoom on the top: a failed run is drawn on the floor with its number
    for row in results["table"]:
        acc = 100 * row["test acc"] if np.isfinite(row["test acc"]) else None
        suggested = row["source"] == "suggested"
        y = floor if acc is None or acc < floor else acc
        color = "tab:green" if suggested else ("tab:red" if y == floor else "tab:blue")
        marker = "*" if suggested else ("v" if y == floor else "o")
        ax_acc.semilogx(row["lr"], y, marker=marker, ms=16 if suggested else 8, color=color, ls="none")
        text = "diverged" if acc is None else f"{acc:.2f}%"
        # the suggestion sits next to a course value: its label goes below, theirs above
        offset = (0, -20) if suggested else (0, 9)
        ax_acc.annotate(
            text, (row["lr"], y), textcoords="offset points", xytext=offset, ha="center", fontsize=8
        )
    ax_acc.axhline(98, color="0.5", ls="--", lw=1, label="98%")
    ax_acc.plot([], [], "g*", ms=12, label="suggested lr")
    ax_acc.plot([], [], "o", color="tab:blue", label="course lr values")
    ax_acc.plot([], [], "v", color="tab:red", label=f"below {floor:.0f}% (value shown)")
    ax_acc.set(
        xlabel="peak learning rate (cosine schedule, log scale)",
        ylabel="test accuracy (%)",
        ylim=(floor - 1.5, 100),
        title=f"test accuracy after {results['epochs']} epoch(s)",
    )
    ax_acc.legend(fontsize=8, loc="lower left")
    ax_acc.grid(alpha=0.3)
    fig.suptitle("Default MLP on MNIST, SGD momentum 0.9: the range test's suggestion vs the course's values")
    common.save_figure(fig, out, "lr_range_test.png")


if __name__ == "__main__":
    main()

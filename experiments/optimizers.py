"""Optimizers: SGD, SGD with momentum, AdaGrad, RMSProp, Adam and AdamW on one MLP.

Course claim: momentum and the adaptive methods (AdaGrad, RMSProp, Adam, AdamW) reach a
low training loss in fewer epochs than plain SGD; the course's momentum setting is
lr 1e-3, μ 0.99, λ 1e-4 (effective step lr/(1-μ) = 0.1). Every run uses the same model
(fnn.models.mlp: 784-512-512-10 with batch norm and dropout 0.2), the same data order
and initial weights (the same key), the same epochs and batch size; only the optimizer
changes. Weight decay follows fnn's default mask (weights only, not biases or BN scales).
"""

from __future__ import annotations

import time

import common
import jax

import fnn.functional as F
from fnn import models, optim, train

NAME = "optimizers"
# name -> (optimizer, one-line description of its hyperparameters)
OPTIMIZERS = {
    "SGD": (optim.sgd(lr=0.01), "lr 0.01"),
    "SGD+momentum (course)": (
        optim.sgd(lr=1e-3, momentum=0.99, weight_decay=1e-4),
        "lr 1e-3, momentum 0.99, wd 1e-4",
    ),
    "SGD+momentum (tuned)": (
        optim.sgd(lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True),
        "lr 0.05, Nesterov momentum 0.9, wd 1e-4",
    ),
    "AdaGrad": (optim.adagrad(lr=0.01), "lr 0.01"),
    "RMSProp": (optim.rmsprop(lr=1e-3), "lr 1e-3, alpha 0.99"),
    "Adam": (optim.adam(lr=1e-3), "lr 1e-3, betas (0.9, 0.999)"),
    "AdamW": (optim.adamw(lr=1e-3, weight_decay=1e-2), "lr 1e-3, wd 1e-2 (decoupled)"),
}


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    n_train, n_test, epochs = (2048, 512, 1) if args.quick else (60000, 10000, 6)
    train_data, test_data = common.mnist(n_train, n_test)
    hidden = (64, 64) if args.quick else (512, 512)  # --quick: the same layers, narrower
    model = models.mlp(hidden=hidden)
    batch_size, key = 128, jax.random.key(0)

    # --quick compiles only two of the seven (each optimizer is a fresh compile of the epoch).
    names = ["SGD+momentum (course)", "Adam"] if args.quick else list(OPTIMIZERS)
    histories, rows = {}, []
    for name in names:
        opt, hyper = OPTIMIZERS[name]
        t0 = time.perf_counter()
        result = train.fit(
            model,
            F.cross_entropy,
            opt,
            train_data,
            epochs=epochs,
            batch_size=batch_size,
            key=key,
            eval_data=test_data,
            progress=False,
        )
        seconds = time.perf_counter() - t0
        histories[name] = result.history
        last = result.history[-1]
        best = max(h["test_accuracy"] for h in result.history)
        rows.append(
            {
                "optimizer": name,
                "hyperparameters": hyper,
                "epoch-1 train loss": result.history[0]["train_loss"],
                "final train loss": last["train_loss"],
                "final test acc": last["test_accuracy"],
                "best test acc": best,
                "seconds": seconds,
            }
        )
        print(f"{name}: done in {seconds:.1f} s", flush=True)
    print(
        f"\nMNIST, mlp() 784-{'-'.join(map(str, hidden))}-10 (BN, dropout 0.2), "
        f"batch {batch_size}, {epochs} epoch(s), "
        f"{n_train} train / {n_test} test, key 0:"
    )
    common.print_table(rows)

    wall = time.perf_counter() - t_start
    common.save_json(
        args.out,
        {
            "quick": args.quick,
            "hidden": list(hidden),
            "epochs": epochs,
            "batch_size": batch_size,
            "n_train": n_train,
            "n_test": n_test,
            "table": rows,
            "histories": histories,
            "wall_seconds": wall,
        },
    )

    plt = common.pyplot()
    if plt is not None:
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
        for name in names:
            hist = histories[name]
            ep = [h["epoch"] for h in hist]
            style = "--" if name.startswith("SGD") else "-"
            ax_loss.semilogy(ep, [h["train_loss"] for h in hist], style, marker="o", ms=3, label=name)
            ax_acc.plot(ep, [100 * h["test_accuracy"] for h in hist], style, marker="o", ms=3, label=name)
        ax_loss.set_title("training loss per epoch (mean over the epoch's steps)")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("train cross-entropy (log)")
        ax_acc.set_title("test accuracy after each epoch")
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylabel("test accuracy (%)")
        lo = min(100 * h["test_accuracy"] for hs in histories.values() for h in hs)
        ax_acc.set_ylim(max(lo - 0.5, 90.0) if not args.quick else None, None)
        for ax in (ax_loss, ax_acc):
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Optimizers on the same MLP, data order and initial weights (MNIST)")
        common.save_figure(fig, args.out, "optimizers.png")
    print(f"wall time: {wall:.1f} s")


if __name__ == "__main__":
    main()

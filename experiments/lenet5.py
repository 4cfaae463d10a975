"""LeNet-5 on MNIST: the paper's 0.95% test error, reproduced.

Claim tested: LeCun et al. 1998 (Table/Fig. 9; the MNIST page's row "LeNet-5, 0.95") report
0.95% test error for LeNet-5 trained without distortions. ``fnn.models.lenet5()`` (its
docstring lists the departures: 28×28 input padded by 2, full C3 connections, average
pooling for the trainable subsampling, softmax cross-entropy for the RBF output) is trained
with the command line's defaults for every other choice, so each seed's run here is exactly
``python -m fnn train --model lenet5 --epochs 20 --seed S``: SGD with momentum 0.9, lr 0.1
on a cosine schedule to 0, weight decay 5e-4 on the weights, batch 128, no augmentation.

Writes results.json (each seed's per-epoch history and final test error, their mean and
sample std, the paper's number) and lenet5.png (test error per epoch, the paper's line).
``--quick``: one seed, one epoch on 2,048 training images.
"""

from __future__ import annotations

import statistics

import common  # puts the repository root on sys.path
import jax

from fnn import models, nn, runs, train

NAME = "lenet5"
PAPER_ERROR = 0.95  # % test error, LeCun et al. 1998, LeNet-5 without distortions


def config(epochs: int) -> dict:
    """The command line's run config for ``train --model lenet5`` (its defaults)."""
    return dict(
        model="lenet5",
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        epochs=epochs,
        batch_size=128,
    )


def run(seed: int, cfg: dict, n_train: int | None) -> dict:
    """One seed's training run, as ``python -m fnn train`` does it (probe off: it changes
    nothing the epoch computes)."""
    (x_train, y_train), test = runs.load_data("mnist", None)
    train_data = (x_train[:n_train], y_train[:n_train])
    result = train.fit(
        models.lenet5(),
        nn.CrossEntropyLoss(),
        runs.build_optimizer(cfg, len(train_data[0]) // cfg["batch_size"]),
        train_data,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        key=jax.random.key(seed),
        eval_data=test,
        progress=False,
    )
    errors = [100 * (1 - h["test_accuracy"]) for h in result.history]
    print(f"seed {seed}: test error {errors[-1]:.2f}% after {len(errors)} epochs")
    return {"seed": seed, "test_error": errors[-1], "test_error_per_epoch": errors}


def main() -> None:
    args = common.parse_args(
        NAME,
        __doc__.splitlines()[0],
        extra=lambda p: p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2]),
    )
    cfg = config(epochs=1 if args.quick else 20)
    seeds = args.seeds[:1] if args.quick else args.seeds
    per_seed = [run(s, cfg, 2048 if args.quick else None) for s in seeds]
    errors = [r["test_error"] for r in per_seed]
    mean = statistics.mean(errors)
    std = statistics.stdev(errors) if len(errors) > 1 else 0.0
    rows = [
        {"model": "LeNet-5, LeCun et al. 1998 (no distortions)", "test error %": PAPER_ERROR},
        {"model": f"fnn lenet5, {len(errors)} seed(s), mean ± sd", "test error %": f"{mean:.2f} ± {std:.2f}"},
    ]
    common.print_table(rows)
    common.save_json(
        args.out, {"config": cfg, "paper_error": PAPER_ERROR, "runs": per_seed, "mean": mean, "std": std}
    )
    plt = common.pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in per_seed:
            ax.plot(
                range(1, len(r["test_error_per_epoch"]) + 1),
                r["test_error_per_epoch"],
                label=f"seed {r['seed']}",
            )
        ax.axhline(PAPER_ERROR, color="k", linestyle="--", label="paper: 0.95%")
        ax.set(xlabel="epoch", ylabel="test error (%)", ylim=(0, 3), title="LeNet-5 on MNIST")
        ax.legend()
        common.save_figure(fig, args.out, NAME)


if __name__ == "__main__":
    main()

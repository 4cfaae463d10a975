"""MLP on MNIST: plain vs +BatchNorm vs +Dropout vs both, same optimizer and epochs.

The course's claims: a two-hidden-layer MLP passes 98% test accuracy on MNIST; without
regularization it overfits (train loss goes to ~0 while test loss turns back up);
dropout narrows the train/test gap; batch normalization speeds up early training.
All four variants are ``fnn.models.mlp(hidden=(512, 512))`` with the ``batch_norm`` and
``dropout`` switches, trained by the same SGD + momentum with a cosine schedule, the same
number of epochs, the same seed (so the same initial Linear weights and batch order).

Writes results.json (per-variant histories and summary) and curves.png (train/test loss
and accuracy per epoch, one colour per variant). ``fit(probe=True)`` collects the per-layer
statistics and ``fnn.diagnostics.diagnose`` names what each variant's run shows.
"""

from __future__ import annotations

import time

import common  # puts the repository root on sys.path
import jax

from fnn import functional as F
from fnn import models, nn, optim, train

NAME = "mlp_regularization"
VARIANTS = {  # label -> (batch_norm, dropout)
    "plain": (False, 0.0),
    "+BatchNorm": (True, 0.0),
    "+Dropout(0.2)": (False, 0.2),
    "+BatchNorm +Dropout(0.2)": (True, 0.2),
}


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    config = dict(
        hidden=(64, 64) if args.quick else (512, 512),
        epochs=1 if args.quick else 15,
        batch_size=128,
        lr=0.05,
        momentum=0.9,
        schedule="cosine to 0 over the run",
        seed=0,
        n_train=2000 if args.quick else 60000,
        n_test=500 if args.quick else 10000,
    )

    train_data, test_data = common.mnist(config["n_train"], config["n_test"])
    steps = config["epochs"] * (config["n_train"] // config["batch_size"])

    # --quick compiles only the two extremes (each variant is a fresh compile of seconds).
    variants = {k: VARIANTS[k] for k in ("plain", "+BatchNorm +Dropout(0.2)")} if args.quick else VARIANTS
    runs, rows = {}, []
    for label, (batch_norm, dropout) in variants.items():
        model = models.mlp(hidden=config["hidden"], batch_norm=batch_norm, dropout=dropout)
        optimizer = optim.sgd(
            lr=optim.cosine_annealing_lr(config["lr"], T_max=steps), momentum=config["momentum"]
        )
        t0 = time.perf_counter()
        result = train.fit(
            model,
            F.cross_entropy,
            optimizer,
            train_data,
            epochs=config["epochs"],
            batch_size=config["batch_size"],
            key=jax.random.key(config["seed"]),
            eval_data=test_data,
            progress=False,
            probe=True,
        )
        h = result.history
        summary = {
            "variant": label,
            "params": nn.num_params(result.params),
            "final_train_loss": h[-1]["train_loss"],
            "final_test_loss": h[-1]["test_loss"],
            "min_test_loss": min(r["test_loss"] for r in h),
            "epoch1_test_acc": h[0]["test_accuracy"],
            "final_train_acc": h[-1]["train_accuracy"],
            "final_test_acc": h[-1]["test_accuracy"],
            "best_test_acc": max(r["test_accuracy"] for r in h),
            "seconds": time.perf_counter() - t0,
            "diagnoses": common.summarize_findings(found := common.findings(h)),
        }
        runs[label] = dict(
            batch_norm=batch_norm, dropout=dropout, history=h, summary=summary, diagnoses=found
        )
        rows.append(summary)
        print(f"{label}: final test accuracy {summary['final_test_acc']:.4f}; {summary['diagnoses']}")

    best = max(rows, key=lambda r: r["final_test_acc"])
    wall = time.perf_counter() - t_start
    results = {
        "experiment": NAME,
        "quick": args.quick,
        "config": config,
        "runs": runs,
        "best_variant": best["variant"],
        "best_final_test_accuracy": best["final_test_acc"],
        "wall_seconds": wall,
    }
    common.print_table(rows, [k for k in rows[0] if k != "params"])
    print(
        f"best: {best['variant']} at {best['final_test_acc']:.4f} final test accuracy "
        f"(course: >= 0.98); wall {wall:.1f} s"
    )

    plt = common.pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
        colors = dict(zip(VARIANTS, ["tab:red", "tab:blue", "tab:green", "tab:purple"], strict=True))
        for label, run in runs.items():
            h = run["history"]
            ep = [r["epoch"] for r in h]
            c = colors[label]
            axes[0].plot(ep, [r["train_loss"] for r in h], "--", color=c)
            axes[0].plot(ep, [r["test_loss"] for r in h], "-", color=c, label=label)
            axes[1].plot(ep, [100 * r["train_accuracy"] for r in h], "--", color=c)
            axes[1].plot(ep, [100 * r["test_accuracy"] for r in h], "-", color=c, label=label)
        axes[0].set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="Loss (log scale)")
        axes[1].set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
        if not args.quick:
            axes[1].set_ylim(95, 100.2)
        axes[1].axhline(98, color="gray", lw=1, ls=":")
        from matplotlib.lines import Line2D

        style = [
            Line2D([], [], color="black", ls="-", label="test (end of epoch)"),
            Line2D([], [], color="black", ls="--", label="train (mean over epoch)"),
        ]
        axes[0].legend(handles=axes[0].get_legend_handles_labels()[0] + style, fontsize=8)
        axes[1].legend(handles=axes[1].get_legend_handles_labels()[0] + style, fontsize=8, loc="lower right")
        for ax in axes:
            ax.grid(alpha=0.3, which="both")
        fig.suptitle(
            f"MLP 784-{'-'.join(map(str, config['hidden']))}-10 on MNIST, SGD momentum "
            f"{config['momentum']}, lr {config['lr']} cosine, {config['epochs']} epochs "
            f"(dotted line: 98%)"
        )
        common.save_figure(fig, args.out, "curves.png")

    common.save_json(args.out, results)


if __name__ == "__main__":
    main()

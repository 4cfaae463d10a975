"""Dead ReLUs: hidden units that never fire on the training set, vs learning rate and init.

Course claim: a ReLU unit whose pre-activation is negative for every input gets zero
gradient and can never recover ("dies"). Large learning rates (one big update can push a
unit's bias far negative) and bad initializations (a negative bias shift) kill many units,
and the network's accuracy suffers. LeakyReLU (slope 0.01) and ELU keep a non-zero gradient
for negative inputs, so under the same settings their units can recover and the accuracy
holds.

A unit counts as dead when it is never positive on a batch: fnn.diagnostics' probe
(ReLU output 0 on every sample; for LeakyReLU/ELU the pre-activation <= 0 on every
sample, "never in the positive regime", although such a unit still passes gradient), at
init on one batch of 128, after training as the median over the last epoch's probed
batches; ``fnn.diagnostics.diagnose`` names what each run shows.
MLP 784-256x6-10 without batch norm or dropout, plain SGD,
batch 128, the same key for every run. Init "kaiming": weights kaiming_normal (Var 2/fan_in),
biases 0; "kaiming, bias -1": the same weights with every hidden bias set to -1. Both are
``nn.Linear(weight_init=, bias_init=)`` arguments, so the draws are fnn's own.
"""

from __future__ import annotations

import functools
import math
import statistics
import time

import common
import jax
import numpy as np

import fnn.functional as F
from fnn import init, nn, optim, train

NAME = "dead_relu"
HIDDEN = (256,) * 6
ACTIVATIONS = {"ReLU": nn.ReLU(), "LeakyReLU(0.01)": nn.LeakyReLU(0.01), "ELU(1.0)": nn.ELU(1.0)}
KAIMING = functools.partial(init.kaiming_normal, nonlinearity="relu")
INITS = {
    "kaiming": functools.partial(init.constant, val=0.0),  # name -> hidden bias init
    "kaiming, bias -1": functools.partial(init.constant, val=-1.0),
}
LRS = [0.01, 0.1, 0.3, 1.0]
COLUMNS = "activation|init|lr|dead at init|dead after|dead per layer|test acc|diverged|diagnoses".split("|")


def mlp(activation: nn.Layer, hidden_bias_init=None) -> nn.Sequential:
    """784-256x6-10 without batch norm or dropout. With ``hidden_bias_init`` its Linears
    draw Kaiming-normal weights, hidden biases from ``hidden_bias_init`` and output bias 0;
    without, they keep Linear's default init (the model that trains, see ``main``)."""

    def linear(n_in, n_out, bias_init):
        if hidden_bias_init is None:
            return nn.Linear(n_in, n_out)
        return nn.Linear(n_in, n_out, weight_init=KAIMING, bias_init=bias_init)

    layers, width = [nn.Flatten()], 784
    for h in HIDDEN:
        layers += [linear(width, h, hidden_bias_init), activation]
        width = h
    return nn.Sequential(*layers, linear(width, 10, init.zeros))


def dead_per_layer(record: dict) -> list[float]:
    """Per activation layer, the median over the record's probed points of its dead
    fraction (``fnn.diagnostics``: units never positive on a batch); NaN when none."""
    layers = [layer for layer in record["probe"]["layers"] if "dead_fraction" in layer]
    return [
        statistics.median(layer["dead_fraction"]) if layer["dead_fraction"] else math.nan for layer in layers
    ]


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    n_train, n_test, epochs = (2048, 512, 1) if args.quick else (60000, 10000, 2)
    (x_train, y_train), test_data = common.mnist(n_train, n_test)
    lrs = [0.1] if args.quick else LRS
    # --quick drops ELU: each activation compiles its own epoch (seconds), and ELU takes the
    # same "pre-activation never positive" branch of the probe as LeakyReLU.
    activations = {k: ACTIVATIONS[k] for k in ("ReLU", "LeakyReLU(0.01)")} if args.quick else ACTIVATIONS
    batch_size, key = 128, jax.random.key(0)
    k_init, k_train = jax.random.split(key)

    rows, run_args = [], dict(epochs=epochs, batch_size=batch_size, key=k_train)
    for act_name, act in activations.items():
        # The inits differ only in what init() draws, but the compiled epoch and evaluator are
        # memoized on the model, and a Linear's init functions are part of it: so both inits
        # train through this one init-free model, from the params of their own mlp(act, init).
        model = mlp(act)
        for lr in lrs:
            for init_name, bias_init in INITS.items():
                t0 = time.perf_counter()
                params, state = mlp(act, bias_init).init(k_init)
                start = common.at_init(
                    model, params, state, x_train[:batch_size], k_init, y_train[:batch_size], F.cross_entropy
                )
                params, state, _, history, diverged_at = common.train_monitored(
                    model, F.cross_entropy, optim.sgd(lr=lr), params, state, (x_train, y_train), **run_args
                )
                diverged = diverged_at is not None
                per_layer = [math.nan] * len(HIDDEN) if diverged else dead_per_layer(history[-1])
                acc = math.nan if diverged else train.evaluate(model, params, state, test_data)["accuracy"]
                found = {"at init": common.findings([start]), "training": common.findings(history)}
                rows.append(
                    {
                        "activation": act_name,
                        "init": init_name,
                        "lr": lr,
                        "dead at init": float(np.mean(dead_per_layer(start))),
                        "dead after": float(np.mean(per_layer)),
                        "dead per layer": " ".join(f"{d:.2f}" for d in per_layer),
                        "test acc": acc,
                        "diverged": f"step {diverged_at}" if diverged else "-",
                        "diagnoses": common.summarize_findings(found["training"]),
                        "findings": found,
                        "seconds": time.perf_counter() - t0,
                    }
                )
                print(f"{act_name} {init_name} lr {lr:g}: {rows[-1]['diagnoses']}", flush=True)
    print(
        f"\nDead hidden units (never positive on a batch of {batch_size}; after: median over the last "
        f"epoch's monitored batches), MLP 784-256x6-10, "
        f"plain SGD, batch {batch_size}, {epochs} epoch(s):"
    )
    common.print_table(rows, COLUMNS)

    wall = time.perf_counter() - t_start
    results = {
        "quick": args.quick,
        "hidden": list(HIDDEN),
        "epochs": epochs,
        "batch_size": batch_size,
        "n_train": n_train,
        "n_test": n_test,
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
    rows = results["table"]
    colors = dict(zip(ACTIVATIONS, ["tab:red", "tab:blue", "tab:green"], strict=True))
    markers = dict(
        zip(ACTIVATIONS, [("o", 9), ("s", 6), ("^", 6)], strict=True)
    )  # ReLU and LeakyReLU overlap
    styles = dict(zip(INITS, ["-", "--"], strict=True))
    fig, (ax_dead, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.8))
    for act_name in ACTIVATIONS:
        for init_name in INITS:
            sel = [r for r in rows if r["activation"] == act_name and r["init"] == init_name]
            lrs = np.array([r["lr"] for r in sel])
            marker, size = markers[act_name]
            kw = dict(
                color=colors[act_name],
                ls=styles[init_name],
                marker=marker,
                ms=size,
                mfc="none" if init_name != "kaiming" else colors[act_name],
                label=f"{act_name}, {init_name}",
            )
            ax_dead.plot(lrs, [100 * r["dead after"] for r in sel], **kw)
            ax_acc.plot(lrs, [100 * r["test acc"] for r in sel], **kw)
            gone = np.array([r["diverged"] != "-" for r in sel])
            if gone.any():  # a diverged run has no dead fraction or accuracy: mark it at 0
                jitter = {name: f for name, f in zip(ACTIVATIONS, (0.85, 1.0, 1.18), strict=True)}[
                    act_name
                ]  # keep x's apart
                ax_acc.plot(
                    lrs[gone] * jitter, np.zeros(gone.sum()), "x", color=colors[act_name], ms=10, mew=2
                )
    for ax in (ax_dead, ax_acc):
        ax.set_xscale("log")
        ax.set_xlabel("SGD learning rate")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax_dead.set_ylabel("hidden units never positive on a batch (%)")
    ax_dead.set_title(
        f"Dead units after {results['epochs']} epoch(s), MLP 784-256x6-10 (diverged runs not shown)"
    )
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("Test accuracy of the same runs (x at 0 = diverged to NaN)")
    common.save_figure(fig, out, "dead_fraction.png")


if __name__ == "__main__":
    main()

"""Dead ReLUs: hidden units that never fire on the training set, vs learning rate and init.

Course claim: a ReLU unit whose pre-activation is negative for every input gets zero
gradient and can never recover ("dies"). Large learning rates (one big update can push a
unit's bias far negative) and bad initializations (a negative bias shift) kill many units,
and the network's accuracy suffers. LeakyReLU (slope 0.01) and ELU keep a non-zero gradient
for negative inputs, so under the same settings their units can recover and the accuracy
holds.

A unit counts as dead when its pre-activation is <= 0 on every one of the training
samples used (for LeakyReLU/ELU the same test: "never in the positive regime"; such a
unit still passes gradient). MLP 784-256x6-10 without batch norm or dropout, plain SGD,
batch 128, the same key for every run. Init "kaiming": weights kaiming_normal (Var 2/fan_in),
biases 0; "kaiming, bias -1": the same weights with every hidden bias set to -1. Both are
``nn.Linear(weight_init=, bias_init=)`` arguments, so the draws are fnn's own.
"""

from __future__ import annotations

import functools
import math
import time

import common
import jax
import jax.numpy as jnp
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


def make_max_preactivation(model: nn.Sequential):
    """jit (params, state, x) -> per hidden Linear, the max pre-activation of each unit over x."""
    hidden = [i for i, layer in enumerate(model.layers) if isinstance(layer, nn.Linear)][:-1]

    @jax.jit
    def run(params, state, x):
        outputs = model.intermediates(params, state, x, train=False)
        return jnp.stack([jnp.max(outputs[i], axis=0) for i in hidden])  # (n_hidden_layers, width)

    return run


def dead_fraction(max_fn, params, state, x, chunk: int = 10000) -> tuple[float, list[float]]:
    """Fraction of hidden units never positive on x (overall, per layer); NaN params -> NaN."""
    m = jnp.max(
        jnp.stack([max_fn(params, state, x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]), axis=0
    )
    m = np.asarray(m)
    if not np.all(np.isfinite(m)):
        return math.nan, [math.nan] * m.shape[0]
    dead = m <= 0
    return float(dead.mean()), dead.mean(axis=1).tolist()


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    n_train, n_test, epochs = (2048, 512, 1) if args.quick else (60000, 10000, 2)
    (x_train, y_train), test_data = common.mnist(n_train, n_test)
    lrs = [0.1] if args.quick else LRS
    batch_size, key = 128, jax.random.key(0)
    k_init, k_train = jax.random.split(key)

    rows = []
    for act_name, act in ACTIVATIONS.items():
        # The inits differ only in what init() draws, but the compiled epoch and evaluator are
        # memoized on the model, and a Linear's init functions are part of it: so both inits
        # train through this one init-free model, from the params of their own mlp(act, init).
        model = mlp(act)
        max_fn = make_max_preactivation(model)
        for lr in lrs:
            opt = optim.sgd(lr=lr)
            run_epoch = train.make_train_epoch(model, F.cross_entropy, opt, batch_size)
            for init_name, bias_init in INITS.items():
                t0 = time.perf_counter()
                params, state = mlp(act, bias_init).init(k_init)
                dead0, _ = dead_fraction(max_fn, params, state, x_train)
                opt_state = opt.init(params)
                diverged = False
                for e in range(epochs):
                    params, _st, opt_state, metrics = run_epoch(
                        params, state, opt_state, jax.random.fold_in(k_train, e), x_train, y_train
                    )
                    if not np.all(np.isfinite(np.asarray(metrics["loss"]))):
                        diverged = True
                        break
                dead, per_layer = dead_fraction(max_fn, params, state, x_train)
                test = (
                    train.evaluate(model, params, state, test_data)
                    if not diverged
                    else {"accuracy": math.nan}
                )
                rows.append(
                    {
                        "activation": act_name,
                        "init": init_name,
                        "lr": lr,
                        "dead at init": dead0,
                        "dead after": dead,
                        "dead per layer": " ".join(f"{d:.2f}" for d in per_layer),
                        "test acc": test["accuracy"],
                        "diverged": "yes" if diverged else "-",
                        "seconds": time.perf_counter() - t0,
                    }
                )
                print(
                    f"{act_name:16s} {init_name:17s} lr {lr:<5g} dead {dead0:.3f} -> {dead:.3f}  "
                    f"test acc {test['accuracy']:.4f}",
                    flush=True,
                )
    print(
        f"\nDead hidden units (pre-activation <= 0 on all {n_train} training samples), MLP 784-256x6-10, "
        f"plain SGD, batch {batch_size}, {epochs} epoch(s):"
    )
    common.print_table(
        rows,
        ["activation", "init", "lr", "dead at init", "dead after", "dead per layer", "test acc", "diverged"],
    )

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
            gone = np.array([r["diverged"] == "yes" for r in sel])
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
    ax_dead.set_ylabel("hidden units never positive on the training set (%)")
    ax_dead.set_title(
        f"Dead units after {results['epochs']} epoch(s), MLP 784-256x6-10 (diverged runs not shown)"
    )
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("Test accuracy of the same runs (x at 0 = diverged to NaN)")
    common.save_figure(fig, out, "dead_fraction.png")


if __name__ == "__main__":
    main()

"""Initialization: does the signal survive 12 layers, and does the network then train?

Course claim (the constant-variance derivation): for y = W x with independent zero-mean
weights, Var(y) = fan_in · Var(w) · E[x²]. Keeping Var constant through depth needs
Var(w) = 1/fan_in for linear/tanh-like units (Xavier: 2/(fan_in+fan_out), the same here
where fan_in = fan_out) and Var(w) = 2/fan_in for ReLU, which zeroes half its input
(Kaiming/He). N(0, 1) makes the signal explode (×√fan_in per layer, tanh saturates), a
too-small variance makes it vanish, and a constant init makes every unit of a layer
identical, so a layer is effectively one unit wide.

Part 1 pushes a batch of Gaussian inputs through 12 Linear(256, 256)+activation layers
and records each layer's activation mean, std, and the spread across units. Part 2
trains a 12-hidden-layer MLP on MNIST under each scheme and logs the per-step loss.
Weights come from fnn.init functions passed as ``nn.Linear(weight_init=)``; biases are 0.
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

NAME = "initialization"
WIDTH, DEPTH = 256, 12
ACTIVATIONS = {"tanh": nn.Tanh(), "relu": nn.ReLU()}
# scheme -> weight initializer (key, shape) -> array; the variance each one sets is in the label.
SCHEMES = {
    "constant 0.01": functools.partial(init.constant, val=0.01),
    "N(0, 1)": functools.partial(init.normal, mean=0.0, std=1.0),
    "Xavier (1/fan)": init.xavier_normal,
    "Kaiming (2/fan_in)": functools.partial(init.kaiming_normal, nonlinearity="relu"),
}


def deep_net(activation: nn.Layer, weight_init=None, classifier: bool = False) -> nn.Sequential:
    """DEPTH x [Linear(., WIDTH) + activation] with weights from ``weight_init`` and biases 0
    (Linear's default init when ``weight_init`` is None). ``classifier``: the MNIST MLP of
    part 2 (Flatten, 784 inputs, a last Linear(WIDTH, 10)); otherwise WIDTH inputs (part 1)."""
    inits = {} if weight_init is None else {"weight_init": weight_init, "bias_init": init.zeros}
    layers, width = ([nn.Flatten()], 784) if classifier else ([], WIDTH)
    for _ in range(DEPTH):
        layers += [nn.Linear(width, WIDTH, **inits), activation]
        width = WIDTH
    if classifier:
        layers.append(nn.Linear(WIDTH, 10, **inits))
    return nn.Sequential(*layers)


def layer_statistics(activation: nn.Layer, weight_init, x: jax.Array, key: jax.Array) -> dict:
    """Per activation layer of a plain deep stack at init: mean and std (``fnn.diagnostics``'
    probe on the initial weights), the across-unit spread, and the diagnoses at init."""
    model = deep_net(activation, weight_init)
    params, state = model.init(key)
    record = common.at_init(model, params, state, x, key)
    acts = [layer for layer in record["probe"]["layers"] if layer["kind"] != "linear"]
    # std across the units of one sample, averaged over samples: 0 means every unit computes
    # the same thing (the symmetry a constant init never breaks); the probe has no such series.
    outputs = model.intermediates(params, state, x, train=False)[1::2]
    return {
        "mean": [layer["mean"][0] for layer in acts],
        "std": [layer["std"][0] for layer in acts],
        "unit_spread": [float(jnp.mean(jnp.std(h, axis=1))) for h in outputs],
        "diagnoses": common.findings([record]),
    }


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (shorter at the start), NaN-propagating."""
    c = np.cumsum(np.insert(values, 0, 0.0))
    n = np.arange(1, len(values) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


def plot(results: dict, out: str) -> None:
    plt = common.pyplot()
    if plt is None:
        return
    stats, curves = results["forward_statistics"], results["training"]["step_losses"]
    colors = dict(zip(SCHEMES, ["tab:gray", "tab:red", "tab:blue", "tab:green"], strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    layers = np.arange(1, DEPTH + 1)
    for ax, act_name in zip(axes, ACTIVATIONS, strict=True):
        for scheme in SCHEMES:
            s = stats[f"{scheme} | {act_name}"]
            label = scheme
            if max(s["unit_spread"]) == 0:
                label += " (all units identical)"
            ax.semilogy(layers, s["std"], "o-", color=colors[scheme], label=label)
        ax.axhline(results["input_std"], color="k", ls="--", lw=0.8, label="input std")
        ax.set_title(f"{act_name}: activation std after each of {DEPTH} Linear({WIDTH},{WIDTH})+{act_name}")
        ax.set_xlabel("layer")
        ax.set_ylabel("std of activations (log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    common.save_figure(fig, out, "activation_std.png")

    window = 25
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, act_name in zip(axes, ACTIVATIONS, strict=True):
        for scheme in SCHEMES:
            losses = np.asarray(curves[f"{scheme} | {act_name}"], dtype=float)
            finite = np.isfinite(losses)
            peak = losses[finite].max()
            label = f"{scheme} (step-1 loss {losses[0]:.3g}" + (f", peak {peak:.2g})" if peak > 50 else ")")
            if not finite.all():
                label = (
                    f"{scheme} (step-1 loss {losses[0]:.2g}, NaN from step {np.flatnonzero(~finite)[0] + 1})"
                )
            ax.semilogy(
                np.arange(1, len(losses) + 1),
                running_mean(losses, window),
                color=colors[scheme],
                label=label,
                lw=1.2,
            )
        ax.set_ylim(1e-2, 50)
        ax.set_title(f"{act_name}: MNIST training loss, {DEPTH} hidden layers")
        ax.set_xlabel("step (batch of 128)")
        ax.set_ylabel(f"train cross-entropy, {window}-step running mean (log)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    common.save_figure(fig, out, "training_loss.png")


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    key = jax.random.key(0)
    k_x, k_stats, k_train = jax.random.split(key, 3)

    # Part 1: forward statistics on N(0, 1) inputs.
    x = jax.random.normal(k_x, (256 if args.quick else 1024, WIDTH))
    stats = {}
    rows = []
    for act_name, act in ACTIVATIONS.items():
        for scheme, w_init in SCHEMES.items():
            s = layer_statistics(act, w_init, x, k_stats)
            stats[f"{scheme} | {act_name}"] = s
            rows.append(
                {
                    "activation": act_name,
                    "init": scheme,
                    "std L1": s["std"][0],
                    "std L6": s["std"][5],
                    "std L12": s["std"][-1],
                    "mean L12": s["mean"][-1],
                    "unit spread L12": s["unit_spread"][-1],
                    "diagnoses at init": common.summarize_findings(s["diagnoses"]),
                }
            )
    print(
        f"Activation statistics through {DEPTH} Linear({WIDTH},{WIDTH})+activation layers "
        f"(input std {float(jnp.std(x)):.3f}):"
    )
    common.print_table(rows)

    # Part 2: short MNIST training of a deep MLP under each scheme.
    n_train, n_test, epochs = (2048, 512, 1) if args.quick else (60000, 10000, 3)
    (xs, ys), (xt, yt) = common.mnist(n_train, n_test)
    lr, momentum, batch_size = 0.01, 0.9, 128
    curves, diagnoses, train_rows = {}, {}, []
    for act_name, act in ACTIVATIONS.items():
        # The schemes differ only in what init() draws, but the compiled epoch and evaluator
        # are memoized on the model, and a Linear's init function is part of it: so every
        # scheme trains through this one init-free model, from its own deep_net's params.
        model = deep_net(act, classifier=True)
        optimizer = optim.sgd(lr=lr, momentum=momentum)
        for scheme, w_init in SCHEMES.items():
            k_model, k_fit = jax.random.split(k_train)
            params, state = deep_net(act, w_init, classifier=True).init(k_model)
            t0 = time.perf_counter()
            params, state, losses, history, diverged_at = common.train_monitored(
                model,
                F.cross_entropy,
                optimizer,
                params,
                state,
                (xs, ys),
                epochs=epochs,
                batch_size=batch_size,
                key=k_fit,
            )
            finite = diverged_at is None
            test = (
                train.evaluate(model, params, state, (xt, yt))
                if finite
                else {"loss": math.nan, "accuracy": math.nan}
            )
            curves[f"{scheme} | {act_name}"] = losses
            found = common.findings(history)
            diagnoses[f"{scheme} | {act_name}"] = found
            train_rows.append(
                {
                    "activation": act_name,
                    "init": scheme,
                    "first loss": losses[0],
                    "final train loss": float(np.mean(losses[-50:])) if finite else math.nan,
                    "test acc": test["accuracy"],
                    "diverged at step": diverged_at or "-",
                    "diagnoses": common.summarize_findings(found),
                    "seconds": time.perf_counter() - t0,
                }
            )
    print(
        f"\nMNIST, MLP 784-({WIDTH} x {DEPTH} hidden)-10, SGD lr {lr} momentum {momentum}, "
        f"batch {batch_size}, {epochs} epoch(s), {n_train} train / {n_test} test:"
    )
    common.print_table(train_rows)

    wall = time.perf_counter() - t_start
    results = {
        "quick": args.quick,
        "depth": DEPTH,
        "width": WIDTH,
        "input_std": float(jnp.std(x)),
        "forward_statistics": stats,
        "forward_table": rows,
        "training": {
            "lr": lr,
            "momentum": momentum,
            "batch_size": batch_size,
            "epochs": epochs,
            "n_train": n_train,
            "n_test": n_test,
            "table": train_rows,
            "step_losses": curves,
            "diagnoses": diagnoses,
        },
        "wall_seconds": wall,
    }
    common.save_json(args.out, results)

    plot(results, args.out)
    print(f"wall time: {wall:.1f} s")


if __name__ == "__main__":
    main()

"""The perceptron converges on linearly separable data and fails on XOR; one hidden layer solves XOR.

The course's first limit of a linear classifier. fnn.classic.perceptron_fit runs
Rosenblatt's rule (PERC-1: w starts at 0, w <- w + (y - y_hat) x per sample). On two
blobs separated by a margin it stops making mistakes after a few epochs (PERC-2). On XOR
(four clouds at (+-1, +-1), label = x1 XOR x2) no line separates the classes, so every
epoch keeps making mistakes and the accuracy stays near 3/4 at best. A network with one
hidden layer, Linear(2, H) -> Tanh -> Linear(H, 2) trained with cross-entropy by
fnn.train.fit, bends the boundary and classifies XOR perfectly; the sweep over H and seeds
shows how often it does (H = 2 is the minimum and sometimes gets stuck).

Writes results.json (mistakes per epoch, accuracies, the sweep) and boundaries.png
(decision regions: perceptron on separable data, perceptron on XOR, MLP on XOR; and the
mistakes per epoch of all three).
"""

from __future__ import annotations

import time

import common  # puts the repository root on sys.path
import jax
import numpy as np

from fnn import classic, nn, optim, train
from fnn import functional as F

NAME = "perceptron_xor"
CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32) * 2 - 1  # (+-1, +-1)
CORNER_LABELS = np.array([0, 1, 1, 0], np.int32)  # x1 XOR x2


def separable_blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs whose means are 3 apart along (1, 1); points inside a margin
    band around the separating line are dropped, so a separating line surely exists."""
    y = rng.integers(0, 2, n).astype(np.int32)
    centre = np.where(y[:, None] == 1, 1.0, -1.0) * np.array([1.0, 1.0]) / np.sqrt(2) * 1.5
    X = centre + 0.6 * rng.standard_normal((n, 2))
    margin = (X @ np.array([1.0, 1.0]) / np.sqrt(2)) * np.where(y == 1, 1, -1)
    keep = margin > 0.3
    return X[keep].astype(np.float32), y[keep]


def xor_clouds(rng: np.random.Generator, n: int, std: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    corner = rng.integers(0, 4, n)
    X = CORNERS[corner] + std * rng.standard_normal((n, 2))
    return X.astype(np.float32), CORNER_LABELS[corner]


def mlp(hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2))


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    config = dict(
        n=60 if args.quick else 400,
        perceptron_epochs=10 if args.quick else 30,
        mlp_epochs=2 if args.quick else 30,
        batch_size=20,
        lr=0.05,
        optimizer="adam",
        hidden_sizes=[8] if args.quick else [2, 4, 8],
        seeds=[0] if args.quick else [0, 1, 2, 3, 4],
        showcase_hidden=8,
        data_seed=0,
    )
    rng = np.random.default_rng(config["data_seed"])
    X_sep, y_sep = separable_blobs(rng, config["n"])
    X_xor, y_xor = xor_clouds(rng, config["n"])

    # ----- the perceptron on both data sets (and on XOR's four corners alone)
    perc = {}
    for name, (X, y) in {
        "separable": (X_sep, y_sep),
        "xor": (X_xor, y_xor),
        "xor_corners": (CORNERS, CORNER_LABELS),
    }.items():
        params, history = classic.perceptron_fit(X, y, epochs=config["perceptron_epochs"])
        mistakes = np.asarray(history["mistakes"]).tolist()
        accuracy = float(np.mean(np.asarray(classic.perceptron_predict(params, X)) == y))
        first_clean = next((e + 1 for e, m in enumerate(mistakes) if m == 0), None)
        perc[name] = {
            "params": params,
            "mistakes": mistakes,
            "accuracy": accuracy,
            "n": len(y),
            "converged": bool(history["converged"]),
            "first_epoch_without_mistakes": first_clean,
        }

    # ----- one-hidden-layer MLPs on the XOR clouds: every (hidden, seed) pair
    # One optimizer object for every run: fit's compiled epoch is memoized on (model, loss,
    # optimizer), and equal models (same H) then share it across seeds.
    sweep, showcase, optimizer = [], None, optim.adam(lr=config["lr"])
    for hidden in config["hidden_sizes"]:
        for seed in config["seeds"]:
            model = mlp(hidden)
            result = train.fit(
                model,
                F.cross_entropy,
                optimizer,
                (X_xor, y_xor),
                epochs=config["mlp_epochs"],
                batch_size=config["batch_size"],
                key=jax.random.key(seed),
                eval_data=(X_xor, y_xor),
                progress=False,
            )
            # evaluate() on the training set after each epoch: misclassified points then.
            mistakes = [round((1 - r["test_accuracy"]) * len(y_xor)) for r in result.history]
            logits = train.predict(model, result.params, result.state, CORNERS)
            corners_ok = bool(np.all(np.asarray(logits).argmax(axis=1) == CORNER_LABELS))
            run = {
                "hidden": hidden,
                "seed": seed,
                "final_accuracy": result.history[-1]["test_accuracy"],
                "final_loss": result.history[-1]["test_loss"],
                "mistakes": mistakes,
                "corners_correct": corners_ok,
                "first_epoch_without_mistakes": next((e + 1 for e, m in enumerate(mistakes) if m == 0), None),
            }
            sweep.append(run)
            if hidden == config["showcase_hidden"] and showcase is None:
                showcase = (model, result, run)
    summary = []
    for hidden in config["hidden_sizes"]:
        runs = [r for r in sweep if r["hidden"] == hidden]
        solved = [r for r in runs if r["final_accuracy"] == 1.0]
        summary.append(
            {
                "hidden": hidden,
                "runs": len(runs),
                "solved (100%)": len(solved),
                "mean final acc": float(np.mean([r["final_accuracy"] for r in runs])),
                "median epochs to 100%": (
                    float(np.median([r["first_epoch_without_mistakes"] for r in solved])) if solved else "-"
                ),
            }
        )

    wall = time.perf_counter() - t_start
    rows = [
        {
            "model": "perceptron",
            "data": name,
            "n": p["n"],
            "final accuracy": p["accuracy"],
            "mistakes last epoch": p["mistakes"][-1],
            "first clean epoch": p["first_epoch_without_mistakes"] or "never",
        }
        for name, p in perc.items()
    ]
    model, result, run = showcase
    rows.append(
        {
            "model": f"MLP 2-{run['hidden']}-2 tanh (seed {run['seed']})",
            "data": "xor",
            "n": len(y_xor),
            "final accuracy": run["final_accuracy"],
            "mistakes last epoch": run["mistakes"][-1],
            "first clean epoch": run["first_epoch_without_mistakes"] or "never",
        }
    )
    common.print_table(rows)
    print()
    common.print_table(summary)
    print(f"wall {wall:.1f} s")
    results = {
        "experiment": NAME,
        "quick": args.quick,
        "config": config,
        "perceptron": {k: {kk: vv for kk, vv in v.items() if kk != "params"} for k, v in perc.items()},
        "perceptron_weights": {
            k: {"weight": np.asarray(v["params"]["weight"]).tolist(), "bias": float(v["params"]["bias"])}
            for k, v in perc.items()
        },
        "mlp_sweep": sweep,
        "mlp_summary": summary,
        "showcase": run,
        "wall_seconds": wall,
    }
    common.save_json(args.out, results)

    plt = common.pyplot()
    if plt is None:
        return
    lim = 2.2
    g = np.linspace(-lim, lim, 200, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    cmap = plt.get_cmap("coolwarm")

    def regions(ax, labels, X, y, title):
        ax.contourf(
            gx,
            gy,
            labels.reshape(gx.shape),
            levels=[-0.5, 0.5, 1.5],
            colors=[cmap(0.25), cmap(0.75)],
            alpha=0.35,
        )
        for cls, marker in ((0, "o"), (1, "^")):
            ax.scatter(
                *X[y == cls].T,
                s=14,
                marker=marker,
                color=cmap(0.0 if cls == 0 else 1.0),
                edgecolor="k",
                linewidth=0.3,
                label=f"class {cls}",
            )
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="x1", ylabel="x2", title=title, aspect="equal")
        ax.legend(loc="lower right", fontsize=8)

    fig, axes = plt.subplots(2, 2, figsize=(11, 10.5))
    axes = axes.ravel()
    for ax, name, (X, y) in ((axes[0], "separable", (X_sep, y_sep)), (axes[1], "xor", (X_xor, y_xor))):
        p = perc[name]
        labels = np.asarray(classic.perceptron_predict(p["params"], grid))
        w, b = np.asarray(p["params"]["weight"]), float(p["params"]["bias"])
        if abs(w[1]) > 1e-12:  # the boundary w . x + b = 0 as a line
            ax.plot(g, -(w[0] * g + b) / w[1], "k--", lw=1)
        clean = p["first_epoch_without_mistakes"]
        regions(
            ax,
            labels,
            X,
            y,
            f"Perceptron on {'separable data' if name == 'separable' else 'XOR'}\n"
            f"accuracy {100 * p['accuracy']:.1f}%, "
            + (f"no mistakes from epoch {clean}" if clean else "mistakes in every epoch"),
        )
    logits = train.predict(model, result.params, result.state, grid)
    regions(
        axes[2],
        np.asarray(logits).argmax(axis=1),
        X_xor,
        y_xor,
        f"MLP 2-{run['hidden']}-2 (tanh) on XOR\naccuracy {100 * run['final_accuracy']:.1f}% "
        f"after {config['mlp_epochs']} epochs",
    )
    ax = axes[3]
    e_perc = np.arange(1, config["perceptron_epochs"] + 1)
    ax.plot(
        e_perc,
        perc["xor"]["mistakes"],
        "s-",
        ms=4,
        color="tab:orange",
        label="perceptron, XOR (updates in the pass)",
    )
    ax.plot(
        np.arange(1, len(run["mistakes"]) + 1),
        run["mistakes"],
        "^-",
        ms=6,
        color="tab:green",
        label=f"MLP 2-{run['hidden']}-2, XOR (misclassified after the epoch)",
    )
    ax.plot(
        e_perc,
        perc["separable"]["mistakes"],
        "o--",
        ms=3,
        color="tab:blue",
        label="perceptron, separable (updates in the pass)",
    )
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(-0.3, 2 * len(y_xor))
    ax.set(
        xlabel="epoch",
        ylabel=f"mistakes (of {len(y_xor)} XOR / {len(y_sep)} separable points)",
        title="Mistakes per epoch",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(
        "A linear perceptron separates linearly separable data but not XOR; one hidden layer solves XOR"
    )
    common.save_figure(fig, args.out, "boundaries.png")


if __name__ == "__main__":
    main()

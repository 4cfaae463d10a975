"""Softmax regression on MNIST: one linear layer + cross-entropy reaches about 92% test accuracy.

The course's baseline: multinomial logistic regression (Flatten, Linear(784, 10), softmax
inside the cross-entropy) trained with SGD + momentum. The claim tested is that this
linear classifier lands near 92% on the MNIST test set and no further (it cannot draw
non-linear boundaries), and that each row of its weight matrix, viewed as a 28x28 image,
is a "template" of its digit.

Writes results.json (per-epoch history, final accuracy) and two figures: curves.png
(train/test loss and accuracy per epoch) and templates.png (the 10 learned weight rows).
"""

from __future__ import annotations

import time

import common  # puts the repository root on sys.path
import jax
import numpy as np

from fnn import functional as F
from fnn import models, nn, optim, train

NAME = "softmax_regression"


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    config = dict(
        epochs=1 if args.quick else 10,
        batch_size=128,
        lr=0.01,
        momentum=0.9,
        seed=0,
        n_train=2000 if args.quick else 60000,
        n_test=500 if args.quick else 10000,
    )

    train_data, test_data = common.mnist(config["n_train"], config["n_test"])

    model = models.softmax_regression()
    optimizer = optim.sgd(lr=config["lr"], momentum=config["momentum"])
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
    )
    history = result.history
    final = history[-1]
    weight = np.asarray(result.params[1]["weight"])  # (10, 784): one template per class

    wall = time.perf_counter() - t_start
    results = {
        "experiment": NAME,
        "quick": args.quick,
        "config": config,
        "history": history,
        "final_train_accuracy": final["train_accuracy"],
        "final_test_accuracy": final["test_accuracy"],
        "final_test_loss": final["test_loss"],
        "num_params": int(nn.num_params(result.params)),
        "wall_seconds": wall,
    }
    common.print_history(history)
    print(f"final test accuracy {final['test_accuracy']:.4f} (course: about 0.92); wall {wall:.1f} s")

    plt = common.pyplot()
    if plt is not None:
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        common.plot_history(ax_loss, ax_acc, history)
        ax_acc.axhline(92, color="gray", ls="--", lw=1, label="course: ~92%")
        ax_acc.legend()
        fig.suptitle(
            f"Softmax regression on MNIST (SGD lr={config['lr']}, momentum={config['momentum']}, "
            f"batch {config['batch_size']}): test accuracy {100 * final['test_accuracy']:.2f}%"
        )
        common.save_figure(fig, args.out, "curves.png")

        fig, axes = plt.subplots(2, 5, figsize=(10, 5.4))
        for digit, ax in enumerate(axes.flat):
            w = weight[digit].reshape(28, 28)
            lim = float(np.abs(w).max())
            ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(f"class {digit}")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(
            "Softmax regression: each class's weight row as a 28x28 template\n"
            "(red = positive weight, blue = negative; colour scale symmetric per panel)"
        )
        common.save_figure(fig, args.out, "templates.png")

    common.save_json(args.out, results)


if __name__ == "__main__":
    main()

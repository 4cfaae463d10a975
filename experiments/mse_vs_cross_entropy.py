"""MSE vs cross-entropy for classification: squared error through a sigmoid/softmax saturates
when confidently wrong.

The course's argument for cross-entropy. With a sigmoid output σ(z) and squared error
(σ − y)² the gradient wrt the logit is 2(σ(z) − y)·σ'(z): the factor σ'(z) = σ(1 − σ)
vanishes exactly when the unit is saturated, so a confidently wrong prediction (z ≪ 0 for
y = 1) barely learns. With cross-entropy (sigmoid + BCE-with-logits, or softmax + CE) the
σ' cancels and the gradient is p − y: largest when most wrong. The same holds for squared
error on softmax probabilities against a one-hot target.

Part 1 computes these gradients with fnn's manual backward ops (F.mse_loss_backward ->
F.sigmoid_backward / F.softmax_backward, F.binary_cross_entropy_with_logits_backward,
F.cross_entropy_backward) and cross-checks each against jax.grad of the forward.
Part 2 trains the same MLP (784-100-10, ReLU) on MNIST with each loss (softmax + CE vs
squared error of softmax(logits) against one-hot, summed over classes), plain SGD with the
same learning rate, from the default init and from a "saturated" init whose last layer is
scaled up so that the initial softmax is confident (and mostly wrong). Training uses
grad='manual', the squared-error loss carrying its own hand-written backward.

Writes results.json and mse_vs_ce.png (gradient magnitude vs logit, gradient norm vs
confidence in a wrong class, test accuracy vs SGD step for both inits).
"""

from __future__ import annotations

import time

import common  # puts the repository root on sys.path
import jax
import jax.numpy as jnp
import numpy as np

from fnn import data, models, optim, train
from fnn import functional as F

NAME = "mse_vs_cross_entropy"
NUM_CLASSES = 10


# ----- squared error of softmax probabilities against one-hot targets ------------------


def softmax_mse(input, target, reduction: str = "mean"):
    """Σ_c (softmax(x)_c − onehot(y)_c)² per sample; 'mean' over samples, 'sum', or 'none'."""
    onehot = F.one_hot(target, input.shape[1]).astype(input.dtype)
    per_sample = jnp.sum(F.mse_loss(F.softmax(input, dim=1), onehot, reduction="none"), axis=1)
    return {"mean": jnp.mean, "sum": jnp.sum, "none": lambda v: v}[reduction](per_sample)


def softmax_mse_backward(grad_output, input, target, reduction: str = "mean"):
    """Chain rule through fnn's manual ops: dL/dp = g·2(p − onehot) (mse_loss_backward with
    'sum'), then dL/dx = softmax_backward(dL/dp); 'mean' scales g by 1/N."""
    onehot = F.one_hot(target, input.shape[1]).astype(input.dtype)
    p = F.softmax(input, dim=1)
    g = jnp.asarray(grad_output, input.dtype)
    g = g / input.shape[0] if reduction == "mean" else g
    g = jnp.broadcast_to(g[:, None] if g.ndim == 1 else g, p.shape)
    return F.softmax_backward(F.mse_loss_backward(g, p, onehot, reduction="none"), input, dim=1)


softmax_mse.backward = softmax_mse_backward  # how fnn.train (grad='manual') finds it


# ----- part 1: gradients wrt the logits ------------------------------------------------


@jax.jit
def binary_gradients(z: jax.Array) -> dict[str, jax.Array]:
    """Label y = 1, logit z: |dL/dz| for sigmoid + MSE and for BCE-with-logits, manual and jax."""
    y = jnp.ones_like(z)
    ones = jnp.ones_like(z)
    mse_manual = F.sigmoid_backward(F.mse_loss_backward(ones, F.sigmoid(z), y, reduction="none"), z)
    bce_manual = F.binary_cross_entropy_with_logits_backward(ones, z, y, reduction="none")
    mse_jax = jax.grad(lambda v: F.mse_loss(F.sigmoid(v), y, reduction="sum"))(z)
    bce_jax = jax.grad(lambda v: F.binary_cross_entropy_with_logits(v, y, reduction="sum"))(z)
    return {"mse": mse_manual, "bce": bce_manual, "mse_jax": mse_jax, "bce_jax": bce_jax}


@jax.jit
def multiclass_gradients(m: jax.Array) -> dict[str, jax.Array]:
    """10 classes, target 0, logits m·e_1 (class 1 wrongly confident): ‖dL/dx‖ per m."""
    x = jnp.zeros((m.shape[0], NUM_CLASSES)).at[:, 1].set(m)
    t = jnp.zeros(m.shape[0], jnp.int32)
    ones = jnp.ones(m.shape[0])
    mse_manual = softmax_mse_backward(ones, x, t, reduction="none")
    ce_manual = F.cross_entropy_backward(ones, x, t, reduction="none")
    mse_jax = jax.grad(lambda v: softmax_mse(v, t, reduction="sum"))(x)
    ce_jax = jax.grad(lambda v: F.cross_entropy(v, t, reduction="sum"))(x)
    return {"mse": mse_manual, "ce": ce_manual, "mse_jax": mse_jax, "ce_jax": ce_jax}


# ----- part 2: training ----------------------------------------------------------------


def saturate(params, scale: float):
    """Scale the last Linear's weight and bias: same ranking of classes, confident softmax."""
    last = dict(params[-1])
    last["weight"], last["bias"] = last["weight"] * scale, last["bias"] * scale
    return (*params[:-1], last)


def run(model, loss_fn, opt, params, state, x, y, x_test, y_test, cfg, key):
    """SGD steps over fnn.data.batches; test accuracy every cfg['eval_every'] steps.
    make_train_step is cached by jit over its static specs: each (model, loss, opt) compiles
    once across inits."""
    step = train.make_train_step(model, loss_fn, opt, grad="manual")
    opt_state = opt.init(params)
    curve = [(0, train.evaluate(model, params, state, (x_test, y_test))["accuracy"])]
    losses, n = [], 0
    for _ in range(cfg["epochs"]):
        key, k_epoch = jax.random.split(key)
        k_shuffle, k_steps = jax.random.split(k_epoch)
        for xb, yb in data.batches(x, y, cfg["batch_size"], key=k_shuffle, shuffle=True, drop_last=True):
            k_steps, k = jax.random.split(k_steps)
            params, state, opt_state, metrics = step(params, state, opt_state, k, xb, yb)
            n += 1
            if n % cfg["eval_every"] == 0:
                losses.append(float(metrics["loss"]))
                curve.append((n, train.evaluate(model, params, state, (x_test, y_test))["accuracy"]))
    if curve[-1][0] != n:
        curve.append((n, train.evaluate(model, params, state, (x_test, y_test))["accuracy"]))
    return curve, losses


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    cfg = dict(
        n_train=2000 if args.quick else 60000,
        n_test=500 if args.quick else 10000,
        epochs=1 if args.quick else 5,
        batch_size=64,
        lr=0.1,
        hidden=100,
        saturate_scale=30.0,
        eval_every=10 if args.quick else 100,
        seed=0,
        n_points=41 if args.quick else 401,
    )

    # ----- part 1
    z = jnp.linspace(-10.0, 10.0, cfg["n_points"])
    m = jnp.linspace(0.0, 15.0, cfg["n_points"])
    b = {k: np.asarray(v) for k, v in binary_gradients(z).items()}
    c = {k: np.asarray(v) for k, v in multiclass_gradients(m).items()}
    cross_check = {
        "sigmoid_mse_manual_vs_jax": float(np.max(np.abs(b["mse"] - b["mse_jax"]))),
        "bce_with_logits_manual_vs_jax": float(np.max(np.abs(b["bce"] - b["bce_jax"]))),
        "softmax_mse_manual_vs_jax": float(np.max(np.abs(c["mse"] - c["mse_jax"]))),
        "cross_entropy_manual_vs_jax": float(np.max(np.abs(c["ce"] - c["ce_jax"]))),
    }
    norm_mse, norm_ce = np.linalg.norm(c["mse"], axis=1), np.linalg.norm(c["ce"], axis=1)
    probe = [-10.0, -5.0, -2.0, 0.0, 2.0]
    rows = [
        {
            "logit z (y=1)": zz,
            "|dL/dz| sigmoid+MSE": float(abs(b["mse"][i])),
            "|dL/dz| BCE-with-logits": float(abs(b["bce"][i])),
            "ratio": float(abs(b["bce"][i]) / abs(b["mse"][i])),
        }
        for zz in probe
        for i in [int(np.argmin(np.abs(np.asarray(z) - zz)))]
    ]
    common.print_table(rows)
    print()
    mrows = [
        {
            "wrong-class logit m": mm,
            "p(wrong)": float(np.exp(mm) / (np.exp(mm) + 9)),
            "|grad| softmax+MSE": float(norm_mse[i]),
            "|grad| softmax+CE": float(norm_ce[i]),
        }
        for mm in [0.0, 2.5, 5.0, 10.0, 15.0]
        for i in [int(np.argmin(np.abs(np.asarray(m) - mm)))]
    ]
    common.print_table(mrows)
    print("manual backward vs jax.grad:", cross_check)

    # ----- part 2
    (x, y), (x_test, y_test) = common.mnist(cfg["n_train"], cfg["n_test"])
    model = models.mlp(hidden=(cfg["hidden"],), batch_norm=False, dropout=0)
    key_init, key_train = jax.random.split(jax.random.key(cfg["seed"]))
    params0, state0 = model.init(key_init)
    opt = optim.sgd(lr=cfg["lr"])  # plain SGD: the step is proportional to the gradient
    runs, train_rows = {}, []
    for init_name, scale in (("default", 1.0), ("saturated", cfg["saturate_scale"])):
        params = saturate(params0, scale)
        p = F.softmax(train.predict(model, params, state0, x_test), dim=1)
        init_stats = {
            "mean max softmax": float(jnp.mean(jnp.max(p, axis=1))),
            "accuracy": float(jnp.mean(jnp.argmax(p, axis=1) == y_test)),
        }
        for loss_name, loss_fn in (("cross_entropy", F.cross_entropy), ("softmax_mse", softmax_mse)):
            t0 = time.perf_counter()
            # Same data order for every run: the loss and init are the only differences.
            curve, losses = run(model, loss_fn, opt, params, state0, x, y, x_test, y_test, cfg, key_train)
            acc = dict(curve)
            first_90 = next((s for s, a in curve if a >= 0.9), None)
            runs[f"{init_name}/{loss_name}"] = {
                "init": init_name,
                "loss": loss_name,
                "init_stats": init_stats,
                "curve": curve,
                "train_loss": losses,
                "seconds": time.perf_counter() - t0,
            }
            steps_per_epoch = cfg["n_train"] // cfg["batch_size"]
            train_rows.append(
                {
                    "init": init_name,
                    "loss": loss_name,
                    "init max p": init_stats["mean max softmax"],
                    f"acc @{cfg['eval_every']} steps": acc.get(cfg["eval_every"], float("nan")),
                    "acc @1 epoch": min(curve, key=lambda sa: abs(sa[0] - steps_per_epoch))[1],
                    "final acc": curve[-1][1],
                    "steps to 90%": first_90 or "never",
                    "seconds": runs[f"{init_name}/{loss_name}"]["seconds"],
                }
            )
    print()
    common.print_table(train_rows)

    wall = time.perf_counter() - t_start
    print(f"wall {wall:.1f} s")
    results = {
        "experiment": NAME,
        "quick": args.quick,
        "config": cfg,
        "binary": {
            "z": np.asarray(z).tolist(),
            "sigmoid_mse_grad": b["mse"].tolist(),
            "bce_with_logits_grad": b["bce"].tolist(),
        },
        "multiclass": {
            "m": np.asarray(m).tolist(),
            "softmax_mse_grad_norm": norm_mse.tolist(),
            "cross_entropy_grad_norm": norm_ce.tolist(),
        },
        "binary_table": rows,
        "multiclass_table": mrows,
        "cross_check": cross_check,
        "training": runs,
        "training_table": train_rows,
        "wall_seconds": wall,
    }
    common.save_json(args.out, results)

    plt = common.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.5))
    ax = axes[0, 0]
    zz = np.asarray(z)
    ax.plot(zz, np.abs(b["bce"]), "-", lw=2, color="tab:blue", label="sigmoid + BCE-with-logits: |σ(z) − y|")
    ax.plot(zz, np.abs(b["mse"]), "-", lw=2, color="tab:red", label="sigmoid + MSE: |2(σ(z) − y)·σ'(z)|")
    step = max(1, len(zz) // 25)
    ax.plot(
        zz[::step],
        np.abs(b["bce_jax"])[::step],
        "o",
        mfc="none",
        color="tab:blue",
        ms=5,
        label="jax.grad of the forward (circles)",
    )
    ax.plot(zz[::step], np.abs(b["mse_jax"])[::step], "o", mfc="none", color="tab:red", ms=5)
    ax.axvspan(zz[0], -3, color="gray", alpha=0.12, label="confidently wrong (z ≪ 0)")
    ax.set(
        xlabel="logit z   (label y = 1)",
        ylabel="|∂L/∂z|",
        title="Binary: gradient wrt the logit (manual ops, circles = jax.grad)",
    )
    ax = axes[0, 1]
    mm = np.asarray(m)
    ax.plot(mm, norm_ce, "-", lw=2, color="tab:blue", label="softmax + cross-entropy: ‖p − onehot‖")
    ax.plot(mm, norm_mse, "-", lw=2, color="tab:red", label="softmax + squared error vs one-hot")
    ax.plot(
        mm[::step],
        np.linalg.norm(c["ce_jax"], axis=1)[::step],
        "o",
        mfc="none",
        color="tab:blue",
        ms=5,
        label="jax.grad of the forward (circles)",
    )
    ax.plot(mm[::step], np.linalg.norm(c["mse_jax"], axis=1)[::step], "o", mfc="none", color="tab:red", ms=5)
    ax.set(
        yscale="log",
        xlabel="logit m of a wrong class (others 0; target class 0)",
        ylabel="‖∂L/∂logits‖₂",
        title="10 classes: gradient norm as a wrong class grows confident",
    )
    for init_name, ax in (("default", axes[1, 0]), ("saturated", axes[1, 1])):
        for loss_name, color, label in (
            ("cross_entropy", "tab:blue", "softmax + cross-entropy"),
            ("softmax_mse", "tab:red", "softmax + squared error"),
        ):
            r = runs[f"{init_name}/{loss_name}"]
            steps, acc = zip(*r["curve"], strict=True)
            ax.plot(steps, 100 * np.asarray(acc), "-", color=color, lw=1.8, label=label)
        stats = runs[f"{init_name}/cross_entropy"]["init_stats"]
        what = (
            "default init"
            if init_name == "default"
            else f"saturated init (last layer ×{cfg['saturate_scale']:g})"
        )
        ax.set(
            xlabel="SGD step (batch 64)",
            ylabel="test accuracy (%)",
            ylim=(0, 100),
            title=f"MNIST MLP 784-{cfg['hidden']}-10, {what}\n"
            f"initial mean max softmax {stats['mean max softmax']:.2f}, SGD lr {cfg['lr']}",
        )
    for ax in axes.flat:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(
        "Squared error through a sigmoid/softmax saturates when confidently wrong; "
        "cross-entropy's gradient is p − y"
    )
    common.save_figure(fig, args.out, "mse_vs_ce.png")


if __name__ == "__main__":
    main()

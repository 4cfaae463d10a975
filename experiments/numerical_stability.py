"""Numerical stability: naive softmax / log-softmax / BCE break at large logits; the stable forms do not.

The course's warning about computing losses from probabilities. In float32, exp(x)
overflows to inf for x > 88.7 and underflows to 0 for x < -103, so
- naive softmax exp(x) / Σ exp(x) gives inf / inf = NaN once the largest logit passes ~89,
  and taking log of a softmax (naive or max-shifted) gives log 0 = -inf, i.e. an infinite
  cross-entropy, as soon as the target's probability underflows;
- F.softmax / F.log_softmax / F.cross_entropy subtract the max (log-sum-exp) and stay exact.
For binary labels, F.binary_cross_entropy on sigmoid(z) follows torch (BCE-1, BCE-2): the
logs are clamped at -100 and the gradient's denominator at 1e-12, so for a confidently
wrong logit the loss flattens at 100 and the gradient wrt the logit collapses to 0, while
F.binary_cross_entropy_with_logits (BCEL-1) grows exactly linearly with gradient σ(z) - y.

Logits are x = s·(1, 0.5, -1) with the target the last class (the confidently wrong case);
for BCE the label is y = 1 and the logit z = -s. Everything is float32, as in training.
Gradients come from jax.grad and from fnn's manual backward ops, which must agree.
Writes results.json and stability.png (loss and gradient vs s, NaN/inf marked).
"""

from __future__ import annotations

import time

import common  # puts the repository root on sys.path
import jax
import jax.numpy as jnp
import numpy as np

from fnn import functional as F

NAME = "numerical_stability"
DIRECTION = np.array([1.0, 0.5, -1.0])  # logits = s * DIRECTION
TARGET = 2  # the class with the lowest logit: a confidently wrong prediction


# ----- the naive forms, written the way the formula reads ------------------------------


def naive_softmax(x):
    e = jnp.exp(x)
    return e / jnp.sum(e, axis=1, keepdims=True)


def naive_ce(x, t):
    """−log of the naive softmax at the target: overflow (NaN) and underflow (inf)."""
    return -jnp.log(jnp.take_along_axis(naive_softmax(x), t[:, None], axis=1)[:, 0])


def log_of_softmax_ce(x, t):
    """−log of the max-shifted F.softmax: no overflow, but log 0 = −inf on underflow."""
    return -jnp.log(jnp.take_along_axis(F.softmax(x, dim=1), t[:, None], axis=1)[:, 0])


def stable_ce(x, t):
    return F.cross_entropy(x, t, reduction="none")


def bce_on_sigmoid(z, y):
    return F.binary_cross_entropy(F.sigmoid(z), y, reduction="none")


def bce_with_logits(z, y):
    return F.binary_cross_entropy_with_logits(z, y, reduction="none")


def per_row_grad(loss, *args):
    """Rows are independent, so the gradient of the sum is each row's own gradient."""
    return jax.grad(lambda a: jnp.sum(loss(a, *args[1:])))(args[0])


@jax.jit
def softmax_side(x, t):
    """Every softmax quantity in one compiled call (as in training, where losses are jitted)."""
    forms = (("naive", naive_ce), ("log_of_softmax", log_of_softmax_ce), ("stable", stable_ce))
    return {
        "ce": {name: fn(x, t) for name, fn in forms},
        "ce_grad": {name: per_row_grad(fn, x, t) for name, fn in forms},
        "manual": F.cross_entropy_backward(jnp.ones(x.shape[0]), x, t, reduction="none"),
        "naive_softmax": naive_softmax(x),
        "stable_softmax": F.softmax(x, dim=1),
    }


@jax.jit
def bce_side(z, y):
    """BCE on sigmoid vs with logits at logit z: losses, jax.grad, manual chains, and at −z."""
    ones = jnp.ones_like(z)
    return {
        "bce": {"on_sigmoid": bce_on_sigmoid(z, y), "with_logits": bce_with_logits(z, y)},
        "bce_grad": {
            "on_sigmoid": per_row_grad(bce_on_sigmoid, z, y),
            "with_logits": per_row_grad(bce_with_logits, z, y),
        },
        "bce_manual": F.sigmoid_backward(
            F.binary_cross_entropy_backward(ones, F.sigmoid(z), y, reduction="none"), z
        ),
        "bcel_manual": F.binary_cross_entropy_with_logits_backward(ones, z, y, reduction="none"),
        "right": {"on_sigmoid": bce_on_sigmoid(-z, y), "with_logits": bce_with_logits(-z, y)},
    }


def first_bad(scales: np.ndarray, values: np.ndarray, bad) -> float | None:
    hits = np.flatnonzero(bad(values))
    return float(scales[hits[0]]) if hits.size else None


def kind(v: float) -> str:
    return "NaN" if np.isnan(v) else ("inf" if np.isinf(v) else f"{v:.4g}")


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    n = 25 if args.quick else 400
    scales = np.logspace(-1, 3.5, n).astype(np.float32)  # 0.1 .. ~3162
    table_scales = [1.0, 10.0, 30.0, 50.0, 88.0, 100.0, 1000.0]
    scales = np.unique(np.concatenate([scales, np.float32(table_scales)]))

    # ----- softmax cross-entropy
    x = jnp.asarray(scales[:, None] * DIRECTION[None, :], jnp.float32)
    t = jnp.full((len(scales),), TARGET, jnp.int32)
    out = jax.tree.map(np.asarray, softmax_side(x, t))
    ce, ce_grad, manual = out["ce"], out["ce_grad"], out["manual"]
    ce_manual_vs_jax = float(np.max(np.abs(manual - ce_grad["stable"])))
    # float64 reference: logsumexp(x) − x_t in numpy, from the same float32 logits
    x64 = np.asarray(x, np.float64)
    m = x64.max(axis=1)
    exact = m + np.log(np.exp(x64 - m[:, None]).sum(axis=1)) - x64[:, TARGET]
    ce_rel_err = float(np.max(np.abs(ce["stable"] - exact) / exact))
    naive_sm_nan = first_bad(scales, out["naive_softmax"], lambda v: np.isnan(v).any(axis=1))
    pmax_naive, pmax_stable = out["naive_softmax"][:, 0], out["stable_softmax"][:, 0]
    thresholds = {
        # 1/Σ exp(x) is subnormal (flushed to 0 on CPU) just before Σ exp(x) itself overflows.
        "naive_softmax_first_wrong": first_bad(
            scales, np.abs(pmax_naive - pmax_stable), lambda v: ~(v < 1e-3)
        ),
        "naive_softmax_first_nan": naive_sm_nan,
        "naive_ce_first_nonfinite": first_bad(scales, ce["naive"], lambda v: ~np.isfinite(v)),
        "naive_ce_first_nan": first_bad(scales, ce["naive"], np.isnan),
        "log_of_softmax_ce_first_inf": first_bad(scales, ce["log_of_softmax"], np.isinf),
        "naive_ce_grad_first_nan": first_bad(scales, ce_grad["naive"], lambda v: np.isnan(v).any(axis=1)),
        "stable_ce_nonfinite_count": int(np.sum(~np.isfinite(ce["stable"]))),
        "stable_ce_grad_nonfinite_count": int(np.sum(~np.isfinite(ce_grad["stable"]))),
    }

    # ----- binary cross-entropy, label 1, logit z = −s (confidently wrong)
    z = jnp.asarray(-scales, jnp.float32)
    y = jnp.ones_like(z)
    out = jax.tree.map(np.asarray, bce_side(z, y))
    bce, bce_grad, bce_manual, bcel_manual = (
        out["bce"],
        out["bce_grad"],
        out["bce_manual"],
        out["bcel_manual"],
    )
    bce_manual_vs_jax = float(
        max(
            np.max(np.abs(bce_manual - bce_grad["on_sigmoid"])),
            np.max(np.abs(bcel_manual - bce_grad["with_logits"])),
        )
    )
    exact_bce = np.logaddexp(0.0, scales.astype(np.float64))  # softplus(s) = −log σ(−s)
    bcel_rel_err = float(np.max(np.abs(bce["with_logits"] - exact_bce) / exact_bce))
    bce_thresholds = {
        "bce_loss_first_clamped_at_100": first_bad(scales, bce["on_sigmoid"], lambda v: v == 100.0),
        "bce_grad_first_off_by_1pct": first_bad(
            scales, np.abs(bce_grad["on_sigmoid"] / bce_grad["with_logits"] - 1), lambda v: v > 0.01
        ),
        "bce_grad_first_exactly_0": first_bad(scales, bce_grad["on_sigmoid"], lambda v: v == 0.0),
        "bcel_grad_min_abs": float(np.min(np.abs(bce_grad["with_logits"][scales >= 10]))),
    }
    # The confidently right side too (z = +s): σ(s) rounds to 1 in float32, so BCE on it is 0.
    right = out["right"]
    bce_thresholds["bce_right_first_exactly_0"] = first_bad(scales, right["on_sigmoid"], lambda v: v == 0.0)
    bce_thresholds["bcel_right_first_exactly_0"] = first_bad(scales, right["with_logits"], lambda v: v == 0.0)

    # ----- table
    idx = [int(np.argmin(np.abs(scales - s))) for s in table_scales]
    rows = [
        {
            "s": float(scales[i]),
            "CE naive": kind(ce["naive"][i]),
            "CE log(F.softmax)": kind(ce["log_of_softmax"][i]),
            "F.cross_entropy": kind(ce["stable"][i]),
            "|grad| naive": kind(np.linalg.norm(ce_grad["naive"][i])),
            "|grad| F.cross_entropy": kind(np.linalg.norm(ce_grad["stable"][i])),
            "BCE(sigmoid(-s))": kind(bce["on_sigmoid"][i]),
            "BCE-with-logits": kind(bce["with_logits"][i]),
            "dBCE/dz": kind(bce_grad["on_sigmoid"][i]),
            "dBCEL/dz": kind(bce_grad["with_logits"][i]),
        }
        for i in idx
    ]
    common.print_table(rows)
    print(
        f"manual backward vs jax.grad: CE max |diff| {ce_manual_vs_jax:.2g}, BCE {bce_manual_vs_jax:.2g}; "
        f"F.cross_entropy rel err vs float64 {ce_rel_err:.2g}, BCE-with-logits {bcel_rel_err:.2g}"
    )
    print("thresholds (first s):", {**thresholds, **bce_thresholds})

    wall = time.perf_counter() - t_start
    results = {
        "experiment": NAME,
        "quick": args.quick,
        "dtype": "float32",
        "logits": "s * (1, 0.5, -1), target class 2",
        "bce": "label 1, logit -s",
        "scales": scales.tolist(),
        "ce_loss": {k: v.tolist() for k, v in ce.items()},
        "ce_loss_float64_reference": exact.tolist(),
        "ce_grad_norm": {k: np.linalg.norm(v, axis=1).tolist() for k, v in ce_grad.items()},
        "bce_loss": {k: v.tolist() for k, v in bce.items()},
        "bce_loss_exact": exact_bce.tolist(),
        "bce_grad": {k: v.tolist() for k, v in bce_grad.items()},
        "thresholds": {**thresholds, **bce_thresholds},
        "ce_manual_vs_jax_max_abs": ce_manual_vs_jax,
        "bce_manual_vs_jax_max_abs": bce_manual_vs_jax,
        "stable_ce_max_rel_err_vs_float64": ce_rel_err,
        "bce_with_logits_max_rel_err": bcel_rel_err,
        "bce_loss_confidently_right": {k: v.tolist() for k, v in right.items()},
        "naive_softmax_pmax": pmax_naive.tolist(),
        "stable_softmax_pmax": pmax_stable.tolist(),
        "table": rows,
        "wall_seconds": wall,
    }
    common.save_json(args.out, results)
    print(f"wall {wall:.1f} s")

    plt = common.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(2, 3, figsize=(18, 9.5))
    every = max(1, len(scales) // 40)  # thin the NaN/inf markers so they read as markers

    def curve(ax, values, top, label, style, color, lw=2):
        """Finite values as a line; NaN (x) and ±inf (^) as markers pinned at `top`."""
        v = np.asarray(values, np.float64)
        finite = np.isfinite(v)
        ax.plot(
            np.where(finite, scales, np.nan),
            np.where(finite, v, np.nan),
            style,
            color=color,
            lw=lw,
            label=label,
        )
        for mask, marker, what in ((np.isnan(v), "x", "NaN"), (np.isinf(v), "^", "inf")):
            if mask.any():
                where = np.flatnonzero(mask)[::every]
                ax.plot(
                    scales[where],
                    np.full(len(where), top),
                    marker,
                    color=color,
                    ms=6,
                    ls="none",
                    label=f"  {what} from s = {scales[mask][0]:.3g} (marked at the top)",
                )

    ax = axes[0, 0]
    curve(ax, pmax_naive, 1.1, "naive exp(x) / Σ exp(x)", "-", "tab:red", 3)
    curve(ax, pmax_stable, 1.1, "F.softmax (max subtracted)", ":", "tab:blue", 2.5)
    ax.set(
        xscale="log",
        ylim=(-0.05, 1.15),
        xlabel="logit scale s   (logits = s·(1, 0.5, −1))",
        ylabel="softmax probability of the largest logit",
        title="Softmax: overflow of exp(s) at s > 88.7",
    )

    ax = axes[0, 1]
    top = 3e4
    curve(ax, ce["naive"], top, "naive: −log(exp(x_t) / Σ exp(x))", "-", "tab:red", 3)
    curve(ax, ce["log_of_softmax"], top * 1.8, "−log(F.softmax(x)_t)", "--", "tab:orange")
    curve(ax, ce["stable"], top, "F.cross_entropy (log-sum-exp)", ":", "tab:blue", 2.5)
    ax.set(
        xscale="log",
        yscale="log",
        ylim=(0.1, 1e5),
        xlabel="logit scale s   (logits = s·(1, 0.5, −1))",
        ylabel="cross-entropy loss (target = lowest logit)",
        title="Softmax cross-entropy: loss",
    )

    ax = axes[0, 2]
    top = 10.0
    curve(ax, np.linalg.norm(ce_grad["naive"], axis=1), top, "jax.grad of the naive form", "-", "tab:red", 3)
    curve(
        ax,
        np.linalg.norm(ce_grad["log_of_softmax"], axis=1),
        top * 1.5,
        "jax.grad of −log(F.softmax(x)_t)",
        "--",
        "tab:orange",
    )
    curve(
        ax,
        np.linalg.norm(ce_grad["stable"], axis=1),
        top,
        "F.cross_entropy (jax.grad = manual p − onehot)",
        ":",
        "tab:blue",
        2.5,
    )
    ax.set(
        xscale="log",
        ylim=(0, 17),
        xlabel="logit scale s",
        ylabel="‖∂loss/∂logits‖₂",
        title="Softmax cross-entropy: gradient norm (→ √2)",
    )

    ax = axes[1, 0]
    curve(
        ax,
        bce["on_sigmoid"],
        1e4,
        "F.binary_cross_entropy(F.sigmoid(z)) (log clamped at −100)",
        "-",
        "tab:red",
        3,
    )
    curve(ax, bce["with_logits"], 1e4, "F.binary_cross_entropy_with_logits(z)", ":", "tab:blue", 2.5)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="s   (label y = 1, logit z = −s: confidently wrong)",
        ylabel="BCE loss",
        title="Binary cross-entropy (wrong side): loss (exact ≈ s)",
    )

    def positive(ax, values, floor, label, style, color, lw):
        """Positive values as a line on a log axis; exact zeros (v) as markers pinned at `floor`."""
        v = np.asarray(values, np.float64)
        ax.plot(scales, np.where(v > 0, v, np.nan), style, color=color, lw=lw, label=label)
        zero = v == 0
        if zero.any():
            where = np.flatnonzero(zero)[::every]
            ax.plot(
                scales[where],
                np.full(len(where), floor),
                "v",
                color=color,
                ms=6,
                ls="none",
                label=f"  exactly 0 from s = {scales[zero][0]:.3g} (marked at {floor:g})",
            )

    ax = axes[1, 1]
    floor = 1e-12
    positive(
        ax,
        np.abs(bce_grad["on_sigmoid"]),
        floor,
        "BCE on sigmoid (torch: denominator floored at 1e-12)",
        "-",
        "tab:red",
        3,
    )
    positive(ax, np.abs(bce_grad["with_logits"]), floor, "BCE-with-logits: σ(z) − y", ":", "tab:blue", 2.5)
    ax.set(
        xscale="log",
        yscale="log",
        ylim=(floor / 3, 10),
        xlabel="s   (label y = 1, logit z = −s)",
        ylabel="|∂loss/∂z|",
        title="Binary cross-entropy (wrong side): gradient wrt the logit",
    )

    ax = axes[1, 2]
    floor = 1e-30
    positive(ax, right["on_sigmoid"], floor, "F.binary_cross_entropy(F.sigmoid(z))", "-", "tab:red", 3)
    positive(ax, right["with_logits"], floor, "F.binary_cross_entropy_with_logits(z)", ":", "tab:blue", 2.5)
    ax.set(
        xscale="log",
        yscale="log",
        ylim=(floor / 10, 10),
        xlabel="s   (label y = 1, logit z = +s: confidently right)",
        ylabel="BCE loss (exact ≈ exp(−s))",
        title="Binary cross-entropy (right side): loss; σ(s) rounds to 1",
    )
    for ax in axes.flat:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(
        "float32: naive softmax/log/BCE forms overflow, underflow or saturate; "
        "log-sum-exp and with-logits forms stay exact"
    )
    common.save_figure(fig, args.out, "stability.png")


if __name__ == "__main__":
    main()

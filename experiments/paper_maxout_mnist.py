"""Maxout Networks (Goodfellow et al., ICML 2013), permutation-invariant MNIST: 0.94% test error.

The paper's table reports 0.94% test error (94 mistakes) for a maxout MLP trained with dropout.
This script runs the authors' own configuration, pylearn2's ``scripts/papers/maxout/mnist_pi.yaml``
then ``mnist_pi_continued.yaml``, with fnn:

- **Model.** Two maxout layers of 240 units × 5 pieces, then a softmax layer (10 logits into
  the cross-entropy). A pylearn2 ``Maxout`` layer is ``nn.Linear(in, 240·5)`` + ``nn.Maxout(5)``:
  pylearn2 takes the max over ``z[:, i::5]``-strided columns, i.e. unit j's pieces are the
  contiguous columns 5j..5j+4, fnn's grouping (tests/test_nn.py checks it). Weights U(−0.005,
  0.005) (``irange``), biases 0 (pylearn2's ``init_bias`` default), every layer.
- **Dropout** (pylearn2 ``costs/mlp/dropout.py``, ``MLP.dropout_fprop``): each layer's *input*
  is masked. Input pixels keep p = 0.8 with ``input_scales: {h0: 1.}``, so the kept pixels are
  **not** rescaled (``UnscaledDropout`` below; at test time the first layer sees 1.25× the
  average training input, as the authors' model did); the inputs of h1 and of the softmax keep
  p = 0.5 with the default scale 2 (fnn's inverted ``nn.Dropout(0.5)``).
- **Max-norm.** ``max_col_norm: 1.9365`` on all three layers: pylearn2 renormalises each column
  of its (in, out) W after the update, i.e. each output unit's (each piece's) incoming weight
  vector, = ``optim.max_norm(1.9365)`` (torch.renorm, dim 0 of fnn's (out, in) weights) chained
  after the optimizer. Biases are not constrained.
- **SGD.** Batch 100, lr 0.1 decayed by ``ExponentialDecay(1.000004, min_lr=1e-6)``: the update
  after k others uses max(0.1/1.000004^k, 1e-6) = ``optim.exponential_lr(0.1, 1/1.000004,
  min_lr=1e-6)``. Momentum is pylearn2's rule v ← μv − lr·g, θ ← θ + v, which is
  ``chain(scale_by_learning_rate(lr), scale_by_sgd_momentum(μ))`` (torch's b ← μb + g, θ ← θ −
  lr·b would weigh past gradients by today's lr). μ follows ``MomentumAdjustor(start=1,
  saturate=250, final_momentum=0.7)`` from ``init_momentum=0.5``: epoch e (1-based) trains with
  μ = 0.5 + 0.2·min(1, (e − 1)/249), constant within the epoch.
- **Early stopping.** Train on MNIST train[0:50000], monitor the misclassification of
  train[50000:60000] (eval mode) after every epoch; stop after 100 epochs without a strictly
  lower value (``MonitorBased(prop_decrease=0, N=100)``); keep the best epoch's model
  (``MonitorBasedSaveBest``). Pixels are scaled to [0, 1] (pylearn2's MNIST divides by 255; no
  centring). The test set is evaluated every epoch for the figure only, never for a decision.
- **Continued phase.** From the best model, train on all 60000 with a fresh momentum buffer,
  momentum fixed at the best epoch's value and lr starting at the best epoch's value (the
  authors' yaml hard-codes their run's 0.0615082606673 and 0.694376766682, which are exactly
  this schedule at epoch 243: 0.1/1.000004^(243·500) and 0.5 + 0.2·242/249), still decaying by
  1.000004 per step. Starting from this run's own values at its own best epoch is the
  faithful generalisation of those constants: a run whose best epoch is not 243 would, under
  the yaml's literal numbers, continue with another run's learning rate and momentum.
  Stop when the dropout objective on the last 10000 (``valid_objective``, now training data)
  falls to the dropout objective on the 50000 that the best model had
  (``MatchChannel(valid_objective, train_objective of monitor_stage_0)``). pylearn2's
  "objective" channels are the dropout cost itself, evaluated with fresh dropout masks on the
  whole set at the end of the epoch; so are ours.

Departures (each also in experiments/README.md):

1. **No caps.** Both phases stop only by pylearn2's rules: phase 1 on patience
   (``MonitorBased(prop_decrease=0, N=100)``), phase 2 when the objective meets its target
   (``ChannelTarget``/``MatchChannel``). ``--max-epochs`` and ``--continue-epochs`` are opt-in
   safety limits (off by default, on in ``--quick``); results.json's ``phase1_stopped_by``
   (``patience`` or ``max_epochs``) and ``phase2_stopped_by`` (``matched`` or
   ``continue_epochs``) say which rule ended each phase, and so does the figure.
2. **Random numbers.** JAX's threefry generator instead of Theano's MRG; different init
   draws, shuffles and masks. pylearn2's monitor drew one fresh mask set per evaluation; we
   draw one per epoch from a fixed key per epoch.
3. **Max-norm factor.** torch.renorm scales an over-long row by maxnorm/(n + 1e-7), pylearn2 by
   maxnorm/n (its 1e-7 guards only n < 1e-7): a relative difference of 5e-8 on clipped rows.
4. Everything else (float32, batch order reshuffled every epoch as pylearn2's
   ``shuffled_sequential``, the last batch never partial since 100 divides 50000 and 60000) is
   as in the yaml.

Variants (``--variants``): ``maxout`` (the protocol), ``maxout_no_maxnorm`` (the same without
the max-norm constraint) and ``relu`` (2 × 800 ReLU units instead of 2 × 240 maxout units of 5
pieces: 1.27M weights vs maxout's 1.23M, so the same parameter and compute budget; the same
dropout, init, max-norm and optimizer).

Writes results.json (config, per-epoch history of both phases, the test error and mistakes)
and curves.png (validation and test error per epoch, the early-stopping point, the continued
phase and its stopping criterion).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time

import common  # puts the repository root on sys.path
import jax
import jax.numpy as jnp
import numpy as np

from fnn import data, init, nn, optim, train
from fnn import functional as F

NAME = "paper_maxout_mnist"
PAPER_ERROR, PAPER_MISTAKES = 0.94, 94
# fit counts epochs up to a total; with no cap the callbacks' stopping rules alone end a phase
UNCAPPED = 2**62
VARIANTS = ("maxout", "maxout_no_maxnorm", "relu")


@dataclasses.dataclass(frozen=True)
class UnscaledDropout(nn.Layer):
    """pylearn2's dropout with input scale 1: keep each element with probability 1 − p and do
    not rescale the kept ones (fnn's nn.Dropout divides them by 1 − p). Identity in eval."""

    p: float

    def apply(self, params, state, x, *, key=None, train):
        y, state = nn.Dropout(self.p).apply(params, state, x, key=key, train=train)
        return (y * (1 - self.p) if train else y), state

    def apply_vjp(self, params, state, x, *, key=None, train):
        y, state, pullback = nn.Dropout(self.p).apply_vjp(params, state, x, key=key, train=train)
        if not train:
            return y, state, pullback
        return y * (1 - self.p), state, lambda g: pullback(g * (1 - self.p))


def build_model(
    variant: str,
    units: int,
    pieces: int,
    irange: float,
    relu_units: int,
    input_drop: float = 0.2,
    hidden_drop: float = 0.5,
) -> nn.Sequential:
    """The yaml's MLP: unscaled input dropout, then (affine, maxout or ReLU, dropout) × 2, then an
    affine map to 10 logits (the softmax is inside the cross-entropy).

    Args:
      variant: one of ``VARIANTS``; ``relu`` uses ``relu_units`` ReLUs per layer.
      units, pieces: maxout units per layer and pieces per unit.
      irange: weights are U(−irange, irange), biases 0.
      relu_units: the width of the ReLU variant's layers.
      input_drop, hidden_drop: dropout probabilities (1 − pylearn2's include probabilities) of
        the pixels (kept ones not rescaled) and of the hidden layers' outputs (kept ones
        rescaled by 1/(1 − p), pylearn2's default scale 2 for 0.5).

    Returns:
      The ``nn.Sequential``.
    """
    uniform = functools.partial(init.uniform, a=-irange, b=irange)

    def linear(n_in, n_out):
        return nn.Linear(n_in, n_out, weight_init=uniform, bias_init=init.zeros)

    layers: list[nn.Layer] = [UnscaledDropout(input_drop)]
    width = 784
    for _ in range(2):
        if variant == "relu":
            layers += [linear(width, relu_units), nn.ReLU(), nn.Dropout(hidden_drop)]
            width = relu_units
        else:
            layers += [linear(width, units * pieces), nn.Maxout(pieces), nn.Dropout(hidden_drop)]
            width = units
    layers.append(linear(width, 10))
    return nn.Sequential(*layers)


def _momentum_adjustor(step, init_momentum, final_momentum, start, saturate, steps_per_epoch):
    """pylearn2's MomentumAdjustor: its epoch count during epoch e (1-based) is e."""
    count = jnp.asarray(step) // steps_per_epoch + 1
    alpha = jnp.clip((count - start) / (saturate - start), 0.0, 1.0)
    return init_momentum * (1 - alpha) + alpha * final_momentum


def momentum_schedule(
    steps_per_epoch: int,
    init_momentum: float = 0.5,
    final_momentum: float = 0.7,
    start: int = 1,
    saturate: int = 250,
) -> optim.LRSchedule:
    """pylearn2's ``MomentumAdjustor`` as a step schedule: constant within an epoch, epoch e
    (1-based) uses init + (final − init)·clip((e − start)/(saturate − start), 0, 1)."""
    return optim.LRSchedule(
        "momentum_adjustor",
        _momentum_adjustor,
        dict(
            init_momentum=init_momentum,
            final_momentum=final_momentum,
            start=start,
            saturate=saturate,
            steps_per_epoch=steps_per_epoch,
        ),
    )


def make_optimizer(lr, momentum, max_col_norm: float | None) -> optim.GradientTransformation:
    """pylearn2's SGD: v ← μv − lr·g, θ ← θ + v, then the max-norm projection of the weights."""
    links = [optim.scale_by_learning_rate(lr), optim.scale_by_sgd_momentum(momentum)]
    if max_col_norm is not None:
        links.append(optim.max_norm(max_col_norm))
    return optim.chain(*links)


@functools.lru_cache(maxsize=8)
def _dropout_objective_fn(model, batch_size):
    """Mean cross-entropy of the model *with* dropout (training mode) over a whole set: the
    value of pylearn2's '<set>_objective' channel for a Dropout cost."""

    def run(params, state, x, y, key):
        n = x.shape[0] // batch_size
        xb, yb = x[: n * batch_size].reshape(n, batch_size, -1), y[: n * batch_size].reshape(n, batch_size)

        def body(total, inputs):
            xi, yi, k = inputs
            out, _ = model.apply(params, state, xi, key=k, train=True)
            return total + F.cross_entropy(out, yi, reduction="sum"), None

        total, _ = jax.lax.scan(body, jnp.zeros(()), (xb, yb, jax.random.split(key, n)))
        return total / (n * batch_size)

    return jax.jit(run)


def dropout_objective(model, params, state, xy, key, batch_size=1000) -> float:
    x, y = xy
    return float(_dropout_objective_fn(model, min(batch_size, x.shape[0]))(params, state, x, y, key))


def error(model, params, state, xy) -> tuple[float, int]:
    """(misclassification rate, number of mistakes) in eval mode."""
    acc = train.evaluate(model, params, state, xy, batch_size=1000)["accuracy"]
    return 1 - acc, round((1 - acc) * len(xy[1]))


class Monitor(train.Callback):
    """pylearn2's monitor between epochs. Phase 'early': valid/test error, and the dropout
    objective on the training set at every new best validation error (the continued phase's
    target). Phase 'continue': test error and the dropout objective on the former validation
    set, and the MatchChannel stop."""

    def __init__(self, phase, model, sets, key, momentum, target=None, log=print):
        self.phase, self.model, self.sets, self.key, self.momentum = phase, model, sets, key, momentum
        self.target, self.log = target, log
        self.best, self.best_epoch, self.train_objective_at_best = math.inf, None, None
        self.matched_epoch = None

    def on_epoch_end(self, run, record):
        ts = run.train_state
        k = jax.random.fold_in(self.key, record["epoch"])
        record["momentum"] = float(self.momentum(ts.step - 1))
        for name in ("valid", "test"):
            record[f"{name}_error"], record[f"{name}_mistakes"] = error(
                self.model, ts.params, ts.state, self.sets[name]
            )
        note = ""
        if self.phase == "early":
            if record["valid_error"] < self.best:  # strictly lower: MonitorBased / SaveBest
                self.best, self.best_epoch = record["valid_error"], record["epoch"]
                self.train_objective_at_best = dropout_objective(
                    self.model, ts.params, ts.state, self.sets["train"], k
                )
                record["train_objective"] = self.train_objective_at_best
                note = " *"
        else:
            record["valid_objective"] = dropout_objective(
                self.model, ts.params, ts.state, self.sets["valid"], k
            )
            note = f"  valid_objective {record['valid_objective']:.5f} (target {self.target:.5f})"
            if record["valid_objective"] <= self.target:  # MatchChannel: continue while current > target
                self.matched_epoch = record["epoch"]
                run.stop_training = True
        self.log(
            f"{self.phase} epoch {record['epoch']:4d}  loss {record['train_loss']:.4f}  "
            f"lr {record['lr']:.5f}  mu {record['momentum']:.4f}  "
            f"valid {100 * record['valid_error']:.2f}%  "
            f"test {100 * record['test_error']:.2f}% ({record['test_mistakes']})  "
            f"{record['seconds']:.1f}s{note}"
        )


def load_mnist(quick: bool):
    """pylearn2's splits, pixels / 255 as float32 (784 features)."""
    xtr, ytr = data.mnist("train")
    xte, yte = data.mnist("test")
    x = (xtr.reshape(len(xtr), -1) / np.float32(255)).astype(np.float32)
    xt = (xte.reshape(len(xte), -1) / np.float32(255)).astype(np.float32)
    n_train, n_valid, n_test = (2000, 500, 500) if quick else (50000, 10000, 10000)
    tr = (jnp.asarray(x[:n_train]), jnp.asarray(ytr[:n_train]))
    va = (jnp.asarray(x[50000 : 50000 + n_valid]), jnp.asarray(ytr[50000 : 50000 + n_valid]))
    full = (jnp.concatenate([tr[0], va[0]]), jnp.concatenate([tr[1], va[1]]))
    te = (jnp.asarray(xt[:n_test]), jnp.asarray(yte[:n_test]))
    return {"train": tr, "valid": va, "full": full, "test": te}


def run_protocol(variant: str, cfg: dict, sets: dict, seed: int, log=print) -> dict:
    """Both phases of the protocol for one variant and seed.

    Args:
      variant: one of ``VARIANTS``.
      cfg: the configuration ``main`` builds (the yaml's numbers and the caps).
      sets: ``load_mnist``'s splits.
      seed: the run's PRNG seed (init, shuffles, masks).
      log: where the per-epoch lines go.

    Returns:
      A JSON-able dict: both phases' histories, the best epoch, the final test error and mistakes.
    """
    model = build_model(
        variant,
        cfg["units"],
        cfg["pieces"],
        cfg["irange"],
        cfg["relu_units"],
        cfg["input_drop"],
        cfg["hidden_drop"],
    )
    max_col_norm = None if variant == "maxout_no_maxnorm" else cfg["max_col_norm"]
    bs = cfg["batch_size"]
    steps_per_epoch = len(sets["train"][1]) // bs
    gamma = 1 / cfg["decay_factor"]
    lr = optim.exponential_lr(cfg["lr"], gamma, min_lr=cfg["min_lr"])
    momentum = momentum_schedule(
        steps_per_epoch, cfg["init_momentum"], cfg["final_momentum"], 1, cfg["momentum_saturate"]
    )
    key_init, _key_run, key_mon, key_cont, key_mon2 = jax.random.split(jax.random.key(seed), 5)

    # Phase 1: early stopping on the validation error.
    mon = Monitor(
        "early",
        model,
        {"train": sets["train"], "valid": sets["valid"], "test": sets["test"]},
        key_mon,
        momentum,
        log=log,
    )
    stop = train.EarlyStopping(monitor="valid_error", mode="min", patience=cfg["patience"], restore_best=True)
    t0 = time.perf_counter()
    first = train.fit(
        model,
        F.cross_entropy,
        make_optimizer(lr, momentum, max_col_norm),
        sets["train"],
        epochs=cfg["max_epochs"] or UNCAPPED,
        batch_size=bs,
        key=key_init,
        callbacks=[mon, stop],
        progress=False,
    )
    phase1_seconds = time.perf_counter() - t0
    best = first.train_state
    assert best.epoch == mon.best_epoch, (best.epoch, mon.best_epoch)
    at_best = first.history[best.epoch - 1]
    result = {
        "variant": variant,
        "seed": seed,
        "best_epoch": best.epoch,
        "phase1_epochs": len(first.history),
        "phase1_stopped_by": "patience" if stop.stopped_epoch else "max_epochs",
        "best_valid_error": at_best["valid_error"],
        "test_error_at_best": at_best["test_error"],
        "test_mistakes_at_best": at_best["test_mistakes"],
        "train_objective_at_best": mon.train_objective_at_best,
        "phase1_seconds": phase1_seconds,
        "phase1_history": first.history,
    }
    log(
        f"[{variant} seed {seed}] best epoch {best.epoch}: valid {100 * at_best['valid_error']:.2f}%, "
        f"test {100 * at_best['test_error']:.2f}% ({at_best['test_mistakes']} mistakes); "
        f"train objective {mon.train_objective_at_best:.5f}; phase 1 {phase1_seconds:.0f} s"
    )
    if not cfg["continue_phase"]:
        result.update(
            test_error=at_best["test_error"], test_mistakes=at_best["test_mistakes"], final="best epoch"
        )
        return result

    # Phase 2: all 60000, from the best model; lr and momentum where they were at the best epoch.
    lr_best = float(lr(best.step))
    mu_best = float(momentum(best.step - 1))
    lr2 = optim.exponential_lr(lr_best, gamma, min_lr=min(cfg["min_lr"], lr_best))
    mon2 = Monitor(
        "continue",
        model,
        {"valid": sets["valid"], "test": sets["test"]},
        key_mon2,
        lambda step: mu_best,
        target=mon.train_objective_at_best,
        log=log,
    )
    t0 = time.perf_counter()
    second = train.fit(
        model,
        F.cross_entropy,
        make_optimizer(lr2, mu_best, max_col_norm),
        sets["full"],
        epochs=cfg["continue_epochs"] or UNCAPPED,
        batch_size=bs,
        key=key_cont,
        params=best.params,
        state=best.state,
        callbacks=[mon2],
        progress=False,
    )
    last = second.history[-1]
    result.update(
        lr_at_best=lr_best,
        momentum_at_best=mu_best,
        phase2_epochs=len(second.history),
        phase2_stopped_by="matched" if mon2.matched_epoch else "continue_epochs",
        phase2_seconds=time.perf_counter() - t0,
        phase2_history=second.history,
        test_error=last["test_error"],
        test_mistakes=last["test_mistakes"],
        final="after continued phase",
    )
    log(
        f"[{variant} seed {seed}] continued {len(second.history)} epochs ({result['phase2_stopped_by']}): "
        f"test {100 * last['test_error']:.2f}% ({last['test_mistakes']} mistakes); "
        f"phase 2 {result['phase2_seconds']:.0f} s"
    )
    return result


def plot(plt, runs: list[dict], out: str) -> None:
    """Validation and test error per epoch, the early-stopping point and the continued phase."""
    continued = any("phase2_history" in r for r in runs)
    if continued:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2.2, 1]})
    else:  # no continued phase (--no-continue): nothing for a second panel to show
        fig, ax0 = plt.subplots(figsize=(9, 4.8))
        axes = [ax0]
    colors = {"maxout": "tab:blue", "maxout_no_maxnorm": "tab:orange", "relu": "tab:green"}
    ax = axes[0]
    for r in runs:
        c = colors[r["variant"]]
        h1 = r["phase1_history"]
        ep = [h["epoch"] for h in h1]
        label = f"{r['variant']} (seed {r['seed']})"
        ax.plot(
            ep,
            [100 * h["valid_error"] for h in h1],
            "-",
            color=c,
            lw=1,
            alpha=0.55,
            label=f"{label}: validation (train[50k:60k])",
        )
        ax.plot(ep, [100 * h["test_error"] for h in h1], "-", color=c, lw=1.3, label=f"{label}: test")
        ax.axvline(
            r["best_epoch"],
            color=c,
            ls="--",
            lw=1,
            label=f"{label}: best epoch; phase 1 ended by {r['phase1_stopped_by']}",
        )
        ax.plot([r["best_epoch"]], [100 * r["test_error_at_best"]], "o", color=c)
        if "phase2_history" in r:
            h2 = r["phase2_history"]
            x0 = ep[-1]
            ax.axvspan(x0, x0 + len(h2), color=c, alpha=0.07)
            # the continued phase starts from the best epoch's model: draw it from that point
            ax.plot(
                [x0] + [x0 + h["epoch"] for h in h2],
                [100 * r["test_error_at_best"]] + [100 * h["test_error"] for h in h2],
                "-",
                color="black",
                lw=1.3,
                label=f"{label}: test, continued on all 60k from the best epoch's model",
            )
            ax.plot(
                [x0 + len(h2)],
                [100 * r["test_error"]],
                "*",
                color="black",
                ms=12,
                label=(
                    f"final: {100 * r['test_error']:.2f}% ({r['test_mistakes']} mistakes); "
                    f"phase 2 ended by {r['phase2_stopped_by']}"
                ),
            )
    ax.axhline(PAPER_ERROR, color="red", ls=":", lw=1.2, label=f"paper: {PAPER_ERROR}% ({PAPER_MISTAKES})")
    ax.set(
        xlabel="epoch (continued phase appended after the early-stopping run, shaded)",
        ylabel="misclassification (%)",
        title="Validation and test error per epoch (dashed: early-stopping point, the best validation epoch)",
    )
    lo = min(100 * h["test_error"] for r in runs for h in r["phase1_history"])
    ax.set_ylim(max(0.0, min(lo, PAPER_ERROR) - 0.3), max(3.0, lo + 2.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    if not continued:
        common.save_figure(fig, out, "curves.png")
        return
    ax = axes[1]
    for r in runs:
        if "phase2_history" not in r:
            continue
        h2 = r["phase2_history"]
        c = colors[r["variant"]]
        ax.plot(
            [h["epoch"] for h in h2],
            [h["valid_objective"] for h in h2],
            "o-",
            color=c,
            ms=3,
            label="dropout objective on train[50k:60k]",
        )
        ax.axhline(
            r["train_objective_at_best"],
            color="gray",
            ls="--",
            label="target: dropout objective on train[0:50k] at the best epoch",
        )
    ax.set(
        xlabel="continued epoch (all 60k)",
        ylabel="cross-entropy with dropout",
        title="Continued phase: stop when the objective\nfalls to the target (pylearn2 MatchChannel)",
    )
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)
    common.save_figure(fig, out, "curves.png")


def budget_rows(paths: list[str], budget: int) -> list[dict]:
    """The variant table at a budget of ``budget`` epochs, from results.json files: for every run,
    the epoch of lowest validation error (first of ties) among its first ``budget`` epochs, and
    that epoch's test error. The schedules do not depend on the cap, so for a longer run this
    is exactly what a run capped at ``budget`` epochs would have selected."""
    rows = []
    for path in paths:
        with open(path) as f:
            for r in json.load(f)["runs"]:
                h = r["phase1_history"][:budget]
                best = min(h, key=lambda e: (e["valid_error"], e["epoch"]))
                rows.append(
                    {
                        "variant": r["variant"],
                        "seed": r["seed"],
                        "epochs": len(h),
                        "best_epoch": best["epoch"],
                        "valid_err%": 100 * best["valid_error"],
                        "test_err%": 100 * best["test_error"],
                        "mistakes": best["test_mistakes"],
                        "final_train_loss": h[-1]["train_loss"],
                    }
                )
    return rows


def main() -> None:
    def extra(p):
        p.add_argument("--variants", default="maxout", help=f"comma-separated, from {', '.join(VARIANTS)}")
        p.add_argument("--seeds", default="0", help="comma-separated seeds")
        p.add_argument(
            "--max-epochs",
            type=int,
            default=None,
            help="opt-in safety cap on the early-stopping phase (none)",
        )
        p.add_argument(
            "--patience", type=int, default=None, help="epochs without a new best validation error (100)"
        )
        p.add_argument("--replot", action="store_true", help="redraw curves.png from --out's results.json")
        p.add_argument(
            "--table",
            default=None,
            metavar="RESULTS,...",
            help="print the variant table at --budget epochs from these results.json files",
        )
        p.add_argument("--budget", type=int, default=40, help="epochs of the variant table (--table)")
        p.add_argument(
            "--continue-epochs",
            type=int,
            default=None,
            help="opt-in safety cap on the continued phase (none)",
        )
        p.add_argument("--no-continue", action="store_true", help="stop after the early-stopping phase")

    args = common.parse_args(NAME, __doc__.splitlines()[0], extra)
    if args.table:
        common.print_table(budget_rows(args.table.split(","), args.budget))
        return
    if args.replot:
        with open(f"{args.out}/results.json") as f:
            plot(common.pyplot(), json.load(f)["runs"], args.out)
        return
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"--variants: unknown variant {v!r}; choose from {VARIANTS}")
    seeds = [int(s) for s in args.seeds.split(",")]
    # relu_units: 2 × 800 ReLUs have 1.27M weights, the maxout net 1.23M (same budget)
    cfg = dict(
        units=240,
        pieces=5,
        relu_units=800,
        irange=0.005,
        max_col_norm=1.9365,
        input_drop=0.2,
        hidden_drop=0.5,
        batch_size=100,
        lr=0.1,
        decay_factor=1.000004,
        min_lr=1e-6,
        init_momentum=0.5,
        final_momentum=0.7,
        momentum_saturate=250,
        patience=100,
        max_epochs=None,  # pylearn2 stops on patience alone
        continue_epochs=None,  # ... and on the matched objective alone
        continue_phase=not args.no_continue,
    )
    if args.quick:
        cfg.update(units=24, relu_units=80, patience=2, max_epochs=3, continue_epochs=2)
    for name, value in (
        ("patience", args.patience),
        ("max_epochs", args.max_epochs),
        ("continue_epochs", args.continue_epochs),
    ):
        if value is not None:
            cfg[name] = value
    sets = load_mnist(args.quick)
    cfg.update(
        n_train=len(sets["train"][1]),
        n_valid=len(sets["valid"][1]),
        n_test=len(sets["test"][1]),
        variants=variants,
        seeds=seeds,
        jax_backend=jax.default_backend(),
    )
    print(f"config: {cfg}", flush=True)

    log_path = f"{args.out}/log.txt"
    with open(log_path, "w") as log_file:

        def log(line):
            print(line, flush=True)
            log_file.write(line + "\n")
            log_file.flush()

        t_start = time.perf_counter()
        runs = [run_protocol(v, cfg, sets, s, log) for v in variants for s in seeds]
        wall = time.perf_counter() - t_start

    rows = [
        {
            "variant": r["variant"],
            "seed": r["seed"],
            "best_epoch": r["best_epoch"],
            "phase1_epochs": r["phase1_epochs"],
            "phase1_stop": r["phase1_stopped_by"],
            "valid_err%": 100 * r["best_valid_error"],
            "test_err%_at_best": 100 * r["test_error_at_best"],
            "phase2_epochs": r.get("phase2_epochs", 0),
            "phase2_stop": r.get("phase2_stopped_by", "-"),
            "test_err%": 100 * r["test_error"],
            "mistakes": r["test_mistakes"],
            "minutes": (r["phase1_seconds"] + r.get("phase2_seconds", 0)) / 60,
        }
        for r in runs
    ]
    print()
    common.print_table(rows)
    print(
        f"paper (Goodfellow et al. 2013, maxout, permutation-invariant MNIST): {PAPER_ERROR}% test error, "
        f"{PAPER_MISTAKES} mistakes"
    )
    for r in runs:
        print(
            f"fnn {r['variant']} seed {r['seed']}: {100 * r['test_error']:.2f}% test error, "
            f"{r['test_mistakes']} mistakes of {cfg['n_test']} ({r['final']})"
        )
    print(f"wall {wall / 60:.1f} min")
    paper = {"test_error_percent": PAPER_ERROR, "mistakes": PAPER_MISTAKES}
    results = {
        "experiment": NAME,
        "quick": args.quick,
        "config": cfg,
        "paper": paper,
        "summary": rows,
        "runs": runs,
        "wall_seconds": wall,
    }
    common.save_json(args.out, results)
    plt = common.pyplot()
    if plt is not None:
        plot(plt, runs, args.out)


if __name__ == "__main__":
    main()

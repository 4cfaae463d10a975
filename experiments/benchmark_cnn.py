"""CNN training and evaluation speed on the CPU, side by side: fnn (autodiff and manual
gradients) against a hand-written JAX epoch, Flax NNX, Equinox + optax and PyTorch eager.

Workload (every row the same): the modern CNN of ``fnn.models.cnn()`` (its layers read off the
fnn model, ``arch_of``; until fnn has that model, ``DEFAULT_ARCH``: Conv(1→16, 3, pad 1)
BatchNorm2d ReLU MaxPool2 | Conv(16→32, 3, pad 1) BatchNorm2d ReLU MaxPool2 | Flatten
Linear(1568→10)), mean cross-entropy, SGD lr 0.01 with torch's momentum 0.9 and weight decay
1e-4 on the weight tensors only (``benchmark_training``'s optimizer), BatchNorm eps 1e-5 and
momentum 0.1. Every row starts from the same weights: fnn's ``model.init`` (torch's init
scheme) written as a torch ``state_dict`` and loaded by each framework (Flax's kernels
transposed to its HWIO / NHWC convention), so the rows differ only in how they compute.
Training data: the first ``--samples`` MNIST training images (``fnn.data``, normalized,
float32 (N, 1, 28, 28)); the last partial batch is dropped. Evaluation: the first ``--eval-samples``
test images (a multiple of every batch size, so every row does the same batches).

Rows (each ``(row, batch)`` in its own process; ``--quick`` runs them in this one):
- ``fnn-autodiff``, ``fnn-manual``: ``fnn.train.make_train_epoch`` (what ``fit`` compiles), one
  ``lax.scan`` per epoch; ``fnn-evaluate``: ``fnn.train.evaluate`` (BatchNorm folded where fnn
  folds it). ``fnn-autodiff-loop``, ``fnn-manual-loop``: fnn's jitted step
  (``make_train_step``) called per batch from Python, not fit's path: what the scan costs.
- ``pure-jax``: the hand-written epoch: NCHW ``lax.conv_general_dilated``, ``lax.reduce_window``
  max-pool, batch statistics over (N, H, W), ``jax.value_and_grad``, one ``lax.scan``;
  ``pure-jax-eval``: its eval-mode forward scanned over the batches. ``pure-jax-loop`` (+
  ``-eval``): the same step (batch) jitted alone and called from a Python loop, because XLA:CPU
  runs convolutions inside a loop body far slower (``LoopEpoch``).
- ``flax-nnx``, ``equinox`` (+ ``-eval``): ``benchmark_peers``'s CNN epochs, written as that
  module's MLP rows are (Flax NNX split/merge around a scanned step, NHWC as flax's ``nnx.Conv``
  expects; Equinox's per-example modules under ``jax.vmap``), where the library imports (the
  ``bench`` extra); skipped with a note otherwise.
- ``torch-Nt`` / ``torch-cl-Nt`` (+ ``torch-eval``, ``torch-cl-eval``): PyTorch eager,
  ``nn.Sequential`` of the same layers, N = all cores and 1 intra-op threads, in NCHW and in
  ``channels_last`` (model and every batch), ``OMP_WAIT_POLICY=PASSIVE`` (see
  ``benchmark_training``); skipped with a note where torch is missing.

Measured: samples/s (median over every timed epoch of every round, rounds interleaved row by
row; the best epoch is in results.json) and samples/CPU-s (the same, on process CPU time),
GFLOP/s = samples/s × the model's FLOPs per sample (``flops``: 2 × the multiply-adds of every
conv and linear forward; training counts 3× that: forward, input gradient, weight gradient),
as a share of the float32 matmul peak (a jitted ``jnp.dot`` of two 2048² matrices, best of
several, in the same run), compile seconds (JAX training rows: ``lower().compile()``; eval
rows: the first call, compile plus one pass) and each process's peak RSS.
Targets (issue 24): fnn ≥ 1.0× the hand-written JAX and ≥ 1.0× the fastest torch row, at every
batch size, in training and in evaluation. ``--quick``: ``cnn(QUICK_CHANNELS)``, 128 samples,
batch 64, one round.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import benchmark_training as bt
import common
import numpy as np

NAME = "benchmark_cnn"
IMAGE = (1, 28, 28)
DEFAULT_ARCH = (
    {"op": "conv", "in": 1, "out": 16, "k": 3, "stride": 1, "padding": 1, "bias": True},
    {"op": "bn", "c": 16},
    {"op": "relu"},
    {"op": "maxpool", "k": 2, "stride": 2},
    {"op": "conv", "in": 16, "out": 32, "k": 3, "stride": 1, "padding": 1, "bias": True},
    {"op": "bn", "c": 32},
    {"op": "relu"},
    {"op": "maxpool", "k": 2, "stride": 2},
    {"op": "flatten"},
    {"op": "linear", "in": 1568, "out": 10, "bias": True},
)
QUICK_CHANNELS = (4, 8)  # --quick's widths: the test suite runs every row's code in seconds
FNN_TRAIN, FNN_EVAL = ("fnn-autodiff", "fnn-manual"), ("fnn-evaluate",)
FNN_LOOP = ("fnn-autodiff-loop", "fnn-manual-loop")  # not fit's path: what the scan costs
PEERS = tuple(bt.PEER_IMPLS)  # flax-nnx, equinox: the libraries each needs are bt's
TORCH_KINDS = ("torch", "torch-cl")


def _options(parser) -> None:
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per row and round (default 1)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved sweeps over the rows (default 3)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 128 512 (quick 64)")
    parser.add_argument("--samples", type=int, default=None, help="training images (default 512, quick 128)")
    parser.add_argument(
        "--eval-samples", type=int, default=None, help="test images per eval pass (default 512, quick 128)"
    )
    parser.add_argument("--rows", nargs="+", default=None, help="only these rows (names as in the table)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one row's spec


# ---------------------------------------------------------------- the architecture


def fnn_model(quick: bool = False):
    """``(model, note)``: ``fnn.models.cnn()`` (``--quick``: ``cnn(QUICK_CHANNELS)``, the same
    layers at 1/8 of the widths); else ``DEFAULT_ARCH`` built from fnn's layers; else
    ``(None, why)`` (fnn has no conv layers yet)."""
    from fnn import models, nn

    missing = [n for n in ("Conv2d", "BatchNorm2d", "MaxPool2d") if not hasattr(nn, n)]
    if missing:
        return None, f"fnn.nn has no {', '.join(missing)} yet"
    if hasattr(models, "cnn"):
        if quick:
            return models.cnn(QUICK_CHANNELS), f"fnn.models.cnn({QUICK_CHANNELS}) (--quick)"
        return models.cnn(), "fnn.models.cnn()"
    return build_fnn(DEFAULT_ARCH), "DEFAULT_ARCH in fnn.nn layers (fnn.models has no cnn yet)"


def build_fnn(arch):
    """An ``fnn.nn.Sequential`` of ``arch``'s layers."""
    from fnn import nn

    def layer(spec):
        op = spec["op"]
        if op == "conv":
            return nn.Conv2d(
                spec["in"], spec["out"], spec["k"], spec["stride"], spec["padding"], bias=spec["bias"]
            )
        if op == "linear":
            return nn.Linear(spec["in"], spec["out"], bias=spec["bias"])
        simple = {"bn": lambda: nn.BatchNorm2d(spec["c"]), "bn1d": lambda: nn.BatchNorm1d(spec["c"])}
        simple |= {
            "relu": nn.ReLU,
            "flatten": nn.Flatten,
            "unflatten": lambda: nn.Unflatten(1, spec["shape"]),
        }
        simple |= {"maxpool": lambda: nn.MaxPool2d(spec["k"], spec["stride"])}
        simple |= {"dropout": lambda: nn.Dropout(spec["p"]), "dropout2d": lambda: nn.Dropout2d(spec["p"])}
        simple |= {"gap": lambda: nn.AdaptiveAvgPool2d(1)}
        return simple[op]()

    return nn.Sequential(*(layer(s) for s in arch))


def _square(value, what: str) -> int:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(set(values)) != 1 or not isinstance(values[0], int):
        raise NotImplementedError(f"benchmark_cnn: {what} {value!r}: the peer rows build square ints only")
    return values[0]


def arch_of(model) -> tuple[dict, ...]:
    """The layer list every row builds, read off an fnn ``Sequential`` (torch's attribute names).

    Supported: Conv2d (square kernel, stride, padding; dilation 1, groups 1, zero padding),
    BatchNorm2d/1d (eps 1e-5, momentum 0.1), ReLU, MaxPool2d (no padding), Dropout, Dropout2d,
    Flatten, Unflatten(1, ...), Linear, AdaptiveAvgPool2d(1). Anything else raises
    NotImplementedError.
    """
    arch = []
    for i, layer in enumerate(model.layers):
        kind = type(layer).__name__
        if kind == "Conv2d":
            if _square(layer.dilation, "dilation") != 1 or layer.groups != 1 or layer.padding_mode != "zeros":
                raise NotImplementedError(f"benchmark_cnn: layer {i}: {layer}")
            spec = {"op": "conv", "in": layer.in_channels, "out": layer.out_channels}
            spec |= {
                "k": _square(layer.kernel_size, "kernel_size"),
                "stride": _square(layer.stride, "stride"),
            }
            spec |= {"padding": _square(layer.padding, "padding"), "bias": bool(layer.bias)}
        elif kind in ("BatchNorm2d", "BatchNorm1d"):
            if (layer.eps, layer.momentum) != (1e-5, 0.1) or not layer.affine:
                raise NotImplementedError(f"benchmark_cnn: layer {i}: {layer}")
            spec = {"op": "bn" if kind == "BatchNorm2d" else "bn1d", "c": layer.num_features}
        elif kind == "MaxPool2d":
            k = _square(layer.kernel_size, "kernel_size")
            stride = k if layer.stride is None else _square(layer.stride, "stride")
            if _square(layer.padding, "padding") != 0 or getattr(layer, "ceil_mode", False):
                raise NotImplementedError(f"benchmark_cnn: layer {i}: {layer}")
            spec = {"op": "maxpool", "k": k, "stride": stride}
        elif kind in ("Dropout", "Dropout2d"):
            spec = {"op": kind.lower(), "p": float(layer.p)}
        elif kind == "Linear":
            spec = {
                "op": "linear",
                "in": layer.in_features,
                "out": layer.out_features,
                "bias": bool(layer.bias),
            }
        elif kind == "AdaptiveAvgPool2d" and _square(layer.output_size, "output_size") == 1:
            spec = {"op": "gap"}
        elif kind == "Unflatten" and layer.dim == 1:
            spec = {"op": "unflatten", "shape": list(layer.unflattened_size)}
        elif kind in ("ReLU", "Flatten"):
            spec = {"op": kind.lower()}
        else:
            raise NotImplementedError(f"benchmark_cnn: layer {i}: {kind} has no peer-row version here")
        arch.append(spec)
    return tuple(arch)


def shapes(arch) -> list[tuple[int, ...]]:
    """Each layer's input shape for one sample, then the output's: (C, H, W) or (features,)."""
    shape, out = IMAGE, [IMAGE]
    for spec in arch:
        op = spec["op"]
        if op == "conv":
            h, w = ((d + 2 * spec["padding"] - spec["k"]) // spec["stride"] + 1 for d in shape[1:])
            shape = (spec["out"], h, w)
        elif op == "maxpool":
            shape = (shape[0], *((d - spec["k"]) // spec["stride"] + 1 for d in shape[1:]))
        elif op == "gap":
            shape = (shape[0], 1, 1)
        elif op == "flatten":
            shape = (int(np.prod(shape)),)
        elif op == "unflatten":
            shape = tuple(spec["shape"])
        elif op == "linear":
            shape = (spec["out"],)
        out.append(shape)
    return out


def flops(arch) -> int:
    """Forward FLOPs of one sample: 2 × the multiply-adds of every conv and linear layer."""
    total = 0
    for spec, shape_out in zip(arch, shapes(arch)[1:], strict=True):
        if spec["op"] == "conv":
            total += 2 * spec["out"] * spec["in"] * spec["k"] ** 2 * shape_out[1] * shape_out[2]
        elif spec["op"] == "linear":
            total += 2 * spec["in"] * spec["out"]
    return total


def initial_weights(model) -> dict[str, np.ndarray]:
    """The weights every row starts from: ``model.init(key(0))`` as a torch ``state_dict``."""
    import jax

    return {k: np.asarray(v) for k, v in model.state_dict(*model.init(jax.random.key(0))).items()}


def torch_init_weights(arch, seed: int = 0) -> dict[str, np.ndarray]:
    """torch's default init in numpy, for when fnn has no conv layers: conv and linear weights
    and biases uniform in ±1/sqrt(fan_in) (kaiming_uniform with a = sqrt 5), BatchNorm 1 and 0."""
    rng, weights = np.random.default_rng(seed), {}
    for i, spec in enumerate(arch):
        if spec["op"] in ("conv", "linear"):
            fan_in = spec["in"] * spec.get("k", 1) ** 2
            shape = (
                (spec["out"], spec["in"], spec["k"], spec["k"])
                if spec["op"] == "conv"
                else (spec["out"], spec["in"])
            )
            bound = 1 / np.sqrt(fan_in)
            weights[f"{i}.weight"] = rng.uniform(-bound, bound, shape).astype(np.float32)
            if spec["bias"]:
                weights[f"{i}.bias"] = rng.uniform(-bound, bound, spec["out"]).astype(np.float32)
        elif spec["op"] in ("bn", "bn1d"):
            c = spec["c"]
            weights |= {f"{i}.weight": np.ones(c, np.float32), f"{i}.bias": np.zeros(c, np.float32)}
            weights |= {
                f"{i}.running_mean": np.zeros(c, np.float32),
                f"{i}.running_var": np.ones(c, np.float32),
            }
            weights[f"{i}.num_batches_tracked"] = np.zeros((), np.int64)
    return weights


# ---------------------------------------------------------------- the hand-written JAX rows


def _conv(x, w, b, spec):
    from jax import lax

    p, s = spec["padding"], spec["stride"]
    y = lax.conv_general_dilated(x, w, (s, s), ((p, p), (p, p)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y if b is None else y + b[None, :, None, None]


def _max_pool(x, spec):
    import jax.numpy as jnp
    from jax import lax

    k, s = spec["k"], spec["stride"]
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, s, s), "VALID")


def _relu(x):
    import jax.numpy as jnp

    return jnp.where(x > 0, x, 0.0)


def _dropout(x, key, p, per_channel):
    """Inverted dropout: a keep decision per element, or per (sample, channel) (dropout2d)."""
    import jax
    import jax.numpy as jnp

    shape = x.shape[:2] + (1,) * (x.ndim - 2) if per_channel else x.shape
    keep = jax.random.bernoulli(key, 1.0 - p, shape)
    return jnp.where(keep, x / (1.0 - p), 0.0)


def _batch_norm(x, params, state, i, train):
    """Batch statistics over every axis but the channels' (1) in training, running ones in eval;
    returns (y, the new running mean and var: torch's momentum 0.1, unbiased variance)."""
    import jax
    import jax.numpy as jnp

    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean_run, var_run = state[f"{i}.running_mean"], state[f"{i}.running_var"]
    if train:
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean.reshape(shape)), axis=axes)
        n = x.size // x.shape[1]
        mean_run = (1 - bt.BN_MOMENTUM) * mean_run + bt.BN_MOMENTUM * jax.lax.stop_gradient(mean)
        var_run = (1 - bt.BN_MOMENTUM) * var_run + bt.BN_MOMENTUM * jax.lax.stop_gradient(var) * (n / (n - 1))
    else:
        mean, var = mean_run, var_run
    scale = jax.lax.rsqrt(var + bt.BN_EPS) * params[f"{i}.weight"]
    y = (x - mean.reshape(shape)) * scale.reshape(shape) + params[f"{i}.bias"].reshape(shape)
    return y, mean_run, var_run


def reference_forward(arch):
    """``forward(params, state, key, x, train) -> (logits, new_state)`` of ``arch`` in plain JAX;
    params and state are dicts keyed by torch's ``state_dict`` names."""
    import jax
    import jax.numpy as jnp

    n_random = sum(spec["op"].startswith("dropout") for spec in arch)

    def forward(params, state, key, x, train):
        keys = iter(jax.random.split(key, n_random)) if train and n_random else iter(())
        new_state, h = dict(state), x
        for i, spec in enumerate(arch):
            op = spec["op"]
            if op in ("conv", "linear"):
                w, b = params[f"{i}.weight"], params.get(f"{i}.bias")
                h = _conv(h, w, b, spec) if op == "conv" else h @ w.T + (0 if b is None else b)
            elif op in ("bn", "bn1d"):
                h, new_state[f"{i}.running_mean"], new_state[f"{i}.running_var"] = _batch_norm(
                    h, params, state, i, train
                )
            elif op == "relu":
                h = _relu(h)
            elif op == "maxpool":
                h = _max_pool(h, spec)
            elif op == "gap":
                h = jnp.mean(h, axis=(2, 3), keepdims=True)
            elif op == "flatten":
                h = h.reshape(h.shape[0], -1)
            elif op == "unflatten":
                h = h.reshape(h.shape[0], *spec["shape"])
            elif train:  # dropout, dropout2d
                h = _dropout(h, next(keys), spec["p"], per_channel=op == "dropout2d")
        return h, new_state

    return forward


def _split_weights(weights):
    """torch state_dict -> (params, state) dicts of jax arrays (num_batches_tracked dropped)."""
    import jax.numpy as jnp

    params = {k: jnp.asarray(v) for k, v in weights.items() if k.endswith((".weight", ".bias"))}
    state = {k: jnp.asarray(v) for k, v in weights.items() if k.endswith(("running_mean", "running_var"))}
    return params, state


def reference_step(arch):
    """``step((params, state, buf), xb, yb, key) -> (carry, loss, logits)``: the hand-written
    training step; torch's SGD (``buf = 0.9 buf + g``, weight decay on the ``.weight`` tensors
    of conv and linear layers)."""
    import jax
    import jax.numpy as jnp

    forward = reference_forward(arch)
    decayed = {f"{i}.weight" for i, spec in enumerate(arch) if spec["op"] in ("conv", "linear")}

    def objective(params, state, key, x, y):
        logits, new_state = forward(params, state, key, x, True)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), (logits, new_state)

    def step(carry, xb, yb, key):
        params, state, buf = carry
        (loss, (logits, state)), g = jax.value_and_grad(objective, has_aux=True)(params, state, key, xb, yb)
        g = {n: g[n] + bt.WEIGHT_DECAY * params[n] if n in decayed else g[n] for n in g}
        buf = {n: bt.MOMENTUM * buf[n] + g[n] for n in g}  # zero start = torch's first-step buf = g
        params = {n: params[n] - bt.LR * buf[n] for n in params}
        return (params, state, buf), loss, logits

    return step


def _initial_carry(weights):
    import jax
    import jax.numpy as jnp

    params, state = _split_weights(weights)
    return params, state, jax.tree.map(jnp.zeros_like, params)


def reference_epoch(arch, weights, batch_size: int):
    """The hand-written epoch: ``(jitted_epoch, carry)`` in ``bt.time_epoch``'s convention,
    carry ``(params, state, momentum buffers)``: ``reference_step`` in one ``lax.scan``."""
    import benchmark_peers
    import jax

    epoch = benchmark_peers._scan_epoch(reference_step(arch), batch_size)

    def run(params, state, buf, key, x, y):
        (params, state, buf), metrics = epoch((params, state, buf), key, x, y)
        return params, state, buf, metrics

    return jax.jit(run, donate_argnums=(0, 1, 2)), _initial_carry(weights)


class LoopEpoch:
    """A training step jitted alone and called once per batch from Python: the epoch of
    ``reference_epoch`` (same shuffle, keys and batches) without the ``lax.scan``. XLA:CPU
    leaves convolutions inside a loop body in their NCHW form, run by a generic loop emitter
    (jax-ml/jax#12868); a step compiled alone gets them rewritten to its fast kernels.
    ``step(carry, xb, yb, key) -> (carry, loss)``; ``lower(...).compile()`` compiles it
    (``bt.time_epoch``'s compile time)."""

    def __init__(self, step, batch_size: int):
        import jax

        self.batch_size = batch_size
        self.step = jax.jit(step, donate_argnums=0)

    def _batches(self, key, n):
        import jax

        steps = n // self.batch_size
        k_perm, k_steps = jax.random.split(key)
        order = jax.random.permutation(k_perm, n)[: steps * self.batch_size]
        return order.reshape(steps, self.batch_size), jax.random.split(k_steps, steps)

    def lower(self, params, state, buf, key, x, y):
        order, keys = self._batches(key, x.shape[0])
        return self.step.lower((params, state, buf), x[order[0]], y[order[0]], keys[0])

    def __call__(self, params, state, buf, key, x, y):
        import jax.numpy as jnp

        order, keys = self._batches(key, x.shape[0])
        carry, losses = (params, state, buf), []
        for idx, k in zip(order, keys, strict=True):
            carry, loss = self.step(carry, x[idx], y[idx], k)
            losses.append(loss)
        return (*carry, {"loss": jnp.stack(losses)})


def reference_loop_epoch(arch, weights, batch_size: int):
    """``(LoopEpoch, carry)``: the hand-written step in a Python loop (row ``pure-jax-loop``)."""
    step = reference_step(arch)
    return LoopEpoch(lambda carry, xb, yb, key: step(carry, xb, yb, key)[:2], batch_size), _initial_carry(
        weights
    )


def fnn_loop_epoch(model, weights, batch_size: int, grad: str):
    """fnn's own jitted step (``fnn.train.make_train_step``) called per batch from Python
    (rows ``fnn-autodiff-loop``, ``fnn-manual-loop``): what fnn's epoch would run at without
    the ``lax.scan``."""
    from fnn import nn, optim, train

    opt = optim.sgd(lr=bt.LR, momentum=bt.MOMENTUM, weight_decay=bt.WEIGHT_DECAY)
    params, state = model.load_state_dict(weights)
    fnn_step = train.make_train_step(model, nn.CrossEntropyLoss(), opt, grad)

    def step(carry, xb, yb, key):
        *carry, metrics = fnn_step(*carry, key, xb, yb)
        return tuple(carry), metrics["loss"]

    return LoopEpoch(step, batch_size), (params, state, opt.init(params))


def scan_eval(logits_fn, batch_size: int):
    """``jit(run)(model, x, y) -> (mean loss, correct count)``: ``logits_fn(model, xb)`` in eval
    mode over the full batches of ``x``, one ``lax.scan`` (the work ``fnn.train.evaluate`` does)."""
    import jax
    import jax.numpy as jnp

    def run(model, x, y):
        n = x.shape[0] // batch_size
        xs = x[: n * batch_size].reshape(n, batch_size, *x.shape[1:])
        ys = y[: n * batch_size].reshape(n, batch_size)

        def body(acc, batch):
            xb, yb = batch
            logits = logits_fn(model, xb)
            logp = jax.nn.log_softmax(logits)
            loss = -jnp.sum(jnp.take_along_axis(logp, yb[:, None], axis=1))
            return (acc[0] + loss, acc[1] + jnp.sum(jnp.argmax(logits, axis=1) == yb)), None

        (loss, correct), _ = jax.lax.scan(body, (jnp.zeros(()), jnp.zeros((), jnp.int32)), (xs, ys))
        return loss / (n * batch_size), correct

    return jax.jit(run)


def loop_eval(logits_fn, batch_size: int):
    """``scan_eval``'s pass as a Python loop over one jitted batch (row ``pure-jax-loop-eval``)."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def batch(model, xb, yb):
        logp = jax.nn.log_softmax(logits_fn(model, xb))
        loss = -jnp.sum(jnp.take_along_axis(logp, yb[:, None], axis=1))
        return loss, jnp.sum(jnp.argmax(logp, axis=1) == yb)

    def run(model, x, y):
        n = x.shape[0] // batch_size
        loss, correct = 0.0, 0
        for i in range(n):
            l, c = batch(
                model, x[i * batch_size : (i + 1) * batch_size], y[i * batch_size : (i + 1) * batch_size]
            )
            loss, correct = loss + l, correct + c
        return loss / (n * batch_size), correct

    return run


def reference_eval(arch, weights, batch_size: int, loop: bool = False):
    """``(jitted_eval, model)`` for ``scan_eval``'s run: the hand-written forward in eval mode."""
    import jax

    forward = reference_forward(arch)

    def logits(model, xb):
        return forward(*model, jax.random.key(0), xb, False)[0]

    return (loop_eval if loop else scan_eval)(logits, batch_size), _split_weights(weights)


# ---------------------------------------------------------------- fnn's rows


def fnn_epoch(model, weights, batch_size: int, grad: str):
    """fnn's compiled epoch (``make_train_epoch``, as ``fit`` builds it) and its carry."""
    from fnn import nn, optim, train

    opt = optim.sgd(lr=bt.LR, momentum=bt.MOMENTUM, weight_decay=bt.WEIGHT_DECAY)
    params, state = model.load_state_dict(weights)
    run = train.make_train_epoch(model, nn.CrossEntropyLoss(), opt, batch_size, grad)
    return run, (params, state, opt.init(params))


# ---------------------------------------------------------------- torch's rows


def torch_model(arch, weights, threads: int, channels_last: bool):
    """``nn.Sequential`` of ``arch`` with ``weights`` loaded, ``threads`` intra-op threads."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    make = {
        "conv": lambda s: nn.Conv2d(s["in"], s["out"], s["k"], s["stride"], s["padding"], bias=s["bias"]),
        "linear": lambda s: nn.Linear(s["in"], s["out"], bias=s["bias"]),
        "bn": lambda s: nn.BatchNorm2d(s["c"]),
        "bn1d": lambda s: nn.BatchNorm1d(s["c"]),
        "relu": lambda s: nn.ReLU(),
        "maxpool": lambda s: nn.MaxPool2d(s["k"], s["stride"]),
        "dropout": lambda s: nn.Dropout(s["p"]),
        "dropout2d": lambda s: nn.Dropout2d(s["p"]),
        "flatten": lambda s: nn.Flatten(),
        "unflatten": lambda s: nn.Unflatten(1, tuple(s["shape"])),
        "gap": lambda s: nn.AdaptiveAvgPool2d(1),
    }
    model = nn.Sequential(*(make[s["op"]](s) for s in arch))
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in weights.items()})
    return model.to(memory_format=torch.channels_last) if channels_last else model


# ---------------------------------------------------------------- one row


def _kind(impl: str) -> tuple[str, bool, int | None]:
    """'torch-cl-eval-2t' -> ('torch-cl', True, 2); 'flax-nnx-eval' -> ('flax-nnx', True, None)."""
    threads = None
    if impl.startswith("torch"):
        impl, threads = impl.rsplit("-", 1)[0], int(impl.rsplit("-", 1)[1][:-1])
    is_eval = impl.endswith("-eval") or impl == "fnn-evaluate"
    return impl.removesuffix("-eval"), is_eval, threads


def run_row(spec: dict, data: dict | None = None) -> dict:
    """One row: ``spec`` = impl, batch, epochs, arch, and the paths of the weights and data
    (or ``data``, in-process: x, y, x_eval, y_eval, weights)."""
    if spec["impl"] == "matmul":
        return bt.run_matmul_peak(tuple(spec["sizes"]), spec["repeats"])
    if data is None:
        data = dict(np.load(spec["data"]))
        data["weights"] = dict(np.load(spec["weights"]))
    arch, weights, batch, epochs = spec["arch"], data["weights"], spec["batch"], spec["epochs"]
    kind, is_eval, threads = _kind(spec["impl"])
    x, y = (data["x_eval"], data["y_eval"]) if is_eval else (data["x"], data["y"])
    if threads is not None:
        import torch

        model = torch_model(arch, weights, threads, kind == "torch-cl")
        fmt = torch.channels_last if kind == "torch-cl" else None
        if is_eval:
            return bt.run_torch_eval_row("torch-eval", batch, x, y, 3 * epochs, threads, model, fmt)
        return bt.run_torch_row(batch, x, y, epochs, threads, model, fmt)
    return _run_jax_row(kind, is_eval, arch, weights, batch, x, y, epochs)


def _run_jax_row(kind, is_eval, arch, weights, batch, x_np, y_np, epochs) -> dict:
    import jax.numpy as jnp

    if kind == "flax-nnx":
        x_np = np.ascontiguousarray(x_np.transpose(0, 2, 3, 1))  # NHWC: flax's layout, once, untimed
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    if kind.startswith("fnn"):
        model = build_fnn(arch)  # the run's layers, even if fnn.models.cnn changes meanwhile
        if is_eval:
            from fnn import train

            params, state = model.load_state_dict(weights)
            out, row = bt.time_eval(
                lambda: train.evaluate(model, params, state, (x, y), batch_size=batch)["loss"], 3 * epochs
            )
            return {**row, "final_loss": out}
        build = fnn_loop_epoch if kind.endswith("-loop") else fnn_epoch
        return bt.time_epoch(*build(model, weights, batch, kind.split("-")[1]), x, y, epochs)
    if kind == "pure-jax":
        build_train, build_eval = reference_epoch, reference_eval
    elif kind == "pure-jax-loop":
        build_train, build_eval = reference_loop_epoch, functools.partial(reference_eval, loop=True)
    else:
        import benchmark_peers

        name = kind.replace("-", "_")
        build_train = getattr(benchmark_peers, f"{name}_cnn_epoch")
        build_eval = getattr(benchmark_peers, f"{name}_cnn_eval")
    if not is_eval:
        return bt.time_epoch(*build_train(arch, weights, batch), x, y, epochs)
    run, model = build_eval(arch, weights, batch)
    out, row = bt.time_eval(lambda: float(run(model, x, y)[0]), 3 * epochs)
    return {**row, "final_loss": out}


# ---------------------------------------------------------------- the rows this run can do


def available(quick: bool, with_torch: bool) -> tuple[list[str], list[str], dict[str, str]]:
    """``(training rows, eval rows, skipped row -> why)``."""
    skipped = {}
    train_rows, eval_rows = ["pure-jax", "pure-jax-loop"], ["pure-jax-eval", "pure-jax-loop-eval"]
    model, note = fnn_model(quick)
    if model is None:
        skipped |= {impl: note for impl in (*FNN_TRAIN, *FNN_LOOP, *FNN_EVAL)}
    else:
        train_rows, eval_rows = [*FNN_TRAIN, *FNN_LOOP, *train_rows], [*FNN_EVAL, *eval_rows]
    for peer in PEERS:
        missing = bt.missing_modules(peer)
        if missing:
            why = f"{', '.join(missing)} not importable by {sys.executable} (the bench extra)"
            skipped |= {peer: why, f"{peer}-eval": why}
        else:
            train_rows.append(peer)
            eval_rows.append(f"{peer}-eval")
    threads = [1] if quick else sorted({bt._cores(), 1}, reverse=True)
    if not with_torch:
        why = (
            "--no-torch" if importlib.util.find_spec("torch") else f"torch not importable by {sys.executable}"
        )
        skipped |= {kind: why for kind in TORCH_KINDS}
    else:
        train_rows += [f"{kind}-{t}t" for kind in TORCH_KINDS for t in threads]
        eval_rows += [f"{kind}-eval-{t}t" for kind in TORCH_KINDS for t in threads]
    return train_rows, eval_rows, skipped


def load_data(samples: int, eval_samples: int) -> dict[str, np.ndarray]:
    """MNIST, normalized, float32 (N, 1, 28, 28), int32 labels: training and test images."""
    from fnn import data

    out = {}
    for split, n, suffix in (("train", samples, ""), ("test", eval_samples, "_eval")):
        images, labels = data.mnist(split)
        out["x" + suffix] = np.asarray(data.normalize(images[:n]), np.float32).reshape(-1, *IMAGE)
        out["y" + suffix] = np.asarray(labels[:n], np.int32)
    return out


# ---------------------------------------------------------------- report


def summarize(rows: list[dict], train_flops: int, eval_flops: int, peak: float) -> None:
    for r in rows:
        used = r["samples_used"]
        r["samples_per_s"] = used / statistics.median(r["epoch_s"])
        r["samples_per_s_best"] = used / min(r["epoch_s"])
        r["samples_per_cpu_s"] = used / statistics.median(r["epoch_cpu_s"])
        r["gflops"] = r["samples_per_s"] * (eval_flops if r["eval"] else train_flops) / 1e9
        r["pct_of_peak"] = 100 * r["gflops"] / peak


def check_targets(rows: list[dict]) -> list[dict]:
    """fnn against the hand-written JAX and the fastest torch row, per batch, train and eval."""
    checks = []
    for b in sorted({r["batch"] for r in rows}):
        for is_eval, fnn_rows, ref in ((False, FNN_TRAIN, "pure-jax"), (True, FNN_EVAL, "pure-jax-eval")):
            sel = [r for r in rows if r["batch"] == b and r["eval"] == is_eval]
            by = {r["impl"]: r for r in sel}
            torch_rows = [r for r in sel if r["impl"].startswith("torch")]
            others = [("pure-jax", by.get(ref), ">= 1.0")]
            if torch_rows:
                fastest = max(torch_rows, key=lambda r: r["samples_per_s"])
                others.append((f"{fastest['impl']} (fastest torch)", fastest, ">= 1.0"))
            others += [(p, by.get(p + ("-eval" if is_eval else "")), "(info)") for p in PEERS]
            for impl in fnn_rows:
                for name, other, target in others:
                    if impl in by and other:
                        v = by[impl]["samples_per_s"] / other["samples_per_s"]
                        checks.append(
                            {"check": f"{impl} / {name} @{b}", "value": v, "target": target, "pass": v >= 1.0}
                        )
        for loop, scanned in (("pure-jax-loop", "pure-jax"), *zip(FNN_LOOP, FNN_TRAIN, strict=True)):
            by = {r["impl"]: r for r in rows if r["batch"] == b}
            if loop in by and scanned in by:
                v = by[loop]["samples_per_s"] / by[scanned]["samples_per_s"]
                checks.append(
                    {"check": f"{loop} / {scanned} @{b}", "value": v, "target": "(info)", "pass": True}
                )
    return checks


def plot(rows: list[dict], peak: float, train_flops: int, out: str) -> None:
    """Samples/s per row, one panel per (training | eval, batch)."""
    plt = common.pyplot()
    if plt is None or not rows:
        return
    panels = sorted({(r["eval"], r["batch"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4), squeeze=False)
    for ax, (is_eval, b) in zip(axes[0], panels, strict=True):
        sel = [r for r in rows if (r["eval"], r["batch"]) == (is_eval, b)]
        colors = ["tab:blue" if r["impl"].startswith("fnn") else "tab:gray" for r in sel]
        bars = ax.bar([r["impl"] for r in sel], [r["samples_per_s"] for r in sel], color=colors)
        ax.bar_label(bars, labels=[f"{r['samples_per_s']:.0f}" for r in sel], fontsize=7)
        ax.set(title=f"{'evaluation' if is_eval else 'training'}, batch {b}", ylabel="samples / s (median)")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.suptitle(
        f"CNN on MNIST, CPU ({train_flops / 3e6:.1f} MFLOP forward per sample; "
        f"matmul peak {peak:.0f} GFLOP/s)",
        fontsize=10,
    )
    common.save_figure(fig, out, "throughput.png")


# ---------------------------------------------------------------- main


def _specs(train_rows, eval_rows, batch_sizes, epochs, chosen) -> list[dict]:
    specs = []
    for b in batch_sizes:
        specs += [
            {"impl": r, "batch": b, "epochs": epochs} for r in train_rows if chosen is None or r in chosen
        ]
        specs += [
            {"impl": r, "batch": b, "epochs": epochs} for r in eval_rows if chosen is None or r in chosen
        ]
    return specs


def main() -> None:
    args = common.parse_args(NAME, __doc__.split("\n")[0], _options)
    common.optimized_compiles()  # even --quick's few steps of convolutions
    if args.worker:
        with open(args.worker) as f:
            spec = json.load(f)
        row = run_row(spec)
        with open(spec["result"], "w") as f:
            json.dump(row, f)
        return
    epochs = args.epochs or 1
    rounds = args.rounds or (1 if args.quick else 3)
    samples = args.samples or (128 if args.quick else 512)
    eval_samples = args.eval_samples or (128 if args.quick else 512)
    batch_sizes = args.batch_sizes or ([64] if args.quick else [128, 512])
    with_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    train_rows, eval_rows, skipped = available(args.quick, with_torch)
    model, model_note = fnn_model(args.quick)
    arch = arch_of(model) if model is not None else DEFAULT_ARCH
    if model is not None and arch_of(build_fnn(arch)) != arch:  # the fnn rows rebuild it so
        raise RuntimeError(f"benchmark_cnn: build_fnn does not rebuild {model_note}'s layers")
    weights = initial_weights(model) if model is not None else torch_init_weights(arch)
    fwd = flops(arch)
    print(
        f"{NAME}: {model_note}; {samples} training / {eval_samples} test images, batch sizes "
        f"{batch_sizes}, {rounds} round(s) of {epochs} timed epoch(s), {bt._cores()} cores, "
        f"load {os.getloadavg()[0]:.2f}; forward {fwd / 1e6:.2f} MFLOP/sample"
    )
    for impl, why in skipped.items():
        print(f"  skipped {impl}: {why}")

    t_start = time.perf_counter()
    data = load_data(samples, eval_samples)
    tmp = tempfile.TemporaryDirectory()
    paths = {"data": os.path.join(tmp.name, "data.npz"), "weights": os.path.join(tmp.name, "weights.npz")}
    if not args.quick:
        np.savez(paths["data"], **data)
        np.savez(paths["weights"], **weights)
    torch_env = {k: v for k, v in os.environ.items() if k not in bt.OPENBLAS_VARS}
    torch_env.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    def execute(spec: dict) -> dict:
        spec = dict(spec, arch=list(arch))
        if args.quick:
            row = run_row(spec, {**data, "weights": weights})
            row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            row["rss_scope"] = "whole process so far (--quick runs in-process)"
            return row
        env = torch_env if spec["impl"].startswith("torch") else None
        return bt.run_isolated(dict(spec, **paths), args.out, env, script=__file__)

    unknown = sorted(set(args.rows or ()) - {*train_rows, *eval_rows})
    if unknown:
        print(
            f"experiments/{NAME}.py: error: --rows {' '.join(unknown)}: not among this run's rows "
            f"({' '.join(train_rows + eval_rows)}; skipped: {', '.join(skipped) or 'none'})",
            file=sys.stderr,
        )
        sys.exit(2)
    specs = _specs(train_rows, eval_rows, batch_sizes, epochs, args.rows)
    runs: dict[tuple, list[dict]] = {}
    matmuls = []
    for rnd in range(rounds):
        matmuls.append(execute({"impl": "matmul", "sizes": [256 if args.quick else 2048], "repeats": 7}))
        for spec in specs:
            row = execute(spec)
            runs.setdefault((spec["impl"], spec["batch"]), []).append(row)
            print(
                f"  round {rnd + 1}  {spec['impl']:16s} batch {spec['batch']:4d}: "
                f"median epoch {statistics.median(row['epoch_s']):.3f} s, load {os.getloadavg()[0]:.1f}"
            )
    peak = statistics.median(m["peak_gflops"] for m in matmuls)
    rows = []
    for (impl, b), row_runs in runs.items():
        row = bt.merge_rounds(row_runs)
        is_eval = _kind(impl)[1]
        n = eval_samples if is_eval else samples
        row.update(impl=impl, batch=b, eval=is_eval, samples_used=(n // b) * b)
        rows.append(row)
    summarize(rows, 3 * fwd, fwd, peak)
    tmp.cleanup()
    config = {"samples": samples, "eval_samples": eval_samples, "timed_epochs": epochs, "rounds": rounds}
    config |= {"batch_sizes": batch_sizes, "quick": args.quick, "cores": bt._cores()}
    config |= {"model": model_note, "arch": arch}
    _report(args, config, rows, peak, fwd, matmuls, skipped, t_start)


def _report(args, config, rows, peak, fwd, matmuls, skipped, t_start) -> None:
    table = [
        {
            "row": r["impl"],
            "batch": r["batch"],
            "samples/s": round(r["samples_per_s"]),
            "samples/CPU-s": round(r["samples_per_cpu_s"]),
            "GFLOP/s": round(r["gflops"], 1),
            "% of peak": round(r["pct_of_peak"], 1),
            "compile s": "-" if r.get("compile_s") is None else round(r["compile_s"], 2),
            "first call s": round(r["first_call_s"], 2),
            "peak RSS MB": round(r["peak_rss_mb"]),
            "loss": round(r["final_loss"], 3),
        }
        for r in rows
    ]
    print(f"\nfloat32 matmul peak (jnp.dot, median of rounds): {peak:.1f} GFLOP/s")
    common.print_table(table)
    plot(rows, peak, 3 * fwd, args.out)
    checks = check_targets(rows)
    print()
    for c in checks:
        verdict = "info" if c["target"] == "(info)" else ("PASS" if c["pass"] else "MISS")
        verdict = "(quick: not judged)" if args.quick and verdict != "info" else verdict
        print(f"{c['check']:46s} {c['value']:7.3f}x  target {c['target']:7s} {verdict}")
    wall = time.perf_counter() - t_start
    print(f"\nwall time {wall:.1f} s, load average at the end {os.getloadavg()[0]:.2f}")
    results = {
        "config": config,
        "flops_per_sample": {"forward": fwd, "training": 3 * fwd},
        "matmul": matmuls,
        "peak_gflops": peak,
        "rows": rows,
        "skipped": skipped,
        "checks": checks,
        "versions": _versions(),
        "wall_s": wall,
        "load_average": os.getloadavg(),
    }
    print(f"results: {common.save_json(args.out, results)}")


def _versions() -> dict:
    from importlib import metadata

    found = {}
    for m in ("jax", "jaxlib", "torch", "flax", "equinox", "optax"):
        try:
            found[m] = metadata.version(m)
        except metadata.PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    main()

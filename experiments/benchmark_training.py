"""Training throughput of the MNIST MLP: fnn (autodiff and manual gradients) against a
hand-written pure-JAX ``lax.scan`` epoch, PyTorch eager and, where installed, Flax NNX and
Equinox, on the CPU.

The model is ``784-512-512-10`` with BatchNorm1d, ReLU and Dropout(0.2), trained with
cross-entropy and SGD (lr 0.01, momentum 0.9, weight decay 1e-4 on the weight matrices
only, fnn's default mask; the PyTorch row uses parameter groups to do the same work).
Every row trains on the same 60k MNIST training images (``fnn.data``, normalized,
float32 (60000, 784)) and drops the last partial batch.

Measured per row (implementation x batch size):
- samples/s: ``(n // batch) * batch`` divided by the wall time of the fastest timed
  epoch (each one ``block_until_ready``; the first call, compile + one epoch, is not
  timed). The whole sweep runs ``--rounds`` times, rows interleaved, and each row keeps
  its best epoch and its fastest compile, so a burst of load from other processes on
  the shared cores slows one round, not one row; the medians are in results.json.
  samples/CPU-s divides by the process CPU time of the fastest epoch instead: on cores
  shared with other jobs it is the steadier measure of the work each row does.
- compile s (JAX rows): wall time of ``jitted_epoch.lower(...).compile()`` (tracing,
  lowering and XLA compile of the whole epoch; the jitted call then reuses the
  executable). ``recompiles`` counts XLA compiles (``jax.monitoring`` events) during the
  first call and the timed epochs (should be 0). PyTorch eager has no compile step.
- peak RSS: each row runs in its own subprocess and its ``ru_maxrss`` (via ``os.wait4``)
  is that process's whole peak (interpreter, framework, data). The full-run target is
  measured on ``python -m fnn train --epochs 1 --no-progress`` the same way.
- PyTorch eager: ``nn.Sequential`` of the same layers, ``torch.optim.SGD`` with weight
  decay in a parameter group of the matrices only, a plain loop over shuffled
  minibatches. Two rows, ``torch.set_num_threads(n)`` with n = all cores and n = 1; the
  faster is the one the targets compare against. The torch subprocesses run without
  ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` and with ``OMP_WAIT_POLICY=PASSIVE``
  (unless set): on cores shared with other processes, spinning OpenMP workers waste
  their slices waiting for preempted peers (10x slower here without it).
- Flax NNX and Equinox + optax (``flax-nnx``, ``equinox``): the same epoch written with those
  libraries in ``benchmark_peers.py`` (Flax NNX as ``nnx.split`` outside ``jax.jit`` and
  ``nnx.merge`` inside the scanned step, its fastest documented form; Equinox with its
  stateful BatchNorm under ``jax.vmap``; the forms and converted conventions are in that
  module's docstring), timed like the pure-JAX row (compile, recompiles, RSS). They join the
  training rows when the running interpreter can import the library and optax (the
  ``bench`` extra, see experiments/README.md; never a dependency of fnn, absent in CI) and
  are skipped silently otherwise; asking for one with ``--impls`` where it is missing is an
  error. Target (issue 12): fnn autodiff and manual each >= 1.0x every peer row that ran,
  at every batch size.
- GFLOP/s: samples/s times the matmul FLOPs of one training sample,
  2 * (3 * (784*512 + 512*512 + 512*10) - 784*512) = 3.21 MFLOP (forward, weight
  gradient and input gradient of each Linear, minus the first layer's input gradient,
  which nothing uses and XLA removes); elementwise work is not counted. The peak is the
  best of several jitted float32 square matmuls.

Probe row (``fnn-autodiff-monitor``, a name kept from before the collector was called a
probe): the fnn autodiff epoch built as ``fit(probe=True)`` builds it, with
``fnn.diagnostics.Probe()`` (per-layer statistics every ``max(1, steps // 32)`` steps: the
epoch is a loop over chunks of plain steps, each ending in one probed step); "monitor
cost", as the verdicts print it, is its throughput loss against the plain
``fnn-autodiff`` row of the same run (target <= 5% at batch 128).

Data-parallel rows (``fnn-autodiff-Ndev``, batch 128): the same fnn epoch with
``mesh=fnn.distributed.data_mesh(N)``, each in a subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``. On this CPU the N "devices" share
the same cores, so these rows measure the cost of partitioning, not a speed-up; on a
machine with N accelerators the flag is ignored and they measure real scaling.

Eval rows (``fnn-evaluate``, ``fnn-predict``, ``torch-eval-Nt``, ``torch-predict-Nt``): one
pass over all the samples (the last partial batch included) in eval mode with the same model,
freshly initialized (speed does not depend on the values). ``fnn-evaluate`` is
``fnn.train.evaluate`` (mean cross-entropy and accuracy, back on the host as floats),
``fnn-predict`` is ``fnn.train.predict`` (the logits, ``block_until_ready``); the
``-nofold`` rows pass ``fold_batchnorm=False`` (BatchNorm run as a layer). PyTorch:
``model.eval()`` under ``torch.no_grad()``, a plain loop over the batches in order; the eval row
sums the cross-entropy and counts the correct predictions (the work ``evaluate`` does), the
predict row concatenates the logits. "epoch" is one such pass; the first call (compile, or
torch's warm-up) is not timed. GFLOP/s counts the forward matmuls only,
2 * (784*512 + 512*512 + 512*10) = 1.33 MFLOP per sample. Target: fnn evaluate and predict at
>= 1.0x the faster torch row of the same kind, at batch 1024.

``--quick`` runs 2048 samples, batch 128, one timed epoch, one 1-device mesh row, two of the
four fnn eval rows (``fnn-evaluate``, ``fnn-predict-nofold``) unless ``--impls`` is given, and one
single-thread torch row in this process (no subprocesses, so RSS is the process peak so far) and skips the
command-line run; it prints the target lines but judges none of them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import common
import numpy as np

NAME = "benchmark_training"
IN, H, OUT = 784, 512, 10
FLOPS_PER_SAMPLE = 2 * (3 * (IN * H + H * H + H * OUT) - IN * H)
LR, MOMENTUM, WEIGHT_DECAY, P_DROP, BN_MOMENTUM, BN_EPS = 0.01, 0.9, 1e-4, 0.2, 0.1, 1e-5
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
JAX_IMPLS = ("fnn-autodiff", "fnn-manual", "pure-jax", "fnn-autodiff-progress", "fnn-autodiff-monitor")
# Peer-library rows (experiments/benchmark_peers.py): each runs when these modules are importable.
PEER_IMPLS = {"flax-nnx": ("flax", "optax"), "equinox": ("equinox", "optax")}
EVAL_IMPLS = ("fnn-evaluate", "fnn-predict", "fnn-evaluate-nofold", "fnn-predict-nofold")
EVAL_FLOPS_PER_SAMPLE = 2 * (IN * H + H * H + H * OUT)
RSS_TARGET_MIB = 1.2e9 / 2**20  # issue 12's "peak RSS <= 1.2 GB", read as 10^9 bytes: 1144 MiB


def _options(parser) -> None:
    parser.add_argument(
        "--epochs", type=int, default=None, help="timed epochs per row and round (default 2, quick 1)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="sweeps over all rows, interleaved; each row keeps its best epoch (default 2, quick 1)",
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=None, help="default 128 1024 (quick: 128)"
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="training samples (default 60000, quick 2048)"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager rows")
    parser.add_argument(
        "--impls",
        nargs="+",
        default=None,
        choices=JAX_IMPLS + tuple(PEER_IMPLS) + EVAL_IMPLS,
        help="only these JAX rows (default: all, the peer rows flax-nnx and equinox where their "
        "library is importable); the torch training rows run when a training row is chosen, the "
        "torch eval rows when an eval row is",
    )
    parser.add_argument(
        "--devices",
        type=int,
        nargs="*",
        default=None,
        help="data-parallel fnn rows over N devices at batch 128 (default 1 2 4: forced CPU host "
        "devices via XLA_FLAGS in their subprocess, real GPUs/TPUs where present; quick: 1; none: --devices)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one row's spec


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ---------------------------------------------------------------- compile accounting

_COMPILE = {"events": 0, "seconds": 0.0, "listening": False}


def _listen_for_compiles() -> None:
    """Count XLA compiles and sum their durations, from jax.monitoring's events."""
    if _COMPILE["listening"]:
        return
    import jax

    def on_duration(event: str, duration: float, **_: object) -> None:
        if event.endswith("/backend_compile_duration"):
            _COMPILE["seconds"] += duration
            _COMPILE["events"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    _COMPILE["listening"] = True


# ---------------------------------------------------------------- the JAX rows


class _Terminal:
    """A stderr stand-in that says it is a terminal, so the progress bar draws (into nothing)."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def fnn_epoch(batch_size: int, grad: str, mesh=None, progress_steps: int = 0, probe: bool = False):
    """fnn's compiled epoch; with ``progress_steps`` (the epoch's step count), the one
    ``fit`` builds for a terminal: a host callback about 50 times an epoch, drawing a live bar;
    with ``probe`` (the probe row), the one ``fit(probe=True)`` builds
    (``fnn.diagnostics.Probe()``)."""
    import jax

    from fnn import distributed, models, nn, optim, train
    from fnn.diagnostics import Probe
    from fnn.train import progress

    model = models.mlp(IN, (H, H), OUT, batch_norm=True, dropout=P_DROP)
    opt = optim.sgd(lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    params, state = model.init(jax.random.key(0))
    every = progress.callback_interval(progress_steps) if progress_steps else 0
    if every:
        bar = progress.ProgressBar(True, stream=_Terminal()).__enter__()
        bar.begin_epoch("epoch", progress_steps, batch_size)
    run = train.make_train_epoch(
        model,
        nn.CrossEntropyLoss(),
        opt,
        batch_size,
        grad,
        mesh=mesh,
        progress_every=every,
        probe=Probe() if probe else None,
    )
    carry = (params, state, opt.init(params))
    return run, (carry if mesh is None else distributed.replicate(carry, mesh))


def _devices(impl: str) -> int | None:
    """'fnn-autodiff-4dev' -> 4: a data-parallel row over that many devices."""
    return int(impl.rsplit("-", 1)[1][:-3]) if impl.endswith("dev") else None


def reference_epoch(batch_size: int):
    """The same model, loss and optimizer written directly in JAX: dict parameters,
    ``x @ W.T + b``, batch norm with running statistics, inverted dropout, log-softmax
    cross-entropy, torch-style SGD with momentum and weight decay on the matrices, and
    one ``lax.scan`` over batches gathered by a shuffled index."""
    import jax
    import jax.numpy as jnp

    def init(key):
        params, state = {}, {}
        for i, (k, fan_in, fan_out) in enumerate(
            zip(jax.random.split(key, 3), (IN, H, H), (H, H, OUT), strict=True)
        ):
            kw, kb = jax.random.split(k)
            bound = 1.0 / fan_in**0.5
            params[f"w{i}"] = jax.random.uniform(kw, (fan_out, fan_in), jnp.float32, -bound, bound)
            params[f"b{i}"] = jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound)
        for i in (0, 1):
            params[f"gamma{i}"], params[f"beta{i}"] = jnp.ones(H), jnp.zeros(H)
            state[f"mean{i}"], state[f"var{i}"] = jnp.zeros(H), jnp.ones(H)
        return params, state

    def forward(params, state, key, x):
        keys = jax.random.split(key, 2)
        h, new_state = x, {}
        for i in (0, 1):
            h = h @ params[f"w{i}"].T + params[f"b{i}"]
            mean = jnp.mean(h, axis=0)
            var = jnp.mean(jnp.square(h - mean), axis=0)
            n = h.shape[0]
            new_state[f"mean{i}"] = (1 - BN_MOMENTUM) * state[
                f"mean{i}"
            ] + BN_MOMENTUM * jax.lax.stop_gradient(mean)
            new_state[f"var{i}"] = (1 - BN_MOMENTUM) * state[f"var{i}"] + BN_MOMENTUM * jax.lax.stop_gradient(
                var
            ) * (n / (n - 1))
            h = (h - mean) * jax.lax.rsqrt(var + BN_EPS) * params[f"gamma{i}"] + params[f"beta{i}"]
            h = jnp.where(h > 0, h, 0.0)
            keep = jax.random.bernoulli(keys[i], 1.0 - P_DROP, h.shape)
            h = jnp.where(keep, h / (1.0 - P_DROP), 0.0)
        return h @ params["w2"].T + params["b2"], new_state

    def objective(params, state, key, x, y):
        logits, new_state = forward(params, state, key, x)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), (logits, new_state)

    def epoch(params, state, buf, key, x, y):
        n_batches = x.shape[0] // batch_size
        k_perm, k_steps = jax.random.split(key)
        order = jax.random.permutation(k_perm, x.shape[0])[: n_batches * batch_size]

        def body(carry, inputs):
            params, state, buf = carry
            idx, k = inputs
            xb, yb = x[idx], y[idx]
            (loss, (logits, state)), g = jax.value_and_grad(objective, has_aux=True)(params, state, k, xb, yb)
            g = {n: g[n] + WEIGHT_DECAY * params[n] if params[n].ndim >= 2 else g[n] for n in g}
            buf = {n: MOMENTUM * buf[n] + g[n] for n in g}  # zero start = torch's first-step buf = g
            params = {n: params[n] - LR * buf[n] for n in params}
            acc = jnp.mean((jnp.argmax(logits, axis=1) == yb).astype(jnp.float32))
            return (params, state, buf), {"loss": loss, "accuracy": acc}

        (params, state, buf), metrics = jax.lax.scan(
            body,
            (params, state, buf),
            (order.reshape(n_batches, batch_size), jax.random.split(k_steps, n_batches)),
        )
        return params, state, buf, metrics

    params, state = init(jax.random.key(0))
    return jax.jit(epoch, donate_argnums=(0, 1, 2)), (params, state, jax.tree.map(jnp.zeros_like, params))


def run_jax_row(impl: str, batch_size: int, x_np: np.ndarray, y_np: np.ndarray, epochs: int) -> dict:
    import jax.numpy as jnp

    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    if impl == "pure-jax":
        run, carry = reference_epoch(batch_size)
    elif impl in PEER_IMPLS:
        import benchmark_peers

        build = {"flax-nnx": benchmark_peers.flax_nnx_epoch, "equinox": benchmark_peers.equinox_epoch}
        run, carry = build[impl](batch_size)
    elif _devices(impl) is None:
        run, carry = fnn_epoch(
            batch_size,
            impl.split("-")[1],
            progress_steps=len(x_np) // batch_size if impl.endswith("progress") else 0,
            probe=impl.endswith("monitor"),
        )
    else:
        from fnn import distributed

        mesh = distributed.data_mesh(_devices(impl))
        run, carry = fnn_epoch(batch_size, impl.split("-")[1], mesh)
        x, y = distributed.put_dataset(x, y, mesh)
    return time_epoch(run, carry, x, y, epochs)


def time_epoch(run, carry: tuple, x, y, epochs: int) -> dict:
    """Compile ``run`` ahead of time (timed), call it once (compile check), then time ``epochs``
    calls: ``run(*carry, key, x, y) -> (*carry, metrics)`` with the carry donated and
    ``metrics["loss"]`` per step (the calling convention of every JAX row's epoch)."""
    import jax

    _listen_for_compiles()
    keys = [jax.random.fold_in(jax.random.key(1), e) for e in range(epochs + 1)]
    jax.block_until_ready((x, y, carry, keys))

    # Ahead-of-time: trace + lower + XLA compile, timed alone; jit's call then reuses it.
    before = dict(_COMPILE)
    t0, c0 = time.perf_counter(), time.process_time()
    run.lower(*carry, keys[0], x, y).compile()
    compile_s, compile_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    xla_s = _COMPILE["seconds"] - before["seconds"]
    before = dict(_COMPILE)
    t0 = time.perf_counter()
    *carry, metrics = run(*carry, keys[0], x, y)
    jax.block_until_ready((carry, metrics))
    first_call = time.perf_counter() - t0
    compiles_first = _COMPILE["events"] - before["events"]

    after_first, times, cpu = _COMPILE["events"], [], []
    for key in keys[1:]:
        t0, c0 = time.perf_counter(), time.process_time()
        *carry, metrics = run(*carry, key, x, y)
        jax.block_until_ready((carry, metrics))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    loss = np.asarray(metrics["loss"])
    return {
        "compile_s": compile_s,
        "compile_cpu_s": compile_cpu_s,
        "xla_compile_s": xla_s,
        "first_call_s": first_call,
        "compiles_in_first_call": compiles_first,
        "recompiles": compiles_first + _COMPILE["events"] - after_first,
        "epoch_s": times,
        "epoch_cpu_s": cpu,
        "final_loss": float(loss[-1]),
        "loss_finite": bool(np.all(np.isfinite(loss))),
    }


def run_jax_eval_row(impl: str, batch_size: int, x_np: np.ndarray, y_np: np.ndarray, epochs: int) -> dict:
    """One eval pass over all the samples per timed epoch, through fnn.train.evaluate / predict."""
    import jax

    from fnn import models, train

    _listen_for_compiles()
    model = models.mlp(IN, (H, H), OUT, batch_norm=True, dropout=P_DROP)
    params, state = model.init(jax.random.key(0))
    x, y = jax.device_put(x_np), jax.device_put(y_np)
    jax.block_until_ready((params, state, x, y))
    fold = {} if not impl.endswith("nofold") else {"fold_batchnorm": False}
    if impl.startswith("fnn-evaluate"):

        def run():
            return train.evaluate(model, params, state, (x, y), batch_size=batch_size, **fold)["loss"]

    else:

        def run():
            return train.predict(model, params, state, x, batch_size=batch_size, **fold).block_until_ready()

    out, row = time_eval(run, epochs)
    return {**row, "final_loss": float(out) if impl.startswith("fnn-evaluate") else float("nan")}


def time_eval(run, epochs: int) -> tuple:
    """``run()`` once (compile and one pass, not timed), then ``epochs`` timed calls: the last
    output and the row's timing fields. ``run`` must return its result on the host or blocked."""
    _listen_for_compiles()
    before = _COMPILE["events"]
    t0 = time.perf_counter()
    out = run()  # compile and one pass: not timed
    first_call, compiles_first = time.perf_counter() - t0, _COMPILE["events"] - before
    times, cpu = [], []
    for _ in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return out, {
        "compile_s": None,  # inside the first call: evaluate/predict compile on first use
        "first_call_s": first_call,
        "compiles_in_first_call": compiles_first,
        "recompiles": _COMPILE["events"] - before - compiles_first,
        "epoch_s": times,
        "epoch_cpu_s": cpu,
        "loss_finite": True,
    }


# ---------------------------------------------------------------- the PyTorch rows


def _torch_model(threads: int):
    """The benchmark's MLP in torch (seeded), with ``threads`` intra-op threads."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(IN, H),
        nn.BatchNorm1d(H),
        nn.ReLU(),
        nn.Dropout(P_DROP),
        nn.Linear(H, H),
        nn.BatchNorm1d(H),
        nn.ReLU(),
        nn.Dropout(P_DROP),
        nn.Linear(H, OUT),
    )


def run_torch_row(
    batch_size: int,
    x_np: np.ndarray,
    y_np: np.ndarray,
    epochs: int,
    threads: int,
    model=None,
    memory_format=None,
) -> dict:
    """The torch training row: ``model`` (default: the benchmark's MLP, with ``threads``
    threads; a given model's caller sets the threads) and each batch in ``memory_format``
    (e.g. ``torch.channels_last``; default: as gathered)."""
    import torch
    from torch import nn

    model = _torch_model(threads) if model is None else model
    model.train()
    params = list(model.parameters())
    opt = torch.optim.SGD(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=LR,
        momentum=MOMENTUM,
    )
    x, y = torch.from_numpy(np.ascontiguousarray(x_np)), torch.from_numpy(y_np.astype(np.int64))
    n_batches = x.shape[0] // batch_size
    gen = torch.Generator().manual_seed(1)

    def epoch(steps: int = n_batches):
        order = torch.randperm(x.shape[0], generator=gen)[: n_batches * batch_size].view(
            n_batches, batch_size
        )
        losses, accs = torch.empty(steps), torch.empty(steps)
        for i in range(steps):
            xb, yb = x[order[i]], y[order[i]]
            if memory_format is not None:
                xb = xb.contiguous(memory_format=memory_format)
            out = model(xb)
            loss = nn.functional.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                losses[i], accs[i] = loss, (out.argmax(1) == yb).float().mean()
        return losses

    # warm-up steps (allocator, thread pool, kernels): not timed
    losses, row = _timed_torch(lambda: epoch(min(n_batches, 50)), epoch, epochs, threads)
    return {**row, "final_loss": float(losses[-1]), "loss_finite": bool(torch.isfinite(losses).all())}


def _timed_torch(warm_up, run, epochs: int, threads: int) -> tuple:
    """``warm_up()`` once (not timed), then ``run()`` ``epochs`` times: the last output and
    the fields every torch row shares (wall and CPU seconds per pass, torch's version and
    threads, the BLAS environment)."""
    import torch

    t0 = time.perf_counter()
    warm_up()
    first_call, times, cpu, out = time.perf_counter() - t0, [], [], None
    for _ in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return out, {
        "compile_s": None,
        "first_call_s": first_call,
        "recompiles": None,
        "epoch_s": times,
        "epoch_cpu_s": cpu,
        "torch_version": torch.__version__,
        "torch_threads": threads,
        "env_in_row": {v: os.environ.get(v) for v in (*OPENBLAS_VARS, "OMP_WAIT_POLICY")},
    }


def run_torch_eval_row(
    impl: str,
    batch_size: int,
    x_np: np.ndarray,
    y_np: np.ndarray,
    epochs: int,
    threads: int,
    model=None,
    memory_format=None,
) -> dict:
    """model.eval() under torch.no_grad(): loss sum and correct count (eval) or the logits
    (predict); ``model`` and ``memory_format`` as for ``run_torch_row``."""
    import torch
    from torch import nn

    model = _torch_model(threads) if model is None else model
    model.eval()
    x, y = torch.from_numpy(np.ascontiguousarray(x_np)), torch.from_numpy(y_np.astype(np.int64))
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)  # slices of it keep the format
    starts = range(0, x.shape[0], batch_size)

    @torch.no_grad()
    def run():
        if impl.startswith("torch-eval"):
            loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
            for i in starts:
                xb, yb = x[i : i + batch_size], y[i : i + batch_size]
                out = model(xb)
                loss_sum += nn.functional.cross_entropy(out, yb, reduction="sum")
                correct += (out.argmax(1) == yb).sum()
            return float(loss_sum) / x.shape[0], int(correct)
        return torch.cat([model(x[i : i + batch_size]) for i in starts])

    out, row = _timed_torch(run, run, epochs, threads)  # a warm-up pass (allocator, thread pool), not timed
    return {
        **row,
        "final_loss": out[0] if impl.startswith("torch-eval") else float("nan"),
        "loss_finite": True,
    }


# ---------------------------------------------------------------- matmul peak


def run_matmul_peak(sizes: tuple[int, ...], repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    mm = jax.jit(jnp.matmul)
    best = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(n), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(n + 1), (n, n), jnp.float32)
        mm(a, b).block_until_ready()
        t = min(_timed(lambda a=a, b=b: mm(a, b).block_until_ready()) for _ in range(repeats))
        best[str(n)] = 2 * n**3 / t / 1e9
    return {"gflops_by_size": best, "peak_gflops": max(best.values())}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- rows and processes


def run_row(spec: dict, x: np.ndarray | None = None, y: np.ndarray | None = None) -> dict:
    if spec["impl"] == "matmul":
        return run_matmul_peak(tuple(spec["sizes"]), spec["repeats"])
    if x is None:
        x, y = np.load(spec["x"]), np.load(spec["y"])
    if _is_eval(spec["impl"]):
        if spec["impl"].startswith("torch"):
            return run_torch_eval_row(spec["impl"], spec["batch"], x, y, spec["epochs"], spec["threads"])
        return run_jax_eval_row(spec["impl"], spec["batch"], x, y, spec["epochs"])
    if spec["impl"].startswith("torch"):
        return run_torch_row(spec["batch"], x, y, spec["epochs"], spec["threads"])
    return run_jax_row(spec["impl"], spec["batch"], x, y, spec["epochs"])


def _is_eval(impl: str) -> bool:
    """An eval row (one eval-mode pass over the data per "epoch"), not a training row."""
    return impl in EVAL_IMPLS or impl.startswith(("torch-eval", "torch-predict"))


def wait_rss(argv: list[str], env: dict | None = None, stdout=None) -> tuple[int, float, float]:
    """Run argv to completion; (exit code, its own peak RSS in MB, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=str(common.ROOT), env=env, stdout=stdout, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - t0


def run_isolated(spec: dict, out: str, env: dict | None = None, script: str = __file__) -> dict:
    """``spec``'s row in a fresh ``python script --worker`` process: its result, with the
    process's own peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = dict(spec, result=os.path.join(tmp, "row.json"))
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        code, rss, _ = wait_rss(
            [sys.executable, os.path.abspath(script), "--worker", spec_path, "--out", out], env=env
        )
        if code != 0:
            raise RuntimeError(f"benchmark row {spec['impl']} batch {spec.get('batch')} exited with {code}")
        with open(spec["result"]) as f:
            row = json.load(f)
    row["peak_rss_mb"], row["rss_scope"] = rss, "own subprocess"
    return row


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def missing_modules(impl: str) -> list[str]:
    """The libraries of peer row ``impl`` that this interpreter cannot import."""
    import importlib.util

    return [m for m in PEER_IMPLS[impl] if importlib.util.find_spec(m) is None]


def peers_available() -> tuple[str, ...]:
    """The peer rows whose libraries this interpreter can import (the ``bench`` extra)."""
    return tuple(impl for impl in PEER_IMPLS if not missing_modules(impl))


def peer_versions(impls) -> dict:
    """Installed versions of the libraries behind the peer rows ``impls``."""
    from importlib import metadata

    return {m: metadata.version(m) for impl in impls for m in PEER_IMPLS[impl]}


def cli_run(out: str) -> dict:
    """Peak RSS and wall time of ``python -m fnn train --epochs 1`` (the full MNIST run)."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "log.txt")
        argv = [
            sys.executable,
            "-m",
            "fnn",
            "train",
            "--epochs",
            "1",
            "--out",
            os.path.join(tmp, "run"),
            "--no-progress",
        ]
        with open(log_path, "w") as log:
            code, rss, wall = wait_rss(argv, stdout=log)
        with open(log_path) as f:
            lines = f.read().strip().splitlines()
    return {
        "command": "python -m fnn train --epochs 1 --out DIR --no-progress",
        "exit_code": code,
        "peak_rss_mb": rss,
        "wall_s": wall,
        "last_line": lines[-1] if lines else "",
    }


def load_data(samples: int) -> tuple[np.ndarray, np.ndarray]:
    from fnn import data

    images, labels = data.mnist("train")
    x = np.asarray(data.normalize(images[:samples])).reshape(-1, IN).astype(np.float32)
    return x, np.asarray(labels[:samples], dtype=np.int32)


# ---------------------------------------------------------------- report


def merge_rounds(runs: list[dict]) -> dict:
    """One row from its rounds: every epoch time, the fastest compile, the largest RSS."""
    row = dict(runs[-1])
    row["epoch_s"] = [t for r in runs for t in r["epoch_s"]]
    row["epoch_s_by_round"] = [r["epoch_s"] for r in runs]
    row["epoch_cpu_s"] = [t for r in runs for t in r["epoch_cpu_s"]]
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    if row.get("compile_s") is not None:
        row["compile_s_by_round"] = [r["compile_s"] for r in runs]
        best = min(range(len(runs)), key=lambda i: runs[i]["compile_s"])
        row["compile_s"], row["compile_cpu_s"] = runs[best]["compile_s"], runs[best]["compile_cpu_s"]
        row["recompiles"] = max(r["recompiles"] for r in runs)
    return row


def summarize(rows: list[dict], peak: float) -> None:
    for r in rows:
        used = r["samples_used"]
        r["samples_per_s"] = used / min(r["epoch_s"])
        r["samples_per_s_median"] = used / statistics.median(r["epoch_s"])
        r["samples_per_cpu_s"] = used / min(r["epoch_cpu_s"])
        flops = EVAL_FLOPS_PER_SAMPLE if _is_eval(r["impl"]) else FLOPS_PER_SAMPLE
        r["gflops"] = r["samples_per_s"] * flops / 1e9
        r["pct_of_peak"] = 100 * r["gflops"] / peak


def check_targets(rows: list[dict], cli: dict | None) -> list[dict]:
    by = {(r["impl"], r["batch"]): r for r in rows}
    checks = []

    def add(name, value, target, ok, unit="x"):
        checks.append({"check": name, "value": value, "target": target, "pass": bool(ok), "unit": unit})

    for b in sorted({r["batch"] for r in rows}):
        ref, auto, man = (by.get((i, b)) for i in ("pure-jax", "fnn-autodiff", "fnn-manual"))
        torch_rows = [
            r for r in rows if r["batch"] == b and r["impl"].startswith("torch") and not _is_eval(r["impl"])
        ]
        tor = max(torch_rows, key=lambda r: r["samples_per_s"]) if torch_rows else None
        for impl, row in (("autodiff", auto), ("manual", man)):
            if row and ref:
                v = row["samples_per_s"] / ref["samples_per_s"]
                add(f"fnn {impl} / pure-JAX @{b}", v, ">= 1.0", v >= 1.0)
                v = row["samples_per_cpu_s"] / ref["samples_per_cpu_s"]
                add("  same, per CPU-second", v, "(info)", v >= 1.0)
            if row and tor:
                v = row["samples_per_s"] / tor["samples_per_s"]
                add(f"fnn {impl} / {tor['impl']} (fastest torch) @{b}", v, ">= 1.3", v >= 1.3)
            for peer in PEER_IMPLS:  # issue 12: fnn leads the peer libraries at every batch size
                other = by.get((peer, b))
                if row and other:
                    v = row["samples_per_s"] / other["samples_per_s"]
                    add(f"fnn {impl} / {peer} @{b}", v, ">= 1.0", v >= 1.0)
                    v = row["samples_per_cpu_s"] / other["samples_per_cpu_s"]
                    add("  same, per CPU-second", v, "(info)", v >= 1.0)
        if auto and man:
            v = man["samples_per_s"] / auto["samples_per_s"]
            add(f"fnn manual / autodiff @{b}", v, ">= 0.95", v >= 0.95)
            v = man["samples_per_cpu_s"] / auto["samples_per_cpu_s"]
            add("  same, per CPU-second", v, "(info)", v >= 0.95)
        if b == 1024:
            for row in (auto, man, ref):
                if row:
                    target = ">= 75" if row["impl"].startswith("fnn") else "(info)"
                    add(
                        f"{row['impl']} % of matmul peak @{b}",
                        row["pct_of_peak"],
                        target,
                        row["pct_of_peak"] >= 75,
                        "%",
                    )
    for b in sorted({r["batch"] for r in rows}):
        auto, shown = by.get(("fnn-autodiff", b)), by.get(("fnn-autodiff-progress", b))
        if auto and shown:
            v = 100 * (1 - shown["samples_per_s"] / auto["samples_per_s"])
            add(f"progress bar cost @{b}", v, "<= 2" if b == 128 else "(info)", v <= 2, "%")
            v = 100 * (1 - shown["samples_per_cpu_s"] / auto["samples_per_cpu_s"])
            add("  same, per CPU-second", v, "(info)", v <= 2, "%")
        watched = by.get(("fnn-autodiff-monitor", b))
        if auto and watched:
            v = 100 * (1 - watched["samples_per_s"] / auto["samples_per_s"])
            add(f"monitor cost @{b}", v, "<= 5" if b == 128 else "(info)", v <= 5, "%")
            v = 100 * (1 - watched["samples_per_cpu_s"] / auto["samples_per_cpu_s"])
            add("  same, per CPU-second", v, "(info)", v <= 5, "%")
    for b in sorted({r["batch"] for r in rows}):
        for impl, kind in (("fnn-evaluate", "torch-eval"), ("fnn-predict", "torch-predict")):
            row = by.get((impl, b))
            peers = [r for r in rows if r["batch"] == b and r["impl"].startswith(kind + "-")]
            if row and peers:
                tor = max(peers, key=lambda r: r["samples_per_s"])
                v = row["samples_per_s"] / tor["samples_per_s"]
                add(f"{impl} / {tor['impl']} @{b}", v, ">= 1.0" if b == 1024 else "(info)", v >= 1.0)
                v = row["samples_per_cpu_s"] / tor["samples_per_cpu_s"]
                add("  same, per CPU-second", v, "(info)", v >= 1.0)
    base = by.get(("fnn-autodiff", 128))
    for r in rows:
        if _devices(r["impl"]) and base:
            v = r["samples_per_s"] / base["samples_per_s"]
            add(f"{r['impl']} / fnn-autodiff (no mesh) @128", v, "(info)", True)
    for r in rows:
        if r["impl"].startswith("fnn") and r["compile_s"] is not None:
            add(f"{r['impl']} compile s @{r['batch']}", r["compile_s"], "<= 1.5", r["compile_s"] <= 1.5, "s")
        if r["impl"].startswith("fnn"):
            add(f"{r['impl']} recompiles @{r['batch']}", r["recompiles"], "== 0", r["recompiles"] == 0, "")
    if cli is not None:
        add(
            "fnn train --epochs 1 peak RSS MiB",
            cli["peak_rss_mb"],
            f"<= {RSS_TARGET_MIB:.0f}",
            cli["exit_code"] == 0 and cli["peak_rss_mb"] <= RSS_TARGET_MIB,
            "MiB",
        )
    return checks


def plot(rows: list[dict], peak: float, out: str) -> None:
    """Samples/s per implementation, one panel per batch size, against the matmul peak."""
    plt = common.pyplot()
    rows = [r for r in rows if not _is_eval(r["impl"])]  # training throughput only
    if plt is None or not rows:
        return
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4.2), squeeze=False)
    colors = {
        "fnn-autodiff": "tab:blue",
        "fnn-manual": "tab:cyan",
        "pure-jax": "tab:green",
        "flax-nnx": "tab:red",
        "equinox": "tab:olive",
    }
    for ax, b in zip(axes[0], batches, strict=True):
        sel = [r for r in rows if r["batch"] == b]
        names = [r["impl"] for r in sel]
        bars = ax.bar(
            names,
            [r["samples_per_s"] for r in sel],
            color=[colors.get(n, "tab:purple" if n.endswith("dev") else "tab:orange") for n in names],
        )
        ax.bar_label(
            bars, labels=[f"{r['samples_per_s']:.0f}\n{r['pct_of_peak']:.0f}%" for r in sel], fontsize=8
        )
        ax.axhline(
            peak * 1e9 / FLOPS_PER_SAMPLE, color="k", ls="--", lw=1, label=f"matmul peak ({peak:.0f} GFLOP/s)"
        )
        ax.set(title=f"batch {b}", ylabel="training samples / s (best epoch)", xlabel="implementation")
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_ylim(0, max(peak * 1e9 / FLOPS_PER_SAMPLE, max(r["samples_per_s"] for r in sel)) * 1.15)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(
        "MNIST MLP 784-512-512-10 training throughput on the CPU\n"
        "(bar labels: samples/s and % of the float32 matmul peak)",
        fontsize=10,
    )
    common.save_figure(fig, out, "throughput.png")


def main() -> None:
    args = common.parse_args(NAME, __doc__.split("\n")[0], _options)
    if args.worker:
        with open(args.worker) as f:
            spec = json.load(f)
        row = run_row(spec)
        with open(spec["result"], "w") as f:
            json.dump(row, f)
        return

    epochs = args.epochs or (1 if args.quick else 2)
    rounds = args.rounds or (1 if args.quick else 2)
    samples = args.samples or (2048 if args.quick else 60000)
    batch_sizes = args.batch_sizes or ([128] if args.quick else [128, 1024])
    with_torch = not args.no_torch and torch_available()
    peers = peers_available()
    missing = [impl for impl in args.impls or () if impl in PEER_IMPLS and impl not in peers]
    if missing:
        modules = sorted({m for impl in missing for m in missing_modules(impl)})
        print(
            f"experiments/{NAME}.py: error: --impls {' '.join(missing)}: {', '.join(modules)} not "
            f"importable by {sys.executable} (install the bench extra, see experiments/README.md)",
            file=sys.stderr,
        )
        sys.exit(2)
    train_impls = JAX_IMPLS + peers
    isolate = not args.quick
    blas_env = {v: os.environ[v] for v in OPENBLAS_VARS if v in os.environ}
    print(
        f"{NAME}: {samples} MNIST training samples, {rounds} round(s) of {epochs} timed epoch(s), "
        f"batch sizes {batch_sizes}, "
        f"{_cores()} cores, load average {os.getloadavg()[0]:.2f}; torch: "
        f"{'yes' if with_torch else 'skipped (' + ('--no-torch' if args.no_torch else 'not installed') + ')'}"
        f"; peer rows: {', '.join(peers) or 'none (flax, equinox not installed)'}"
    )
    if blas_env:
        print(f"OPENBLAS settings in the environment {blas_env}: removed for the torch rows only")

    t_start = time.perf_counter()
    x, y = load_data(samples)
    tmp = tempfile.TemporaryDirectory()
    x_path, y_path = os.path.join(tmp.name, "x.npy"), os.path.join(tmp.name, "y.npy")
    if isolate:
        np.save(x_path, x)
        np.save(y_path, y)

    # The torch rows' environment: no OPENBLAS overrides, and passive OpenMP waiting when
    # several threads share busy cores (spinning workers then wait on each other's
    # preempted threads: 10x slower here under load), unless the user chose a policy.
    torch_env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    torch_env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch_threads = [1] if args.quick else sorted({_cores(), 1}, reverse=True)

    def execute(spec: dict, env: dict | None = None) -> dict:
        if isolate:
            return run_isolated(dict(spec, x=x_path, y=y_path), args.out, env)
        row = run_row(spec, x, y)
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row["rss_scope"] = "whole process so far (--quick runs in-process)"
        return row

    specs = []
    chosen = args.impls or train_impls + EVAL_IMPLS
    if args.quick and not args.impls:
        # Each eval row compiles its own pass: these two still run evaluate and predict, with
        # and without the BatchNorm folding.
        chosen = (*train_impls, "fnn-evaluate", "fnn-predict-nofold")
    for b in batch_sizes:
        specs += [{"impl": impl, "batch": b, "epochs": epochs} for impl in chosen if impl in train_impls]
        if with_torch and any(impl in train_impls for impl in chosen):
            specs += [
                {"impl": f"torch-{t}t", "batch": b, "epochs": epochs, "threads": t} for t in torch_threads
            ]
    # Eval rows: one pass over the data is far shorter than a training epoch, so 3x the passes.
    for b in batch_sizes:
        specs += [{"impl": impl, "batch": b, "epochs": 3 * epochs} for impl in chosen if impl in EVAL_IMPLS]
        if with_torch:
            specs += [
                {"impl": f"{kind}-{t}t", "batch": b, "epochs": 3 * epochs, "threads": t}
                for kind, impl in (("torch-eval", "fnn-evaluate"), ("torch-predict", "fnn-predict"))
                if impl in chosen
                for t in torch_threads
            ]
    # Data-parallel rows: the fnn step over a 'data' mesh of N devices, each row in its own
    # process because the forced host-device count must be set before jax starts.
    device_counts = args.devices if args.devices is not None else ([1] if args.quick else [1, 2, 4])
    device_env = {
        n: {
            **os.environ,
            "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
            f"--xla_force_host_platform_device_count={n}".strip(),
        }
        for n in device_counts
    }
    specs += [
        {"impl": f"fnn-autodiff-{n}dev", "batch": 128, "epochs": epochs, "env_devices": n}
        for n in device_counts
    ]
    runs: dict[tuple, list[dict]] = {}
    matmuls = []
    for rnd in range(rounds):
        matmuls.append(
            execute(
                {
                    "impl": "matmul",
                    "sizes": [512] if args.quick else [1024, 2048, 3072],
                    "repeats": 3 if args.quick else 7,
                }
            )
        )
        for spec in specs:
            env = torch_env if spec["impl"].startswith("torch") else device_env.get(spec.get("env_devices"))
            row = execute(spec, env)
            runs.setdefault((spec["impl"], spec["batch"]), []).append(row)
            print(
                f"  round {rnd + 1}  {spec['impl']:13s} batch {spec['batch']:5d}: "
                f"best epoch {min(row['epoch_s']):.2f} s, load {os.getloadavg()[0]:.1f}"
            )
    matmul = max(matmuls, key=lambda m: m["peak_gflops"])
    matmul["peak_gflops_by_round"] = [m["peak_gflops"] for m in matmuls]
    peak = matmul["peak_gflops"]
    print(
        f"float32 matmul peak: {peak:.1f} GFLOP/s  (by size: "
        + ", ".join(f"{n}: {g:.1f}" for n, g in matmul["gflops_by_size"].items())
        + ")"
    )

    rows = []
    for (impl, b), row_runs in runs.items():
        row = merge_rounds(row_runs)
        row.update(impl=impl, batch=b, samples_used=samples if _is_eval(impl) else (samples // b) * b)
        rows.append(row)
    summarize(rows, peak)
    # The full CLI run measures training's memory: only when a training row was asked for.
    cli = None if args.quick or not any(impl in train_impls for impl in chosen) else cli_run(args.out)
    tmp.cleanup()

    table = [
        {
            "impl": r["impl"],
            "batch": r["batch"],
            "samples/s": round(r["samples_per_s"]),
            "compile s": "-" if r["compile_s"] is None else round(r["compile_s"], 2),
            "compile CPU s": "-" if r["compile_s"] is None else round(r["compile_cpu_s"], 2),
            "recompiles": "-" if r["recompiles"] is None else r["recompiles"],
            "samples/CPU-s": round(r["samples_per_cpu_s"]),
            "peak RSS MB": round(r["peak_rss_mb"]),
            "GFLOP/s": round(r["gflops"], 1),
            "% of peak": round(r["pct_of_peak"], 1),
            "final loss": round(r["final_loss"], 3),
        }
        for r in rows
    ]
    print()
    common.print_table(table)
    if cli is not None:
        print(
            f"\n{cli['command']}: peak RSS {cli['peak_rss_mb']:.0f} MB, {cli['wall_s']:.1f} s, "
            f"exit {cli['exit_code']}, last line: {cli['last_line']}"
        )
    plot(rows, peak, args.out)
    checks = check_targets(rows, cli)
    print()
    for c in checks:
        verdict = "info" if c["target"] == "(info)" else ("PASS" if c["pass"] else "MISS")
        if args.quick and verdict != "info":
            verdict = "(quick: not judged)"
        print(f"{c['check']:42s} {c['value']:9.3f}{c['unit']:2s} target {c['target']:8s} {verdict}")
    wall = time.perf_counter() - t_start
    print(f"\nwall time {wall:.1f} s, load average at the end {os.getloadavg()[0]:.2f}")

    results = {
        "config": {
            "samples": samples,
            "timed_epochs": epochs,
            "rounds": rounds,
            "batch_sizes": batch_sizes,
            "quick": args.quick,
            "cores": _cores(),
            "flops_per_sample": FLOPS_PER_SAMPLE,
            "data": "fnn.data.mnist train, normalized",
            "openblas_env_removed_for_torch": blas_env,
            "torch": with_torch,
            "peers": peer_versions(impl for impl in peers if impl in chosen),
            "torch_env_omp_wait_policy": torch_env["OMP_WAIT_POLICY"] if isolate else None,
        },
        "matmul": matmul,
        "rows": rows,
        "cli_run": cli,
        "checks": checks,
        "wall_s": wall,
        "load_average": os.getloadavg(),
    }
    print(f"results: {common.save_json(args.out, results)}")


if __name__ == "__main__":
    main()

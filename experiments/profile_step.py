"""Where a training step's time goes: the benchmark's MLP epoch under ``jax.profiler``, per part.

The workload is ``benchmark_training``'s (784-512-512-10, BatchNorm, ReLU, Dropout 0.2,
cross-entropy, SGD with momentum 0.9 and weight decay): one compiled ``lax.scan`` epoch of
fnn (``--grad autodiff`` or ``manual``) at each batch size.

Method. XLA:CPU runs a compiled program as a sequence of thunks (a dot, a fused loop, a
copy, ...), and ``jax.profiler`` records one event per thunk execution, on the thread that
ran it. The script traces a few timed epochs, sums each thunk's event durations ("thunk
time": a thunk that XLA runs on both cores is recorded on the thread that launched it, so
the sums are close to wall time, not CPU time; the dots' sum matched the matmul peak's wall
rate), and gives every thunk a part of the step from the HLO metadata that JAX attaches to
each instruction: the innermost user frame (file and function) that emitted it, which names
the part:

- ``matmul``: ``linear``/``linear_backward`` (the three Linear layers' dots and bias adds),
- ``batchnorm``, ``relu``, ``dropout`` (the mask's random bits and its multiply), ``loss``
  (log-softmax cross-entropy and its gradient), ``optimizer`` (``fnn.optim``'s transforms:
  weight decay, momentum, the update), ``grad norm`` (``fnn.optim``'s global norm, which the
  divergence guard reads), ``metrics``, ``gather`` (shuffling and ``x[idx]``), ``step`` (the
  rest of the step: key splits, the divergence guard's selects, the scan's bookkeeping).

A fused thunk whose instructions come from several parts is reported under all of them
joined by ``+`` (XLA fused them: the time cannot be split further without changing the
program). Events of one thunk in the loop body repeat once per step, so the totals divide
by the steps traced. The wall time per step is measured on the same epochs, outside the
profiler's bookkeeping.

Usage: ``python experiments/profile_step.py [--batch-sizes 128 1024] [--grad autodiff manual]``
(add ``--quick`` for 2048 samples). Prints a table per (grad, batch) and writes
``results.json`` under ``--out``. ``--grad reference`` profiles the hand-written JAX epoch.

``--model cnn`` profiles ``benchmark_cnn``'s workload instead (fnn's epoch of
``fnn.models.cnn()``, batch 128 and 512, 4096 samples), with the parts ``conv``, ``pool``,
``batchnorm``, ``relu``, ``dropout`` and ``matmul`` split into forward and backward: autodiff's
backward instructions carry ``transpose(`` in their name stack, a manual backward runs under a
function named ``*backward*`` or ``*pullback*``; XLA's pooling instructions that lost their
metadata count as pool (select-and-scatter and autodiff's variadic argmax reduce-window as its
backward). ``--torch`` adds PyTorch eager's step (NCHW and channels_last, 2 threads) under
``torch.profiler``, by op (``TORCH_PARTS``: the total time of each module's aten op and of each
autograd node), for the per-op ratio to torch.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import os
import re
import tempfile
import time

import common
import numpy as np
from benchmark_training import fnn_epoch, load_data, reference_epoch

NAME = "profile_step"

# (substring of the innermost user frame's file or function, part), checked in order.
PARTS = (
    ("normalization.py", "batchnorm"),
    ("batch_norm", "batchnorm"),
    ("conv", "conv"),
    ("pool", "pool"),
    ("dropout", "dropout"),
    ("threefry", "dropout"),
    ("stochastic.py", "dropout"),
    ("activations.py", "relu"),
    ("relu", "relu"),
    ("linear", "matmul"),
    ("loss", "loss"),
    ("cross_entropy", "loss"),
    ("optim/clip.py", "grad norm"),
    ("optim/", "optimizer"),
    ("train/metrics.py", "metrics"),
)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 128 1024")
    parser.add_argument(
        "--grad",
        nargs="+",
        default=["autodiff", "manual"],
        choices=["autodiff", "manual", "reference"],
        help="fnn's gradient sources; 'reference': the hand-written JAX epoch",
    )
    parser.add_argument("--samples", type=int, default=None, help="default 16384 (quick 2048; cnn 4096)")
    parser.add_argument(
        "--model", default="mlp", choices=["mlp", "cnn"], help="cnn: benchmark_cnn's workload (batch 128 512)"
    )
    parser.add_argument("--torch", action="store_true", help="with --model cnn: torch eager's step by op")
    parser.add_argument("--epochs", type=int, default=3, help="traced epochs (after one untimed)")


# With --model cnn the layers' parts are split into forward and backward ("conv bwd").
LAYER_PARTS = ("conv", "pool", "batchnorm", "relu", "dropout", "matmul")


def part_of(source_file: str, function: str, op_name: str, backward: bool | None = None) -> str:
    """The part of the step one HLO instruction belongs to.

    Args:
        source_file: the file of the innermost user frame that emitted it.
        function: that frame's function name.
        op_name: the instruction's ``op_name`` metadata (JAX's name stack and primitive).
        backward: None, or whether the instruction belongs to the backward pass: a layer's
            part then gets " fwd" or " bwd".

    Returns:
        One of the module docstring's parts.
    """
    where = source_file.replace("\\", "/") + " " + function.lower()
    for marker, part in PARTS:
        if marker in where:
            if backward is not None and part in LAYER_PARTS:
                return f"{part} {'bwd' if backward else 'fwd'}"
            return part
    if "train/step.py" in where and ("_shuffle" in op_name or op_name.endswith(("gather", "dynamic_slice"))):
        return "gather"
    return "step"


_SECTION = re.compile(r"^(FileNames|FunctionNames|FileLocations|StackFrames)$")
_ENTRY = re.compile(r"^(\d+) (.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{$")
_INSTR = re.compile(r"^(?:ROOT\s+)?%([\w.\-]+)\s*=")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_POOL_OPS = re.compile(r"\b(reduce-window|select-and-scatter)\(")
_META = re.compile(r'op_name="([^"]*)"(?:.*?stack_frame_id=(\d+))?')


def thunk_parts(hlo_text: str, split: bool = False) -> dict[str, str]:
    """Every instruction of the compiled module -> its part (fusions: all of their instructions').

    Args:
        hlo_text: ``compiled.as_text()`` of the epoch, with its stack-frame tables.
        split: tell the layers' forward from their backward: autodiff's backward carries
            ``transpose(`` in its name stack; a manual backward runs under a function whose
            name says ``backward`` or ``pullback`` (any frame of the instruction's stack).

    Returns:
        ``{instruction name: part, or 'a+b' for a fusion of several parts}``.
    """
    tables: dict[str, dict[int, str]] = {}
    computations: dict[str, list[tuple[str, str | None, str | None]]] = {}
    section = current = None
    raw_instrs = []
    for raw in hlo_text.splitlines():
        line = raw.strip()
        if _SECTION.match(line):
            section, current = line, None
            tables[section] = {}
            continue
        if section and (m := _ENTRY.match(line)):
            tables[section][int(m.group(1))] = m.group(2)
            continue
        if line.endswith("{") and (m := _COMPUTATION.match(line)) and "=" not in line.split("(")[0]:
            section, current = None, m.group(1)
            computations[current] = []
            continue
        if current and (m := _INSTR.match(line)):
            raw_instrs.append((current, m.group(1), line))

    def field(entry: str, key: str) -> int:
        return int(re.search(rf"{key}=(\d+)", entry).group(1))

    def frame(frame_id: int) -> tuple[str, str]:
        location = tables["FileLocations"][field(tables["StackFrames"][frame_id], "file_location_id")]
        file = tables["FileNames"][field(location, "file_name_id")].strip('"')
        function = tables["FunctionNames"][field(location, "function_name_id")].strip('"')
        return file, function

    def in_backward(frame_id: int, op_name: str) -> bool:
        seen = set()
        while frame_id not in seen and frame_id in tables["StackFrames"]:
            seen.add(frame_id)
            if re.search(r"backward|pullback", frame(frame_id)[1]):
                return True
            # the text prints a frame's parent as its id + 1 (0: none), measured on jax 0.10.2
            frame_id = field(tables["StackFrames"][frame_id], "parent_frame_id") - 1
        return "transpose(" in op_name

    for comp, name, line in raw_instrs:
        part = None
        if (meta := _META.search(line)) and meta.group(2):
            frame_id, op_name = int(meta.group(2)), meta.group(1)
            part = part_of(*frame(frame_id), op_name, in_backward(frame_id, op_name) if split else None)
        elif split and (m := _POOL_OPS.search(line)):
            # XLA's own pooling instructions without metadata: select-and-scatter is max-pool's
            # gradient; a variadic (tuple-valued) reduce-window is autodiff's argmax for it
            part = "pool bwd" if m.group(1) == "select-and-scatter" or "= (" in line else "pool fwd"
        callee = _CALLS.search(line)
        computations[comp].append((name, callee.group(1) if callee else None, part))

    @functools.cache
    def parts_of_computation(name: str) -> frozenset:
        found = set()
        for _, callee, part in computations.get(name, []):
            if part:
                found.add(part)
            if callee:
                found |= parts_of_computation(callee)
        return frozenset(found)

    result = {}
    for instrs in computations.values():
        for name, callee, part in instrs:
            parts = set(parts_of_computation(callee)) if callee else set()
            if part:
                parts.add(part)
            result[name] = "+".join(sorted(parts)) if parts else "step"
    return result


def profile(grad: str, batch_size: int, x, y, epochs: int, build=None) -> dict:
    """Trace ``epochs`` epochs of fnn's compiled epoch and split their thunks' time by part;
    with ``build``, of ``build()``'s ``(run, carry)`` instead, the layers' parts split into
    forward and backward."""
    import jax
    from jax.profiler import ProfileData

    # the benchmark's own epoch: the same workload
    run, carry = build() if build else fnn_epoch(batch_size, grad)
    x, y = jax.device_put(x), jax.device_put(y)  # once: the epochs time the program, not a copy
    key = jax.random.key(1)
    args = (*carry, key, x, y)
    compiled = run.lower(*args).compile()
    parts = thunk_parts(compiled.as_text(), split=build is not None)
    out = run(*args)  # warm-up; donated buffers come back as the next carry
    jax.block_until_ready(out)
    carry = out[:-1]
    steps = x.shape[0] // batch_size

    walls = []
    for e in range(epochs):
        t = time.perf_counter()
        out = run(*carry, jax.random.fold_in(key, e), x, y)
        jax.block_until_ready(out)
        walls.append(time.perf_counter() - t)
        carry = out[:-1]

    trace_dir = tempfile.mkdtemp(prefix="fnn-profile-")
    jax.profiler.start_trace(trace_dir)
    for e in range(epochs):
        out = run(*carry, jax.random.fold_in(key, 100 + e), x, y)
        jax.block_until_ready(out)
        carry = out[:-1]
    jax.profiler.stop_trace()
    (path,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)

    cpu_ns: dict[str, float] = collections.defaultdict(float)
    unknown: dict[str, float] = collections.defaultdict(float)
    per_thunk: dict[str, float] = collections.defaultdict(float)
    for plane in ProfileData.from_file(path).planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):
                continue  # python and client threads: dispatch, not the program's work
            for event in line.events:
                name = event.name
                if name.startswith("end: ") or "::" in name:
                    continue
                per_thunk[name] += event.duration_ns
                if name in parts:
                    cpu_ns[parts[name]] += event.duration_ns
                else:
                    unknown[name] += event.duration_ns
    total_steps = steps * epochs
    per_step = {p: ns / total_steps / 1e3 for p, ns in cpu_ns.items()}
    other = sum(unknown.values()) / total_steps / 1e3
    if other:
        per_step["(unattributed thunks)"] = other
    wall_us = float(np.median(walls)) / steps * 1e6
    return {
        "grad": grad,
        "batch_size": batch_size,
        "steps_per_epoch": steps,
        "wall_us_per_step": wall_us,
        "thunk_us_per_step": dict(sorted(per_step.items(), key=lambda kv: -kv[1])),
        "unattributed": sorted(unknown, key=lambda n: -unknown[n])[:10],
        "top_thunks": [
            {"thunk": n, "part": parts.get(n, "?"), "thunk_us_per_step": ns / total_steps / 1e3}
            for n, ns in sorted(per_thunk.items(), key=lambda kv: -kv[1])[:15]
        ],
    }


def _print(row: dict) -> None:
    total = sum(row["thunk_us_per_step"].values())
    print(
        f"\n{row['grad']} @ batch {row['batch_size']}: wall {row['wall_us_per_step']:.0f} µs/step, "
        f"thunk time {total:.0f} µs/step"
    )
    for part, us in row["thunk_us_per_step"].items():
        print(f"  {part:<34} {us:9.1f} µs  {100 * us / total:5.1f}%")
    print("  largest thunks:")
    for t in row["top_thunks"][:8]:
        print(f"    {t['thunk']:<40} {t['part']:<30} {t['thunk_us_per_step']:8.1f} µs")


# torch.profiler events -> the parts above: the ops a layer's module calls (their total time,
# which includes the kernels under them) and the autograd nodes of the backward.
TORCH_PARTS = {
    "aten::conv2d": "conv fwd",
    "ConvolutionBackward0": "conv bwd",
    "aten::max_pool2d": "pool fwd",
    "MaxPool2DWithIndicesBackward0": "pool bwd",
    "aten::batch_norm": "batchnorm fwd",
    "NativeBatchNormBackward0": "batchnorm bwd",
    "aten::relu": "relu fwd",
    "ReluBackward0": "relu bwd",
    "aten::dropout": "dropout fwd",
    "aten::feature_dropout": "dropout fwd",
    "MulBackward0": "dropout bwd",
    "aten::linear": "matmul fwd",
    "AddmmBackward0": "matmul bwd",
    "aten::cross_entropy_loss": "loss",
    "LogSoftmaxBackward0": "loss",
    "NllLossBackward0": "loss",
    "Optimizer.step#SGD.step": "optimizer",
    "Optimizer.zero_grad#SGD.zero_grad": "optimizer",
}


def torch_profile(batch_size: int, x, y, steps: int, threads: int, channels_last: bool) -> dict:
    """benchmark_cnn's torch eager step under ``torch.profiler``: µs per step by part (``TORCH_PARTS``)."""
    import benchmark_cnn as bc
    import benchmark_training as bt
    import torch

    model, _ = bc.fnn_model()
    arch = bc.arch_of(model) if model is not None else bc.DEFAULT_ARCH
    weights = bc.initial_weights(model) if model is not None else bc.torch_init_weights(arch)
    net = bc.torch_model(arch, weights, threads, channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    params = list(net.parameters())
    opt = torch.optim.SGD(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": bt.WEIGHT_DECAY},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=bt.LR,
        momentum=bt.MOMENTUM,
    )
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    batches = [(i * batch_size) % (len(x) - batch_size + 1) for i in range(steps)]

    def run():
        for i in batches:
            xb = xt[i : i + batch_size].contiguous(memory_format=fmt)
            loss = torch.nn.functional.cross_entropy(net(xb), yt[i : i + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run()  # warm-up
    t = time.perf_counter()
    run()
    wall_us = (time.perf_counter() - t) / steps * 1e6
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    per_step: dict[str, float] = collections.defaultdict(float)
    for event in prof.key_averages():
        name = event.key.removeprefix("autograd::engine::evaluate_function: ")
        if name in TORCH_PARTS and (event.key == name or name.endswith("Backward0")):
            per_step[TORCH_PARTS[name]] += event.cpu_time_total / steps
    return {
        "grad": f"torch{'-cl' if channels_last else ''}-{threads}t",
        "batch_size": batch_size,
        "wall_us_per_step": wall_us,
        "op_us_per_step": dict(sorted(per_step.items(), key=lambda kv: -kv[1])),
    }


def _cnn_rows(args, batch_sizes: list[int], epochs: int) -> tuple[int, list[dict]]:
    """--model cnn: benchmark_cnn's epochs (fnn autodiff / manual, the hand-written JAX), then torch."""
    import benchmark_cnn as bc

    samples = args.samples or (512 if args.quick else 4096)
    data = bc.load_data(samples, 0)
    model, note = bc.fnn_model()
    arch = bc.arch_of(model) if model is not None else bc.DEFAULT_ARCH
    weights = bc.initial_weights(model) if model is not None else bc.torch_init_weights(arch)
    print(f"{NAME} --model cnn: {note}, {samples} samples")
    rows = []
    for grad in args.grad:
        if grad != "reference" and model is None:
            print(f"skipped fnn {grad}: {note}")
            continue
        for b in batch_sizes:
            if grad == "reference":
                build = functools.partial(bc.reference_epoch, arch, weights, b)
            else:
                build = functools.partial(bc.fnn_epoch, model, weights, b, grad)
            row = profile(grad, b, data["x"], data["y"], epochs, build)
            _print(row)
            rows.append(row)
    if args.torch:
        for b in batch_sizes:
            for channels_last in (False, True):
                row = torch_profile(b, data["x"], data["y"], 4 if args.quick else 16, 2, channels_last)
                print(f"\n{row['grad']} @ batch {b}: wall {row['wall_us_per_step']:.0f} µs/step")
                for part, us in row["op_us_per_step"].items():
                    print(f"  {part:<34} {us:9.1f} µs")
                rows.append(row)
    return samples, rows


def main() -> None:
    args = common.parse_args(NAME, __doc__, _options)
    epochs = 1 if args.quick else args.epochs
    if args.model == "cnn":
        common.optimized_compiles()  # even --quick's few steps of convolutions
        if args.torch:  # spinning OpenMP workers on shared cores: see benchmark_training
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        batch_sizes = args.batch_sizes or ([128] if args.quick else [128, 512])
        samples, rows = _cnn_rows(args, batch_sizes, epochs)
    else:
        samples = args.samples or (2048 if args.quick else 16384)
        batch_sizes = args.batch_sizes or ([128] if args.quick else [128, 1024])
        x, y = load_data(samples)
        rows = []
        for grad in args.grad:
            for b in batch_sizes:
                build = functools.partial(reference_epoch, b) if grad == "reference" else None
                row = profile(grad, b, x, y, epochs, build)
                _print(row)
                rows.append(row)
    results = {"model": args.model, "samples": samples, "rows": rows}
    print(f"\nresults: {common.save_json(args.out, results)}")


if __name__ == "__main__":
    main()

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
``results.json`` under ``--out``.
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
from benchmark_training import fnn_epoch, load_data

NAME = "profile_step"

# (substring of the innermost user frame's file or function, part), checked in order.
PARTS = (
    ("normalization.py", "batchnorm"),
    ("batch_norm", "batchnorm"),
    ("dropout", "dropout"),
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
    parser.add_argument("--grad", nargs="+", default=["autodiff", "manual"], choices=["autodiff", "manual"])
    parser.add_argument("--samples", type=int, default=None, help="default 16384 (quick 2048)")
    parser.add_argument("--epochs", type=int, default=3, help="traced epochs (after one untimed)")


def part_of(source_file: str, function: str, op_name: str) -> str:
    """The part of the step one HLO instruction belongs to.

    Args:
        source_file: the file of the innermost user frame that emitted it.
        function: that frame's function name.
        op_name: the instruction's ``op_name`` metadata (JAX's name stack and primitive).

    Returns:
        One of the module docstring's parts.
    """
    where = source_file.replace("\\", "/") + " " + function.lower()
    for marker, part in PARTS:
        if marker in where:
            return part
    if "train/step.py" in where and ("_shuffle" in op_name or op_name.endswith(("gather", "dynamic_slice"))):
        return "gather"
    return "step"


_SECTION = re.compile(r"^(FileNames|FunctionNames|FileLocations|StackFrames)$")
_ENTRY = re.compile(r"^(\d+) (.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{$")
_INSTR = re.compile(r"^(?:ROOT\s+)?%([\w.\-]+)\s*=")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_META = re.compile(r'op_name="([^"]*)"(?:.*?stack_frame_id=(\d+))?')


def thunk_parts(hlo_text: str) -> dict[str, str]:
    """Every instruction of the compiled module -> its part (fusions: all of their instructions').

    Args:
        hlo_text: ``compiled.as_text()`` of the epoch, with its stack-frame tables.

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

    for comp, name, line in raw_instrs:
        part = None
        if (meta := _META.search(line)) and meta.group(2):
            part = part_of(*frame(int(meta.group(2))), meta.group(1))
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


def profile(grad: str, batch_size: int, x, y, epochs: int) -> dict:
    """Trace ``epochs`` epochs of fnn's compiled epoch and split their thunks' time by part."""
    import jax
    from jax.profiler import ProfileData

    run, carry = fnn_epoch(batch_size, grad)  # the benchmark's own epoch: the same workload
    x, y = jax.device_put(x), jax.device_put(y)  # once: the epochs time the program, not a copy
    key = jax.random.key(1)
    args = (*carry, key, x, y)
    compiled = run.lower(*args).compile()
    parts = thunk_parts(compiled.as_text())
    out = run(*args)  # warm-up; donated buffers come back as the next carry
    jax.block_until_ready(out)
    carry = out[:3]
    steps = x.shape[0] // batch_size

    walls = []
    for e in range(epochs):
        t = time.perf_counter()
        out = run(*carry, jax.random.fold_in(key, e), x, y)
        jax.block_until_ready(out)
        walls.append(time.perf_counter() - t)
        carry = out[:3]

    trace_dir = tempfile.mkdtemp(prefix="fnn-profile-")
    jax.profiler.start_trace(trace_dir)
    for e in range(epochs):
        out = run(*carry, jax.random.fold_in(key, 100 + e), x, y)
        jax.block_until_ready(out)
        carry = out[:3]
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


def main() -> None:
    args = common.parse_args(NAME, __doc__, _options)
    samples = args.samples or (2048 if args.quick else 16384)
    batch_sizes = args.batch_sizes or ([128] if args.quick else [128, 1024])
    x, y = load_data(samples)
    rows = []
    for grad in args.grad:
        for b in batch_sizes:
            row = profile(grad, b, x, y, 1 if args.quick else args.epochs)
            _print(row)
            rows.append(row)
    print(f"\nresults: {common.save_json(args.out, {'samples': samples, 'rows': rows})}")


if __name__ == "__main__":
    main()

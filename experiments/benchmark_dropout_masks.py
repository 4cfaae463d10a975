"""What a dropout mask costs: one 1024x512 mask, and the whole training epoch at batch 1024,
with fnn's draw against the previous one and a rejected cheaper candidate.

Draws compared (p = 0.2, float32 masks of 0 and 1/(1 - p)):
- ``bernoulli``: fnn's previous draw, ``jax.random.bernoulli(key, 1 - p, shape)``: one
  32-bit random word per unit (the partitionable threefry hashes once per word it returns).
- ``fnn-16bit``: ``fnn.functional.dropout_mask`` as it is now: two units per 32-bit word,
  each comparing a 16-bit half with round((1 - p) 2^16).
- ``8bit``: four units per word, each comparing one byte with round((1 - p) 2^8) (the
  candidate rejected for its 1/256 resolution; see experiments/README.md,
  benchmark_dropout_masks).
- ``both-words-16bit``: 16-bit thresholds, four units per hash: the threefry primitive
  (``jax.extend.random.threefry2x32_p``) called on a counter directly, keeping both 32-bit
  words it returns where ``jax.random.bits`` keeps their xor (threefry keys only; an option
  not taken, see experiments/README.md).

Measured in one process, the variants interleaved so that load from other processes on the
shared cores hits them alike (the machine's load average is recorded before and after):
- mask: the jitted draw of one (1024, 512) mask, ``block_until_ready`` per call; best and
  median wall ms over ``--repeats`` calls, and CPU ms per call (process time over all calls).
- epoch: ``fnn.train.make_train_epoch`` (autodiff and manual) of the benchmark_training model
  (784-512-512-10, BatchNorm1d, ReLU, Dropout(0.2), cross-entropy, SGD lr 0.01 momentum 0.9
  weight decay 1e-4) over ``--samples`` MNIST training rows at batch 1024 (58 steps, 116
  masks an epoch on the full set). Each variant's epoch is built and compiled while its draw
  stands in for ``dropout_mask`` in ``fnn.functional`` (restored afterwards), so the compiled
  programs differ only in the draw. Best and median epoch wall s over ``--rounds`` rounds
  (rows interleaved), the CPU s of the best epoch and the median CPU s (process time: on
  cores shared with other jobs the steadier measure of the work).

``--quick`` runs 2048 samples, one round and 5 mask calls, and of the epochs only
autodiff with ``bernoulli`` and manual with ``fnn-16bit`` unless ``--grads`` or
``--epoch-draws`` is given (seconds, for the test suite).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time

import common
import numpy as np

NAME = "benchmark_dropout_masks"
IN, H, OUT = 784, 512, 10
LR, MOMENTUM, WEIGHT_DECAY, P_DROP, BATCH = 0.01, 0.9, 1e-4, 0.2, 1024
MASK_SHAPE = (1024, 512)


def _options(parser) -> None:
    parser.add_argument("--repeats", type=int, default=None, help="mask calls per variant (default 300)")
    parser.add_argument("--rounds", type=int, default=None, help="timed epochs per row (default 8)")
    parser.add_argument("--samples", type=int, default=None, help="training samples (default 60000)")
    parser.add_argument(
        "--grads",
        nargs="+",
        default=None,
        choices=["autodiff", "manual"],
        help="default: both (quick: see above)",
    )
    parser.add_argument(
        "--epoch-draws",
        nargs="+",
        default=None,
        choices=["bernoulli", "fnn-16bit", "8bit", "both-words-16bit"],
        help="draws timed in the whole epoch (default: before and after, bernoulli and fnn-16bit)",
    )


def draws() -> dict:
    """name -> dropout_mask-compatible function ``(key, shape, p, dtype=None) -> mask``."""
    import jax
    import jax.numpy as jnp

    from fnn import functional as F

    def scaled(keep, p, dtype):
        dtype = jnp.result_type(float) if dtype is None else dtype
        return jnp.where(keep, jnp.asarray(1.0 / (1.0 - p), dtype), jnp.zeros((), dtype))

    def bernoulli(key, shape, p, dtype=None):
        return scaled(jax.random.bernoulli(key, 1.0 - p, tuple(shape)), p, dtype)

    def eight_bit(key, shape, p, dtype=None):
        *lead, n = tuple(shape)
        m = (n + 3) // 4
        words = jax.random.bits(key, (*lead, m), jnp.uint32)
        parts = jnp.stack([(words >> s) & 0xFF for s in (0, 8, 16, 24)], axis=-1)
        keep = parts.reshape(*lead, 4 * m)[..., :n] < jnp.uint32(round((1.0 - p) * 256))
        return scaled(keep, p, dtype)

    def both_words(key, shape, p, dtype=None):
        from jax.extend.random import threefry2x32_p

        *lead, n = tuple(shape)
        m = (n + 3) // 4
        k = jax.random.key_data(key)
        count = jax.lax.iota(jnp.uint32, int(np.prod(lead, dtype=int)) * m).reshape(*lead, m)
        a, b = threefry2x32_p.bind(k[0], k[1], count, jnp.zeros_like(count))
        parts = jnp.stack([a & 0xFFFF, a >> 16, b & 0xFFFF, b >> 16], axis=-1)
        keep = parts.reshape(*lead, 4 * m)[..., :n] < jnp.uint32(round((1.0 - p) * 2**16))
        return scaled(keep, p, dtype)

    return {
        "bernoulli": bernoulli,
        "fnn-16bit": F.dropout_mask,
        "8bit": eight_bit,
        "both-words-16bit": both_words,
    }


@contextlib.contextmanager
def drawing_with(draw):
    """fnn's Dropout (``F.dropout`` and ``nn.Dropout.apply_vjp``) draws with ``draw`` inside."""
    import fnn.functional as F

    module = sys.modules["fnn.functional.stochastic"]
    saved = module.dropout_mask, F.dropout_mask
    module.dropout_mask = F.dropout_mask = draw
    try:
        yield
    finally:
        module.dropout_mask, F.dropout_mask = saved


def time_masks(repeats: int) -> list[dict]:
    import jax

    key = jax.random.key(0)
    jitted = {name: jax.jit(lambda k, d=d: d(k, MASK_SHAPE, P_DROP)) for name, d in draws().items()}
    for f in jitted.values():
        f(key).block_until_ready()
    wall = {name: [] for name in jitted}
    cpu = dict.fromkeys(jitted, 0.0)
    for _ in range(repeats):
        for name, f in jitted.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f(key).block_until_ready()
            wall[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - c0
    base = statistics.median(wall["bernoulli"])
    return [
        {
            "draw": name,
            "best_ms": 1e3 * min(t),
            "median_ms": 1e3 * statistics.median(t),
            "cpu_ms_per_call": 1e3 * cpu[name] / repeats,
            "median_vs_bernoulli": statistics.median(t) / base,
        }
        for name, t in wall.items()
    ]


def time_epochs(samples: int, rounds: int, pairs: list[tuple[str, str]]) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from fnn import data, models, nn, optim, train

    images, labels = data.mnist("train")
    x = jnp.asarray(np.asarray(data.normalize(images[:samples])).reshape(-1, IN).astype(np.float32))
    y = jnp.asarray(np.asarray(labels[:samples], dtype=np.int32))
    model = models.mlp(IN, (H, H), OUT, batch_norm=True, dropout=P_DROP)
    opt = optim.sgd(lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    rows = {}
    for grad, name in pairs:
        params, state = model.init(jax.random.key(0))
        carry = (params, state, opt.init(params))
        jax.clear_caches()  # a fresh trace each time: the draw patched in below is traced into it
        epoch = train.make_train_epoch(model, nn.CrossEntropyLoss(), opt, BATCH, grad)
        with drawing_with(draws()[name]):
            compiled = epoch.lower(*carry, jax.random.key(1), x, y).compile()
        *carry, _ = compiled(*carry, jax.random.key(1), x, y)  # warm-up, untimed
        jax.block_until_ready(carry)
        rows[grad, name] = {"carry": carry, "run": compiled, "wall": [], "cpu": [], "loss": None}
    for r in range(rounds):
        key = jax.random.fold_in(jax.random.key(2), r)
        for row in rows.values():
            t0, c0 = time.perf_counter(), time.process_time()
            *carry, metrics = row["run"](*row["carry"], key, x, y)
            jax.block_until_ready((carry, metrics))
            row["wall"].append(time.perf_counter() - t0)
            row["cpu"].append(time.process_time() - c0)
            row["carry"], row["loss"] = carry, float(metrics["loss"][-1])
    out = []
    steps = samples // BATCH
    for (grad, name), row in rows.items():
        best = int(np.argmin(row["wall"]))
        out.append(
            {
                "grad": grad,
                "draw": name,
                "best_epoch_s": row["wall"][best],
                "median_epoch_s": statistics.median(row["wall"]),
                "cpu_s_of_best": row["cpu"][best],
                "median_cpu_s": statistics.median(row["cpu"]),
                "samples_per_s": steps * BATCH / row["wall"][best],
                "last_loss": row["loss"],
            }
        )
    return out


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0], _options)
    repeats = args.repeats or (5 if args.quick else 300)
    rounds = args.rounds or (1 if args.quick else 8)
    samples = args.samples or (2048 if args.quick else 60000)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    masks = time_masks(repeats)
    print(f"one {MASK_SHAPE[0]}x{MASK_SHAPE[1]} mask, p = {P_DROP}, {repeats} calls each:")
    common.print_table(masks)
    grads, names = args.grads or ["autodiff", "manual"], args.epoch_draws or ["bernoulli", "fnn-16bit"]
    pairs = [(grad, name) for grad in grads for name in names]
    if args.quick and args.grads is None and args.epoch_draws is None:
        # Each pair compiles a whole epoch (seconds): two pairs still run both gradients through
        # both draws' patching of Dropout, which is what quick mode smoke-tests.
        pairs = [("autodiff", "bernoulli"), ("manual", "fnn-16bit")]
    epochs = time_epochs(samples, rounds, pairs)
    print(f"\nepoch at batch {BATCH}, {samples} samples, best of {rounds}:")
    common.print_table(epochs)
    load_after = os.getloadavg()
    print(f"\nload average before {load_before}, after {load_after}; {time.perf_counter() - t0:.0f} s")
    results = {
        "config": {"repeats": repeats, "rounds": rounds, "samples": samples, "batch": BATCH, "p": P_DROP},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cores": os.cpu_count(),
        "masks": masks,
        "epochs": epochs,
    }
    print(f"results: {common.save_json(args.out, results)}")


if __name__ == "__main__":
    main()

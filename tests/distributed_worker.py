"""Subprocess entry points for tests/test_distributed.py (the parent keeps one device).

python tests/distributed_worker.py devices OUT.npz
    run under XLA_FLAGS=--xla_force_host_platform_device_count=4: 1-device and
    4-device runs of the same training, shardings and error messages, saved to OUT.
python tests/distributed_worker.py process ID COUNT PORT OUT.npz
    one of COUNT processes under jax.distributed on 127.0.0.1:PORT, each loading its
    own shard of the data; process 0 saves the trained params to OUT.
"""

import json
import os
import re
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_train import toy_data, toy_model

from fnn import distributed, optim
from fnn import functional as F
from fnn.train import fit, make_train_epoch, make_train_step

STEPS = 4
FIT = dict(epochs=1, batch_size=32, seed=0, progress=False)  # no jax call at import: see process()


def fit_data():
    x, y = toy_data(256)
    return (x[:192], y[:192]), (x[192:], y[192:])


def fit_kwargs():
    kwargs = dict(FIT)
    key = jax.random.key(kwargs.pop("seed"))
    return {**kwargs, "key": key}


def fit_optimizer():
    # SGD, not Adam: the Linear bias before BatchNorm has a zero gradient up to rounding,
    # which Adam would scale up to lr-sized steps of random sign and so amplify summation-
    # order noise between the runs.
    return optim.sgd(lr=0.1, momentum=0.9)


def flat(prefix, tree):
    return {f"{prefix}/{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(tree))}


def error(fn):
    try:
        fn()
    except ValueError as e:
        return str(e)
    return ""


def devices(out):
    assert len(jax.devices()) == 4, jax.devices()
    mesh = distributed.data_mesh(4)
    model, x, y = toy_model(), *toy_data(64)
    params, state = model.init(jax.random.key(0))
    saved, info = {}, {}
    for grad in ("autodiff", "manual"):
        opt = optim.sgd(lr=0.1, momentum=0.9, weight_decay=1e-4)
        for name, m in (("one", None), ("mesh", mesh)):
            step = make_train_step(model, F.cross_entropy, opt, grad=grad, mesh=m)
            carry, losses = (params, state, opt.init(params)), []
            for i in range(STEPS):
                *carry, metrics = step(*carry, jax.random.key(i), x, y)
                losses.append(metrics["loss"])
            saved.update(flat(f"step/{grad}/{name}", carry))
            saved[f"step/{grad}/{name}/losses"] = np.asarray(losses)
        info[f"step_{grad}_param_sharding"] = str(carry[0][0]["weight"].sharding.spec)
        compiled = step.lower(*carry, jax.random.key(0), x, y).compile()
        info["step_in_specs"] = [str(s.spec) for s in compiled.input_shardings[0][-2:]]

    # fit: BatchNorm over the global batch, dropout masks as on one device.
    train, test = fit_data()
    for name, m in (("one", None), ("mesh", mesh)):
        result = fit(model, F.cross_entropy, fit_optimizer(), train, eval_data=test, mesh=m, **fit_kwargs())
        saved.update(flat(f"fit/{name}", (result.params, result.state, result.opt_state)))
        saved[f"fit/{name}/history"] = np.asarray([[h["train_loss"], h["test_loss"]] for h in result.history])
        info[f"fit_{name}_param_devices"] = len(result.params[0]["weight"].sharding.device_set)

    # The batch really is sharded: the placed batch's shards, and in the partitioned epoch
    # (global batch 48 over 4 devices) each device gathers f32[12,..,20] rows locally.
    xb = jax.device_put(x[:32], distributed.batch_sharding(mesh))
    info["batch_shard_shapes"] = sorted({tuple(s.data.shape) for s in xb.addressable_shards})
    info["batch_shard_devices"] = len({s.device for s in xb.addressable_shards})
    opt = optim.sgd(lr=0.1)
    epoch = make_train_epoch(model, F.cross_entropy, opt, 48, mesh=mesh)
    carry = distributed.replicate((params, state, opt.init(params), jax.random.key(1)), mesh)
    hlo = epoch.lower(*carry, *distributed.put_dataset(*toy_data(96), mesh)).compile().as_text()
    info["epoch_local_batch"] = bool(re.search(r"f32\[12,(1,)?20\]\{[0-9,]+\} gather\(", hlo))
    info["epoch_global_batch"] = "f32[48," in hlo
    info["epoch_collectives"] = sorted(
        set(re.findall(r"\s(all-gather|all-to-all|collective-permute|all-reduce)(?:-start)?\(", hlo))
    )

    # Dropout: same key, same global shape -> the same mask, sharded or not.
    ones = np.ones((64, 48), np.float32)
    drop = jax.jit(lambda a, k: F.dropout(a, k, p=0.5))
    saved["dropout/one"] = np.asarray(drop(ones, jax.random.key(7)))
    saved["dropout/mesh"] = np.asarray(
        drop(jax.device_put(ones, distributed.batch_sharding(mesh)), jax.random.key(7))
    )

    # Bad input, all before compiling.
    opt = optim.sgd(lr=0.1)
    step = make_train_step(model, F.cross_entropy, opt, mesh=mesh)
    other = jax.make_mesh((4,), ("model",))
    info["errors"] = {
        "step_indivisible": error(
            lambda: step(params, state, opt.init(params), jax.random.key(0), x[:30], y[:30])
        ),
        "epoch_indivisible": error(lambda: make_train_epoch(model, F.cross_entropy, opt, 30, mesh=mesh)),
        "fit_indivisible": error(
            lambda: fit(
                model, F.cross_entropy, opt, (x, y), epochs=1, batch_size=30, key=jax.random.key(0), mesh=mesh
            )
        ),
        "fit_small": error(
            lambda: fit(
                model,
                F.cross_entropy,
                opt,
                (x, y),
                epochs=1,
                batch_size=128,
                key=jax.random.key(0),
                mesh=mesh,
            )
        ),
        "fit_no_data_axis": error(
            lambda: fit(
                model,
                F.cross_entropy,
                opt,
                (x, y),
                epochs=1,
                batch_size=32,
                key=jax.random.key(0),
                mesh=other,
            )
        ),
        "step_no_data_axis": error(lambda: make_train_step(model, F.cross_entropy, opt, mesh=other)),
    }
    saved["info"] = np.asarray(json.dumps(info))
    np.savez(out, **saved)


def process(pid, count, port, out):
    jax.distributed.initialize(
        f"127.0.0.1:{port}", num_processes=count, process_id=pid, initialization_timeout=60
    )
    assert jax.process_count() == count and len(jax.local_devices()) == 1
    mesh = distributed.data_mesh()
    (x, y), (tx, ty) = fit_data()
    rows, test_rows = distributed.local_shard(len(x)), distributed.local_shard(len(tx))
    result = fit(
        toy_model(),
        F.cross_entropy,
        fit_optimizer(),
        (x[rows], y[rows]),
        eval_data=(tx[test_rows], ty[test_rows]),
        mesh=mesh,
        **fit_kwargs(),
    )
    saved = flat("fit", (result.params, result.state, result.opt_state))
    saved["history"] = np.asarray([[h["train_loss"], h["test_loss"]] for h in result.history])
    saved["info"] = np.asarray(
        json.dumps(
            {
                "process_count": jax.process_count(),
                "global_devices": len(jax.devices()),
                "local_rows": x[rows].shape[0],
            }
        )
    )
    if pid == 0:
        np.savez(out, **saved)
    jax.distributed.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "devices":
        devices(sys.argv[2])
    else:
        process(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])

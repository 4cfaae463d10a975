"""fnn.distributed and fit(..., mesh=...): 4 host devices and 2 processes reach the one-
device results, batches are really sharded, bad meshes and batch sizes fail before
compiling.

The multi-device runs live in subprocesses (tests/distributed_worker.py) so this process
keeps its single device: XLA_FLAGS must be set before jax starts its backend, and
jax.distributed.initialize needs a fresh process. All three subprocesses start together
when the first test needs them, and their results are shared by the tests below.
"""

import json
import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from fnn import distributed, optim
from fnn import functional as F
from fnn.train import fit, make_train_epoch, make_train_step

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_train import toy_data, toy_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")
TIMEOUT = 240
# float32 tolerance: the devices sum their partial batch reductions in another order.
TOL = dict(rtol=1e-5, atol=1e-6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    devices_env = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    port = free_port()
    procs = {
        "devices": subprocess.Popen(
            [sys.executable, WORKER, "devices", str(out / "devices.npz")],
            env=devices_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    }
    for pid in range(2):
        procs[f"process{pid}"] = subprocess.Popen(
            [sys.executable, WORKER, "process", str(pid), "2", str(port), str(out / "processes.npz")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    logs = {}
    for name, proc in procs.items():
        try:
            logs[name] = proc.communicate(timeout=TIMEOUT)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            logs[name] = proc.communicate()[0].decode() + f"\n[killed after {TIMEOUT} s]"
        logs[name] = (proc.returncode, logs[name])
    return out, logs


def multi_device(test):
    """A test that reads the subprocess runs: slow, and on one xdist worker so that the
    runs start once per test session."""
    return pytest.mark.slow(pytest.mark.xdist_group("distributed-runs")(test))


def load(runs, name, *procs):
    out, logs = runs
    for p in procs:
        code, log = logs[p]
        assert code == 0, f"{p} failed:\n{log[-3000:]}"
    data = np.load(out / f"{name}.npz")
    return data, json.loads(str(data["info"]))


def leaves(data, prefix):
    keys = sorted(
        (k for k in data.files if k.startswith(prefix + "/") and k.split("/")[-1].isdigit()),
        key=lambda k: int(k.split("/")[-1]),
    )
    assert keys, prefix
    return [data[k] for k in keys]


# -- 4 host devices in one process --------------------------------------------------------


@multi_device
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_four_devices_steps_equal_one_device(runs, grad):
    data, info = load(runs, "devices", "devices")
    np.testing.assert_allclose(data[f"step/{grad}/mesh/losses"], data[f"step/{grad}/one/losses"], **TOL)
    one, mesh = leaves(data, f"step/{grad}/one"), leaves(data, f"step/{grad}/mesh")
    assert (
        len(one) == len(mesh) == 19
    )  # params, BatchNorm state, momentum buffers, step counts, lr scale, last lr
    for a, b in zip(one, mesh, strict=True):
        np.testing.assert_allclose(b, a, **TOL)
    assert info[f"step_{grad}_param_sharding"] == "P()"  # params come back replicated


@multi_device
def test_four_devices_fit_equals_one_device(runs):
    # BatchNorm (BN-*) statistics over the global batch and dropout masks from the global
    # key: any per-device difference would show in the running stats and the params.
    data, info = load(runs, "devices", "devices")
    np.testing.assert_allclose(data["fit/mesh/history"], data["fit/one/history"], **TOL)
    for a, b in zip(leaves(data, "fit/one"), leaves(data, "fit/mesh"), strict=True):
        np.testing.assert_allclose(b, a, **TOL)
    assert info["fit_one_param_devices"] == 1 and info["fit_mesh_param_devices"] == 4


@multi_device
def test_batch_is_really_sharded(runs):
    _, info = load(runs, "devices", "devices")
    assert info["step_in_specs"] == ["P('data',)", "P('data',)"]  # x and y of the compiled step
    assert info["batch_shard_shapes"] == [[8, 20]] and info["batch_shard_devices"] == 4
    # The partitioned epoch: each device gathers its 12 of the 48 rows from its local
    # replica of the dataset; the only collectives are the all-reduces of sums over the batch.
    assert info["epoch_local_batch"] and not info["epoch_global_batch"]
    assert info["epoch_collectives"] == ["all-reduce"]


@multi_device
def test_dropout_mask_is_the_same_sharded(runs):
    data, _ = load(runs, "devices", "devices")
    np.testing.assert_array_equal(data["dropout/mesh"], data["dropout/one"])
    assert 0.4 < np.mean(data["dropout/one"] == 0) < 0.6  # a real mask, p = 0.5


@multi_device
def test_four_devices_bad_input_names_the_sizes(runs):
    _, info = load(runs, "devices", "devices")
    errors = info["errors"]
    indivisible = r"global batch_size 30 is not divisible by the mesh's 'data' axis size 4"
    for case in ("step_indivisible", "epoch_indivisible", "fit_indivisible"):
        assert re.search(indivisible, errors[case]), (case, errors[case])
    assert "batch_size 128 exceeds the number of samples 64" in errors["fit_small"]
    for case in ("fit_no_data_axis", "step_no_data_axis"):
        assert "mesh must have a 'data' axis" in errors[case] and "{'model': 4}" in errors[case], errors[case]


# -- 2 processes under jax.distributed, each loading its own shard ---------------------------


@multi_device
def test_two_processes_reach_the_one_process_parameters(runs):
    # Reference: the devices worker's plain one-device fit, same data, key and optimizer.
    data, info = load(runs, "processes", "process0", "process1")
    ref, _ = load(runs, "devices", "devices")
    assert info == {"process_count": 2, "global_devices": 2, "local_rows": 96}
    np.testing.assert_allclose(data["history"], ref["fit/one/history"], **TOL)
    one, two = leaves(ref, "fit/one"), leaves(data, "fit")
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(b, a, **TOL)


# -- in this process (one device) -----------------------------------------------------------


def test_mesh_without_data_axis_raises_before_compiling():
    model, opt, (x, y) = toy_model(), optim.sgd(lr=0.1), toy_data(64)
    other = jax.make_mesh((1,), ("model",))
    match = r"mesh must have a 'data' axis .* got axes \('model',\) with sizes \{'model': 1\}"
    with pytest.raises(ValueError, match=match):
        fit(model, F.cross_entropy, opt, (x, y), epochs=1, batch_size=8, key=jax.random.key(0), mesh=other)
    with pytest.raises(ValueError, match=match):
        make_train_epoch(model, F.cross_entropy, opt, 8, mesh=other)
    with pytest.raises(TypeError, match=r"mesh must be a jax\.sharding\.Mesh, got tuple"):
        make_train_step(model, F.cross_entropy, opt, mesh=(1,))


def test_dataset_smaller_than_the_global_batch_raises():
    x, y = toy_data(16)
    with pytest.raises(ValueError, match="batch_size 32 exceeds the number of samples 16"):
        fit(
            toy_model(),
            F.cross_entropy,
            optim.sgd(lr=0.1),
            (x, y),
            epochs=1,
            batch_size=32,
            key=jax.random.key(0),
            mesh=distributed.data_mesh(1),
        )


def test_data_mesh_and_local_shard():
    mesh = distributed.data_mesh()
    assert mesh.axis_names == ("data",) and distributed.data_axis_size(mesh) == len(jax.devices())
    with pytest.raises(ValueError, match=r"num_devices must be in \[1, 1\] .* got 4"):
        distributed.data_mesh(4)
    assert [distributed.local_shard(12, i, 3) for i in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    with pytest.raises(ValueError, match="dataset of 10 samples does not split evenly over 3 processes"):
        distributed.local_shard(10, 0, 3)


def test_no_mesh_epoch_is_the_plain_one_device_program():
    # The single-device path the benchmark times carries no sharding annotations at all.
    model, opt, (x, y) = toy_model(), optim.sgd(lr=0.1), toy_data(64)
    params, state = model.init(jax.random.key(0))
    epoch = make_train_epoch(model, F.cross_entropy, opt, 32)
    jaxpr = str(jax.make_jaxpr(epoch)(params, state, opt.init(params), jax.random.key(1), x, y))
    assert "scan" in jaxpr and "sharding_constraint" not in jaxpr

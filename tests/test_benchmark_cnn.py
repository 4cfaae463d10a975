"""experiments/benchmark_cnn.py: every row trains the same network from the same weights.

The rows are only comparable if they compute the same function: each framework's eval-mode
logits at the shared weights must equal the hand-written JAX forward's (and a second,
independent forward: torch's, where torch imports), and the JAX rows (fnn, the hand-written
epoch, Flax NNX, Equinox), which shuffle from the same key, must give the same per-step losses
over an epoch of a dropout-free net: same init, loss, optimizer and batches. The FLOP count is
checked against the closed form of the default network. Peer libraries run only where they
import (the ``bench`` extra); fnn's rows where fnn has the conv layers.
"""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))

import benchmark_cnn as bc

# Every op the peers translate: the image prologue, a bias-free conv, a strided conv, both
# dropouts, BatchNorm, max-pool and a flatten whose columns NHWC rows must permute.
ARCH = (
    {"op": "flatten"},
    {"op": "unflatten", "shape": [1, 28, 28]},
    {"op": "conv", "in": 1, "out": 4, "k": 3, "stride": 1, "padding": 1, "bias": False},
    {"op": "bn", "c": 4},
    {"op": "relu"},
    {"op": "maxpool", "k": 2, "stride": 2},
    {"op": "dropout2d", "p": 0.1},
    {"op": "conv", "in": 4, "out": 6, "k": 3, "stride": 2, "padding": 0, "bias": True},
    {"op": "bn", "c": 6},
    {"op": "relu"},
    {"op": "flatten"},
    {"op": "dropout", "p": 0.2},
    {"op": "linear", "in": 216, "out": 10, "bias": True},
)
NO_DROPOUT = tuple(s for s in ARCH if not s["op"].startswith("dropout"))
GAP = (
    *ARCH[2:6],
    {"op": "gap"},
    {"op": "flatten"},
    {"op": "linear", "in": 4, "out": 16, "bias": True},
    {"op": "bn1d", "c": 16},
    {"op": "relu"},
    {"op": "linear", "in": 16, "out": 10, "bias": True},
)


@pytest.fixture(scope="module")
def data():
    return bc.load_data(256, 64)


def _weights(arch):
    weights = bc.torch_init_weights(arch, seed=3)
    rng = np.random.default_rng(4)  # BatchNorm away from its identity start, so a wrong map shows
    for k in weights:
        if "running" in k or (k.endswith(("weight", "bias")) and weights[k].ndim == 1):
            weights[k] = (weights[k] + rng.uniform(0.5, 1.0, weights[k].shape)).astype(np.float32)
    return weights


def _reference_logits(arch, weights, x):
    params, state = bc._split_weights(weights)
    return np.asarray(bc.reference_forward(arch)(params, state, jax.random.key(0), x, False)[0])


def test_the_python_loop_eval_equals_the_scanned_one(data):
    weights, x, y = _weights(ARCH), data["x_eval"], data["y_eval"]
    model = bc._split_weights(weights)
    scanned, looped = (bc.reference_eval(ARCH, weights, 32, loop)[0](model, x, y) for loop in (False, True))
    np.testing.assert_allclose(looped[0], scanned[0], rtol=1e-5)
    assert int(looped[1]) == int(scanned[1])


def test_flops_of_the_default_network_is_the_closed_form():
    conv1, conv2, head = 16 * 1 * 9 * 28 * 28, 32 * 16 * 9 * 14 * 14, 1568 * 10
    assert bc.flops(bc.DEFAULT_ARCH) == 2 * (conv1 + conv2 + head)
    assert bc.shapes(ARCH)[-1] == (10,) and bc.shapes(ARCH)[10] == (6, 6, 6)


@pytest.mark.parametrize("arch", [ARCH, GAP], ids=["convs", "gap-bn1d"])
@pytest.mark.parametrize("peer", ["torch", "torch-cl", "flax-nnx", "equinox", "fnn"])
def test_eval_logits_equal_the_hand_written_forward(peer, arch, data):
    weights, x = _weights(arch), data["x_eval"]
    expected = _reference_logits(arch, weights, x)
    if peer.startswith("torch"):
        torch = pytest.importorskip("torch")
        model = bc.torch_model(arch, weights, 1, peer == "torch-cl").eval()
        fmt = torch.channels_last if peer == "torch-cl" else torch.contiguous_format
        with torch.no_grad():
            got = model(torch.from_numpy(x).contiguous(memory_format=fmt)).numpy()
    elif peer == "fnn":
        if bc.fnn_model()[0] is None:
            pytest.skip(bc.fnn_model()[1])
        model = bc.build_fnn(arch)
        assert bc.arch_of(model) == arch
        params, state = model.load_state_dict(weights)
        got = np.asarray(model.apply(params, state, x, train=False)[0])
    else:
        for module in bc.bt.PEER_IMPLS[peer]:
            pytest.importorskip(module)
        import benchmark_peers

        run, model = getattr(benchmark_peers, f"{peer.replace('-', '_')}_cnn_eval")(arch, weights, 64)
        xs = x.transpose(0, 2, 3, 1) if peer == "flax-nnx" else x
        loss, correct = run(model, xs, data["y_eval"])
        ref_loss, ref_correct = bc.reference_eval(arch, weights, 64)[0](
            bc._split_weights(weights), x, data["y_eval"]
        )
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        assert int(correct) == int(ref_correct)
        return
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "peer", ["pure-jax-loop", "flax-nnx", "equinox", "fnn-autodiff", "fnn-manual", "fnn-manual-loop"]
)
def test_an_epoch_gives_the_hand_written_epochs_losses(peer, data):
    # Same key -> same shuffle and batches; same weights, loss and SGD -> the same losses.
    weights, x, y = _weights(NO_DROPOUT), data["x"], data["y"]
    key = jax.random.key(7)
    run, carry = bc.reference_epoch(NO_DROPOUT, weights, 64)
    expected = np.asarray(run(*carry, key, x, y)[-1]["loss"])
    if peer.startswith("fnn"):
        if bc.fnn_model()[0] is None:
            pytest.skip(bc.fnn_model()[1])
        build = bc.fnn_loop_epoch if peer.endswith("-loop") else bc.fnn_epoch
        run, carry = build(bc.build_fnn(NO_DROPOUT), weights, 64, peer.split("-")[1])
    elif peer == "pure-jax-loop":
        run, carry = bc.reference_loop_epoch(NO_DROPOUT, weights, 64)
    else:
        for module in bc.bt.PEER_IMPLS[peer]:
            pytest.importorskip(module)
        import benchmark_peers

        run, carry = getattr(benchmark_peers, f"{peer.replace('-', '_')}_cnn_epoch")(NO_DROPOUT, weights, 64)
        x = x.transpose(0, 2, 3, 1) if peer == "flax-nnx" else x
    got = np.asarray(run(*carry, key, x, y)[-1]["loss"])
    assert expected.shape == (4,) and expected[-1] < expected[0]
    np.testing.assert_allclose(got, expected, rtol=2e-4)

"""fnn.models: the ready-made specs used by the command line and the experiments."""

import jax
import numpy as np
import pytest

from fnn import models, nn, optim
from fnn.train import fit


def test_mlp_layout_and_switches():
    full = models.mlp()
    assert [type(l).__name__ for l in full.layers] == [
        "Flatten",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    plain = models.mlp(hidden=(32,), batch_norm=False, dropout=0.0, activation=nn.Tanh())
    assert plain == nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 10))
    params, _ = full.init(jax.random.key(0))
    assert nn.num_params(params) == 784 * 512 + 512 + 2 * 512 + 512 * 512 + 512 + 2 * 512 + 512 * 10 + 10


def test_softmax_regression_is_one_linear_layer():
    model = models.softmax_regression()
    assert model == nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    params, state = model.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(2, 28, 28)).astype(np.float32)
    y, _ = model.apply(params, state, jax.numpy.asarray(x), train=False)
    # the logits are LIN-1 after FLAT-1: the flattened image times Wᵀ plus b, in numpy
    w, b = np.asarray(params[1]["weight"], np.float64), np.asarray(params[1]["bias"], np.float64)
    np.testing.assert_allclose(y, x.reshape(2, 784) @ w.T + b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- LeNet-5 and the modern CNN


def test_lenet5_layout_and_parameter_count():
    model = models.lenet5()
    assert [type(l).__name__ for l in model.layers] == [
        "Flatten",
        "Unflatten",
        "Conv2d",  # C1
        "ScaledTanh",
        "AvgPool2d",  # S2
        "Conv2d",  # C3
        "ScaledTanh",
        "AvgPool2d",  # S4
        "Conv2d",  # C5
        "ScaledTanh",
        "Flatten",
        "Linear",  # F6
        "ScaledTanh",
        "Linear",
    ]
    assert model[2] == nn.Conv2d(1, 6, 5, padding=2)  # C1, padded: 28x28 stands in for 32x32
    assert (model[5], model[8]) == (nn.Conv2d(6, 16, 5), nn.Conv2d(16, 120, 5))  # C3, C5
    assert (model[4], model[7]) == (nn.AvgPool2d(2), nn.AvgPool2d(2))  # S2, S4
    assert (model[11], model[13]) == (nn.Linear(120, 84), nn.Linear(84, 10))  # F6, output
    assert model[3] == nn.ScaledTanh(1.7159, 2 / 3)  # ACT-9: the paper's A and S
    params, _ = model.init(jax.random.key(0))
    # C1 6·(25+1), C3 16·(6·25+1), C5 120·(16·25+1), F6 84·(120+1), output 10·(84+1)
    assert nn.num_params(params) == 156 + 2416 + 48120 + 10164 + 850 == 61706


def _lenet_reference(params, x):
    """LeNet-5's forward in numpy float64 loops-free formulas (an independent definition):
    correlations written as sums over the kernel's offsets, pools as reshapes, C5 as the
    Linear on 400 values that it equals on a 5x5 map."""
    p = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in params]

    def conv(a, w, b, pad):
        a = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        k = w.shape[-1]
        h, v = a.shape[2] - k + 1, a.shape[3] - k + 1
        out = sum(
            np.einsum("nchw,oc->nohw", a[:, :, i : i + h, j : j + v], w[:, :, i, j])
            for i in range(k)
            for j in range(k)
        )
        return out + b[None, :, None, None]

    def pool(a):
        n, c, h, v = a.shape
        return a.reshape(n, c, h // 2, 2, v // 2, 2).mean(axis=(3, 5))

    def f(a):
        return 1.7159 * np.tanh(2 * a / 3)

    a = np.asarray(x, np.float64).reshape(len(x), 1, 28, 28)
    a = pool(f(conv(a, p[2]["weight"], p[2]["bias"], 2)))
    a = pool(f(conv(a, p[5]["weight"], p[5]["bias"], 0)))
    a = f(a.reshape(len(a), 400) @ p[8]["weight"].reshape(120, 400).T + p[8]["bias"])  # C5
    a = f(a @ p[11]["weight"].T + p[11]["bias"])
    return a @ p[13]["weight"].T + p[13]["bias"]


def test_lenet5_forward_equals_a_numpy_definition_for_every_input_layout():
    model = models.lenet5()
    params, state = model.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(3, 28, 28)).astype(np.float32)
    forward = jax.jit(lambda p, x: model.apply(p, state, x, train=False)[0])
    y = forward(params, jax.numpy.asarray(x))
    assert y.shape == (3, 10)
    np.testing.assert_allclose(y, _lenet_reference(params, x), rtol=1e-4, atol=1e-5)
    # FLAT-2: rows (N, 784) and torch's (N, 1, 28, 28) give the same logits
    for layout in ((3, 784), (3, 1, 28, 28)):
        np.testing.assert_array_equal(forward(params, jax.numpy.asarray(x.reshape(layout))), y)


def test_cnn_layout_and_switches():
    model = models.cnn()
    names = [type(l).__name__ for l in model.layers]
    block = ["Conv2d", "BatchNorm2d", "ReLU"]
    assert names == [
        "Flatten",
        "Unflatten",
        *block,
        *block,
        "MaxPool2d",
        "Dropout2d",
        *block,
        *block,
        "MaxPool2d",
        "Dropout2d",
        "Flatten",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert model[2].bias is False and model[9].p == 0.125  # BN's β replaces a conv's bias
    assert (model[-5].in_features, model[-5].out_features, model[-5].bias) == (64 * 7 * 7, 128, False)
    assert model[-2].p == 0.25 and model[-1] == nn.Linear(128, 10)
    params, _ = jax.eval_shape(model.init, jax.random.key(0))
    convs = 1 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9 + 64 * 64 * 9
    assert nn.num_params(params) == convs + 2 * (32 + 32 + 64 + 64) + 3136 * 128 + 2 * 128 + 128 * 10 + 10
    plain = models.cnn((8, 16, 4), convs_per_stage=1, hidden=0, batch_norm=False, dropout=0.0)
    assert plain == nn.Sequential(
        nn.Flatten(),
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 10),
    )
    arrays = jax.eval_shape(plain.init, jax.random.key(0))  # shapes only: nothing compiles
    y, _ = jax.eval_shape(
        lambda p, s, x: plain.apply(p, s, x, train=False), *arrays, jax.numpy.zeros((2, 28, 28))
    )
    assert y.shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(channels=()), ValueError, r"channels must be a non-empty tuple of ints >= 1, got \(\)"),
        (dict(channels=(8, 0)), ValueError, r"channels must be a non-empty tuple of ints >= 1, got \(8, 0\)"),
        (dict(convs_per_stage=0), ValueError, "convs_per_stage must be an int >= 1, got 0"),
        (dict(hidden=-1), ValueError, "hidden must be an int >= 0, got -1"),
        (dict(dropout=1.0), ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        (dict(channels=(4,) * 5), ValueError, "image_size 28 is too small for 5 2x2 max-pools"),
    ],
)
def test_cnn_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        models.cnn(**kwargs)


def _small_lenet(dtype):
    """LeNet-5's kinds of layer (Unflatten, Conv2d, ScaledTanh, AvgPool2d) on 8x8 images."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 8)),
        nn.Conv2d(1, 3, 3, padding=1, dtype=dtype),
        nn.ScaledTanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 3, dtype=dtype),
        nn.ScaledTanh(),
        nn.Flatten(),
        nn.Linear(16, 10, dtype=dtype),
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda dtype: models.cnn((4, 6), 1, hidden=8, dropout=0.2, image_size=8, dtype=dtype),
        _small_lenet,
    ],
    ids=["cnn", "lenet"],
)
def test_a_cnn_trains_with_fit_on_both_gradient_sources_and_they_agree(x64, build):
    # fit with grad='manual' (every layer's hand-derived backward: conv, BatchNorm2d, max-
    # and avg-pool, Dropout2d, Dropout, ScaledTanh, Unflatten) follows the same trajectory as
    # grad='autodiff' (jax.grad of the forwards): the same keys, so the same dropout masks
    model = build("float64")
    rng = np.random.default_rng(0)
    x, y = jax.numpy.asarray(rng.normal(size=(64, 8, 8))), jax.numpy.asarray(rng.integers(0, 10, 64))
    start, start_state = model.init(jax.random.key(1))
    results = {
        grad: fit(
            model,
            nn.CrossEntropyLoss(),
            optim.sgd(lr=0.05, momentum=0.9),
            (x, y),
            epochs=2,
            batch_size=16,
            key=jax.random.key(0),
            params=start,
            state=start_state,
            grad=grad,
            progress=False,
        )
        for grad in ("autodiff", "manual")
    }
    auto, manual = results["autodiff"], results["manual"]
    for a, m in zip(
        jax.tree.leaves((auto.params, auto.state)),
        jax.tree.leaves((manual.params, manual.state)),
        strict=True,
    ):
        np.testing.assert_allclose(m, a, rtol=1e-9, atol=1e-12)
    losses = [[h["train_loss"] for h in r.history] for r in (auto, manual)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-10)
    assert losses[0][1] < losses[0][0]  # it trains: 64 random labels are memorised
    moved = [
        not np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(auto.params), strict=True)
    ]
    assert all(moved)

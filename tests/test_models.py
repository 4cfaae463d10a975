"""fnn.models: the ready-made specs used by the command line and the experiments."""

import jax
import numpy as np

from fnn import models, nn


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

"""fnn.models: the ready-made specs used by the command line and the experiments."""

import jax

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
    y, _ = model.apply(*model.init(jax.random.key(0)), jax.numpy.ones((2, 28, 28)), train=False)
    assert y.shape == (2, 10)

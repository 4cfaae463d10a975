"""fnn.gradcheck: the three-way report agrees on correct backwards and catches wrong ones."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import functional as F
from fnn import gradcheck, nn


def mnist_mlp():
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def test_mnist_sized_mlp_every_leaf_agrees():
    # The acceptance model: every parameter leaf agrees three ways.
    model = mnist_mlp()
    params, state = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (32, 1, 28, 28))
    y = jax.random.randint(jax.random.key(2), (32,), 0, 10)
    report = gradcheck.check_model(
        model, F.cross_entropy, params, state, x, y, key=jax.random.key(3), train=True
    )
    assert report.passed, str(report)
    names = [leaf.name for leaf in report.leaves]
    # jax flattens dicts in key order, so each layer's bias comes before its weight.
    assert names == [
        "1.bias",
        "1.weight",
        "2.bias",
        "2.weight",
        "5.bias",
        "5.weight",
        "6.bias",
        "6.weight",
        "8.bias",
        "8.weight",
    ]
    table = str(report)
    assert "all leaves agree" in table and "1.weight" in table and "(256, 784)" in table


def test_check_model_with_partial_loss_options():
    model = nn.Sequential(nn.Linear(5, 4))
    params, state = model.init(jax.random.key(0))
    loss = functools.partial(F.cross_entropy, label_smoothing=0.1)
    x = jax.random.normal(jax.random.key(1), (6, 5))
    y = jnp.array([0, 1, 2, 3, 0, 1])
    assert gradcheck.check_model(model, loss, params, state, x, y).passed


def test_check_op_and_layer_pass():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    w = jax.random.normal(jax.random.key(1), (3, 5))
    b = jax.random.normal(jax.random.key(2), (3,))
    assert gradcheck.check_op(F.linear, F.linear_backward, {"input": x, "weight": w, "bias": b}).passed
    assert gradcheck.check_op(F.softmax, F.softmax_backward, {"input": x}, kwargs={"dim": 0}).passed
    layer = nn.BatchNorm1d(5)
    assert gradcheck.check_layer(layer, *layer.init(jax.random.key(0)), x, train=True).passed


def test_wrong_backward_is_reported():
    x = jax.random.normal(jax.random.key(0), (4, 5))

    def wrong(grad_output, input):
        return 2 * F.tanh_backward(grad_output, input)

    report = gradcheck.check_op(F.tanh, wrong, {"input": x})
    assert not report.passed
    assert "MISMATCH" in str(report) and "FAIL" in str(report)


def test_manual_gradient_of_wrong_shape_is_an_error():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    with pytest.raises(ValueError, match="shape"):
        gradcheck.check_op(F.tanh, lambda g, input: g[:2], {"input": x})


def test_loss_without_backward_is_an_error():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no manual backward"):
        gradcheck.check_model(
            model,
            lambda y, t: jnp.sum(y),
            *model.init(jax.random.key(0)),
            jnp.ones((1, 2)),
            jnp.zeros((1,), jnp.int32),
        )


def test_bce_is_vouched_for_by_the_finite_difference_column():
    # BCE's jax.grad goes through a custom_jvp that reuses the manual backward's _bce_dx, so
    # for BCE the |manual-jax| column compares that helper with itself; the finite-difference
    # column is the independent one, and it must agree on every coordinate (a 3x4 leaf is
    # differenced exhaustively). x stays away from BCE-1's clamp and BCE-2's floor.
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.uniform(0.05, 0.95, (3, 4))), jnp.asarray(rng.uniform(0, 1, (3, 4)))
    report = gradcheck.check_op(
        F.binary_cross_entropy,
        F.binary_cross_entropy_backward,
        {"input": x},
        kwargs={"target": y, "reduction": "sum"},
    )
    assert report.passed, str(report)
    (leaf,) = report.leaves
    assert leaf.fd_points == 12 and leaf.fd_rel < 1e-6, str(report)

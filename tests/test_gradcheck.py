"""fnn.gradcheck: the three-way report, first and second order, agrees on correct backwards
and catches wrong ones."""

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


@pytest.mark.slow
def test_mnist_sized_mlp_every_leaf_agrees():
    # An MNIST-sized MLP with BatchNorm and dropout: every parameter leaf agrees three ways.
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
    # Second order through BatchNorm (batch statistics), ReLU and a fixed dropout mask too.
    assert "|Hv manual-jax|" in table
    assert all(leaf.hvp_autodiff_rel < 1e-12 and leaf.hvp_fd_rel < 1e-6 for leaf in report.leaves), table


@pytest.mark.slow
def test_cnn_with_every_conv_chapter_layer_agrees_to_second_order():
    # conv (with and without bias), BatchNorm2d (batch statistics), max- and avg-pool,
    # Dropout2d (a fixed mask), ScaledTanh, Unflatten: manual vs jax.grad vs central
    # differences, and the HVPs, on continuous random images (no max-pool near-ties)
    model = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ScaledTanh(),
        nn.AvgPool2d(2),
        nn.Dropout2d(0.5),
        nn.Flatten(),
        nn.Linear(16, 5),
    )
    params, state = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 64))
    y = jnp.array([0, 1, 2, 3, 4, 0])
    report = gradcheck.check_model(
        model, F.cross_entropy, params, state, x, y, key=jax.random.key(2), train=True
    )
    assert report.passed, str(report)
    assert [leaf.name for leaf in report.leaves] == [
        "1.weight",
        "2.bias",
        "2.weight",
        "5.bias",
        "5.weight",
        "10.bias",
        "10.weight",
    ]
    assert all(leaf.hvp_autodiff_rel < 1e-12 for leaf in report.leaves), str(report)


def test_check_model_with_partial_loss_options():
    model = nn.Sequential(nn.Linear(5, 4))
    params, state = model.init(jax.random.key(0))
    loss = functools.partial(F.cross_entropy, label_smoothing=0.1)
    x = jax.random.normal(jax.random.key(1), (6, 5))
    y = jnp.array([0, 1, 2, 3, 0, 1])
    # first order only: test_second_order covers every loss option's HVP
    assert gradcheck.check_model(model, loss, params, state, x, y, second_order=False).passed


def test_check_op_and_layer_pass():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    w = jax.random.normal(jax.random.key(1), (3, 5))
    b = jax.random.normal(jax.random.key(2), (3,))
    inputs = {"input": x, "weight": w, "bias": b}
    assert gradcheck.check_op(F.linear, F.linear_backward, inputs, second_order=False).passed
    softmax_inputs = {"input": x}
    assert gradcheck.check_op(
        F.softmax, F.softmax_backward, softmax_inputs, kwargs={"dim": 0}, second_order=False
    ).passed
    layer = nn.BatchNorm1d(5)
    report = gradcheck.check_layer(layer, *layer.init(jax.random.key(0)), x, train=True)
    assert report.passed and report.second_order  # BatchNorm's batch statistics, twice differentiated


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


# ------------------------------------------------------------------ relative error


def test_relative_error_is_max_difference_over_the_larger_magnitude():
    # max|a − b| = 1; max|a| = 4 > max|b| = 3, so rel = 1/4 (a max|b| denominator would give 1/3).
    assert gradcheck.relative_error(np.array([1.0, -4.0]), np.array([2.0, -3.0])) == 0.25
    assert gradcheck.relative_error(np.array([2.0, -3.0]), np.array([1.0, -4.0])) == 0.25  # symmetric
    # One side all zeros: a total mismatch reads 1, never inf or NaN.
    assert gradcheck.relative_error(np.array([3.0, 0.0]), np.zeros(2)) == 1.0
    # Both zero to within atol (a bias feeding BatchNorm): 0, not 1e-17 / 1e-17.
    assert gradcheck.relative_error(np.array([1e-17, 0.0]), np.array([-2e-17, 0.0]), atol=1e-10) == 0.0
    assert gradcheck.relative_error(np.zeros(0), np.zeros(0)) == 0.0


def test_relative_error_of_different_shapes_is_an_error():
    with pytest.raises(ValueError, match="one shape"):
        gradcheck.relative_error(np.zeros(2), np.zeros(3))


def test_report_rel_columns_are_the_closed_form():
    # y = 2x with a backward that returns 3g: manual 3v against jax.grad's (and FD's) 2v, so
    # max|3v − 2v| / max|3v| = 1/3 exactly, whatever the random cotangent v. The op is linear:
    # its Hessian is 0 on every side, so the second-order columns read 0.
    x = jnp.arange(6.0).reshape(2, 3)
    report = gradcheck.check_op(lambda input: 2 * input, lambda g, input: 3 * g, {"input": x})
    (leaf,) = report.leaves
    assert leaf.autodiff_rel == pytest.approx(1 / 3, rel=1e-12)
    assert leaf.fd_rel == pytest.approx(1 / 3, rel=1e-6)
    assert leaf.hvp_autodiff_abs == 0.0 and leaf.hvp_autodiff_rel == 0.0
    assert leaf.hvp_fd_rel == 0.0
    assert not report.passed


# ------------------------------------------------------------------ second order


def test_second_order_columns_agree_on_correct_backwards():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    report = gradcheck.check_op(F.tanh, F.tanh_backward, {"input": x})
    (leaf,) = report.leaves
    assert report.passed and report.second_order
    # tanh'' = −2 tanh (1 − tanh²) ≠ 0: the columns compare a real curvature.
    assert leaf.hvp_autodiff_rel < 1e-12 and leaf.hvp_fd_rel < 1e-6
    header = str(report).splitlines()[1]
    assert "|Hv manual-jax|" in header and "|Hv manual-FD|" in header


def test_second_order_catches_a_backward_right_only_in_value():
    # The right value of tanh's gradient, but computed through stop_gradient: its own
    # derivative is 0, so vmap/jacfwd/Newton through it would be wrong. First order cannot
    # tell; the manual HVP (0) disagrees with jax's and with finite differences of the
    # manual gradient (which see only values, and so the true curvature).
    def frozen_tanh_backward(grad_output, input):
        return grad_output * (1 - jax.lax.stop_gradient(jnp.tanh(input)) ** 2)

    x = jax.random.normal(jax.random.key(0), (4, 5))
    report = gradcheck.check_op(F.tanh, frozen_tanh_backward, {"input": x})
    (leaf,) = report.leaves
    assert leaf.autodiff_abs < 1e-15 and leaf.fd_rel < 1e-6  # first order: agrees
    assert leaf.hvp_autodiff_rel == pytest.approx(1.0) and leaf.hvp_fd_rel == pytest.approx(1.0, rel=1e-6)
    assert not report.passed
    assert "MISMATCH" in str(report) and "FAIL" in str(report)
    # Without the second-order column the same backward passes: the column is what catches it.
    assert gradcheck.check_op(F.tanh, frozen_tanh_backward, {"input": x}, second_order=False).passed


def test_second_order_false_leaves_out_the_columns():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    report = gradcheck.check_op(F.sigmoid, F.sigmoid_backward, {"input": x}, second_order=False)
    assert report.passed and not report.second_order
    assert report.leaves[0].hvp_autodiff_abs is None
    assert "Hv" not in str(report)


def test_unknown_tolerance_is_an_error():
    x = jnp.ones((2, 2))
    with pytest.raises(TypeError, match="hvp_rtl"):
        gradcheck.Tolerances(hvp_rtl=1e-3)
    with pytest.raises(TypeError, match="hvp_rtl"):
        gradcheck.check_op(F.tanh, F.tanh_backward, {"input": x}, hvp_rtl=1e-3)
    with pytest.raises(TypeError, match=r"tolerances must be an fnn\.gradcheck\.Tolerances, got dict"):
        gradcheck.check_op(F.tanh, F.tanh_backward, {"input": x}, tolerances={"rtol": 1e-3})


def test_tolerances_set_each_column():
    # y = 2x with a backward that returns 3g: |3v − 2v| = |v| ≤ atol + rtol·|2v| holds exactly
    # when rtol ≥ 1/2, in the jax.grad column and (up to the differences' rounding) in the
    # finite-difference one; the HVP columns are 0. The defaults fail it, rtol = fd_rtol = 0.5
    # passes it, and rtol alone (FD still at its default) does not.
    x = jnp.arange(1.0, 13.0).reshape(3, 4)
    op, wrong = (lambda input: 2 * input), (lambda g, input: 3 * g)
    loose = gradcheck.Tolerances(rtol=0.5, fd_rtol=0.5)
    assert not gradcheck.check_op(op, wrong, {"input": x}).passed
    assert gradcheck.check_op(op, wrong, {"input": x}, tolerances=loose).passed
    assert not gradcheck.check_op(op, wrong, {"input": x}, tolerances=gradcheck.Tolerances(rtol=0.5)).passed
    # fd_samples: 5 of the 12 coordinates are differenced, against all 12 by default
    (leaf,) = gradcheck.check_op(
        op, wrong, {"input": x}, tolerances=gradcheck.Tolerances(fd_samples=5)
    ).leaves
    assert leaf.fd_points == 5
    assert gradcheck.Tolerances() == gradcheck.Tolerances(eps=1e-6, atol=1e-10, rtol=1e-8, fd_samples=16)


def test_none_gradient_of_a_left_out_optional_input_is_skipped():
    # linear_backward returns (grad_input, grad_weight, None) for bias=None
    x = jax.random.normal(jax.random.key(0), (4, 5))
    w = jax.random.normal(jax.random.key(1), (3, 5))
    report = gradcheck.check_op(F.linear, F.linear_backward, {"input": x, "weight": w}, second_order=False)
    assert report.passed and [leaf.name for leaf in report.leaves] == ["input", "weight"]


def test_backward_with_too_few_gradients_is_an_error():
    x, w = jnp.ones((2, 3)), jnp.ones((4, 3))
    with pytest.raises(ValueError, match="returned 1 gradients for the 2 inputs"):
        gradcheck.check_op(F.linear, lambda g, input, weight: g @ weight, {"input": x, "weight": w})


# ------------------------------------------------------------------ sampling, differences, value checks


def test_fd_coordinates_are_deterministic_per_key_and_distinct():
    sizes = [3, 16, 17, 200_704]
    draw = lambda key: gradcheck._sample_indices(gradcheck._generator(key), sizes, 16)  # noqa: E731
    first, again, other = draw(jax.random.key(3)), draw(jax.random.key(3)), draw(jax.random.key(4))
    for n, a, b in zip(sizes, first, again, strict=True):
        np.testing.assert_array_equal(a, b)  # the same key, the same coordinates
        if n <= 16:
            np.testing.assert_array_equal(a, np.arange(n))  # small leaves: every coordinate
        else:
            assert len(a) == 16 and len(set(a.tolist())) == 16  # without replacement
            assert 0 <= a.min() and a.max() < n
    assert any(not np.array_equal(a, c) for a, c in zip(first, other, strict=True))
    # A raw uint32 key (jax.random.PRNGKey) seeds the same stream as the typed key of its bits.
    for a, b in zip(first, draw(jax.random.PRNGKey(3)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_finite_differences_equal_a_direct_central_difference():
    # One program with one copy of the objective, perturbing one coordinate per point: its
    # values against central differences computed point by point in numpy.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4,))

    def f_numpy(a, b):
        return np.sum(np.tanh(a @ b) ** 2) + np.sum(b**3)

    indices = [np.array([0, 5, 11]), np.array([3, 1])]
    eps = 1e-3  # a step large enough that rounding (~1e-16 / eps) sits far below the tolerance
    with jax.enable_x64(True):
        got = gradcheck._finite_differences(
            lambda t: jnp.sum(jnp.tanh(t["a"] @ t["b"]) ** 2) + jnp.sum(t["b"] ** 3),
            {"a": jnp.asarray(a), "b": jnp.asarray(b)},
            indices,
            eps,
        )
    for leaf, idx, g in zip(("a", "b"), indices, got, strict=True):
        want = []
        for i in idx:
            args = {"a": a, "b": b}
            plus, minus = args[leaf].copy().reshape(-1), args[leaf].copy().reshape(-1)
            plus[i] += eps
            minus[i] -= eps
            shape = args[leaf].shape
            f_plus = f_numpy(**{**args, leaf: plus.reshape(shape)})
            want.append((f_plus - f_numpy(**{**args, leaf: minus.reshape(shape)})) / (2 * eps))
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-11)


def test_value_errors_of_the_loss_on_the_model_output_still_raise():
    # The manual gradient is computed under jit, where values cannot raise; the loss's
    # value checks still run on the concrete model output and labels, with their messages.
    model = nn.Sequential(nn.Linear(3, 4))
    params, state = model.init(jax.random.key(0))
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"target values must be in \[0, 4\), got 7 at index 1"):
        gradcheck.check_model(model, F.cross_entropy, params, state, x, jnp.array([0, 7]))
    with pytest.raises(ValueError, match="all elements of input should be between 0 and 1"):
        gradcheck.check_model(model, F.binary_cross_entropy, params, state, x, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="all elements of target should be between 0 and 1"):
        gradcheck.check_op(
            F.binary_cross_entropy,
            F.binary_cross_entropy_backward,
            {"input": jnp.array([0.5, 0.5])},
            kwargs={"target": jnp.array([0.0, 2.0])},
        )

"""fnn.classic: perceptron, linear / logistic / softmax regression."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn.classic import (
    linear_regression_fit,
    linear_regression_loss,
    linear_regression_loss_backward,
    linear_regression_predict,
    logistic_regression_fit,
    logistic_regression_loss,
    logistic_regression_loss_backward,
    logistic_regression_predict,
    logistic_regression_predict_proba,
    perceptron_fit,
    perceptron_predict,
    softmax_regression_fit,
    softmax_regression_loss,
    softmax_regression_loss_backward,
    softmax_regression_predict,
    softmax_regression_predict_proba,
)


def _separable(n=120, margin=0.3, seed=0):
    """2-D points labelled by the line x0 - 2 x1 + 0.5 = 0, none closer than `margin`."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(4 * n, 2))
    score = (X[:, 0] - 2 * X[:, 1] + 0.5) / np.sqrt(5.0)
    keep = np.abs(score) >= margin
    return X[keep][:n], (score[keep][:n] > 0).astype(np.int32)


def _perceptron_reference(X, y, epochs):
    """PERC-1 written as a plain Python loop, for comparison with the compiled version."""
    Xa = np.concatenate([X, np.ones((len(X), 1))], axis=1)
    w = np.zeros(Xa.shape[1])
    mistakes = []
    for _ in range(epochs):
        wrong = 0
        for x, t in zip(Xa, y, strict=True):
            err = t - (1.0 if x @ w >= 0 else 0.0)
            w = w + err * x
            wrong += err != 0
        mistakes.append(wrong)
    return w, np.array(mistakes)


# ----- perceptron -------------------------------------------------------------------------


def test_perceptron_converges_on_separable_data_with_margin(x64):  # PERC-2
    X, y = _separable()
    params, history = perceptron_fit(X, y, epochs=50)
    assert bool(history["converged"])
    first_clean = int(np.argmax(np.asarray(history["mistakes"]) == 0))
    assert np.all(np.asarray(history["mistakes"])[first_clean:] == 0)  # nothing changes after
    np.testing.assert_array_equal(perceptron_predict(params, X), y)


def test_perceptron_follows_the_course_rule_exactly(x64):  # PERC-1: w0 = 0, data order, step 1
    X, y = _separable(n=60, seed=1)
    params, history = perceptron_fit(X, y, epochs=8)
    w, mistakes = _perceptron_reference(X, y, 8)
    np.testing.assert_array_equal(np.asarray(history["mistakes"]), mistakes)
    np.testing.assert_array_equal(np.asarray(params["weight"]), w[:-1])
    assert float(params["bias"]) == w[-1]


def test_perceptron_tie_counts_as_class_one():  # PERC-1: w . x = 0 predicts 1
    # w starts at 0, so the first sample is a tie: predicted 1, label 0, err = -1,
    # w <- 0 - [x, 1] = [-1, 0, -1] (bias folded in as the constant-1 input).
    params, history = perceptron_fit(np.array([[1.0, 0.0]]), np.array([0]), epochs=1)
    np.testing.assert_array_equal(params["weight"], [-1.0, 0.0])
    assert float(params["bias"]) == -1.0 and history["mistakes"].tolist() == [1]
    zero = {"weight": jnp.zeros(2), "bias": jnp.zeros(())}
    assert perceptron_predict(zero, np.array([[3.0, -4.0]])).tolist() == [1]


def test_perceptron_reports_non_convergence_on_xor():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0])
    _, history = perceptron_fit(X, y, epochs=25)
    assert history["mistakes"].shape == (25,)
    assert not bool(history["converged"])
    assert np.all(np.asarray(history["mistakes"]) > 0)


# ----- linear regression ------------------------------------------------------------------


def _regression_data(seed=0, n=200, d=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.7 + 0.1 * rng.normal(size=n)
    return X, y


def test_linear_regression_methods_agree_with_lstsq(x64):  # LINREG-1
    X, y = _regression_data()
    theta = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0]
    closed, h_closed = linear_regression_fit(X, y, method="closed_form")
    gd, h_gd = linear_regression_fit(X, y, method="gd", lr=0.1, epochs=2000)
    for params in (closed, gd):
        np.testing.assert_allclose(params["weight"], theta[:-1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(params["bias"], theta[-1], rtol=1e-10, atol=1e-12)
    mse = np.mean((np.c_[X, np.ones(len(X))] @ theta - y) ** 2)
    np.testing.assert_allclose(h_closed["loss"], [mse], rtol=1e-10)
    assert h_gd["loss"].shape == (2000,)
    assert np.all(np.diff(np.asarray(h_gd["loss"])) <= 1e-15)  # GD on a convex quadratic
    np.testing.assert_allclose(
        linear_regression_predict(gd, X), np.c_[X, np.ones(len(X))] @ theta, rtol=1e-9, atol=1e-12
    )


def test_linear_regression_gradient_matches_jax(x64):
    X, y = _regression_data(seed=1)
    X, y = jnp.asarray(X), jnp.asarray(y)
    params = {"weight": jnp.array([0.3, -0.1, 2.0]), "bias": jnp.array(-0.4)}
    # Both sides in one program compiled by fast_jit (tests/fast_jit.py), not op by op.
    manual, auto = fast_jit(
        lambda p: (
            linear_regression_loss_backward(2.5, p, X, y),
            jax.grad(lambda p: 2.5 * linear_regression_loss(p, X, y))(p),
        )
    )(params)
    for k in params:
        np.testing.assert_allclose(manual[k], auto[k], rtol=1e-12, atol=1e-14)


# ----- logistic regression ----------------------------------------------------------------


def _logistic_data(seed=0, n=150):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    p = 1 / (1 + np.exp(-(X @ np.array([2.0, -1.0, 0.5, 0.0]) - 0.3)))
    return X, (rng.uniform(size=n) < p).astype(np.int32)


def test_logistic_gradient_matches_jax(x64):  # LOGREG-1: X^T (sigmoid(Xw + b) - y) / N
    X, y = _logistic_data()
    X, y = jnp.asarray(X), jnp.asarray(y, jnp.float64)
    rng = np.random.default_rng(2)
    params = {"weight": jnp.asarray(rng.normal(size=4)), "bias": jnp.array(0.7)}
    # Both sides in one program compiled by fast_jit (tests/fast_jit.py), not op by op.
    manual, auto = fast_jit(
        lambda p: (
            logistic_regression_loss_backward(1.0, p, X, y),
            jax.grad(logistic_regression_loss)(p, X, y),
        )
    )(params)
    for k in params:
        np.testing.assert_allclose(manual[k], auto[k], rtol=1e-12, atol=1e-15)
    X, y, w, b = (np.asarray(a) for a in (X, y, params["weight"], params["bias"]))
    s = 1 / (1 + np.exp(-(X @ w + b)))
    np.testing.assert_allclose(manual["weight"], X.T @ (s - y) / len(y), rtol=1e-12)


def test_logistic_loss_is_bce_of_sigmoid_away_from_saturation(x64):  # LOGREG-1, BCEL-1
    X, y = _logistic_data(seed=3)
    params = {"weight": jnp.array([0.5, -0.2, 0.1, 0.3]), "bias": jnp.array(0.1)}
    p = logistic_regression_predict_proba(params, X)
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    np.testing.assert_allclose(
        logistic_regression_loss(params, jnp.asarray(X), jnp.asarray(y, jnp.float64)), bce, rtol=1e-12
    )


def test_logistic_loss_is_stable_when_saturated(x64):  # BCEL-1: logit 100 with y = 0 gives 100
    params = {"weight": jnp.array([1.0]), "bias": jnp.array(0.0)}
    loss = logistic_regression_loss(params, jnp.array([[100.0], [-100.0]]), jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(loss, 100.0, rtol=1e-12)


@pytest.mark.slow
def test_logistic_regression_fits_full_batch_and_minibatch():
    X, y = _logistic_data(n=400)
    params, history = logistic_regression_fit(X, y, lr=1.0, epochs=300)
    assert history["loss"].shape == history["accuracy"].shape == (300,)
    assert np.all(np.diff(np.asarray(history["loss"])) <= 1e-6)
    grads = logistic_regression_loss_backward(
        1.0, params, jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32)
    )
    assert float(jnp.max(jnp.abs(grads["weight"]))) < 1e-3  # at the (convex) optimum
    accuracy = float(np.mean(np.asarray(logistic_regression_predict(params, X)) == y))
    true_rule = float(np.mean(((X @ np.array([2.0, -1.0, 0.5, 0.0]) - 0.3) >= 0) == y))
    assert accuracy >= true_rule - 0.02  # as good as the labels' generating rule
    typed, h_typed = logistic_regression_fit(X, y, lr=0.5, epochs=5, batch_size=32, key=jax.random.key(1))
    legacy, _h_legacy = logistic_regression_fit(
        X, y, lr=0.5, epochs=5, batch_size=32, key=jax.random.PRNGKey(1)
    )
    np.testing.assert_array_equal(typed["weight"], legacy["weight"])  # same key bits, same run
    assert float(h_typed["accuracy"][-1]) > 0.7


# ----- softmax regression -----------------------------------------------------------------


def test_softmax_gradient_matches_jax(x64):  # SOFTREG-1: dL/dz = (softmax(z) - onehot(y)) / N
    rng = np.random.default_rng(4)
    X = jnp.asarray(rng.normal(size=(50, 6)))
    y = jnp.asarray(rng.integers(0, 4, size=50))
    params = {"weight": jnp.asarray(rng.normal(size=(4, 6))), "bias": jnp.asarray(rng.normal(size=4))}
    # Both sides in one program compiled by fast_jit (tests/fast_jit.py), not op by op.
    manual, auto = fast_jit(
        lambda p: (
            softmax_regression_loss_backward(0.5, p, X, y),
            jax.grad(lambda p: 0.5 * softmax_regression_loss(p, X, y))(p),
        )
    )(params)
    for k in params:
        np.testing.assert_allclose(manual[k], auto[k], rtol=1e-12, atol=1e-15)
    # With X = I and b = 0 the logits are W^T, so dL/dW^T is the logits' gradient itself.
    W = {"weight": rng.normal(size=(3, 4)), "bias": np.zeros(3)}
    t = np.array([0, 2, 1, 1])
    logits = W["weight"].T
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    expected = (softmax / softmax.sum(1, keepdims=True) - np.eye(3)[t]) / 4
    got = fast_jit(lambda W: softmax_regression_loss_backward(1.0, W, jnp.eye(4), jnp.asarray(t)))(W)
    np.testing.assert_allclose(got["weight"].T, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.slow
def test_softmax_regression_reaches_92_percent_on_mnist():  # SOFTREG-1
    from fnn.data import mnist

    # Full training set, raw pixels / 255, fixed seed: about 92.3% (about 5 s on 2 CPU cores).
    images, labels = mnist("train")
    test_images, test_labels = mnist("test")
    X = jnp.asarray(images.reshape(len(images), -1), jnp.float32) / 255.0
    Xt = jnp.asarray(test_images.reshape(len(test_images), -1), jnp.float32) / 255.0
    params, history = softmax_regression_fit(
        X, labels, 10, lr=0.1, epochs=20, batch_size=100, key=jax.random.key(0)
    )
    assert history["loss"].shape == (20,) and float(history["loss"][-1]) < float(history["loss"][0])
    accuracy = float(jnp.mean(softmax_regression_predict(params, Xt) == test_labels))
    assert accuracy >= 0.92, accuracy
    proba = softmax_regression_predict_proba(params, Xt[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


# ----- bad input --------------------------------------------------------------------------

X4 = np.zeros((4, 2))
KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "call, error, match",
    [
        # inconsistent lengths
        (
            lambda: perceptron_fit(X4, [0, 1, 0], epochs=2),
            ValueError,
            r"X and y must have the same number of samples, got X \(4, 2\) and y \(3,\)",
        ),
        (lambda: linear_regression_fit(X4, np.zeros(5)), ValueError, r"same number of samples.*y \(5,\)"),
        (lambda: logistic_regression_fit(X4, [0, 1]), ValueError, r"same number of samples.*y \(2,\)"),
        (lambda: softmax_regression_fit(X4, [0, 1, 2], 3), ValueError, r"same number of samples.*y \(3,\)"),
        # labels outside {0, 1} / [0, C)
        (lambda: perceptron_fit(X4, [0, 1, 2, 0]), ValueError, r"y must hold labels in \{0, 1\}, got 2"),
        (lambda: perceptron_fit(X4, [0, -1, 1, 0]), ValueError, r"y must hold labels in \{0, 1\}, got -1"),
        (lambda: logistic_regression_fit(X4, [0, 0.5, 1, 0]), ValueError, r"labels in \{0, 1\}, got 0\.5"),
        (
            lambda: softmax_regression_fit(X4, [0, 1, 3, 0], 3),
            ValueError,
            r"y values must be in \[0, 3\), got 3",
        ),
        (
            lambda: softmax_regression_fit(X4, [0, -1, 1, 0], 3),
            ValueError,
            r"y values must be in \[0, 3\), got -1",
        ),
        (
            lambda: softmax_regression_fit(X4, [0.0, 1.0, 1.0, 0.0], 3),
            TypeError,
            r"y must have an integer dtype",
        ),
        # non-finite inputs
        (
            lambda: perceptron_fit([[0.0, np.nan]] * 4, [0, 1, 1, 0]),
            ValueError,
            r"X must be finite, got nan at index \(0, 1\)",
        ),
        (
            lambda: linear_regression_fit(X4, [0.0, np.inf, 1.0, 2.0]),
            ValueError,
            r"y must be finite, got inf at index \(1,\)",
        ),
        (
            lambda: logistic_regression_fit([[1.0, 2.0]] * 3 + [[-np.inf, 0.0]], [0, 1, 1, 0]),
            ValueError,
            r"X must be finite, got -inf at index \(3, 0\)",
        ),
        (
            lambda: softmax_regression_fit([[np.nan, 0.0]] * 4, [0, 1, 1, 0], 2),
            ValueError,
            r"X must be finite",
        ),
        # shapes and hyperparameters
        (
            lambda: perceptron_fit(np.zeros(4), [0, 1, 1, 0]),
            ValueError,
            r"X must have ndim in \(2,\), got shape \(4,\)",
        ),
        (
            lambda: perceptron_fit(np.zeros((0, 2)), np.zeros(0)),
            ValueError,
            r"X must hold at least one sample",
        ),
        (lambda: perceptron_fit(X4, [0, 1, 1, 0], epochs=0), ValueError, r"epochs must be >= 1, got 0"),
        (lambda: perceptron_fit(X4, [0, 1, 1, 0], epochs=2.5), TypeError, r"epochs must be an int, got 2\.5"),
        (
            lambda: linear_regression_fit(X4, np.zeros(4), method="svd"),
            ValueError,
            r"method must be 'closed_form' or 'gd', got 'svd'",
        ),
        (
            lambda: linear_regression_fit(X4, np.zeros(4), method="gd", lr=-1.0),
            ValueError,
            r"lr must be a finite number >= 0, got -1\.0",
        ),
        (
            lambda: linear_regression_fit(X4, np.zeros(4), method="gd", lr=np.nan),
            ValueError,
            r"lr must be a finite number >= 0, got nan",
        ),
        (
            lambda: logistic_regression_fit(X4, [0, 1, 1, 0], lr=0.0),
            ValueError,
            r"lr must be > 0 for a gradient-descent fit .*got 0\.0",
        ),
        (
            lambda: softmax_regression_fit(X4, [0, 1, 1, 0], 2, lr="0.1"),
            TypeError,
            r"lr must be a finite number >= 0, got '0\.1' of type str",
        ),
        (
            lambda: logistic_regression_fit(X4, [0, 1, 1, 0], batch_size=2),
            ValueError,
            r"logistic_regression_fit needs a PRNG key \(key=jax.random.key\(...\)\)",
        ),
        (
            lambda: softmax_regression_fit(X4, [0, 1, 1, 0], 2, batch_size=8, key=KEY),
            ValueError,
            r"batch_size must be <= the number of samples 4, got 8",
        ),
        (lambda: softmax_regression_fit(X4, [0, 1, 1, 0], 0), ValueError, r"num_classes must be >= 1, got 0"),
        # predicting with the wrong number of features
        (
            lambda: softmax_regression_predict({"weight": jnp.zeros((3, 5)), "bias": jnp.zeros(3)}, X4),
            ValueError,
            r"X must have 5 features to match params\['weight'\] \(3, 5\), got X \(4, 2\)",
        ),
        (
            lambda: perceptron_predict({"weight": jnp.zeros(3), "bias": jnp.zeros(())}, X4),
            ValueError,
            r"X must have 3 features",
        ),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(call, error, match):
    with pytest.raises(error, match=match):
        call()

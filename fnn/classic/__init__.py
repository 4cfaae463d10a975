"""fnn.classic: the classic learners as pure functions on jax arrays.

Each learner is a fit/predict pair. `*_fit` validates its arguments (shapes, label ranges,
finite values) in Python, then runs one jit-compiled loop and returns
`(params, history)`: params a dict {'weight', 'bias'}, history a dict of per-epoch arrays.
The regressions also expose their loss and its hand-derived `*_loss_backward`, which the
tests check against jax.grad.

    params, history = perceptron_fit(X, y, epochs=20)          # PERC-1
    params, history = linear_regression_fit(X, y, method="gd", lr=0.1, epochs=500)
    params, history = logistic_regression_fit(X, y, lr=0.5, epochs=200)
    params, history = softmax_regression_fit(X, y, 10, lr=0.5, epochs=10, batch_size=100,
                                             key=jax.random.key(0))
"""

from fnn.classic.linear_regression import (
    linear_regression_fit,
    linear_regression_loss,
    linear_regression_loss_backward,
    linear_regression_predict,
)
from fnn.classic.logistic_regression import (
    logistic_regression_fit,
    logistic_regression_loss,
    logistic_regression_loss_backward,
    logistic_regression_predict,
    logistic_regression_predict_proba,
)
from fnn.classic.perceptron import perceptron_fit, perceptron_predict
from fnn.classic.softmax_regression import (
    softmax_regression_fit,
    softmax_regression_loss,
    softmax_regression_loss_backward,
    softmax_regression_predict,
    softmax_regression_predict_proba,
)

__all__ = [
    "linear_regression_fit",
    "linear_regression_loss",
    "linear_regression_loss_backward",
    "linear_regression_predict",
    "logistic_regression_fit",
    "logistic_regression_loss",
    "logistic_regression_loss_backward",
    "logistic_regression_predict",
    "logistic_regression_predict_proba",
    "perceptron_fit",
    "perceptron_predict",
    "softmax_regression_fit",
    "softmax_regression_loss",
    "softmax_regression_loss_backward",
    "softmax_regression_predict",
    "softmax_regression_predict_proba",
]

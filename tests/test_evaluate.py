"""fnn.train.evaluate / predict on a BatchNorm model, folded (the default) and not, against a numpy
float64 forward of the unfolded model (BN-4 in eval, BN-5 per batch), with a last partial batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import nn
from fnn.train import evaluate, predict
from fnn.train.evaluation import evaluate_checked
from fnn.train.metrics import resolve_metrics

D, C = 6, 4


def bn_model(track=True):
    return nn.Sequential(
        nn.Linear(D, 8),
        nn.BatchNorm1d(8, track_running_stats=track),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(8, 8, bias=False),
        nn.BatchNorm1d(8, affine=False),
        nn.ReLU(),
        nn.Linear(8, C),
    )


def random_arrays(model, seed):
    """init, then random γ, β and running statistics (the init ones would make BatchNorm an identity)."""
    params, state = model.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    params = tuple(
        {k: jnp.asarray(rng.uniform(-1.5, 1.5, v.shape), v.dtype) for k, v in p.items()} for p in params
    )
    state = tuple(
        {
            k: jnp.asarray(
                rng.uniform(-1, 1, v.shape) if k == "running_mean" else rng.uniform(0.2, 3, v.shape), v.dtype
            )
            if k != "num_batches_tracked"
            else v
            for k, v in s.items()
        }
        for s in state
    )
    return params, state


def numpy_forward(params, state, x, eps=1e-5, batch=None):
    """The unfolded model in float64 numpy; BN without running stats uses each batch's statistics."""
    p = [{k: np.asarray(v, np.float64) for k, v in d.items()} for d in params]
    s = [{k: np.asarray(v, np.float64) for k, v in d.items()} for d in state]
    x = np.asarray(x, np.float64)

    def bn(h, i):
        if "running_mean" in s[i]:
            mu, var = s[i]["running_mean"], s[i]["running_var"]
        else:
            mu, var = h.mean(0), h.var(0)  # biased (BN-1), per batch (BN-5)
        h = (h - mu) / np.sqrt(var + eps)
        return h * p[i]["weight"] + p[i]["bias"] if p[i] else h

    def run(xb):
        h = np.maximum(bn(xb @ p[0]["weight"].T + p[0]["bias"], 1), 0)
        h = np.maximum(bn(h @ p[4]["weight"].T, 5), 0)
        return h @ p[7]["weight"].T + p[7]["bias"]

    if batch is None:
        return run(x)
    return np.concatenate([run(x[i : i + batch]) for i in range(0, len(x), batch)])


def numpy_cross_entropy(logits, y, weight=None):
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    w = np.ones(logits.shape[1]) if weight is None else np.asarray(weight, np.float64)
    return float(-(w[y] * logp[np.arange(len(y)), y]).sum() / w[y].sum())


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)).astype(np.float32) * 2, rng.integers(0, C, n).astype(np.int32)


@pytest.mark.slow
@pytest.mark.parametrize("fold", [True, False])
def test_evaluate_matches_numpy_with_a_partial_last_batch(fold):
    model = bn_model()
    params, state = random_arrays(model, 1)
    x, y = data(103)
    logits = numpy_forward(params, state, x)
    for batch_size in (10, 103, 1000):  # 10 full batches and 3 rows; one batch; clipped to 103
        got = evaluate(model, params, state, (x, y), batch_size=batch_size, fold_batchnorm=fold)
        np.testing.assert_allclose(got["loss"], numpy_cross_entropy(logits, y), rtol=1e-5)
        correct = int(np.sum(np.argmax(logits, 1) == y))  # the same predictions, counted exactly
        assert round(got["accuracy"] * len(y)) == correct
        np.testing.assert_allclose(got["accuracy"], correct / len(y), rtol=1e-7)


@pytest.mark.slow
def test_evaluate_checked_keeps_class_weights_and_ignore_index():
    model = bn_model()
    params, state = random_arrays(model, 2)
    x, y = data(57)
    y[::5] = -100
    weight = [1.0, 2.0, 0.5, 1.5]
    logits = numpy_forward(params, state, x)
    keep = y != -100
    want = numpy_cross_entropy(logits[keep], y[keep], weight)
    loss = nn.CrossEntropyLoss(weight=weight)
    got = evaluate_checked(
        model, params, state, jnp.asarray(x), jnp.asarray(y), loss, resolve_metrics((), y), 8
    )
    np.testing.assert_allclose(got["loss"], want, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("fold", [True, False])
def test_predict_matches_numpy_with_a_partial_last_batch(fold):
    model = bn_model()
    params, state = random_arrays(model, 3)
    x, _ = data(37)
    want = numpy_forward(params, state, x)
    for batch_size in (8, 37, 64):
        got = predict(model, params, state, x, batch_size=batch_size, fold_batchnorm=fold)
        assert got.shape == (37, C) and got.dtype == jnp.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_batch_statistics_batchnorm_sees_the_last_batch_at_its_true_size():
    # BN-5: track_running_stats=False normalizes each eval batch by its own statistics, so
    # the 5-row last batch must not be padded with zeros; that BatchNorm is not folded.
    model = bn_model(track=False)
    params, state = random_arrays(model, 4)
    x, _ = data(21)
    want = numpy_forward(params, state, x, batch=8)
    np.testing.assert_allclose(predict(model, params, state, x, batch_size=8), want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_evaluate_in_float64_is_exact_to_1e_12(x64):
    model = nn.Sequential(
        nn.Linear(D, 8, dtype="float64"), nn.BatchNorm1d(8, dtype="float64"), nn.Linear(8, C, dtype="float64")
    )
    params, state = model.init(jax.random.key(5))
    state = (
        {},
        {**state[1], "running_mean": jnp.linspace(-1, 1, 8), "running_var": jnp.linspace(0.5, 2, 8)},
        {},
    )
    x, y = data(29)
    x = x.astype(np.float64)
    p = [{k: np.asarray(v) for k, v in d.items()} for d in params]
    h = x @ p[0]["weight"].T + p[0]["bias"]
    h = (h - np.linspace(-1, 1, 8)) / np.sqrt(np.linspace(0.5, 2, 8) + 1e-5)  # γ = 1, β = 0 at init
    logits = h @ p[2]["weight"].T + p[2]["bias"]
    got = evaluate(model, params, state, (x, y), batch_size=8)
    np.testing.assert_allclose(got["loss"], numpy_cross_entropy(logits, y), rtol=1e-12)
    np.testing.assert_allclose(predict(model, params, state, x, batch_size=8), logits, rtol=1e-12, atol=1e-12)


def test_evaluate_names_an_inf_input_by_row_and_column():
    x = np.zeros((5, 3), np.float32)
    x[4, 2] = np.inf
    with pytest.raises(ValueError, match=r"^data x holds inf at row 4, column 2$"):
        evaluate(nn.Linear(3, 2), *nn.Linear(3, 2).init(jax.random.key(0)), (x, np.zeros(5, np.int32)))

"""Mixed precision (fnn.nn.precision, DTYPE-4): float32 master weights and optimizer state,
bfloat16 compute, BatchNorm statistics and the loss in float32. The reference step is written
here in plain jax.numpy, independent of fnn's layers."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import nn, optim, train
from fnn.nn.precision import check_compute_dtype

KEY = jax.random.key(0)
BF16 = jnp.bfloat16
MODEL = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
LR, MOMENTUM = 0.1, 0.9


def _data(n=16):
    kx, _ = jax.random.split(jax.random.key(1))
    return jax.random.normal(kx, (n, 4)), jnp.arange(n) % 3


def _leaf_dtypes(tree):
    return {str(leaf.dtype) for leaf in jax.tree.leaves(tree)}


@jax.jit  # compiled like the step: eager bf16 ops may round differently from a fused program
def _reference_step(params, state, x, y):
    """The master-weights recipe by hand: cast params and input to bf16, forward (BatchNorm on
    the activations cast up to f32, output cast back), cross-entropy in f32, gradients with
    respect to the bf16 copies (BatchNorm's f32 params as they are), cast up, SGD in f32."""
    (l1, bn, _, l2), (_, st, _, _) = params, state

    def loss_fn(w1, b1, g, beta, w2, b2):
        h = x.astype(BF16) @ w1.T + b1
        h32 = h.astype(jnp.float32)
        mean = h32.mean(0)
        var = jnp.mean(jnp.square(h32 - mean), 0)
        h = ((h32 - mean) * jax.lax.rsqrt(var + 1e-5) * g + beta).astype(BF16)
        out = jnp.maximum(h, 0) @ w2.T + b2
        logp = jax.nn.log_softmax(out.astype(jnp.float32))
        return -jnp.mean(logp[jnp.arange(len(y)), y]), (mean, var)

    low = [l1["weight"].astype(BF16), l1["bias"].astype(BF16), bn["weight"], bn["bias"]]
    low += [l2["weight"].astype(BF16), l2["bias"].astype(BF16)]
    (value, (mean, var)), grads = jax.value_and_grad(loss_fn, argnums=tuple(range(6)), has_aux=True)(*low)
    grads = [g.astype(jnp.float32) for g in grads]
    masters = [l1["weight"], l1["bias"], bn["weight"], bn["bias"], l2["weight"], l2["bias"]]
    # The first SGD step: the momentum buffer is the gradient.
    new = [p - LR * g for p, g in zip(masters, grads, strict=True)]
    n = len(x)
    running = (0.9 * st["running_mean"] + 0.1 * mean, 0.9 * st["running_var"] + 0.1 * var * n / (n - 1))
    return value, new, grads, running


@pytest.mark.slow
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_one_step_equals_the_hand_written_master_weights_step(grad):
    params, state = MODEL.init(KEY)
    x, y = _data()
    opt = optim.sgd(lr=LR, momentum=MOMENTUM)
    step = train.make_train_step(MODEL, nn.CrossEntropyLoss(), opt, grad, compute_dtype="bfloat16")
    new_params, new_state, _, m = step(params, state, opt.init(params), None, x, y)
    value, want, grads, (rm, rv) = _reference_step(params, state, x, y)
    got = [new_params[0]["weight"], new_params[0]["bias"], new_params[1]["weight"], new_params[1]["bias"]]
    got += [new_params[3]["weight"], new_params[3]["bias"]]
    np.testing.assert_allclose(float(m["loss"]), float(value), rtol=1e-6)
    # The update applied in f32 to the f32 master: within one bf16 rounding of the largest
    # gradient (the two bf16 programs may round differently; the first Linear's bias has a
    # gradient that BatchNorm cancels, pure rounding noise, which the manual backward sums in
    # another order).
    atol = LR * 2**-7 * max(float(jnp.abs(g).max()) for g in grads)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=atol)
    np.testing.assert_allclose(new_state[1]["running_mean"], rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state[1]["running_var"], rv, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_master_weights_opt_state_and_running_stats_stay_float32_and_it_traces_once(grad):
    params, state = MODEL.init(KEY)
    x, y = _data()
    opt = optim.adam(lr=1e-2)
    traces = []

    def counting_loss(out, target):
        traces.append(out.dtype)  # runs at trace time only
        return nn.CrossEntropyLoss()(out, target)

    loss = nn.FunctionLoss(counting_loss, backward=nn.CrossEntropyLoss().backward)
    step = train.make_train_step(MODEL, loss, opt, grad, compute_dtype="bfloat16")
    opt_state = opt.init(params)
    for _ in range(3):
        params, state, opt_state, _ = step(params, state, opt_state, None, x, y)
        assert _leaf_dtypes((params, state)) == {"float32", "int32"}
        assert _leaf_dtypes(opt_state) <= {"float32", "int32"}
    assert int(state[1]["num_batches_tracked"]) == 3
    assert traces == [jnp.dtype(jnp.float32)]  # one trace for three steps; the loss sees f32


def test_every_matmul_of_the_step_runs_in_bfloat16():
    # Forward and backward: every dot_general of the compiled step takes and gives bf16.
    params, state = MODEL.init(KEY)
    x, y = _data()
    opt = optim.sgd(lr=LR)
    for grad in ("autodiff", "manual"):
        step = train.make_train_step(MODEL, nn.CrossEntropyLoss(), opt, grad, compute_dtype="bfloat16")
        hlo = step.lower(params, state, opt.init(params), None, x, y).as_text()
        dots = [line for line in hlo.splitlines() if "dot_general" in line]
        assert len(dots) >= 5, grad  # 2 forward, 2 weight gradients, the hidden input gradient
        for line in dots:
            types = re.findall(r"tensor<[^>]*>", line)
            assert types and all(t.endswith("xbf16>") for t in types), line
        plain = train.make_train_step(MODEL, nn.CrossEntropyLoss(), opt, grad)
        hlo32 = plain.lower(params, state, opt.init(params), None, x, y).as_text()
        assert "bf16" not in hlo32  # compute_dtype=None: the params' dtype, as before


@pytest.mark.slow
def test_manual_and_autodiff_agree_to_bfloat16_tolerance():
    params, state = MODEL.init(KEY)
    x, y = _data(32)
    opt = optim.sgd(lr=LR)
    out = {}
    for grad in ("autodiff", "manual"):
        step = train.make_train_step(MODEL, nn.CrossEntropyLoss(), opt, grad, compute_dtype="bfloat16")
        out[grad] = step(params, state, opt.init(params), None, x, y)
    for a, b in zip(jax.tree.leaves(out["autodiff"][0]), jax.tree.leaves(out["manual"][0]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2**-7, atol=LR * 2**-6)
    np.testing.assert_allclose(out["autodiff"][3]["grad_norm"], out["manual"][3]["grad_norm"], rtol=2**-6)


@pytest.mark.slow
def test_bfloat16_step_is_close_to_the_float32_step_but_not_equal():
    # The compute really is reduced: bf16 grads differ from f32 ones by about bf16's epsilon.
    params, state = MODEL.init(KEY)
    x, y = _data(32)
    opt = optim.sgd(lr=1.0)
    mixed = train.make_train_step(MODEL, nn.CrossEntropyLoss(), opt, compute_dtype="bfloat16")
    plain = train.make_train_step(MODEL, nn.CrossEntropyLoss(), opt)
    a = jax.tree.leaves(mixed(params, state, opt.init(params), None, x, y)[0])
    b = jax.tree.leaves(plain(params, state, opt.init(params), None, x, y)[0])
    gap = max(float(jnp.abs(u - v).max()) for u, v in zip(a, b, strict=True))
    assert 0 < gap < 0.05


@pytest.mark.slow
def test_fit_trains_in_mixed_precision_and_keeps_float32():
    x, y = _data(64)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    result = train.fit(
        model, nn.CrossEntropyLoss(), optim.sgd(lr=0.1, momentum=0.9), (x, y), epochs=5, batch_size=16,
        key=KEY, progress=False, compute_dtype="bfloat16",
    )  # fmt: skip
    assert _leaf_dtypes(result.train_state.params) == {"float32"}
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("bad", ["float64", "int8", "half", jnp.int32])
def test_compute_dtype_rejects_other_values_naming_them(bad):
    with pytest.raises(ValueError, match=r"compute_dtype must be None or one of float32, bfloat16, float16"):
        check_compute_dtype(bad)
    with pytest.raises(ValueError, match="compute_dtype must be"):
        train.make_train_step(MODEL, nn.CrossEntropyLoss(), optim.sgd(lr=0.1), compute_dtype=bad)

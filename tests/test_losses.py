"""fnn.functional.losses: torch golden values (docs/semantics.md), manual backward vs jax.vjp,
edge cases (ignored targets, empty batches, saturated logits) and every bad-input error."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn.functional import losses as L

REDUCTIONS = ("mean", "sum", "none")


def close(got, want, rtol=1e-8, atol=1e-9):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, dtype=np.float64), rtol=rtol, atol=atol)


# ------------------------------------------------------------------ golden fixtures (2.1)
X = [[1, 2, 3], [1, -1, 0.5], [0.5, 0.5, 0.5], [2, 0, -2]]
T = [2, 0, -100, 1]
W = [1.0, 2.0, 3.0]
P = [[0, 0, 1], [0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0, 1, 0]]
XK = np.arange(24).reshape(2, 3, 4) / 10
TK = [[0, 1, 2, -100], [2, 2, 1, 0]]
BCE_P, BCE_Y = [0, 0.2, 0.5, 0.9, 1], [1, 0, 1, 0.3, 1]
Z = [[-3, 0, 2], [100, -100, 0.5]]
ZY = [[0, 1, 1], [0, 1, 0.25]]
POS_WEIGHT, BCEL_WEIGHT = [1, 2, 0.5], [1, 0.5, 2]
D = np.array([0, 0.5, -1, 3, -2.5])  # pred − target
TARGET = np.array([1.0, -2.0, 0.25, 4.0, 0.0])
PRED = TARGET + D


def f64(x):
    return jnp.asarray(x, jnp.float64)


def i64(x):
    return jnp.asarray(x, jnp.int64)


@pytest.mark.parametrize(
    "kwargs, want",
    [
        # CE-1 (index targets, -100 ignored)
        (dict(reduction="mean"), 1.035164838),
        (dict(reduction="sum"), 3.105494513),
        (dict(reduction="none"), [0.4076059644, 0.5549569196, 0, 2.142931628]),
        # CE-1 weighted mean; CE-6: 'none' returns w_{y_n}·nll_n
        (dict(weight=W, reduction="mean"), 1.010606345),
        (dict(weight=W, reduction="sum"), 6.06363807),
        (dict(weight=W, reduction="none"), [1.222817893, 0.5549569196, 0, 4.285863257]),
        # CE-2 label smoothing with weights: both terms share the Σw_{y_n} denominator
        (dict(weight=W, label_smoothing=0.1, reduction="mean"), 1.088062194),
        (dict(weight=W, label_smoothing=0.1, reduction="sum"), 6.528373165),
        (dict(weight=W, label_smoothing=0.1, reduction="none"), [1.31539063, 0.7937859449, 0, 4.41919659]),
        (dict(label_smoothing=0.1), 1.096275949),  # CE-2
    ],
)
def test_cross_entropy_index_golden(x64, kwargs, want):
    kwargs = {k: f64(v) if k == "weight" else v for k, v in kwargs.items()}
    close(L.cross_entropy(f64(X), i64(T), **kwargs), want)


def test_cross_entropy_ignore_golden(x64):
    # NLL-2 / CE-1: every target ignored → 'mean' NaN (0/0), 'sum' 0
    assert np.isnan(L.cross_entropy(f64(X), i64([-100] * 4)))
    close(L.cross_entropy(f64(X), i64([-100] * 4), reduction="sum"), 0.0)
    # CE-4: ignore_index = a valid class; class 0 stays in the other rows' softmax denominator
    close(L.cross_entropy(f64(X), i64([2, 0, 0, 1]), ignore_index=0), 1.275268796)


@pytest.mark.parametrize(
    "kwargs, reduction, want",
    [
        ({}, "mean", 1.1635267),  # CE-3
        ({}, "none", [0.4076059644, 1.00495692, 1.098612289, 2.142931628]),  # CE-3
        (dict(weight=W), "mean", 2.358211354),  # CE-3: sum/4, not /Σw
        (dict(weight=W), "none", [1.222817893, 1.726939687, 2.197224577, 4.285863257]),  # CE-3
        (dict(label_smoothing=0.1), "mean", 1.198110034),  # CE-3 with y' = 0.9·y + 0.1/3
        (dict(weight=W, label_smoothing=0.1), "mean", 2.445095558),  # CE-3
    ],
)
def test_cross_entropy_probability_golden(x64, kwargs, reduction, want):
    kwargs = {k: f64(v) if k == "weight" else v for k, v in kwargs.items()}
    close(L.cross_entropy(f64(X), f64(P), reduction=reduction, **kwargs), want, rtol=1e-7)


def test_cross_entropy_kdim_golden(x64):
    @fast_jit  # the three losses in one program (tests/fast_jit.py)
    def program(x, t, w):
        ce = functools.partial(L.cross_entropy, x, t)
        return ce(weight=w), ce(weight=w, reduction="none"), ce(label_smoothing=0.2)

    mean, none, smoothed = program(f64(XK), i64(TK), f64(W))
    # NLL-3 / CE-1: (N, C, d) input, mean over all non-ignored positions, weighted
    close(mean, 0.9645838471)
    close(
        none,
        [[1.551250514, 2.302501027, 2.253751541, 0], [2.253751541, 2.253751541, 2.302501027, 1.551250514]],
    )
    close(smoothed, 1.105536228)  # CE-2, K-dim


@pytest.mark.parametrize(
    "reduction, want",
    [
        ("mean", 1.010606345),  # NLL-1: weighted mean
        ("sum", 6.06363807),  # NLL-1 (= CE sum, CE-1)
        ("none", [1.222817893, 0.5549569196, 0, 4.285863257]),  # NLL-1: 0 at the ignored item
    ],
)
def test_nll_golden(x64, reduction, want):
    logp = jax.nn.log_softmax(f64(X), axis=1)
    close(L.nll_loss(logp, i64(T), weight=f64(W), reduction=reduction), want)


def test_bce_golden(x64):
    p, y = f64(BCE_P), f64(BCE_Y)
    # BCE-1: the −100 clamp makes BCE(0, 1) = 100, not inf
    close(L.binary_cross_entropy(p, y, reduction="none"), [100, 0.2231435513, 0.6931471806, 1.64341772, 0])
    close(L.binary_cross_entropy(p, y), 20.51194169)
    close(L.binary_cross_entropy(p, y, reduction="sum"), 5 * 20.51194169)


def test_bce_gradient_golden(x64):
    # BCE-2: w·(x − y)/max(x(1 − x), 1e-12), not the clamped loss's derivative (0 at x = 0);
    # torch's floor is float32(1e-12), so the first entry is -1.000000004e12.
    want = [-1.000000004e12, 1.25, -2, 6.666666667, 0]

    @fast_jit  # jax.grad and the manual backward in one program (tests/fast_jit.py)
    def program(p, y):
        grad = jax.grad(lambda p: L.binary_cross_entropy(p, y, reduction="sum"))(p)
        return grad, L.binary_cross_entropy_backward(f64(1.0), p, y, reduction="sum")

    grad, manual = program(f64(BCE_P), f64(BCE_Y))
    close(grad, want, rtol=1e-9)
    close(manual, want, rtol=1e-9)


def test_bce_with_logits_golden(x64):
    z, y = f64(Z), f64(ZY)
    # BCEL-1: stable, no clamp: logit 100 with y = 0 (and -100 with y = 1) costs exactly 100
    close(
        L.binary_cross_entropy_with_logits(z, y, reduction="none"),
        [[0.04858735157, 0.6931471806, 0.126928011], [100, 100, 0.8490769842]],
    )
    # BCEL-1: pos_weight broadcasts along the last dimension
    close(
        L.binary_cross_entropy_with_logits(z, y, pos_weight=f64(POS_WEIGHT), reduction="none"),
        [[0.04858735157, 1.386294361, 0.06346400552], [100, 200, 0.7898173612]],
    )
    kw = dict(weight=f64(BCEL_WEIGHT), pos_weight=f64(POS_WEIGHT))
    close(L.binary_cross_entropy_with_logits(z, y, **kw), 33.74138288)  # BCEL-1: mean over numel
    close(L.binary_cross_entropy_with_logits(z, y, reduction="sum", **kw), 202.4482973)


def test_regression_golden(x64):
    x, t = f64(PRED), f64(TARGET)
    close(L.l1_loss(x, t), 1.4)  # L1-1
    close(L.l1_loss(x, t, reduction="sum"), 5 * 1.4)
    close(L.l1_loss(x, t, reduction="none"), np.abs(D))
    close(L.mse_loss(x, t), 3.3)  # MSE-1
    close(L.mse_loss(x, t, reduction="sum"), 5 * 3.3)
    close(L.mse_loss(x, t, reduction="none"), D**2)
    # HUB-1 / SL1-1, 'none' (sum and mean follow from it)
    for f, kw, want in [
        (L.huber_loss, dict(delta=1.0), [0, 0.125, 0.5, 2.5, 2]),
        (L.smooth_l1_loss, dict(beta=1.0), [0, 0.125, 0.5, 2.5, 2]),
        (L.huber_loss, dict(delta=2.0), [0, 0.125, 0.5, 4, 3]),
        (L.smooth_l1_loss, dict(beta=2.0), [0, 0.0625, 0.25, 2, 1.5]),
        (L.huber_loss, dict(delta=0.5), [0, 0.125, 0.375, 1.375, 1.125]),
        (L.smooth_l1_loss, dict(beta=0.5), [0, 0.25, 0.75, 2.75, 2.25]),
    ]:
        close(f(x, t, reduction="none", **kw), want)
        close(f(x, t, reduction="sum", **kw), np.sum(want))
        close(f(x, t, **kw), np.mean(want))


# ------------------------------------------------------------------ rules beyond the goldens


def test_l1_gradient_zero_at_equality(x64):
    # L1-1 (and SL1-1 with β = 0, which is exactly L1): torch's gradient at x = y is 0
    x = f64([1.0, 2.0, -3.0])
    t = f64([1.0, 0.0, -3.0])
    want = [0.0, 1.0 / 3, 0.0]  # d = [0, 2, 0], 'mean' over 3; Huber clips the 2 to δ = 1
    cases = [
        (L.l1_loss, L.l1_loss_backward, {}),
        (L.smooth_l1_loss, L.smooth_l1_loss_backward, dict(beta=0.0)),
        (L.huber_loss, L.huber_loss_backward, {}),
    ]

    @fast_jit  # each loss's jax.grad and manual backward in one program (tests/fast_jit.py)
    def program(x, t):
        return [
            (jax.grad(lambda x, f=f, kw=kw: f(x, t, **kw))(x), fb(f64(1.0), x, t, **kw))
            for f, fb, kw in cases
        ]

    for grad, manual in program(x, t):
        close(grad, want)
        close(manual, want)


def test_smooth_l1_beta_zero_is_l1(x64):
    # SL1-1: β = 0 gives exactly L1, values and gradients
    x, t = f64(PRED), f64(TARGET)
    for r in REDUCTIONS:
        np.testing.assert_array_equal(
            L.smooth_l1_loss(x, t, reduction=r, beta=0.0), L.l1_loss(x, t, reduction=r)
        )


def test_huber_is_delta_times_smooth_l1(x64):
    # SL1-1 relation: Huber_δ = δ·SmoothL1_{β=δ}
    rng = np.random.default_rng(0)
    x, t = f64(rng.normal(size=20) * 3), f64(rng.normal(size=20))
    for delta in (0.3, 1.0, 2.5):
        close(
            L.huber_loss(x, t, reduction="none", delta=delta),
            delta * L.smooth_l1_loss(x, t, reduction="none", beta=delta),
        )


def test_empty_means_are_nan(x64):
    # L1-1: empty 'mean' → NaN; CE-5: empty batch 'mean' → NaN (index and probability targets)
    assert np.isnan(L.l1_loss(f64(np.zeros(0)), f64(np.zeros(0))))
    assert np.isnan(L.cross_entropy(f64(np.zeros((0, 3))), i64(np.zeros(0))))
    assert np.isnan(L.cross_entropy(f64(np.zeros((0, 3))), f64(np.zeros((0, 3)))))
    close(L.cross_entropy(f64(np.zeros((0, 3))), i64(np.zeros(0)), reduction="sum"), 0.0)


def test_bce_weight_mean_divides_by_numel(x64):
    # BCE-3: weight broadcasts; 'mean' divides by numel, not Σw
    rng = np.random.default_rng(1)
    x, y, w = f64(rng.uniform(0.1, 0.9, (3, 4))), f64(rng.uniform(size=(3, 4))), f64([1.0, 2.0, 0.5, 3.0])
    unweighted = L.binary_cross_entropy(x, y, reduction="none")
    close(L.binary_cross_entropy(x, y, weight=w, reduction="none"), w * unweighted)
    close(L.binary_cross_entropy(x, y, weight=w), np.sum(w * unweighted) / 12)


def test_cross_entropy_none_mean_differs_from_mean(x64):
    # CE-6: with weights, mean('none') ≠ 'mean' (pytorch #65329)
    per_item = L.cross_entropy(f64(X), i64(T), weight=f64(W), reduction="none")
    assert not np.isclose(np.mean(per_item), L.cross_entropy(f64(X), i64(T), weight=f64(W)))


def test_label_smoothing_differs_from_smoothed_one_hot_with_weights(x64):
    # CE-2: index targets + ε + weights ≠ probability targets (1 − ε)·onehot + ε/C
    onehot = jax.nn.one_hot(i64([2, 0, 1, 1]), 3, dtype=jnp.float64)
    a = L.cross_entropy(f64(X), i64([2, 0, 1, 1]), weight=f64(W), label_smoothing=0.1)
    b = L.cross_entropy(f64(X), onehot, weight=f64(W), label_smoothing=0.1)
    assert not np.isclose(a, b)
    # without weights and ignored items the two agree (both are p − y' at the gradient)
    close(
        L.cross_entropy(f64(X), i64([2, 0, 1, 1]), label_smoothing=0.1),
        L.cross_entropy(f64(X), onehot, label_smoothing=0.1),
    )


@pytest.mark.parametrize("loss", ["nll", "ce", "ce_smooth"])
def test_all_ignored_nan_loss_zero_gradient(x64, loss):
    # NLL-2: 'mean' NaN, 'sum' 0, 'none' zeros; the gradient is zeros, not NaN
    f, fb, kw = {
        "nll": (L.nll_loss, L.nll_loss_backward, {}),
        "ce": (L.cross_entropy, L.cross_entropy_backward, {}),
        "ce_smooth": (L.cross_entropy, L.cross_entropy_backward, dict(label_smoothing=0.3)),
    }[loss]

    @fast_jit  # the three reductions and both gradients in one program (tests/fast_jit.py)
    def program(x, t, w):
        values = [f(x, t, weight=w, reduction=r, **kw) for r in ("mean", "sum", "none")]
        grads = [
            (
                jax.grad(lambda x, r=r: f(x, t, weight=w, reduction=r, **kw))(x),
                fb(f64(1.0), x, t, weight=w, reduction=r, **kw),
            )
            for r in ("mean", "sum")
        ]
        return values, grads

    (mean, total, none), grads = program(f64(X), i64([-100] * 4), f64(W))
    assert np.isnan(mean)
    close(total, 0.0)
    close(none, np.zeros(4))
    for grad, manual in grads:
        close(grad, np.zeros((4, 3)))
        close(manual, np.zeros((4, 3)))


def test_unbatched_matches_a_batch_of_one(x64):
    # NLL-3: input (C,) with a scalar target; the 'none' loss is a scalar
    x, t = f64(X[3]), i64(1)

    @fast_jit  # every reduction, unbatched and as a batch of one, in one program (tests/fast_jit.py)
    def program(x, t, w, p):
        ce = functools.partial(L.cross_entropy, weight=w, label_smoothing=0.2)
        cases = [
            (ce(x, t, reduction=r), ce(x[None], t[None], reduction=r), L.nll_loss(x, t, reduction=r))
            for r in REDUCTIONS
        ]
        return cases, L.cross_entropy(x, p), L.cross_entropy(x[None], p[None])

    cases, probabilities, batch = program(x, t, f64(W), f64(P[1]))
    for out, batched, nll in cases:
        assert out.shape == ()
        close(out, batched.reshape(()))
        close(nll, -x[1])
    close(probabilities, batch)  # probabilities, unbatched


@pytest.mark.parametrize("dtype", [jnp.int8, jnp.uint8, jnp.int16, jnp.int32, jnp.int64])
def test_any_integer_target_dtype(x64, dtype):
    # NLL-4 (documented deviation): torch wants Long/Byte; fnn accepts any integer dtype
    t = jnp.asarray([2, 0, 1, 1], dtype)
    close(
        L.cross_entropy(f64(X), t, weight=f64(W)), L.cross_entropy(f64(X), i64([2, 0, 1, 1]), weight=f64(W))
    )
    close(L.nll_loss(f64(X), t), L.nll_loss(f64(X), i64([2, 0, 1, 1])))


def test_stable_at_saturated_logits(x64):
    # Logits ±1000: finite loss and gradient, jax.grad and manual alike
    x = f64([[1000, -1000, 0], [-1000, 1000, 1000], [0, 0, -1000]])
    cases = [
        (L.cross_entropy, L.cross_entropy_backward, i64([1, 0, 2]), dict(label_smoothing=0.1, weight=f64(W))),
        (L.cross_entropy, L.cross_entropy_backward, f64([[0, 1, 0], [0.5, 0.5, 0], [0, 0, 1]]), {}),
        (
            L.binary_cross_entropy_with_logits,
            L.binary_cross_entropy_with_logits_backward,
            f64([[0, 1, 1], [1, 0, 0.5], [1, 1, 0]]),
            dict(pos_weight=f64(POS_WEIGHT)),
        ),
    ]

    @fast_jit  # every case's loss, jax.grad and manual backward in one program (tests/fast_jit.py)
    def program(x, two, pm):
        out = [
            (f(x, t, **kw), jax.grad(lambda x, f=f, t=t, kw=kw: f(x, t, **kw))(x), fb(f64(1.0), x, t, **kw))
            for f, fb, t, kw in cases
        ]
        gap = L.cross_entropy(two, i64([1]))
        bcel = L.binary_cross_entropy_with_logits(pm, f64([0.0, 1.0]), reduction="none")
        return out, gap, bcel

    out, gap, bcel = program(x, f64([[1000, -1000]]), f64([1000.0, -1000.0]))
    for loss, g, manual in out:
        assert np.isfinite(loss) and loss > 100
        assert np.all(np.isfinite(g))
        close(manual, g)
    # CE-1 at ±1000: the wrong class costs exactly the logit gap
    close(gap, 2000.0)
    close(bcel, [1000.0, 1000.0])


# ------------------------------------------------------------------ manual backward vs jax.vjp


# The ops by short name: (forward, manual backward).
OPS = {
    "l1": (L.l1_loss, L.l1_loss_backward),
    "mse": (L.mse_loss, L.mse_loss_backward),
    "huber": (L.huber_loss, L.huber_loss_backward),
    "sl1": (L.smooth_l1_loss, L.smooth_l1_loss_backward),
    "bce": (L.binary_cross_entropy, L.binary_cross_entropy_backward),
    "bcel": (L.binary_cross_entropy_with_logits, L.binary_cross_entropy_with_logits_backward),
    "nll": (L.nll_loss, L.nll_loss_backward),
    "ce": (L.cross_entropy, L.cross_entropy_backward),
}


def _cases():
    rng = np.random.default_rng(42)
    u, n = rng.uniform, rng.normal

    def probs(*shape):  # away from BCE's clamp
        return u(0.05, 0.95, shape)

    def idx(c, *shape):  # class indices, about a quarter ignored (-100)
        return np.where(u(size=shape) < 0.25, -100, rng.integers(0, c, shape))

    def dist(*shape):  # class probabilities along dim 1
        a = u(size=shape)
        return a / a.sum(axis=1, keepdims=True)

    x2, x4 = n(size=(5, 4)) * 2, n(size=(2, 4, 3, 2)) * 2
    w4 = u(0.5, 2, 4)
    # (case, op, input, target, options), drawn in this order from the one generator
    c = [
        ("l1", "l1", n(size=(3, 4)), n(size=(3, 4)), {}),
        ("mse", "mse", n(size=(3, 4)), n(size=(3, 4)), {}),
        ("huber", "huber", n(size=(3, 4)), n(size=(3, 4)), {}),
        ("huber_d0.3", "huber", n(size=(3, 4)), n(size=(3, 4)), dict(delta=0.3)),
        ("sl1", "sl1", n(size=(3, 4)), n(size=(3, 4)), {}),
        ("sl1_b2", "sl1", n(size=(3, 4)), n(size=(3, 4)), dict(beta=2.0)),
        ("sl1_b0", "sl1", n(size=(3, 4)), n(size=(3, 4)), dict(beta=0.0)),
        ("bce", "bce", probs(3, 4), u(size=(3, 4)), {}),
        ("bce_w", "bce", probs(3, 4), u(size=(3, 4)), dict(weight=w4)),
        ("bcel", "bcel", n(size=(3, 4)) * 3, u(size=(3, 4)), {}),
        (
            "bcel_w_pw",
            "bcel",
            n(size=(3, 4)) * 3,
            u(size=(3, 4)),
            dict(weight=u(0.5, 2, (3, 4)), pos_weight=w4),
        ),
        ("bcel_pw", "bcel", n(size=(2, 3, 4)), u(size=(2, 3, 4)), dict(pos_weight=w4)),
        ("nll", "nll", x2, idx(4, 5), {}),
        ("nll_w_ii", "nll", x2, rng.integers(0, 4, 5), dict(weight=w4, ignore_index=1)),
        ("nll_kdim_w", "nll", x4, idx(4, 2, 3, 2), dict(weight=w4)),
        ("nll_unbatched", "nll", x2[0], np.int64(3), dict(weight=w4)),
        ("ce", "ce", x2, idx(4, 5), {}),
        ("ce_w", "ce", x2, idx(4, 5), dict(weight=w4)),
        ("ce_ls", "ce", x2, idx(4, 5), dict(label_smoothing=0.2)),
        ("ce_w_ls_ii", "ce", x2, rng.integers(0, 4, 5), dict(weight=w4, label_smoothing=0.3, ignore_index=2)),
        ("ce_kdim_w_ls", "ce", x4, idx(4, 2, 3, 2), dict(weight=w4, label_smoothing=0.1)),
        ("ce_unbatched_ls", "ce", x2[1], np.int64(0), dict(weight=w4, label_smoothing=0.4)),
        ("ce_prob", "ce", x2, dist(5, 4), {}),
        ("ce_prob_w_ls", "ce", x2, dist(5, 4), dict(weight=w4, label_smoothing=0.2)),
        ("ce_prob_kdim_w", "ce", x4, dist(2, 4, 3, 2), dict(weight=w4)),
        ("ce_prob_unbatched", "ce", x2[2], dist(1, 4)[0], dict(label_smoothing=0.1)),
    ]
    return {name: (*OPS[op], x, t, kw) for name, op, x, t, kw in c}


CASES = _cases()


def _case_arrays(name, float_dtype):
    f, fb, x, t, kw = CASES[name]
    integer = np.issubdtype(np.asarray(t).dtype, np.integer)
    t = jnp.asarray(t, jnp.int32 if integer else float_dtype)
    kw = {k: jnp.asarray(v, float_dtype) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    return f, fb, jnp.asarray(x, float_dtype), t, kw


@pytest.mark.parametrize("name", list(CASES))
def test_backward_matches_vjp(x64, name):
    # Every reduction of one case is checked inside one jitted program: one compile per case
    # instead of one per eager op keeps this file fast. For BCE this checks only the wiring of
    # its custom_jvp (weights, reductions), which reuses the manual backward's _bce_dx: the
    # backward itself is checked by test_bce_backward_against_closed_form_and_finite_differences.
    f, fb, x, t, kw = _case_arrays(name, jnp.float64)
    rng = np.random.default_rng(7)
    cotangents = [
        f64(rng.normal(size=jax.eval_shape(lambda x, r=r: f(x, t, reduction=r, **kw), x).shape))
        for r in REDUCTIONS
    ]

    @jax.jit
    def manual_and_vjp(x, cotangents):
        pairs = []
        for r, g in zip(REDUCTIONS, cotangents, strict=True):
            _, vjp = jax.vjp(lambda x, r=r: f(x, t, reduction=r, **kw), x)
            pairs.append((fb(g, x, t, reduction=r, **kw), vjp(g)[0]))
        return pairs

    for r, (got, want) in zip(REDUCTIONS, manual_and_vjp(x, cotangents), strict=True):
        assert got.shape == x.shape and got.dtype == x.dtype, r
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"reduction={r!r}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_backward_against_closed_form_and_finite_differences(x64, reduction):
    # BCE's jax.grad runs through a custom_jvp that calls the manual backward's own helper
    # (_bce_dx), so manual vs jax.grad cannot fail for BCE. Here the manual backward meets two
    # references that share none of its code: the textbook derivative, written unsimplified,
    # −w·(y/x − (1 − y)/(1 − x)) times the reduction's scale (1/numel for 'mean', BCE-3), and
    # element-wise central differences of the forward (the loss is element-wise, so shifting
    # every x_i by ε at once gives each ∂ℓ_i/∂x_i). x stays inside [0.05, 0.95], away from the
    # −100 clamp of BCE-1 and the 1e-12 floor of BCE-2 (test_bce_gradient_golden covers those).
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0.05, 0.95, (3, 4)), rng.uniform(0, 1, (3, 4))
    y[0, :2] = [0.0, 1.0]  # hard labels too
    w = rng.uniform(0.5, 2.0, (4,))
    scale = {"mean": 1 / x.size, "sum": 1.0, "none": 1.0}[reduction]
    g = 0.7 if reduction != "none" else rng.normal(size=x.shape)
    want = g * scale * -w * (y / x - (1 - y) / (1 - x))
    got = L.binary_cross_entropy_backward(f64(g), f64(x), f64(y), weight=f64(w), reduction=reduction)
    close(got, want, rtol=1e-12, atol=1e-14)
    eps = 1e-6
    terms = functools.partial(L.binary_cross_entropy, target=f64(y), weight=f64(w), reduction="none")
    fd = g * scale * (terms(f64(x + eps)) - terms(f64(x - eps))) / (2 * eps)
    close(got, fd, rtol=1e-7, atol=1e-9)


def test_jitted_float32_losses_give_torchs_golden_values():
    # Training runs the losses compiled and in float32: one jitted program computes the losses'
    # golden values (docs/semantics.md; torch 2.13, float64), for every loss family and its options, and the
    # manual backward's golden BCE gradient (BCE-2). float32 resolution sets the tolerance.
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    x, t, w, p, xk, tk = f32(X), jnp.asarray(T), f32(W), f32(P), f32(XK), jnp.asarray(TK)
    d_pred, d_target = f32(PRED), f32(TARGET)

    @jax.jit
    def losses():
        return {
            "ce_w_ls": L.cross_entropy(x, t, weight=w, label_smoothing=0.1),  # CE-2
            "ce_none": L.cross_entropy(x, t, weight=w, reduction="none"),  # CE-6
            "ce_ignore_class": L.cross_entropy(x, jnp.asarray([2, 0, 0, 1]), ignore_index=0),  # CE-4
            "ce_prob_w_ls": L.cross_entropy(x, p, weight=w, label_smoothing=0.1),  # CE-3
            "ce_kdim_w": L.cross_entropy(xk, tk, weight=w),  # NLL-3
            "nll_w_sum": L.nll_loss(jax.nn.log_softmax(x, axis=1), t, weight=w, reduction="sum"),  # NLL-1
            "bce": L.binary_cross_entropy(f32(BCE_P), f32(BCE_Y)),  # BCE-1
            "bce_grad": L.binary_cross_entropy_backward(  # BCE-2
                jnp.float32(1.0), f32(BCE_P), f32(BCE_Y), reduction="sum"
            ),
            "bcel_w_pw": L.binary_cross_entropy_with_logits(
                f32(Z), f32(ZY), weight=f32(BCEL_WEIGHT), pos_weight=f32(POS_WEIGHT)
            ),  # BCEL-1
            "l1": L.l1_loss(d_pred, d_target),  # L1-1
            "mse_sum": L.mse_loss(d_pred, d_target, reduction="sum"),  # MSE-1
            "huber_d2": L.huber_loss(d_pred, d_target, reduction="none", delta=2.0),  # HUB-1
            "sl1_b05": L.smooth_l1_loss(d_pred, d_target, reduction="none", beta=0.5),  # SL1-1
        }

    want = {
        "ce_w_ls": 1.088062194,
        "ce_none": [1.222817893, 0.5549569196, 0, 4.285863257],
        "ce_ignore_class": 1.275268796,
        "ce_prob_w_ls": 2.445095558,
        "ce_kdim_w": 0.9645838471,
        "nll_w_sum": 6.06363807,
        "bce": 20.51194169,
        "bce_grad": [-1.000000004e12, 1.25, -2, 6.666666667, 0],
        "bcel_w_pw": 33.74138288,
        "l1": 1.4,
        "mse_sum": 5 * 3.3,
        "huber_d2": [0, 0.125, 0.5, 4, 3],
        "sl1_b05": [0, 0.25, 0.75, 2.75, 2.25],
    }
    got = losses()
    for name, value in want.items():
        assert got[name].dtype == jnp.float32, name
        np.testing.assert_allclose(got[name], value, rtol=2e-6, atol=1e-6, err_msg=name)


# ------------------------------------------------------------------ bad input

ELEMENTWISE = [
    L.l1_loss,
    L.mse_loss,
    L.huber_loss,
    L.smooth_l1_loss,
    L.binary_cross_entropy,
    L.binary_cross_entropy_with_logits,
]
ALL = [*ELEMENTWISE, L.nll_loss, L.cross_entropy]
PAIRS = {f.__name__: (f, getattr(L, f.__name__ + "_backward")) for f in ALL}


@pytest.mark.parametrize("name", [f.__name__ for f in ELEMENTWISE])
def test_shape_mismatch_names_both_shapes(name):
    # MSE-1: torch broadcasts with a warning; fnn raises and names both shapes
    x, t = jnp.full((3, 4), 0.5), jnp.full((4,), 0.5)
    for fn in PAIRS[name]:
        args = (jnp.ones((3, 4)),) if fn.__name__.endswith("_backward") else ()
        with pytest.raises(ValueError, match=r"input \(3, 4\) and target \(4,\)"):
            fn(*args, x, t, reduction="none")


@pytest.mark.parametrize("name", list(PAIRS))
def test_bad_reduction(name):
    f, fb = PAIRS[name]
    x, t = (
        (jnp.zeros((2, 3)), jnp.array([0, 1]))
        if name in ("nll_loss", "cross_entropy")
        else (jnp.full((2, 3), 0.5), jnp.full((2, 3), 0.5))
    )
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        f(x, t, reduction="avg")
    with pytest.raises(ValueError, match="reduction must be"):
        fb(jnp.float32(1.0), x, t, reduction="elementwise_mean")


@pytest.mark.parametrize("name", [f.__name__ for f in ELEMENTWISE])
def test_integer_input_or_target_rejected(name):
    f, _ = PAIRS[name]
    with pytest.raises(TypeError, match="input must have a floating dtype, got int32"):
        f(jnp.zeros(3, jnp.int32), jnp.zeros(3))
    with pytest.raises(TypeError, match="target must have a floating dtype, got int32"):
        f(jnp.zeros(3), jnp.zeros(3, jnp.int32))


def test_huber_and_smooth_l1_hyperparameters():
    x = t = jnp.zeros(3)
    for delta in (0.0, -1.0):  # HUB-1: δ ≤ 0 → error
        with pytest.raises(ValueError, match=f"delta must be > 0, got {delta}"):
            L.huber_loss(x, t, delta=delta)
        with pytest.raises(ValueError, match="delta must be > 0"):
            L.huber_loss_backward(jnp.float32(1.0), x, t, delta=delta)
    # SL1-1: β < 0 → error (β = 0 is L1)
    with pytest.raises(ValueError, match=r"beta must be >= 0, got -0\.5"):
        L.smooth_l1_loss(x, t, beta=-0.5)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        L.smooth_l1_loss_backward(jnp.float32(1.0), x, t, beta=-0.5)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bce_input_outside_unit_interval(bad):
    # BCE-1, BCE-4: input outside [0, 1] → error (checked on concrete arrays), torch's wording
    x, t = jnp.array([0.2, bad, 0.7]), jnp.array([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=f"all elements of input should be between 0 and 1.*got {bad}"):
        L.binary_cross_entropy(x, t)
    with pytest.raises(ValueError, match="all elements of input should be between 0 and 1"):
        L.binary_cross_entropy_backward(jnp.float32(1.0), x, t)


def test_bce_nan_and_out_of_range_raise_with_torch_wording():
    # BCE-4: torch 2.13 raises "all elements of input should be between 0 and 1" for a NaN
    # probability, and "... of target ..." for a target outside [0, 1] (NaN included).
    x, t = jnp.array([0.2, 0.5, 0.7]), jnp.array([0.0, 1.0, 1.0])
    nan_x = x.at[1].set(jnp.nan)
    for fn in (L.binary_cross_entropy, functools.partial(L.binary_cross_entropy_backward, jnp.float32(1))):
        with pytest.raises(
            ValueError, match=r"all elements of input should be between 0 and 1.*got nan at index 1"
        ):
            fn(nan_x, t)
        for bad in (1.5, -0.5, np.nan):
            with pytest.raises(
                ValueError, match=f"all elements of target should be between 0 and 1, got {bad} at index 1"
            ):
                fn(x, t.at[1].set(bad))
    # torch checks the input first
    with pytest.raises(ValueError, match="all elements of input"):
        L.binary_cross_entropy(nan_x, t.at[1].set(2.0))


def test_bce_out_of_range_under_jit_is_nan(x64):
    # BCE-4: under jit the values cannot raise; the bad elements' loss and gradient are NaN
    # (manual and jax.grad), the others keep their closed forms −log(1 − x), −log x and
    # (x − y)/(x(1 − x)).
    x = f64([0.2, np.nan, 1.5, -0.1, 0.7, 0.4, 0.4])
    y = f64([0.0, 1.0, 1.0, 0.0, 1.0, 1.5, np.nan])
    ok = np.array([True, False, False, False, True, False, False])

    @jax.jit
    def run(x, y):
        none = L.binary_cross_entropy(x, y, reduction="none")
        manual = L.binary_cross_entropy_backward(jnp.ones(7), x, y, reduction="none")
        auto = jax.grad(lambda x: L.binary_cross_entropy(x, y, reduction="sum"))(x)
        return none, manual, auto, L.binary_cross_entropy(x, y), L.binary_cross_entropy(x, y, reduction="sum")

    none, manual, auto, mean, total = run(x, y)
    close(none[ok], [-np.log(0.8), -np.log(0.7)])
    close(manual[ok], [0.2 / 0.16, -0.3 / 0.21])
    close(auto[ok], [0.2 / 0.16, -0.3 / 0.21])
    for got in (none, manual, auto):
        assert np.isnan(np.asarray(got)[~ok]).all()
    assert np.isnan(mean) and np.isnan(total)


def test_bce_with_logits_accepts_targets_outside_unit_interval(x64):
    # BCE-4: torch 2.13's BCE-with-logits has no range check; these values are its output
    # for logits [0.2, 0.5, 0.7] and targets [0, 1.5, 1] / [0, −0.5, 1] in float64.
    z = f64([0.2, 0.5, 0.7])
    for y, want in (
        ([0.0, 1.5, 1.0], [0.7981388693815918, 0.2240769841801067, 0.4031860488854579]),
        ([0.0, -0.5, 1.0], [0.7981388693815918, 1.2240769841801067, 0.4031860488854579]),
    ):
        close(L.binary_cross_entropy_with_logits(z, f64(y), reduction="none"), want, rtol=1e-12)
        # closed form of the gradient without pos_weight: σ(z) − y
        sig = 1 / (1 + np.exp(-np.asarray(z)))
        close(L.binary_cross_entropy_with_logits_backward(jnp.ones(3), z, f64(y), reduction="none"), sig - y)


def test_class_label_error_names_value_index_and_range():
    # LBL-1 (eager side): the message names the first bad value, its index and the range.
    x = jnp.zeros((4, 3))
    with pytest.raises(
        ValueError,
        match=r"target values must be in \[0, 3\), got 3 at index 1 \(2 of 4 out of range, spanning "
        r"\[-1, 3\]; ignore_index=-100 is also allowed\)",
    ):
        L.cross_entropy(x, jnp.array([0, 3, 2, -1]))
    with pytest.raises(ValueError, match=r"got 7 at index \(1, 0\) \(1 of 4 out of range"):
        L.nll_loss(jnp.zeros((2, 3, 2)), jnp.array([[0, 1], [7, -100]]))
    # the ignore_index is not a bad label, whatever its value
    close(L.nll_loss(jnp.zeros((2, 3)), jnp.array([5, 1]), ignore_index=5), 0.0)


# LBL-1 cases: (loss, input, targets with a bad label at BAD_AT, options). Every label other
# than the bad one is valid or ignored; the nll input has a −inf log-probability at a
# class that is not its row's target, which must not leak NaN into that row's gradient.
_LOGP = np.log(np.exp(X) / np.exp(X).sum(1, keepdims=True))
_LOGP[0, 0] = -np.inf
LBL_CASES = {
    "ce": (L.cross_entropy, np.asarray(X), [2, 0, -100, 1], dict(weight=W, label_smoothing=0.1), (1,)),
    "ce_kdim": (L.cross_entropy, XK, TK, dict(weight=W), (1, 1)),
    "nll": (L.nll_loss, _LOGP, [2, 0, -100, 1], dict(weight=W), (1,)),
    "nll_kdim": (L.nll_loss, np.log(np.exp(XK) / np.exp(XK).sum(1, keepdims=True)), TK, {}, (0, 2)),
}


@pytest.mark.parametrize("name", list(LBL_CASES))
def test_invalid_label_under_jit_is_nan_never_a_wrapped_class(x64, name):
    # LBL-1: under jit, a label outside [0, C) that is not ignore_index gives a NaN loss for
    # its item ('mean'/'sum': NaN) and NaN in its gradient row, by the manual backward and by
    # jax.grad alike; every other entry equals the gradient with that label ignored. −1 would
    # wrap to class C − 1 in a plain gather and C would clamp to C − 1: neither may pass.
    # One compiled program per case runs all three reductions.
    f, x, t, kw, at = LBL_CASES[name]
    fb = getattr(L, f.__name__ + "_backward")
    x, t = f64(x), np.asarray(t)
    kw = {k: f64(v) if k == "weight" else v for k, v in kw.items()}
    rng = np.random.default_rng(3)
    gs = [f64(rng.uniform(0.5, 1.5, () if r != "none" else t.shape)) for r in REDUCTIONS]

    @jax.jit
    def run(x, t):
        out = []
        for r, g in zip(REDUCTIONS, gs, strict=True):
            loss, vjp = jax.vjp(lambda x, r=r: f(x, t, reduction=r, **kw), x)
            out.append((loss, fb(g, x, t, reduction=r, **kw), vjp(g)[0]))
        return out

    ignored = t.copy()
    ignored[at] = -100
    want = run(x, jnp.asarray(ignored, jnp.int32))  # the ignore_index rules, golden-tested above
    row = (at[0], slice(None), *at[1:])  # every class of the bad item
    for bad in (-1, 3, 10**6):
        t_bad = t.copy()
        t_bad[at] = bad
        got = run(x, jnp.asarray(t_bad, jnp.int32))
        for r, (loss, manual, auto), (want_loss, want_grad, _) in zip(REDUCTIONS, got, want, strict=True):
            loss = np.array(loss)
            if r == "none":
                assert np.isnan(loss[at]), (bad, r)
                loss[at] = 0.0  # an ignored item's loss
                close(loss, want_loss)
            else:
                assert np.isnan(loss), (bad, r, loss)
            for grad in (np.array(manual), np.array(auto)):
                # cross-entropy: the whole row (through the softmax); NLL: the entry it reads
                nan = np.isnan(grad[row])
                assert nan.all() if f is L.cross_entropy else nan.any(), (bad, r, grad)
                grad[row] = np.where(nan, 0.0, grad[row])  # as if ignored
                close(grad, want_grad, rtol=1e-10, atol=1e-12)


def test_invalid_label_golden_none(x64):
    # LBL-1 against torch 2.13's golden 'none' values (cross-entropy with weight and
    # label smoothing): the valid items keep them, the bad one is NaN.
    got = jax.jit(lambda x, t: L.cross_entropy(x, t, weight=f64(W), label_smoothing=0.1, reduction="none"))(
        f64(X), jnp.array([2, -1, -100, 1])
    )
    close(got, [1.31539063, np.nan, 0, 4.41919659])


def test_bce_weight_and_pos_weight_shapes():
    x, t = jnp.full((2, 3), 0.5), jnp.full((2, 3), 0.5)
    with pytest.raises(
        ValueError, match=r"weight must broadcast to input of shape \(2, 3\), got weight \(2,\)"
    ):
        L.binary_cross_entropy(x, t, weight=jnp.ones(2))
    with pytest.raises(
        ValueError, match=r"weight must broadcast to input of shape \(2, 3\), got weight \(4, 3\)"
    ):
        L.binary_cross_entropy_with_logits(x, t, weight=jnp.ones((4, 3)))
    # BCEL-1: pos_weight lives on the last (class) dimension
    with pytest.raises(
        ValueError,
        match=r"pos_weight must broadcast along the last \(class\) dimension of input "
        r"of shape \(2, 3\), got pos_weight \(2,\)",
    ):
        L.binary_cross_entropy_with_logits(x, t, pos_weight=jnp.ones(2))
    with pytest.raises(ValueError, match="pos_weight must broadcast"):
        L.binary_cross_entropy_with_logits_backward(jnp.float32(1.0), x, t, pos_weight=jnp.ones(2))
    with pytest.raises(TypeError, match="weight must have a floating dtype"):
        L.binary_cross_entropy(x, t, weight=jnp.ones(3, jnp.int32))


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
def test_class_loss_errors(name):
    f, fb = PAIRS[name]
    x = jnp.zeros((4, 3))
    # NLL-1 / CE-1: class indices need an integer dtype
    with pytest.raises(
        TypeError,
        match=r"target must have an integer dtype|holds class indices and must have an integer dtype",
    ):
        f(x, jnp.array([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(TypeError, match="input must have a floating dtype"):
        f(jnp.zeros((4, 3), jnp.int32), jnp.array([0, 1, 2, 1]))
    # class targets out of range (concrete arrays)
    for bad in (3, -1):
        with pytest.raises(ValueError, match=f"target values must be in \\[0, 3\\), got {bad}"):
            f(x, jnp.array([0, bad, 2, 1]))
        with pytest.raises(ValueError, match="target values must be in"):
            fb(jnp.float32(1.0), x, jnp.array([0, bad, 2, 1]))
    with pytest.raises(
        ValueError,
        match=r"target must have shape \(4,\) for input of shape \(4, 3\), "
        r"got target \(3,\)",
    ):
        f(x, jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"target must have shape \(4, 2\) for input of shape \(4, 3, 2\)"):
        f(jnp.zeros((4, 3, 2)), jnp.zeros((4, 3), jnp.int32))
    with pytest.raises(
        ValueError, match=r"input must be \(C,\), \(N, C\) or \(N, C, d1, ..., dK\), got shape \(\)"
    ):
        f(jnp.float32(0.0), jnp.int32(0))
    with pytest.raises(
        ValueError, match=r"weight must have shape \(3,\) \(one entry per class\), got weight \(4,\)"
    ):
        f(x, jnp.array([0, 1, 2, 1]), weight=jnp.ones(4))
    with pytest.raises(TypeError, match=r"ignore_index must be an int, got 1\.0"):
        f(x, jnp.array([0, 1, 2, 1]), ignore_index=1.0)


def test_cross_entropy_specific_errors():
    x = jnp.zeros((4, 3))
    # CE-3: targets of the input's shape are probabilities and need a float dtype
    with pytest.raises(
        TypeError,
        match=r"target of the input's shape \(4, 3\) holds class probabilities and must "
        r"have a floating dtype, got int32",
    ):
        L.cross_entropy(x, jnp.zeros((4, 3), jnp.int32))
    # CE-3: ignore_index must be negative with probability targets
    with pytest.raises(ValueError, match="ignore_index must be < 0 with class-probability targets, got 0"):
        L.cross_entropy(x, jnp.full((4, 3), 1 / 3), ignore_index=0)
    # CE-2: ε ∈ [0, 1]
    for eps in (-0.1, 1.5):
        with pytest.raises(ValueError, match=f"label_smoothing must be in \\[0.0, 1.0\\], got {eps}"):
            L.cross_entropy(x, jnp.array([0, 1, 2, 1]), label_smoothing=eps)
        with pytest.raises(ValueError, match="label_smoothing must be in"):
            L.cross_entropy_backward(jnp.float32(1.0), x, jnp.array([0, 1, 2, 1]), label_smoothing=eps)


def test_backward_grad_output_shape():
    x, t = jnp.zeros((4, 3)), jnp.array([0, 1, 2, 1])
    with pytest.raises(
        ValueError,
        match=r"grad_output must have shape \(\) \(the loss's shape for "
        r"reduction='mean'\), got \(4,\)",
    ):
        L.cross_entropy_backward(jnp.ones(4), x, t)
    with pytest.raises(
        ValueError, match=r"grad_output must have shape \(4,\) .*reduction='none'\), got \(\)"
    ):
        L.nll_loss_backward(jnp.float32(1.0), x, t, reduction="none")
    with pytest.raises(ValueError, match=r"grad_output must have shape \(4, 3\)"):
        L.mse_loss_backward(jnp.ones(3), x, x, reduction="none")


def test_value_checks_skip_tracers():
    # Class-range and [0, 1] checks need values, so under jit they are skipped, not crashed on.
    assert np.isfinite(jax.jit(L.binary_cross_entropy)(jnp.array([0.3, 0.6]), jnp.array([0.0, 1.0])))
    assert np.isfinite(jax.jit(L.cross_entropy)(jnp.zeros((2, 3)), jnp.array([0, 2])))

"""fnn.nn loss specs: torch golden values (docs/semantics.md) and numpy closed forms, backward
vs jax.grad/jax.vjp in float64, per_sample aggregation vs the F op's 'mean', equality and
hashing, FunctionLoss / as_loss, and every bad construction argument."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

# ------------------------------------------------------------------ golden fixtures (2.1)
# The same inputs as the functional tests; the specs' array options must be float (an
# integer class weight raises, as in F), so the BCE weights are spelled as floats here.
from test_losses import BCE_P, BCE_Y, PRED, TARGET, TK, XK, ZY, D, P, T, W, X, Z, f64, i64

from fnn import functional as F
from fnn import gradcheck, nn

POS_WEIGHT, BCEL_WEIGHT = [1.0, 2.0, 0.5], [1.0, 0.5, 2.0]


def close(got, want, rtol=1e-8, atol=1e-9):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, dtype=np.float64), rtol=rtol, atol=atol)


def np_log_softmax(x, axis=1):
    x = np.asarray(x, np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


# ------------------------------------------------------------------ values


@pytest.mark.parametrize(
    "spec, target, want",
    [
        (nn.CrossEntropyLoss(), T, 1.035164838),  # CE-1
        (nn.CrossEntropyLoss(reduction="sum"), T, 3.105494513),
        (nn.CrossEntropyLoss(reduction="none"), T, [0.4076059644, 0.5549569196, 0, 2.142931628]),
        (nn.CrossEntropyLoss(weight=W), T, 1.010606345),  # CE-1 weighted mean
        (nn.CrossEntropyLoss(weight=W, reduction="sum"), T, 6.06363807),
        (
            nn.CrossEntropyLoss(weight=W, reduction="none"),
            T,
            [1.222817893, 0.5549569196, 0, 4.285863257],
        ),  # CE-6
        (nn.CrossEntropyLoss(weight=W, label_smoothing=0.1), T, 1.088062194),  # CE-2
        (nn.CrossEntropyLoss(weight=W, label_smoothing=0.1, reduction="sum"), T, 6.528373165),
        (
            nn.CrossEntropyLoss(weight=W, label_smoothing=0.1, reduction="none"),
            T,
            [1.31539063, 0.7937859449, 0, 4.41919659],
        ),
        (nn.CrossEntropyLoss(label_smoothing=0.1), T, 1.096275949),
        (nn.CrossEntropyLoss(ignore_index=0), [2, 0, 0, 1], 1.275268796),  # CE-4
        (nn.CrossEntropyLoss(reduction="sum"), [-100] * 4, 0.0),  # NLL-2
        (nn.CrossEntropyLoss(), P, 1.1635267),  # CE-3
        (nn.CrossEntropyLoss(reduction="none"), P, [0.4076059644, 1.00495692, 1.098612289, 2.142931628]),
        (nn.CrossEntropyLoss(weight=W), P, 2.358211354),  # CE-3: sum/4, not /Σw
        (
            nn.CrossEntropyLoss(weight=W, reduction="none"),
            P,
            [1.222817893, 1.726939687, 2.197224577, 4.285863257],
        ),
        (nn.CrossEntropyLoss(label_smoothing=0.1), P, 1.198110034),
        (nn.CrossEntropyLoss(weight=W, label_smoothing=0.1), P, 2.445095558),
    ],
)
def test_cross_entropy_golden(x64, spec, target, want):
    t = f64(target) if np.asarray(target).dtype.kind == "f" else i64(target)
    close(spec(f64(X), t), want)


def test_cross_entropy_all_ignored_mean_is_nan_NLL2(x64):
    assert np.isnan(float(nn.CrossEntropyLoss()(f64(X), i64([-100] * 4))))


@pytest.mark.parametrize(
    "spec, want",
    [
        (nn.CrossEntropyLoss(weight=W), 0.9645838471),  # NLL-3: K-dim weighted mean
        (
            nn.CrossEntropyLoss(weight=W, reduction="none"),
            [
                [1.551250514, 2.302501027, 2.253751541, 0],
                [2.253751541, 2.253751541, 2.302501027, 1.551250514],
            ],
        ),
        (nn.CrossEntropyLoss(label_smoothing=0.2), 1.105536228),
    ],
)
def test_cross_entropy_kdim_golden(x64, spec, want):
    close(spec(f64(XK), i64(TK)), want)


def test_nll_golden_and_closed_form(x64):
    logp = np_log_softmax(X)
    close(nn.NLLLoss(weight=W)(f64(logp), i64(T)), 1.010606345)  # NLL-1
    # closed form: −Σ w_y·logp[n, y] over kept rows, / Σ w_y ('mean'), plain sum ('sum')
    kept = [n for n, t in enumerate(T) if t != -100]
    terms = [-W[T[n]] * logp[n, T[n]] for n in kept]
    close(nn.NLLLoss(weight=W, reduction="sum")(f64(logp), i64(T)), sum(terms))
    close(
        nn.NLLLoss(reduction="none")(f64(logp), i64(T)),
        [0 if t == -100 else -logp[n, t] for n, t in enumerate(T)],
    )
    close(
        nn.NLLLoss(ignore_index=2)(f64(logp), i64([2, 0, 1, 1])), -(logp[1, 0] + logp[2, 1] + logp[3, 1]) / 3
    )


def test_pointwise_golden(x64):
    pred, target = f64(PRED), f64(TARGET)
    close(nn.L1Loss()(pred, target), 1.4)  # L1-1
    close(nn.MSELoss()(pred, target), 3.3)  # MSE-1
    close(nn.L1Loss(reduction="sum")(pred, target), np.abs(D).sum())
    close(nn.MSELoss(reduction="none")(pred, target), D**2)
    close(nn.HuberLoss(reduction="none")(pred, target), [0, 0.125, 0.5, 2.5, 2])  # HUB-1
    close(nn.SmoothL1Loss(reduction="none")(pred, target), [0, 0.125, 0.5, 2.5, 2])  # SL1-1
    close(nn.HuberLoss(reduction="none", delta=2.0)(pred, target), [0, 0.125, 0.5, 4, 3])
    close(nn.SmoothL1Loss(reduction="none", beta=2.0)(pred, target), [0, 0.0625, 0.25, 2, 1.5])
    close(nn.HuberLoss(reduction="none", delta=0.5)(pred, target), [0, 0.125, 0.375, 1.375, 1.125])
    close(nn.SmoothL1Loss(reduction="none", beta=0.5)(pred, target), [0, 0.25, 0.75, 2.75, 2.25])
    close(nn.SmoothL1Loss(beta=0.0)(pred, target), 1.4)  # SL1-1: β = 0 is exactly L1
    close(nn.HuberLoss(delta=0.5)(pred, target), np.mean([0, 0.125, 0.375, 1.375, 1.125]))


def test_bce_golden_and_weight_closed_form(x64):
    p, y = f64(BCE_P), f64(BCE_Y)
    close(nn.BCELoss(reduction="none")(p, y), [100, 0.2231435513, 0.6931471806, 1.64341772, 0])  # BCE-1
    close(nn.BCELoss()(p, y), 20.51194169)
    # BCE-3: weight rescales each term; 'mean' divides by numel, not Σw
    w = [0.5, 2.0, 1.0, 3.0, 0.25]
    terms = np.array([100, 0.2231435513, 0.6931471806, 1.64341772, 0])
    close(nn.BCELoss(weight=w)(p, y), np.sum(np.array(w) * terms) / 5)


def test_bce_with_logits_golden(x64):
    z, y = f64(Z), f64(ZY)
    close(
        nn.BCEWithLogitsLoss(reduction="none")(z, y),
        [[0.04858735157, 0.6931471806, 0.126928011], [100, 100, 0.8490769842]],
    )  # BCEL-1
    close(
        nn.BCEWithLogitsLoss(reduction="none", pos_weight=POS_WEIGHT)(z, y),
        [[0.04858735157, 1.386294361, 0.06346400552], [100, 200, 0.7898173612]],
    )
    close(nn.BCEWithLogitsLoss(weight=BCEL_WEIGHT, pos_weight=POS_WEIGHT)(z, y), 33.74138288)
    close(nn.BCEWithLogitsLoss(weight=BCEL_WEIGHT, reduction="sum", pos_weight=POS_WEIGHT)(z, y), 202.4482973)


# ------------------------------------------------------------------ backward vs jax.grad / jax.vjp

_RNG = np.random.default_rng(0)


def _logits(*shape):
    return _RNG.normal(size=shape)


def _labels(shape, c, ignore=()):
    t = _RNG.integers(0, c, size=shape)
    for pos in ignore:
        t[pos] = -100
    return t


def _probs(*shape):
    e = np.exp(_RNG.normal(size=shape))
    return e / e.sum(axis=1, keepdims=True)


# (spec factory taking reduction, output, target): all the options the specs have.
GRAD_CASES = {
    "ce": (lambda r: nn.CrossEntropyLoss(reduction=r), _logits(6, 4), _labels(6, 4)),
    "ce_weight_ignore": (
        lambda r: nn.CrossEntropyLoss(weight=[0.5, 2.0, 1.0, 3.0], reduction=r),
        _logits(6, 4),
        _labels(6, 4, ignore=[1, 4]),
    ),
    "ce_ignore_valid_class": (
        lambda r: nn.CrossEntropyLoss(ignore_index=1, reduction=r),
        _logits(6, 4),
        np.array([1, 0, 1, 2, 3, 1]),
    ),
    "ce_smoothing": (
        lambda r: nn.CrossEntropyLoss(label_smoothing=0.2, reduction=r),
        _logits(6, 4),
        _labels(6, 4, ignore=[2]),
    ),
    "ce_weight_smoothing": (
        lambda r: nn.CrossEntropyLoss(weight=[0.5, 2.0, 1.0, 3.0], reduction=r, label_smoothing=0.3),
        _logits(6, 4),
        _labels(6, 4, ignore=[0]),
    ),
    "ce_probs": (lambda r: nn.CrossEntropyLoss(reduction=r), _logits(5, 3), _probs(5, 3)),
    "ce_probs_weight_smoothing": (
        lambda r: nn.CrossEntropyLoss(weight=[1.0, 0.2, 4.0], reduction=r, label_smoothing=0.1),
        _logits(5, 3),
        _probs(5, 3),
    ),
    "ce_kdim": (
        lambda r: nn.CrossEntropyLoss(weight=[1.0, 2.0, 3.0], reduction=r, label_smoothing=0.1),
        _logits(3, 3, 4, 2),
        _labels((3, 4, 2), 3, ignore=[(0, 1, 1), (2, 3, 0)]),
    ),
    "ce_kdim_probs": (lambda r: nn.CrossEntropyLoss(reduction=r), _logits(3, 3, 4), _probs(3, 3, 4)),
    "nll_weight_ignore": (
        lambda r: nn.NLLLoss(weight=[0.5, 2.0, 1.0, 3.0], reduction=r),
        np_log_softmax(_logits(6, 4)),
        _labels(6, 4, ignore=[3]),
    ),
    "nll_kdim": (
        lambda r: nn.NLLLoss(ignore_index=0, reduction=r),
        np_log_softmax(_logits(3, 4, 5)),
        _labels((3, 5), 4),
    ),
    "mse": (lambda r: nn.MSELoss(reduction=r), _logits(4, 3), _logits(4, 3)),
    "l1_with_ties": (
        lambda r: nn.L1Loss(reduction=r),
        np.array([[0.0, 1.0], [2.0, -1.0]]),
        np.array([[0.0, 0.5], [2.0, 1.0]]),
    ),  # L1-1: gradient 0 at x = y
    "huber": (lambda r: nn.HuberLoss(reduction=r, delta=0.7), 2 * _logits(4, 3), _logits(4, 3)),
    "smooth_l1": (lambda r: nn.SmoothL1Loss(reduction=r, beta=0.4), 2 * _logits(4, 3), _logits(4, 3)),
    "smooth_l1_beta0": (lambda r: nn.SmoothL1Loss(reduction=r, beta=0.0), 2 * _logits(4, 3), _logits(4, 3)),
    "bce": (lambda r: nn.BCELoss(reduction=r), _RNG.uniform(0.05, 0.95, (4, 3)), _RNG.uniform(0, 1, (4, 3))),
    "bce_weight": (
        lambda r: nn.BCELoss(weight=[0.5, 1.0, 2.0], reduction=r),
        _RNG.uniform(0.05, 0.95, (4, 3)),
        _RNG.uniform(0, 1, (4, 3)),
    ),
    "bce_logits": (
        lambda r: nn.BCEWithLogitsLoss(reduction=r),
        3 * _logits(4, 3),
        _RNG.uniform(0, 1, (4, 3)),
    ),
    "bce_logits_weight_pos_weight": (
        lambda r: nn.BCEWithLogitsLoss(
            weight=[[1.0], [0.5], [2.0], [0.0]], reduction=r, pos_weight=[1.0, 3.0, 0.5]
        ),
        3 * _logits(4, 3),
        _RNG.uniform(0, 1, (4, 3)),
    ),
}


def _as_target(t):
    return f64(t) if np.asarray(t).dtype.kind == "f" else i64(t)


REDUCTIONS = ("mean", "sum", "none")


@functools.cache
def _grad_results(case):
    """Every reduction of one case in one compiled program (eagerly, each op of each check
    compiled on its own, about 20 programs a case): the spec's jax.vjp and its backward with
    the same cotangent, for 'mean' and 'sum' also backward(1) and jax.grad, and for BCE the
    central difference of the forward along a random direction. Called under x64."""
    make, output, target = GRAD_CASES[case]
    specs = {r: make(r) for r in REDUCTIONS}
    o, t = f64(output), _as_target(target)
    # a cotangent that is not 1, so a backward that ignores grad_output is caught
    shape = jax.eval_shape(lambda o: specs["none"](o, t), o).shape
    gs = {
        r: f64(0.7) if r != "none" else f64(np.random.default_rng(1).normal(size=shape)) for r in REDUCTIONS
    }
    u, eps = f64(np.random.default_rng(2).normal(size=o.shape)), 1e-6
    fd = case.startswith("bce") and not case.startswith("bce_logits")

    def run(o, t, gs, u):
        out = {}
        for r, spec in specs.items():
            g = gs[r]
            _, vjp = jax.vjp(lambda o, spec=spec: spec(o, t), o)
            got = out[r] = {"backward": spec.backward(g, o, t), "vjp": vjp(g)[0]}
            if r != "none":
                got["backward_1"] = spec.backward(jnp.ones((), o.dtype), o, t)
                got["grad"] = jax.grad(lambda o, spec=spec: spec(o, t))(o)
            if fd:
                # BCE's jax.grad reuses the manual backward's _bce_dx (custom_jvp): central
                # differences along u are the independent reference, <backward, u> = d/dε L(o + εu).
                objective = lambda o, spec=spec, g=g: jnp.sum(g * spec(o, t))  # noqa: E731
                got["backward_u"] = jnp.vdot(got["backward"], u)
                got["fd"] = (objective(o + eps * u) - objective(o - eps * u)) / (2 * eps)
        return out

    return jax.tree.map(np.asarray, fast_jit(run)(o, t, gs, u))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_backward_matches_jax_grad(x64, case, reduction):
    got = _grad_results(case)[reduction]
    close(got["backward"], got["vjp"], rtol=1e-10, atol=1e-12)
    if reduction != "none":
        close(got["backward_1"], got["grad"], rtol=1e-10, atol=1e-12)
    if case.startswith("bce") and not case.startswith("bce_logits"):
        close(got["backward_u"], got["fd"], rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------------ per_sample


# (spec, F op, the op's options): the spec is built with a reduction other than 'mean' on purpose,
# per_sample must not depend on it.
def _agg_data():
    """The cases' arrays, drawn in this order from one generator."""
    rng = np.random.default_rng(3)
    n = 13
    idx = rng.integers(0, 4, size=n)
    idx[[2, 7]] = -100
    kidx = rng.integers(0, 3, size=(n, 3, 2))
    kidx[0, 1, 1] = kidx[5, 0, 0] = kidx[5, 2, 1] = -100
    probs = np.exp(rng.normal(size=(n, 4)))
    probs /= probs.sum(1, keepdims=True)
    kprobs = np.exp(rng.normal(size=(n, 3, 2)))
    kprobs /= kprobs.sum(1, keepdims=True)
    logits, klogits = rng.normal(size=(n, 4)), rng.normal(size=(n, 3, 3, 2))
    reg_x, reg_y = 2 * rng.normal(size=(n, 3, 2)), rng.normal(size=(n, 3, 2))
    p, y = rng.uniform(0.05, 0.95, (n, 3)), rng.uniform(0, 1, (n, 3))
    bce_logits = 3 * rng.normal(size=(n, 3))
    return dict(
        idx=idx,
        kidx=kidx,
        probs=probs,
        kprobs=kprobs,
        logits=logits,
        klogits=klogits,
        reg_x=reg_x,
        reg_y=reg_y,
        p=p,
        y=y,
        bce_logits=bce_logits,
    )


W4, W3 = [0.5, 2.0, 1.0, 3.0], [1.0, 0.25, 4.0]


def _agg_class_cases(d):
    logits, idx, klogits, kidx = d["logits"], d["idx"], d["klogits"], d["kidx"]
    ce = F.cross_entropy
    return {
        "ce": (nn.CrossEntropyLoss(reduction="sum"), ce, {}, logits, idx),
        "ce_weight": (nn.CrossEntropyLoss(weight=W4, reduction="none"), ce, {"weight": W4}, logits, idx),
        "ce_weight_smoothing": (
            nn.CrossEntropyLoss(weight=W4, label_smoothing=0.2),
            ce,
            {"weight": W4, "label_smoothing": 0.2},
            logits,
            idx,
        ),
        "ce_ignore_valid_class": (
            nn.CrossEntropyLoss(ignore_index=1, reduction="sum"),
            ce,
            {"ignore_index": 1},
            logits,
            np.where(idx < 0, 1, idx),
        ),
        "ce_probs_weight_smoothing": (
            nn.CrossEntropyLoss(weight=W4, label_smoothing=0.1, reduction="sum"),
            ce,
            {"weight": W4, "label_smoothing": 0.1},
            logits,
            d["probs"],
        ),
        "ce_kdim_weight_smoothing": (
            nn.CrossEntropyLoss(weight=W3, label_smoothing=0.1, reduction="none"),
            ce,
            {"weight": W3, "label_smoothing": 0.1},
            klogits,
            kidx,
        ),
        "ce_kdim_probs": (nn.CrossEntropyLoss(weight=W3), ce, {"weight": W3}, klogits[:, :, 0], d["kprobs"]),
        "nll_weight": (
            nn.NLLLoss(weight=W4, reduction="sum"),
            F.nll_loss,
            {"weight": W4},
            np_log_softmax(logits),
            idx,
        ),
        "nll_kdim": (nn.NLLLoss(reduction="none"), F.nll_loss, {}, np_log_softmax(klogits), kidx),
    }


def _agg_pointwise_cases(d):
    reg_x, reg_y, y = d["reg_x"], d["reg_y"], d["y"]
    weight, pos_weight = [2.0, 1.0, 0.5], [1.0, 3.0, 0.2]
    return {
        "mse": (nn.MSELoss(reduction="sum"), F.mse_loss, {}, reg_x, reg_y),
        "l1": (nn.L1Loss(reduction="none"), F.l1_loss, {}, reg_x, reg_y),
        "huber": (nn.HuberLoss(delta=0.5, reduction="sum"), F.huber_loss, {"delta": 0.5}, reg_x, reg_y),
        "smooth_l1": (nn.SmoothL1Loss(beta=2.0), F.smooth_l1_loss, {"beta": 2.0}, reg_x, reg_y),
        "mse_1d": (nn.MSELoss(), F.mse_loss, {}, reg_x[:, 0, 0], reg_y[:, 0, 0]),
        "bce_weight": (
            nn.BCELoss(weight=[0.5, 1.0, 3.0], reduction="sum"),
            F.binary_cross_entropy,
            {"weight": [0.5, 1.0, 3.0]},
            d["p"],
            y,
        ),
        "bce_logits_weight_pos_weight": (
            nn.BCEWithLogitsLoss(weight=weight, reduction="none", pos_weight=pos_weight),
            F.binary_cross_entropy_with_logits,
            {"weight": weight, "pos_weight": pos_weight},
            d["bce_logits"],
            y,
        ),
    }


def _agg_cases():
    data = _agg_data()
    return {**_agg_class_cases(data), **_agg_pointwise_cases(data)}


AGG_CASES = _agg_cases()


BATCHES, SUBSET = [(0, 1), (1, 6), (6, 8), (8, 13)], np.array([0, 3, 4, 8, 9, 12])


@pytest.mark.parametrize("case", list(AGG_CASES))
def test_per_sample_aggregates_to_the_op_mean(x64, case):
    spec, op, kwargs, output, target = AGG_CASES[case]
    kwargs = {k: f64(v) if k in ("weight", "pos_weight") else v for k, v in kwargs.items()}
    assert len(output) > SUBSET.max()

    # Compiled, as evaluate runs it, and every batch of the case in one program (eagerly,
    # each op at each batch shape would compile on its own); test_per_sample_weights_are_
    # torch_denominators and _under_jit cover the eager calls.
    @fast_jit
    def run(output, target):
        batches = [spec.per_sample(output[lo:hi], target[lo:hi]) for lo, hi in BATCHES]
        mean = lambda o, t: op(o, t, reduction="mean", **kwargs)  # noqa: E731
        return (
            batches,
            spec.per_sample(output, target),
            mean(output, target),
            mean(output[SUBSET], target[SUBSET]),
        )

    batches, (loss_sum, w), op_mean, subset_mean = run(f64(output), _as_target(target))
    # uneven batches, as evaluation sees them: Σ loss_sum / Σ weight over all of them
    total, weight = 0.0, 0.0
    for (lo, hi), (batch_sum, batch_w) in zip(BATCHES, batches, strict=True):
        assert batch_sum.shape == batch_w.shape == (hi - lo,)
        total, weight = total + float(np.sum(batch_sum)), weight + float(np.sum(batch_w))
    close(total / weight, op_mean, rtol=1e-10)
    # any subset of one batch
    assert loss_sum.dtype == w.dtype == jnp.float64
    loss_sum, w = np.asarray(loss_sum), np.asarray(w)
    close(np.sum(loss_sum[SUBSET]) / np.sum(w[SUBSET]), subset_mean, rtol=1e-10)


def test_per_sample_weights_are_torch_denominators(x64):
    # NLL-1: w_{y_n}, 0 at ignored items; CE-3: positions per sample; BCE-3: elements per sample
    _, w = nn.CrossEntropyLoss(weight=W).per_sample(f64(X), i64(T))
    close(w, [3.0, 1.0, 0.0, 2.0])
    _, w = nn.CrossEntropyLoss(weight=W).per_sample(f64(XK), f64(np.full((2, 3, 4), 1 / 3)))
    close(w, [4.0, 4.0])
    _, w = nn.BCELoss(weight=[0.0, 5.0]).per_sample(f64([[0.5, 0.5]] * 3), f64([[1.0, 0.0]] * 3))
    close(w, [2.0, 2.0, 2.0])


def test_per_sample_under_jit(x64):
    spec = nn.CrossEntropyLoss(weight=W, label_smoothing=0.1)
    got = jax.jit(spec.per_sample)(f64(X), i64(T))
    want = spec.per_sample(f64(X), i64(T))
    for a, b in zip(got, want, strict=True):
        close(a, b, rtol=1e-12)
    close(jnp.sum(got[0]) / jnp.sum(got[1]), 1.088062194)  # CE-2 golden 'mean'


def test_specs_turn_an_invalid_label_under_jit_into_nan(x64):
    # LBL-1 through the specs that train and evaluate use: the loss, the manual backward's
    # row and per_sample's loss_sum are NaN for the bad item; its weight is 0 and the valid
    # items keep torch's golden 'none' values (CE-6) and denominators (NLL-1).
    spec = nn.CrossEntropyLoss(weight=W)
    none = nn.CrossEntropyLoss(weight=W, reduction="none")
    t_bad = i64([2, -1, -100, 1])

    @jax.jit
    def run(x, t):
        return spec(x, t), none(x, t), spec.backward(f64(1.0), x, t), spec.per_sample(x, t)

    loss, per_item, grad, (loss_sum, weight) = run(f64(X), t_bad)
    assert np.isnan(loss)
    close(per_item, [1.222817893, np.nan, 0, 4.285863257])
    grad = np.asarray(grad)
    assert np.isnan(grad[1]).all() and np.isfinite(np.delete(grad, 1, axis=0)).all()
    close(loss_sum, [1.222817893, np.nan, 0, 4.285863257])
    close(weight, [3.0, 0.0, 0.0, 2.0])
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\), got -1 at index 1"):
        spec(f64(X), t_bad)  # eagerly it raises


def test_bce_spec_checks_input_and_target_range():
    # BCE-4: torch's wording eagerly; under jit the bad element's loss is NaN.
    spec = nn.BCELoss(reduction="none")
    with pytest.raises(ValueError, match=r"all elements of input should be between 0 and 1 .*got nan"):
        spec(jnp.array([0.5, jnp.nan]), jnp.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"all elements of target should be between 0 and 1, got 2\.0"):
        spec(jnp.array([0.5, 0.5]), jnp.array([1.0, 2.0]))
    got = jax.jit(spec)(jnp.array([0.5, 1.5]), jnp.array([1.0, 0.0]))
    close(got, [np.log(2), np.nan], rtol=1e-6)


def test_per_sample_needs_a_batch():
    with pytest.raises(ValueError, match=r"per_sample needs a batch: output \(N, C\)"):
        nn.CrossEntropyLoss().per_sample(jnp.ones(3), jnp.array(1))
    with pytest.raises(ValueError, match="per_sample needs a batch dimension"):
        nn.MSELoss().per_sample(jnp.ones(()), jnp.ones(()))


# ------------------------------------------------------------------ immutability, equality, hashing


def test_specs_equal_and_hash_equal_by_value():
    a = nn.CrossEntropyLoss(weight=[1.0, 2.0])
    for other in (
        nn.CrossEntropyLoss(weight=np.array([1.0, 2.0])),
        nn.CrossEntropyLoss(weight=jnp.array([1.0, 2.0])),
        nn.CrossEntropyLoss(weight=(1.0, 2.0), ignore_index=-100, reduction="mean"),
    ):
        assert a == other and hash(a) == hash(other)
    assert a.weight == (1.0, 2.0) and all(type(v) is float for v in a.weight)
    table = {a: "weighted", nn.CrossEntropyLoss(): "plain", nn.MSELoss(): "mse"}
    assert table[nn.CrossEntropyLoss(weight=np.array([1.0, 2.0]))] == "weighted"
    assert table[nn.CrossEntropyLoss()] == "plain"
    assert a != nn.CrossEntropyLoss(weight=[1.0, 3.0])
    assert nn.CrossEntropyLoss() != nn.CrossEntropyLoss(label_smoothing=0.1)
    assert nn.MSELoss() != nn.L1Loss() and nn.MSELoss() == nn.MSELoss()
    assert nn.HuberLoss(delta=2) == nn.HuberLoss(delta=2.0)
    b = nn.BCEWithLogitsLoss(weight=np.ones((2, 1)), pos_weight=[1.0, 3.0])
    assert b.weight == ((1.0,), (1.0,)) and b.pos_weight == (1.0, 3.0)
    assert hash(b) == hash(nn.BCEWithLogitsLoss(weight=[[1.0], [1.0]], pos_weight=np.array([1.0, 3.0])))
    assert nn.BCELoss(weight=2.0).weight == 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.reduction = "sum"
    assert dataclasses.replace(a, reduction="sum") == nn.CrossEntropyLoss(weight=[1.0, 2.0], reduction="sum")


def test_torch_argument_order_and_defaults():
    # torch's positional order, deprecated size_average/reduce left out
    assert nn.CrossEntropyLoss([1.0, 2.0], 3, "sum", 0.1) == nn.CrossEntropyLoss(
        weight=[1.0, 2.0], ignore_index=3, reduction="sum", label_smoothing=0.1
    )
    assert nn.NLLLoss(None, 0, "none") == nn.NLLLoss(ignore_index=0, reduction="none")
    assert nn.HuberLoss("sum", 2.0).delta == 2.0 and nn.SmoothL1Loss("sum", 0.5).beta == 0.5
    assert nn.BCEWithLogitsLoss(None, "sum", [2.0]).pos_weight == (2.0,)
    assert [f.name for f in dataclasses.fields(nn.BCELoss)] == ["weight", "reduction"]
    for spec in (
        nn.CrossEntropyLoss(),
        nn.NLLLoss(),
        nn.MSELoss(),
        nn.L1Loss(),
        nn.HuberLoss(),
        nn.SmoothL1Loss(),
        nn.BCELoss(),
        nn.BCEWithLogitsLoss(),
    ):
        assert spec.reduction == "mean"
    assert nn.CrossEntropyLoss().ignore_index == -100 and nn.CrossEntropyLoss().label_smoothing == 0.0
    assert nn.HuberLoss().delta == 1.0 and nn.SmoothL1Loss().beta == 1.0


def test_spec_is_a_static_jit_argument():
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def value(spec, o, t):
        traces.append(spec)
        return spec(o, t)

    o, t = jnp.asarray(X, jnp.float32), jnp.asarray(T)
    np.testing.assert_allclose(value(nn.CrossEntropyLoss(weight=W), o, t), 1.010606345, rtol=1e-6)
    value(nn.CrossEntropyLoss(weight=np.array(W)), o, t)  # equal spec: no retrace
    assert len(traces) == 1


def test_gradcheck_accepts_a_spec():
    # finite differences and jax.grad of the whole model + loss vs spec.backward through apply_vjp
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh())
    params, state = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 5))
    y = jnp.array([0, 1, 2, 3, -100, 1])
    loss = nn.CrossEntropyLoss(weight=[1.0, 2.0, 0.5, 1.5], label_smoothing=0.1)
    report = gradcheck.check_model(model, loss, params, state, x, y)
    assert report.passed, str(report)


# ------------------------------------------------------------------ FunctionLoss and as_loss


def test_as_loss_wraps_functions_and_keeps_specs():
    spec = nn.MSELoss()
    assert nn.as_loss(spec) is spec
    wrapped = nn.as_loss(F.cross_entropy)
    assert isinstance(wrapped, nn.FunctionLoss) and wrapped.fn is F.cross_entropy
    assert wrapped == nn.as_loss(F.cross_entropy) and hash(wrapped) == hash(nn.FunctionLoss(F.cross_entropy))
    assert wrapped.reduction == "mean"
    with pytest.raises(TypeError, match=r"as_loss needs an fnn\.nn\.Loss or a function .* got int"):
        nn.as_loss(3)
    with pytest.raises(TypeError, match=r"got the class MSELoss: write MSELoss\(\)"):
        nn.as_loss(nn.MSELoss)


@pytest.mark.parametrize(
    "fn",
    [
        F.cross_entropy,
        functools.partial(F.cross_entropy, label_smoothing=0.1),
        functools.partial(F.cross_entropy, weight=jnp.array(W), reduction="sum"),
    ],
)
def test_function_loss_of_an_F_op_gets_its_manual_backward(x64, fn):
    loss = nn.as_loss(fn)
    o, t = f64(X), i64(T)
    close(loss.backward(f64(1.0), o, t), jax.grad(lambda o: loss(o, t))(o), rtol=1e-10, atol=1e-12)


def test_function_loss_explicit_and_attribute_backward(x64):
    def half_sq(output, target):
        return 0.5 * jnp.sum((output - target) ** 2)

    def half_sq_backward(grad_output, output, target):
        return grad_output * (output - target)

    o, t = f64(PRED), f64(TARGET)
    loss = nn.FunctionLoss(half_sq, backward=half_sq_backward)
    close(loss.backward(f64(2.0), o, t), 2.0 * jax.grad(half_sq)(o, t))
    assert loss.reduction is None  # nothing in half_sq's signature says how it reduces
    half_sq.backward = half_sq_backward  # fnn.functional.backward_of's opt-in
    close(nn.FunctionLoss(half_sq).backward(f64(1.0), o, t), jax.grad(half_sq)(o, t))


def test_function_loss_without_backward_says_what_is_missing():
    loss = nn.FunctionLoss(lambda output, target: jnp.sum(output))
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(loss(x, x), 6.0)  # the forward alone is fine
    with pytest.raises(
        ValueError,
        match=r"grad='manual' needs the loss's hand-derived backward: "
        r"FunctionLoss\(fn, backward=fn_backward\) with "
        r"fn_backward\(grad_output, output, target\) -> grad wrt output",
    ):
        loss.backward(1.0, x, x)


def test_function_loss_per_sample(x64):
    rng = np.random.default_rng(5)
    o, t = rng.normal(size=(9, 3, 2)), rng.normal(size=(9, 3, 2))
    loss = nn.as_loss(F.mse_loss)
    total, count = 0.0, 0.0
    for lo, hi in [(0, 2), (2, 7), (7, 9)]:
        loss_sum, w = loss.per_sample(f64(o[lo:hi]), f64(t[lo:hi]))
        close(w, np.ones(hi - lo))
        close(loss_sum, ((o[lo:hi] - t[lo:hi]) ** 2).mean(axis=(1, 2)))  # closed form per sample
        total, count = total + float(jnp.sum(loss_sum)), count + float(jnp.sum(w))
    close(total / count, F.mse_loss(f64(o), f64(t)), rtol=1e-12)

    # a user function that takes `reduction` works too
    def sq(output, target, reduction="mean"):
        d = (output - target) ** 2
        return d if reduction == "none" else jnp.mean(d)

    close(nn.FunctionLoss(sq).per_sample(f64(o), f64(t))[0], ((o - t) ** 2).mean(axis=(1, 2)))
    assert nn.FunctionLoss(sq).reduction == "mean"
    assert nn.as_loss(functools.partial(F.mse_loss, reduction="sum")).reduction == "sum"


def test_function_loss_per_sample_needs_reduction():
    loss = nn.FunctionLoss(lambda output, target: jnp.mean(output - target))
    with pytest.raises(
        TypeError,
        match=r"evaluation needs per-sample loss values, but .* takes no "
        r"`reduction` argument: give it one "
        r"\(fn\(output, target, reduction='none'\)",
    ):
        loss.per_sample(jnp.ones((2, 3)), jnp.ones((2, 3)))


def test_function_loss_is_hashable_by_identity():
    f = functools.partial(F.cross_entropy, label_smoothing=0.1)
    g = functools.partial(F.cross_entropy, label_smoothing=0.1)
    assert nn.FunctionLoss(f) == nn.FunctionLoss(f) and hash(nn.FunctionLoss(f)) == hash(nn.FunctionLoss(f))
    assert nn.FunctionLoss(f) != nn.FunctionLoss(g)  # identity, not value
    assert nn.FunctionLoss(f) != nn.FunctionLoss(f, backward=F.cross_entropy_backward)
    assert {nn.FunctionLoss(f): 1}[nn.FunctionLoss(f)] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        nn.FunctionLoss(f).fn = g


def test_function_loss_bad_arguments():
    with pytest.raises(TypeError, match=r"FunctionLoss needs a function fn.* got str"):
        nn.FunctionLoss("mse")
    with pytest.raises(TypeError, match=r"FunctionLoss backward must be a function .* got int"):
        nn.FunctionLoss(F.mse_loss, backward=1)


# ------------------------------------------------------------------ bad construction arguments


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: nn.CrossEntropyLoss(reduction="avg"),
            ValueError,
            "reduction must be 'mean', 'sum' or 'none', got 'avg'",
        ),
        (lambda: nn.NLLLoss(reduction="avg"), ValueError, "reduction must be"),
        (lambda: nn.MSELoss(reduction="avg"), ValueError, "reduction must be"),
        (lambda: nn.L1Loss(reduction="elementwise_mean"), ValueError, "reduction must be"),
        (lambda: nn.HuberLoss(reduction="avg"), ValueError, "reduction must be"),
        (lambda: nn.SmoothL1Loss(reduction="avg"), ValueError, "reduction must be"),
        (lambda: nn.BCELoss(reduction="avg"), ValueError, "reduction must be"),
        (lambda: nn.BCEWithLogitsLoss(reduction="avg"), ValueError, "reduction must be"),
        (
            lambda: nn.CrossEntropyLoss(label_smoothing=1.5),
            ValueError,
            r"label_smoothing must be in \[0.0, 1.0\], got 1.5",
        ),
        (lambda: nn.CrossEntropyLoss(label_smoothing=-0.1), ValueError, "label_smoothing must be in"),
        (lambda: nn.HuberLoss(delta=0.0), ValueError, "delta must be > 0, got 0.0"),
        (lambda: nn.HuberLoss(delta=-1.0), ValueError, "delta must be > 0"),
        (lambda: nn.SmoothL1Loss(beta=-0.5), ValueError, "beta must be >= 0, got -0.5"),
        (lambda: nn.CrossEntropyLoss(ignore_index=1.5), TypeError, "ignore_index must be an int, got 1.5"),
        (lambda: nn.NLLLoss(ignore_index=True), TypeError, "ignore_index must be an int"),
        (lambda: nn.CrossEntropyLoss(weight=[1, 2, 3]), TypeError, "weight must have a floating dtype"),
        (lambda: nn.CrossEntropyLoss(weight=[[1.0, 2.0]]), ValueError, r"weight must have ndim in \(1,\)"),
        (lambda: nn.NLLLoss(weight=1.0), ValueError, r"weight must have ndim in \(1,\)"),
        (lambda: nn.BCELoss(weight=np.array([True, False])), TypeError, "weight must have a floating dtype"),
        (lambda: nn.BCEWithLogitsLoss(pos_weight=[1, 2]), TypeError, "pos_weight must have a floating dtype"),
    ],
)
def test_bad_construction_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_data_dependent_checks_run_when_called():
    # C is unknown at construction: the op checks the weight's length when called
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        nn.CrossEntropyLoss(weight=[1.0, 2.0])(jnp.ones((2, 3)), jnp.array([0, 1]))
    with pytest.raises(ValueError, match="pos_weight must broadcast along the last"):
        nn.BCEWithLogitsLoss(pos_weight=[1.0, 2.0])(jnp.ones((2, 3)), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="ignore_index must be < 0 with class-probability targets"):
        nn.CrossEntropyLoss(ignore_index=0)(jnp.ones((2, 3)), jnp.full((2, 3), 1 / 3))

"""Live parity with PyTorch: every fnn op, layer, initializer, optimizer and schedule against
torch 2.13 on random float64 inputs (edge values included: exact zeros at kinks, +-1000
logits, ignored targets, ties).

For each differentiable op three gradients are compared with torch autograd: fnn's manual
``*_backward``, and jax.vjp through fnn's forward. Skipped where torch is not installed (CI).

Documented deliberate deviations (SEMANTICS.md) are not tested as mismatches: WD-1 (default
weight-decay mask; here the mask is all-True), NLL-4 (any integer target dtype), MSE-1
(shape mismatch raises), the int32 num_batches_tracked, logsumexp's default dim.
"""

import math
import warnings
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from fnn import functional as F  # noqa: E402
from fnn import init as I  # noqa: E402
from fnn import models, nn, optim  # noqa: E402

TF = torch.nn.functional
torch.set_num_threads(1)


# ----------------------------------------------------------------------------- helpers


def rng_for(*salt):
    """A generator seeded from the test's parameters (stable across runs, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr(salt).encode()))


def tt(a, grad=False):
    """float64 torch tensor (integers stay int64)."""
    a = np.asarray(a)
    dtype = torch.int64 if np.issubdtype(a.dtype, np.integer) else torch.float64
    return torch.tensor(a, dtype=dtype, requires_grad=grad)


def npy(a):
    return a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def close(got, want, rtol=1e-9, atol=1e-12, msg=""):
    np.testing.assert_allclose(npy(got), npy(want), rtol=rtol, atol=atol, err_msg=msg)


def edge_normal(rng, shape, scale=3.0, specials=(0.0, 1000.0, -1000.0, 1.0, -1.0, -0.0)):
    """Random normal values with a few exact specials (kinks, saturated logits) planted."""
    x = rng.normal(size=shape) * scale
    flat = x.reshape(-1)
    k = min(len(specials), flat.size)
    flat[rng.choice(flat.size, k, replace=False)] = specials[:k]
    return flat.reshape(shape)


def torch_grads(out, inputs, cot):
    """torch autograd of <out, cot> wrt the tensors in inputs (None entries kept None)."""
    live = [t for t in inputs if t is not None]
    grads = iter(torch.autograd.grad(out, live, tt(cot), allow_unused=True))
    return [None if t is None else next(grads) for t in inputs]


def jax_vjp(fn, primals, cot):
    _, pull = jax.vjp(fn, *primals)
    return pull(jnp.asarray(cot))


# ----------------------------------------------------------------------------- activations


UNARY = [
    ("relu", {}, torch.relu),
    ("leaky_relu", {}, TF.leaky_relu),
    ("leaky_relu", dict(negative_slope=0.2), lambda x: TF.leaky_relu(x, 0.2)),
    ("leaky_relu", dict(negative_slope=-0.5), lambda x: TF.leaky_relu(x, -0.5)),
    ("elu", {}, TF.elu),
    ("elu", dict(alpha=0.5), lambda x: TF.elu(x, 0.5)),
    ("elu", dict(alpha=2.0), lambda x: TF.elu(x, 2.0)),
    ("sigmoid", {}, torch.sigmoid),
    ("tanh", {}, torch.tanh),
    ("softplus", {}, TF.softplus),
    ("softplus", dict(beta=2.0), lambda x: TF.softplus(x, beta=2.0)),
    ("softplus", dict(beta=2.0, threshold=1.0), lambda x: TF.softplus(x, beta=2.0, threshold=1.0)),
    ("softplus", dict(beta=0.5, threshold=0.0), lambda x: TF.softplus(x, beta=0.5, threshold=0.0)),
    ("abs", {}, torch.abs),
]


@pytest.mark.parametrize("name, kw, tfn", UNARY, ids=[f"{n}-{k}" for n, k, _ in UNARY])
def test_unary_activation(x64, name, kw, tfn):
    # ACT-1..5, ACT-7: values, and gradients at 0 / +-1000 (kinks and saturation).
    shape = (3, 4, 5)  # elementwise: one shape, with every special value planted
    rng = rng_for(name, kw)
    x = edge_normal(rng, shape)
    fwd, bwd = getattr(F, name), getattr(F, name + "_backward")
    xt = tt(x, True)
    yt = tfn(xt)
    close(fwd(jnp.asarray(x), **kw), yt)
    g = rng.normal(size=shape)
    (gt,) = torch_grads(yt, [xt], g)
    close(bwd(jnp.asarray(g), jnp.asarray(x), **kw), gt)
    close(jax_vjp(lambda a: fwd(a, **kw), [jnp.asarray(x)], g)[0], gt)


def test_softplus_threshold_boundary(x64):
    # ACT-5: the switch is beta*x > threshold (strict), both sides and exactly at it.
    x = np.array([0.4999999, 0.5, 0.5000001, 10.0, -3.0])
    for beta, thr in [(2.0, 1.0), (1.0, 0.5), (4.0, 2.0)]:
        xt = tt(x, True)
        yt = TF.softplus(xt, beta=beta, threshold=thr)
        (gt,) = torch_grads(yt, [xt], np.ones(5))
        close(F.softplus(jnp.asarray(x), beta, thr), yt, rtol=1e-12)
        close(F.softplus_backward(jnp.ones(5), jnp.asarray(x), beta, thr), gt, rtol=1e-12)
        close(
            jax.grad(lambda a, beta=beta, thr=thr: F.softplus(a, beta, thr).sum())(jnp.asarray(x)),
            gt,
            rtol=1e-12,
        )


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_family_every_dim(x64, op, shape):
    # ACT-6, stable at +-1000 and with ties (several equal maxima in a row).
    rng = rng_for(op, shape)
    x = edge_normal(rng, shape)
    x.reshape(-1)[-2:] = 2.5  # a tie
    fwd, bwd = getattr(F, op), getattr(F, op + "_backward")
    tfn = getattr(torch, op)
    for dim in range(-len(shape), len(shape)):
        xt = tt(x, True)
        yt = tfn(xt, dim=dim)
        close(fwd(jnp.asarray(x), dim), yt)
        g = rng.normal(size=shape)
        (gt,) = torch_grads(yt, [xt], g)
        close(bwd(jnp.asarray(g), jnp.asarray(x), dim), gt)
        close(jax_vjp(lambda a, dim=dim: fwd(a, dim), [jnp.asarray(x)], g)[0], gt)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp(x64, shape, keepdim):
    rng = rng_for("lse", shape, keepdim)
    x = edge_normal(rng, shape)
    for dim in range(-len(shape), len(shape)):
        xt = tt(x, True)
        yt = torch.logsumexp(xt, dim=dim, keepdim=keepdim)
        close(F.logsumexp(jnp.asarray(x), dim, keepdim), yt)
        g = rng.normal(size=tuple(yt.shape))
        (gt,) = torch_grads(yt, [xt], g)
        close(F.logsumexp_backward(jnp.asarray(g), jnp.asarray(x), dim, keepdim), gt)
        close(jax_vjp(lambda a, dim=dim: F.logsumexp(a, dim, keepdim), [jnp.asarray(x)], g)[0], gt)


def test_logsumexp_infinities(x64):
    x = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [-np.inf, 2.0]])
    close(F.logsumexp(jnp.asarray(x), 1), torch.logsumexp(tt(x), 1))


@pytest.mark.parametrize("shape, nw", [((6,), 1), ((4, 3), 1), ((4, 3), 3), ((2, 3, 5), 1), ((2, 3, 5), 3)])
def test_prelu(x64, shape, nw):
    # ACT-3: grad wrt x at 0 is alpha; grad wrt alpha = sum of g*min(0, x) per channel.
    rng = rng_for("prelu", shape, nw)
    x = edge_normal(rng, shape)
    w = rng.uniform(-0.5, 1.0, size=(nw,))
    xt, wt = tt(x, True), tt(w, True)
    yt = TF.prelu(xt, wt)
    close(F.prelu(jnp.asarray(x), jnp.asarray(w)), yt)
    g = rng.normal(size=shape)
    gx, gw = torch_grads(yt, [xt, wt], g)
    mx, mw = F.prelu_backward(jnp.asarray(g), jnp.asarray(x), jnp.asarray(w))
    close(mx, gx)
    close(mw, gw)
    ax, aw = jax_vjp(F.prelu, [jnp.asarray(x), jnp.asarray(w)], g)
    close(ax, gx)
    close(aw, gw)


@pytest.mark.parametrize("shape, pieces", [((4, 6), 2), ((3, 6, 2), 3), ((2, 4), 4)])
def test_maxout_vs_torch_max_dim_ties_to_first(x64, shape, pieces):
    # ACT-8: torch has no Maxout; its x.max(dim) sends a tie's gradient to the first index.
    rng = rng_for("maxout", shape, pieces)
    x = np.round(rng.normal(size=shape), 0)  # rounding makes many ties
    n, c = shape[:2]
    xt = tt(x, True)
    yt = xt.reshape((n, c // pieces, pieces, *shape[2:])).max(dim=2).values
    close(F.maxout(jnp.asarray(x), pieces), yt)
    g = rng.normal(size=tuple(yt.shape))
    (gt,) = torch_grads(yt, [xt], g)
    close(F.maxout_backward(jnp.asarray(g), jnp.asarray(x), pieces), gt)
    close(jax_vjp(lambda a: F.maxout(a, pieces), [jnp.asarray(x)], g)[0], gt)


# ----------------------------------------------------------------------------- linear, flatten


@pytest.mark.parametrize("shape", [(5,), (4, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(x64, shape, bias):
    # LIN-1, LIN-2
    rng = rng_for("linear", shape, bias)
    x, w = rng.normal(size=shape), rng.normal(size=(3, 5))
    b = rng.normal(size=(3,)) if bias else None
    xt, wt, bt = tt(x, True), tt(w, True), (tt(b, True) if bias else None)
    yt = TF.linear(xt, wt, bt)
    jb = None if b is None else jnp.asarray(b)
    close(F.linear(jnp.asarray(x), jnp.asarray(w), jb), yt)
    g = rng.normal(size=tuple(yt.shape))
    want = torch_grads(yt, [xt, wt, bt], g)
    got = F.linear_backward(jnp.asarray(g), jnp.asarray(x), jnp.asarray(w), jb)
    primals = [jnp.asarray(x), jnp.asarray(w)] + ([jb] if bias else [])
    auto = jax_vjp(lambda *a: F.linear(*a), primals, g)
    for i, wt_ in enumerate(want):
        if wt_ is None:
            assert got[i] is None
            continue
        close(got[i], wt_)
        close(auto[i], wt_)


@pytest.mark.parametrize(
    "shape, s, e",
    [((2, 3, 4, 5), 1, -1), ((2, 3, 4, 5), 0, 2), ((2, 3, 4, 5), -3, -2), ((2, 3), 1, 1), ((4,), 0, 0)],
)
def test_flatten(x64, shape, s, e):
    # FLAT-1 (compared with torch.flatten with the same explicit dims)
    x = rng_for("flat", shape).normal(size=shape)
    yt = torch.flatten(tt(x), s, e)
    y = F.flatten(jnp.asarray(x), s, e)
    assert y.shape == tuple(yt.shape)
    close(y, yt, rtol=0, atol=0)
    close(F.flatten_backward(jnp.asarray(npy(yt)), jnp.asarray(x), s, e), x, rtol=0, atol=0)


# ----------------------------------------------------------------------------- dropout


def test_dropout_p0_p1_eval_match_torch(x64):
    # DROP-2: p=0 identity (grad ones), p=1 zeros with zero (not NaN) grad, eval identity.
    rng = rng_for("dropout")
    x = rng.normal(size=(6, 7))
    key = jax.random.key(0)
    for p, training in [(0.0, True), (1.0, True), (0.5, False), (1.0, False)]:
        xt = tt(x, True)
        yt = TF.dropout(xt, p=p, training=training)
        (gt,) = torch_grads(yt, [xt], np.ones_like(x))
        close(F.dropout(jnp.asarray(x), key, p, training), yt, rtol=0, atol=0)
        close(
            F.dropout_backward(jnp.ones_like(jnp.asarray(x)), jnp.asarray(x), key, p, training),
            gt,
            rtol=0,
            atol=0,
        )
        close(
            jax.grad(lambda a, p=p, training=training: F.dropout(a, key, p, training).sum())(jnp.asarray(x)),
            gt,
            rtol=0,
            atol=0,
        )


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_scaling_statistics(x64, p):
    # DROP-1, DROP-3: kept values are x/(1-p), the dropped fraction is ~p in both libraries
    # (masks differ by RNG, so only the law is compared).
    n = 40000
    x = np.full(n, 1.5)
    y = np.asarray(F.dropout(jnp.asarray(x), jax.random.key(1), p))
    torch.manual_seed(1)
    yt = npy(TF.dropout(tt(x), p=p, training=True))
    for out in (y, yt):
        kept = out[out != 0]
        close(kept, np.full(kept.shape, 1.5 / (1 - p)), rtol=1e-12)
        assert abs((out == 0).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert abs(y.mean() - yt.mean()) < 10 * 1.5 * math.sqrt(p / (1 - p) / n)
    g = np.asarray(F.dropout_backward(jnp.ones(n), jnp.asarray(x), jax.random.key(1), p))
    close(g, y / 1.5, rtol=1e-12)  # the backward regenerates the same mask


# ----------------------------------------------------------------------------- batch norm

BN_CASES = [
    # (shape, training, affine, track, momentum)
    ((6, 3), True, True, True, 0.1),
    ((6, 3), True, False, True, 0.7),
    ((4, 3, 5), True, True, True, 0.1),
    ((2, 3), True, True, True, 1.0),
    ((6, 3), False, True, True, 0.1),
    ((4, 3, 5), False, False, True, 0.1),
    ((6, 3), True, True, False, 0.1),
    ((1, 3, 4), True, True, True, 0.1),
    ((1, 3), False, True, True, 0.1),
]


@pytest.mark.parametrize("shape, training, affine, track, momentum", BN_CASES)
def test_batch_norm_functional(x64, shape, training, affine, track, momentum):
    # BN-1 (biased var), BN-2 (unbiased running update), BN-4 (eval), BN-5, BN-6, BN-8.
    rng = rng_for("bn", shape, training, affine, track, momentum)
    x = rng.normal(size=shape) * 2 + 1
    c = shape[1]
    w, b = (rng.normal(size=c), rng.normal(size=c)) if affine else (None, None)
    rm, rv = (rng.normal(size=c), rng.uniform(0.5, 2, size=c)) if track else (None, None)
    xt = tt(x, True)
    wt, bt = (tt(w, True), tt(b, True)) if affine else (None, None)
    rmt, rvt = (tt(rm), tt(rv)) if track else (None, None)
    yt = TF.batch_norm(xt, rmt, rvt, wt, bt, training=training, momentum=momentum, eps=1e-5)
    J = lambda a: None if a is None else jnp.asarray(a)  # noqa: E731
    args = (J(rm), J(rv), J(w), J(b), training, momentum, 1e-5)
    y, new_rm, new_rv = F.batch_norm(jnp.asarray(x), *args)
    close(y, yt)
    if track:
        close(new_rm, rmt, msg="running_mean")  # torch updated its buffers in place
        close(new_rv, rvt, msg="running_var")
    else:
        assert new_rm is None and new_rv is None
    g = rng.normal(size=shape)
    want = torch_grads(yt, [xt, wt, bt], g)
    got = F.batch_norm_backward(jnp.asarray(g), jnp.asarray(x), *args)
    for i, name in enumerate(["input", "weight", "bias"]):
        if want[i] is None:
            assert got[i] is None
        else:
            close(got[i], want[i], rtol=1e-8, atol=1e-10, msg=name)
    if affine:
        auto = jax_vjp(
            lambda a, ww, bb: F.batch_norm(a, J(rm), J(rv), ww, bb, training, momentum)[0],
            [jnp.asarray(x), J(w), J(b)],
            g,
        )
    else:
        auto = jax_vjp(
            lambda a: F.batch_norm(a, J(rm), J(rv), None, None, training, momentum)[0], [jnp.asarray(x)], g
        )
    # without affine, want also holds None for weight and bias, which auto leaves out
    for a, wt_ in zip(auto, want, strict=False):
        close(a, wt_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine, track", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2)])
def test_batchnorm1d_module_several_steps(x64, momentum, affine, track, shape):
    # BN-2/BN-3 (momentum=None: cumulative average via num_batches_tracked), BN-4, BN-5, BN-6.
    rng = rng_for("bnmod", momentum, affine, track, shape)
    tm = torch.nn.BatchNorm1d(3, momentum=momentum, affine=affine, track_running_stats=track).double()
    if affine:
        with torch.no_grad():
            tm.weight.copy_(tt(rng.normal(size=3)))
            tm.bias.copy_(tt(rng.normal(size=3)))
    fm = nn.BatchNorm1d(3, momentum=momentum, affine=affine, track_running_stats=track)
    params, state = load64(fm, tm)
    for step in range(3):
        for train in (True, False):
            tm.train(train)
            x = rng.normal(size=shape) * (step + 1) + step
            g = rng.normal(size=shape)
            xt = tt(x, True)
            yt = tm(xt)
            ptorch = list(tm.parameters())
            grads_t = torch.autograd.grad(yt, [xt, *ptorch], tt(g))
            y, new_state = fm.apply(params, state, jnp.asarray(x), train=train)
            close(y, yt, rtol=1e-8, atol=1e-10, msg=f"step {step} train={train}")
            gp, gx = fm.backward(params, state, jnp.asarray(x), jnp.asarray(g), train=train)
            close(gx, grads_t[0], rtol=1e-8, atol=1e-10)
            ap, ax = jax.grad(
                lambda p, a, state=state, train=train, g=g: jnp.sum(
                    fm.apply(p, state, a, train=train)[0] * g
                ),
                argnums=(0, 1),
            )(params, jnp.asarray(x))
            close(ax, grads_t[0], rtol=1e-8, atol=1e-10)
            for (name, _), gt in zip(tm.named_parameters(), grads_t[1:], strict=True):
                close(gp[name], gt, rtol=1e-8, atol=1e-10, msg=name)
                close(ap[name], gt, rtol=1e-8, atol=1e-10, msg=name)
            state = new_state
            sd = tm.state_dict()
            assert set(sd) == set(params) | set(state)
            for k in state:
                close(state[k], sd[k], msg=f"{k} after step {step} train={train}")


# ----------------------------------------------------------------------------- layer norm


@pytest.mark.parametrize(
    "shape, ns, affine",
    [
        ((4, 5), 5, "both"),
        ((4, 5), 5, "none"),
        ((4, 5), 5, "weight"),
        ((4, 5), 5, "bias"),
        ((2, 3, 4), (3, 4), "both"),
        ((2, 3, 4), 4, "none"),
        ((6,), 6, "both"),
    ],
)
def test_layer_norm(x64, shape, ns, affine):
    rng = rng_for("ln", shape, ns, affine)
    x = rng.normal(size=shape) * 3 + 1
    x.reshape(-1)[:2] = 0.0
    nshape = (ns,) if isinstance(ns, int) else ns
    w = rng.normal(size=nshape) if affine in ("both", "weight") else None
    b = rng.normal(size=nshape) if affine in ("both", "bias") else None
    xt = tt(x, True)
    wt, bt = (None if w is None else tt(w, True)), (None if b is None else tt(b, True))
    yt = TF.layer_norm(xt, list(nshape), wt, bt, 1e-5)
    J = lambda a: None if a is None else jnp.asarray(a)  # noqa: E731
    close(F.layer_norm(jnp.asarray(x), ns, J(w), J(b)), yt)
    g = rng.normal(size=shape)
    want = torch_grads(yt, [xt, wt, bt], g)
    got = F.layer_norm_backward(jnp.asarray(g), jnp.asarray(x), ns, J(w), J(b))
    auto = jax_vjp(lambda a, ww, bb: F.layer_norm(a, ns, ww, bb), [jnp.asarray(x), J(w), J(b)], g)
    for i in range(3):
        if want[i] is None:
            assert got[i] is None
        else:
            close(got[i], want[i], rtol=1e-8, atol=1e-10)
            close(auto[i], want[i], rtol=1e-8, atol=1e-10)


# ----------------------------------------------------------------------------- losses


def check_loss(name, x, target, kw, rng, rtol=1e-9, grad_rtol=1e-9):
    """fnn loss value + manual backward + jax.vjp vs torch autograd, same keyword args."""
    fwd, bwd = getattr(F, name), getattr(F, name + "_backward")
    tkw = {k: (tt(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    jkw = {k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    xt = tt(x, True)
    yt = getattr(TF, name)(xt, tt(target), **tkw)
    xj, tj = jnp.asarray(x), jnp.asarray(target)
    y = fwd(xj, tj, **jkw)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(npy(y), npy(yt), rtol=rtol, atol=1e-12, equal_nan=True, err_msg="value")
    g = rng.normal(size=tuple(yt.shape))
    (gt,) = torch_grads(yt, [xt], g)
    np.testing.assert_allclose(
        npy(bwd(jnp.asarray(g), xj, tj, **jkw)),
        npy(gt),
        rtol=grad_rtol,
        atol=1e-12,
        err_msg="manual backward",
    )
    np.testing.assert_allclose(
        npy(jax_vjp(lambda a: fwd(a, tj, **jkw), [xj], g)[0]),
        npy(gt),
        rtol=grad_rtol,
        atol=1e-12,
        err_msg="jax.vjp",
    )


def with_ties(rng, shape, hits):
    """(input, target) with exact differences planted: d = 0 and d = +-each of `hits`."""
    target = rng.normal(size=shape)
    d = rng.normal(size=shape) * 2
    flat = d.reshape(-1)
    specials = [0.0] + [s * h for h in hits for s in (1, -1)]
    flat[rng.choice(flat.size, min(len(specials), flat.size), replace=False)] = specials[: flat.size]
    return target + d, target


REDS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("shape", [(7,), (2, 3, 2)])
@pytest.mark.parametrize("name", ["l1_loss", "mse_loss"])
def test_l1_mse(x64, name, shape, reduction):
    # L1-1 (grad 0 at x = y), MSE-1
    rng = rng_for(name, shape, reduction)
    x, y = with_ties(rng, shape, [])
    check_loss(name, x, y, dict(reduction=reduction), rng)


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("delta", [1.0, 0.5, 2.0])
def test_huber(x64, delta, reduction):
    # HUB-1, including |d| == delta exactly
    rng = rng_for("huber", delta, reduction)
    x, y = with_ties(rng, (4, 5), [delta])
    y = x - (x - y)  # make x - y exact
    check_loss("huber_loss", x, y, dict(reduction=reduction, delta=delta), rng)


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0, 0.0])
def test_smooth_l1(x64, beta, reduction):
    # SL1-1, beta = 0 is L1 (value and gradient, sign(0) = 0 at d = 0)
    rng = rng_for("sl1", beta, reduction)
    x, y = with_ties(rng, (4, 5), [beta] if beta else [])
    check_loss("smooth_l1_loss", x, y, dict(reduction=reduction, beta=beta), rng)


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("weight", [None, "full", "class"])
def test_binary_cross_entropy(x64, reduction, weight):
    # BCE-1 (log clamp at -100: BCE(0,1) = BCE(1,0) = 100), BCE-2 (grad floor 1e-12: ~-1e12
    # at x=0, y=1), BCE-3 (weight broadcast, 'mean' over numel).
    rng = rng_for("bce", reduction, weight)
    x = rng.uniform(0.01, 0.99, size=(4, 5))
    y = rng.uniform(0, 1, size=(4, 5))
    x[0, :] = [0.0, 0.0, 1.0, 1.0, 0.0]
    y[0, :] = [1.0, 0.0, 0.0, 1.0, 0.3]
    y[1, :3] = [0.0, 1.0, 0.0]
    kw = dict(reduction=reduction)
    if weight == "full":
        kw["weight"] = rng.uniform(0, 2, size=(4, 5))
    elif weight == "class":
        kw["weight"] = rng.uniform(0, 2, size=(5,))
    check_loss("binary_cross_entropy", x, y, kw, rng, grad_rtol=1e-7)


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize(
    "weight, pos_weight",
    [(None, None), ("full", None), (None, "class"), ("class", "class"), ("row", "class")],
)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5)])
def test_bce_with_logits(x64, reduction, weight, pos_weight, shape):
    # BCEL-1: stable at +-1000, pos_weight along the last dim, no -100 clamp.
    rng = rng_for("bcel", reduction, weight, pos_weight, shape)
    x = edge_normal(rng, shape)
    y = rng.uniform(0, 1, size=shape)
    y.reshape(-1)[:4] = [0.0, 1.0, 0.0, 1.0]
    kw = dict(reduction=reduction)
    c = shape[-1]
    wshapes = {"full": shape, "class": (c,), "row": (*shape[:-1], 1)}
    if weight:
        kw["weight"] = rng.uniform(0, 2, size=wshapes[weight])
    if pos_weight:
        kw["pos_weight"] = rng.uniform(0.2, 3, size=(c,))
    check_loss("binary_cross_entropy_with_logits", x, y, kw, rng)


def class_case(rng, shape, ignore, ii):
    """Logits (with +-1000), index targets with some ignored (ii) positions."""
    c = shape[1] if len(shape) > 1 else shape[0]
    x = edge_normal(rng, shape)
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    t = rng.integers(0, c, size=tshape)
    if ignore and t.size:
        flat = t.reshape(-1)
        flat[rng.choice(flat.size, max(1, flat.size // 3), replace=False)] = ii
        t = flat.reshape(tshape)
    return x, t


CLASS_SHAPES = [(5, 4), (2, 4, 2, 3), (4,)]
CLASS_OPTS = [  # (weight, ignore_index, ignore some)
    (False, -100, False),
    (True, -100, True),
    (True, 1, True),
    (False, 2, True),
]


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("weight, ii, ignore", CLASS_OPTS)
@pytest.mark.parametrize("shape", CLASS_SHAPES)
def test_nll_loss(x64, shape, weight, ii, ignore, reduction):
    # NLL-1 (weighted mean), NLL-3 (K-dim, unbatched), CE-4-style valid ignore_index.
    rng = rng_for("nll", shape, weight, ii, ignore, reduction)
    x, t = class_case(rng, shape, ignore, ii)
    logp = npy(torch.log_softmax(tt(x), dim=0 if len(shape) == 1 else 1))
    c = shape[1] if len(shape) > 1 else shape[0]
    kw = dict(reduction=reduction, ignore_index=ii)
    if weight:
        kw["weight"] = rng.uniform(0.2, 2, size=(c,))
    check_loss("nll_loss", logp, t, kw, rng)


CE_OPTS = [  # (weight, ignore_index, ignore some, label_smoothing)
    (False, -100, False, 0.0),
    (False, -100, True, 0.1),
    (True, -100, True, 0.1),
    (True, 1, True, 0.0),
    (True, 1, True, 0.2),
    (False, 2, True, 1.0),
]


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("weight, ii, ignore, smoothing", CE_OPTS)
@pytest.mark.parametrize("shape", CLASS_SHAPES)
def test_cross_entropy_index(x64, shape, weight, ii, ignore, smoothing, reduction):
    # CE-1, CE-2 (shared denominator), CE-4 (valid ignore_index stays in the softmax), CE-6.
    rng = rng_for("cei", shape, weight, ii, ignore, smoothing, reduction)
    x, t = class_case(rng, shape, ignore, ii)
    c = shape[1] if len(shape) > 1 else shape[0]
    kw = dict(reduction=reduction, ignore_index=ii, label_smoothing=smoothing)
    if weight:
        kw["weight"] = rng.uniform(0.2, 2, size=(c,))
    check_loss("cross_entropy", x, t, kw, rng)


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("weight, smoothing", [(False, 0.0), (True, 0.0), (True, 0.2), (False, 1.0)])
@pytest.mark.parametrize("shape", CLASS_SHAPES)
def test_cross_entropy_probabilities(x64, shape, weight, smoothing, reduction):
    # CE-3: 'mean' divides by N (positions included), not by the weights.
    rng = rng_for("cep", shape, weight, smoothing, reduction)
    x = edge_normal(rng, shape)
    cdim = 0 if len(shape) == 1 else 1
    p = npy(torch.softmax(tt(rng.normal(size=shape) * 2), dim=cdim))
    c = shape[cdim]
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    if weight:
        kw["weight"] = rng.uniform(0.2, 2, size=(c,))
    check_loss("cross_entropy", x, p, kw, rng)


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("weight", [False, True])
def test_all_targets_ignored(x64, name, reduction, weight):
    # NLL-2 / CE-5: 'mean' NaN, 'sum' 0, 'none' zeros; gradient zeros (torch's too).
    rng = rng_for("allign", name, reduction, weight)
    x = rng.normal(size=(3, 4))
    kw = dict(reduction=reduction)
    if weight:
        kw["weight"] = rng.uniform(0.2, 2, size=(4,))
    check_loss(name, x, np.full(3, -100), kw, rng)


def test_cross_entropy_empty_batch(x64):
    # CE-5
    for red in REDS:
        want = TF.cross_entropy(tt(np.zeros((0, 3))), tt(np.zeros(0, np.int64)), reduction=red)
        got = F.cross_entropy(jnp.zeros((0, 3)), jnp.zeros(0, jnp.int64), reduction=red)
        np.testing.assert_allclose(npy(got), npy(want), equal_nan=True)


# ----------------------------------------------------------------------------- fnn.nn layers


def torch_model(variant):
    T = torch.nn
    bn = dict(
        momentum=variant.get("momentum", 0.1),
        affine=variant.get("affine", True),
        track_running_stats=variant.get("track", True),
    )
    return T.Sequential(
        T.Linear(6, 8),
        T.BatchNorm1d(8, **bn),
        T.ReLU(),
        T.Linear(8, 8, bias=False),
        T.PReLU(8, 0.1),
        T.LayerNorm(8),
        T.ELU(0.7),
        T.Dropout(0.0),
        T.Linear(8, 8),
        T.LeakyReLU(0.1),
        T.Softplus(2.0, 1.0),
        T.Tanh(),
        T.Linear(8, 8),
        T.Sigmoid(),
        T.Linear(8, 4),
        T.LogSoftmax(dim=1),
    ).double()


def fnn_model(variant):
    bn = dict(
        momentum=variant.get("momentum", 0.1),
        affine=variant.get("affine", True),
        track_running_stats=variant.get("track", True),
    )
    return nn.Sequential(
        nn.Linear(6, 8),
        nn.BatchNorm1d(8, **bn),
        nn.ReLU(),
        nn.Linear(8, 8, bias=False),
        nn.PReLU(8, 0.1),
        nn.LayerNorm(8),
        nn.ELU(0.7),
        nn.Dropout(0.0),
        nn.Linear(8, 8),
        nn.LeakyReLU(0.1),
        nn.Softplus(2.0, 1.0),
        nn.Tanh(),
        nn.Linear(8, 8),
        nn.Sigmoid(),
        nn.Linear(8, 4),
        nn.LogSoftmax(dim=1),
    )


def load64(fm, tm):
    """fm.load_state_dict(torch state), then the exact float64 torch values (load_state_dict
    casts to fnn's float32 init dtypes, as torch's own load into a float32 module would)."""
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    params, state = fm.load_state_dict(sd)
    assert sorted(fm.state_dict(params, state)) == sorted(sd)

    def exact(tree, prefix):
        return {
            k: (jnp.asarray(sd[prefix + k]) if jnp.issubdtype(v.dtype, jnp.floating) else v)
            for k, v in tree.items()
        }

    if isinstance(fm, nn.Sequential):
        return (
            tuple(exact(p, f"{i}.") for i, p in enumerate(params)),
            tuple(exact(s, f"{i}.") for i, s in enumerate(state)),
        )
    return exact(params, ""), exact(state, "")


def flat_grads(model, grads):
    return dict(model.named_arrays(grads, tuple({} for _ in model.layers)))


@pytest.mark.parametrize(
    "variant",
    [{}, {"momentum": None}, {"affine": False}, {"track": False}],
    ids=["default", "momentum-None", "no-affine", "no-track"],
)
def test_sequential_vs_torch_training(x64, variant):
    rng = rng_for("seq", variant)
    torch.manual_seed(0)
    tm = torch_model(variant)
    with torch.no_grad():  # non-trivial norm scales / prelu slopes
        for name, p in tm.named_parameters():
            if name.startswith(("1.", "4.", "5.")):
                p.add_(tt(rng.normal(size=tuple(p.shape)) * 0.3))
    fm = fnn_model(variant)
    params, state = load64(fm, tm)
    lr = 0.1
    for step in range(2):
        for train in (True, False):
            tm.train(train)
            x = rng.normal(size=(7, 6)) * 2
            g = rng.normal(size=(7, 4))
            xt = tt(x, True)
            yt = tm(xt)
            names = [n for n, _ in tm.named_parameters()]
            gts = torch.autograd.grad(yt, [xt, *list(tm.parameters())], tt(g))
            y, new_state = fm.apply(params, state, jnp.asarray(x), train=train)
            close(y, yt, rtol=1e-8, atol=1e-10, msg=f"output step {step} train={train}")
            gp, gx = fm.backward(params, state, jnp.asarray(x), jnp.asarray(g), train=train)
            ap, ax = jax.grad(
                lambda p, a, state=state, train=train, g=g: jnp.sum(
                    fm.apply(p, state, a, train=train)[0] * g
                ),
                argnums=(0, 1),
            )(params, jnp.asarray(x))
            close(gx, gts[0], rtol=1e-7, atol=1e-10)
            close(ax, gts[0], rtol=1e-7, atol=1e-10)
            manual, auto = flat_grads(fm, gp), flat_grads(fm, ap)
            assert sorted(manual) == sorted(names)
            for n, gt in zip(names, gts[1:], strict=True):
                close(manual[n], gt, rtol=1e-7, atol=1e-10, msg=f"manual {n}")
                close(auto[n], gt, rtol=1e-7, atol=1e-10, msg=f"jax.grad {n}")
            state = new_state
            if train:  # one plain gradient step on both
                with torch.no_grad():
                    for p, gt in zip(tm.parameters(), gts[1:], strict=True):
                        p.sub_(lr * gt)
                params = jax.tree.map(lambda p, d: p - lr * d, params, gp)
            sd = tm.state_dict()
            for k, v in fm.state_dict(params, state).items():
                close(v, sd[k], rtol=1e-8, atol=1e-10, msg=f"{k} after step {step}")


def test_conv_style_model_3d_input(x64):
    # (N, C, L) through BatchNorm1d and per-channel PReLU, then Flatten.
    rng = rng_for("seq3d")
    T = torch.nn
    tm = T.Sequential(T.BatchNorm1d(3), T.PReLU(3), T.Flatten(), T.Linear(12, 4), T.Softmax(dim=1)).double()
    fm = nn.Sequential(nn.BatchNorm1d(3), nn.PReLU(3), nn.Flatten(), nn.Linear(12, 4), nn.Softmax(dim=1))
    params, state = load64(fm, tm)
    for train in (True, True, False):
        tm.train(train)
        x = rng.normal(size=(5, 3, 4))
        g = rng.normal(size=(5, 4))
        xt = tt(x, True)
        yt = tm(xt)
        gts = torch.autograd.grad(yt, [xt, *list(tm.parameters())], tt(g))
        y, new_state = fm.apply(params, state, jnp.asarray(x), train=train)
        close(y, yt, rtol=1e-8, atol=1e-10)
        gp, gx = fm.backward(params, state, jnp.asarray(x), jnp.asarray(g), train=train)
        close(gx, gts[0], rtol=1e-7, atol=1e-10)
        manual = flat_grads(fm, gp)
        for (n, _), gt in zip(tm.named_parameters(), gts[1:], strict=True):
            close(manual[n], gt, rtol=1e-7, atol=1e-10, msg=n)
        state = new_state
        for k, v in fm.state_dict(params, state).items():
            close(v, tm.state_dict()[k], rtol=1e-8, atol=1e-10, msg=k)


@pytest.mark.parametrize(
    "make",
    [
        lambda dt: (nn.Linear(4, 3, dtype=dt), torch.nn.Linear(4, 3, dtype=torch.float64)),
        lambda dt: (nn.BatchNorm1d(4, dtype=dt), torch.nn.BatchNorm1d(4, dtype=torch.float64)),
        lambda dt: (nn.LayerNorm(4, dtype=dt), torch.nn.LayerNorm(4, dtype=torch.float64)),
        lambda dt: (nn.PReLU(4, dtype=dt), torch.nn.PReLU(4, dtype=torch.float64)),
        lambda dt: (
            models.mlp(4, (5,), 3, dropout=0.0, dtype=dt),
            torch.nn.Sequential(
                torch.nn.Flatten(),
                torch.nn.Linear(4, 5, dtype=torch.float64),
                torch.nn.BatchNorm1d(5, dtype=torch.float64),
                torch.nn.ReLU(),
                torch.nn.Linear(5, 3, dtype=torch.float64),
            ),
        ),
    ],
    ids=["Linear", "BatchNorm1d", "LayerNorm", "PReLU", "mlp"],
)
def test_float64_factory_dtype_state_dict_loads_unchanged(x64, make):
    # DTYPE-1/3, live: torch's dtype=torch.float64 module and fnn's dtype='float64' spec; the
    # state_dict loads as is (no float32 round trip, unlike load64 above) and forward, running
    # statistics and manual backward agree to 1e-10 (tests/test_dtype.py does it from a fixture).
    fm, tm = make("float64")
    rng = rng_for("dtype", type(fm).__name__)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(tt(rng.normal(size=tuple(p.shape)) * 0.3))
    params, state = fm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    assert all(leaf.dtype in (jnp.float64, jnp.int32) for leaf in jax.tree.leaves((params, state)))
    for train in (True, False):
        tm.train(train)
        x = rng.normal(size=(6, 4))
        xt = tt(x, True)
        yt = tm(xt)
        g = rng.normal(size=tuple(yt.shape))
        gts = torch.autograd.grad(yt, [xt, *tm.parameters()], tt(g))
        y, new_state = fm.apply(params, state, jnp.asarray(x), train=train)
        close(y, yt, rtol=1e-10, atol=1e-10)
        gp, gx = fm.backward(params, state, jnp.asarray(x), jnp.asarray(g), train=train)
        close(gx, gts[0], rtol=1e-10, atol=1e-10)
        no_state = tuple({} for _ in fm.layers) if isinstance(fm, nn.Sequential) else {}
        manual = fm.state_dict(gp, no_state)
        for (n, _), gt in zip(tm.named_parameters(), gts[1:], strict=True):
            close(manual[n], gt, rtol=1e-10, atol=1e-10, msg=n)
        for k, v in fm.state_dict(params, new_state).items():
            close(v, tm.state_dict()[k], rtol=1e-10, atol=1e-10, msg=k)
        state = new_state


def test_layer_defaults_match_torch_modules():
    # Same default hyperparameters as the torch modules (names differ only for PReLU's init).
    T = torch.nn
    assert nn.LeakyReLU().negative_slope == T.LeakyReLU().negative_slope
    assert nn.ELU().alpha == T.ELU().alpha
    assert (nn.Softplus().beta, nn.Softplus().threshold) == (T.Softplus().beta, T.Softplus().threshold)
    assert nn.Dropout().p == T.Dropout().p
    bn, tbn = nn.BatchNorm1d(4), T.BatchNorm1d(4)
    assert (bn.eps, bn.momentum, bn.affine, bn.track_running_stats) == (
        tbn.eps,
        tbn.momentum,
        tbn.affine,
        tbn.track_running_stats,
    )
    ln, tln = nn.LayerNorm(4), T.LayerNorm(4)
    assert (ln.eps, ln.elementwise_affine) == (tln.eps, tln.elementwise_affine)
    fl, tfl = nn.Flatten(), T.Flatten()
    assert (fl.start_dim, fl.end_dim) == (tfl.start_dim, tfl.end_dim)
    p, _ = nn.PReLU().init(jax.random.key(0))
    close(p["weight"], T.PReLU().weight, rtol=0, atol=0)
    for _shape in [(), (3,)]:
        params, state = nn.BatchNorm1d(3).init(jax.random.key(0))
        for k, v in T.BatchNorm1d(3).state_dict().items():
            close((params | state)[k], v, rtol=0, atol=0)


@pytest.mark.parametrize(
    "layer, tlayer",
    [
        (lambda: nn.BatchNorm1d(3), lambda: torch.nn.BatchNorm1d(3)),
        (lambda: nn.Linear(3, 2), lambda: torch.nn.Linear(3, 2)),
        (lambda: nn.LayerNorm(3), lambda: torch.nn.LayerNorm(3)),
    ],
    ids=["BatchNorm1d", "Linear", "LayerNorm"],
)
def test_state_dict_keys_in_torch_order_after_init(layer, tlayer):
    params, state = layer().init(jax.random.key(0))
    assert list(layer().state_dict(params, state)) == list(tlayer().state_dict())


def test_state_dict_round_trip_keeps_torch_order():
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    fm = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    assert list(fm.state_dict(*fm.load_state_dict(sd))) == list(sd)


@pytest.mark.parametrize(
    "kw",
    [
        dict(normalized_shape=5),
        dict(normalized_shape=5, bias=False),
        dict(normalized_shape=5, elementwise_affine=False),
        dict(normalized_shape=(2, 5), eps=1e-3),
    ],
)
def test_layernorm_module(x64, kw):
    rng = rng_for("lnmod", kw)
    tm = torch.nn.LayerNorm(**kw).double()
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(tt(rng.normal(size=tuple(p.shape))))
    fm = nn.LayerNorm(**kw)
    params, state = load64(fm, tm)
    x = rng.normal(size=(3, 2, 5))
    g = rng.normal(size=(3, 2, 5))
    xt = tt(x, True)
    yt = tm(xt)
    gts = torch.autograd.grad(yt, [xt, *list(tm.parameters())], tt(g))
    close(fm.apply(params, state, jnp.asarray(x), train=True)[0], yt)
    gp, gx = fm.backward(params, state, jnp.asarray(x), jnp.asarray(g), train=True)
    close(gx, gts[0], rtol=1e-8, atol=1e-10)
    for (n, _), gt in zip(tm.named_parameters(), gts[1:], strict=True):
        close(gp[n], gt, rtol=1e-8, atol=1e-10, msg=n)


@pytest.mark.parametrize(
    "shape, train, track", [((1, 3), True, True), ((1, 3, 1), True, True), ((1, 3), False, False)]
)
def test_batchnorm_single_value_per_channel_raises_like_torch(shape, train, track):
    # BN-7: torch's module raises ValueError here (also in eval without running stats).
    tm = torch.nn.BatchNorm1d(3, track_running_stats=track).train(train)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        tm(torch.zeros(shape))
    fm = nn.BatchNorm1d(3, track_running_stats=track)
    params, state = fm.init(jax.random.key(0))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        fm.apply(params, state, jnp.zeros(shape), train=train)


# ----------------------------------------------------------------------------- fnn.init


class CaptureInit:
    """Record the (low, high) / (mean, std) that torch.nn.init passes to Tensor.uniform_ /
    Tensor.normal_ (the methods are wrapped for the duration of the `with`)."""

    def __enter__(self):
        self.calls, self.saved = [], {}
        for name in ("uniform_", "normal_"):
            original = getattr(torch.Tensor, name)
            self.saved[name] = original

            def wrapper(t, a=0.0, b=1.0, *args, _name=name, _orig=original, **kw):
                self.calls.append((_name, (float(a), float(b))))
                return _orig(t, a, b, *args, **kw)

            setattr(torch.Tensor, name, wrapper)
        return self

    def __exit__(self, *exc):
        for name, original in self.saved.items():
            setattr(torch.Tensor, name, original)


def torch_init_params(fn, shape, **kw):
    with CaptureInit() as cap:
        fn(torch.empty(shape, dtype=torch.float64), **kw)
    assert len(cap.calls) == 1, cap.calls
    return cap.calls[0]


NONLINEARITIES = [
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("param", [None, 0, 0.2, 1, -0.5, 3, math.sqrt(5)])
def test_calculate_gain(nonlinearity, param):
    # INIT-2
    assert I.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15
    )


def test_calculate_gain_errors_like_torch():
    for args in [("gelu",), ("leaky_relu", True), ("leaky_relu", "0.1")]:
        with pytest.raises(ValueError):
            torch.nn.init.calculate_gain(*args)
        with pytest.raises(ValueError):
            I.calculate_gain(*args)


INIT_SHAPES = [(5, 3), (2, 6, 3, 2)]  # 2-D and conv-style (receptive field 6, INIT-1)
INIT_CASES = [
    ("xavier_uniform", {}),
    ("xavier_uniform", dict(gain=2.0)),
    ("xavier_normal", {}),
    ("xavier_normal", dict(gain=0.5)),
    ("kaiming_uniform", {}),
    ("kaiming_uniform", dict(a=math.sqrt(5))),
    ("kaiming_uniform", dict(mode="fan_out", nonlinearity="relu")),
    ("kaiming_uniform", dict(a=0.2, mode="fan_in", nonlinearity="leaky_relu")),
    ("kaiming_uniform", dict(nonlinearity="tanh", mode="fan_out")),
    ("kaiming_normal", {}),
    ("kaiming_normal", dict(mode="fan_out")),
    ("kaiming_normal", dict(a=0.1, nonlinearity="leaky_relu")),
    ("kaiming_normal", dict(nonlinearity="selu")),
    ("uniform", dict(a=-0.3, b=0.7)),
    ("normal", dict(mean=0.5, std=0.2)),
]


@pytest.mark.parametrize("shape", INIT_SHAPES)
@pytest.mark.parametrize("name, kw", INIT_CASES, ids=[f"{n}-{k}" for n, k in INIT_CASES])
def test_init_distribution_parameters(x64, name, kw, shape):
    # INIT-1, INIT-3, INIT-4: torch's own (low, high) / (mean, std) for the same shape and
    # arguments, captured at its uniform_/normal_ call. fnn draws with jax.random.uniform /
    # normal from the given key, so the same key with torch's parameters must give fnn's draw.
    kind, (p0, p1) = torch_init_params(getattr(torch.nn.init, name + "_"), shape, **kw)
    key = jax.random.key(3)
    got = getattr(I, name)(key, shape, **kw, dtype=jnp.float64)
    if kind == "uniform_":
        want = jax.random.uniform(key, shape, jnp.float64, minval=p0, maxval=p1)
    else:
        want = p0 + p1 * jax.random.normal(key, shape, jnp.float64)
    close(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fin, fout", [(3, 2000), (0, 3)])
def test_linear_layer_init_bounds(fin, fout):
    # LIN-1: torch's Linear bounds (captured at its uniform_ calls: weight, then bias; no
    # weight call for a zero-element weight) contain fnn's draw, which comes close to them.
    with warnings.catch_warnings(), CaptureInit() as cap:
        warnings.simplefilter("ignore")  # torch: "Initializing zero-element tensors is a no-op"
        torch.nn.Linear(fin, fout)
    highs = [hi for _, (lo, hi) in cap.calls]
    bounds = dict(zip(["weight", "bias"], highs, strict=True)) if fin else {"bias": highs[0]}
    params, _ = nn.Linear(fin, fout).init(jax.random.key(0))
    for k, bound in bounds.items():
        v = np.abs(np.asarray(params[k]))
        assert np.all(v <= bound * (1 + 1e-6)), k
        assert (bound == 0 and np.all(v == 0)) or v.max() > 0.95 * bound, k


# ----------------------------------------------------------------------------- optimizers

OPT_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.5, weight_decay=0.2, maximize=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.3, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.5, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, eps=1e-3, weight_decay=0.05, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-3, centered=True, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.1)),
    ("Adam", dict(lr=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.1, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.1)),
    ("AdamW", dict(lr=0.1, weight_decay=0.5, amsgrad=True)),
    ("AdamW", dict(lr=0.05, betas=(0.5, 0.9), weight_decay=0.2, maximize=True)),
]
ALL_TRUE = lambda p: jax.tree.map(lambda _: True, p)  # noqa: E731  torch decays every leaf (WD-1)


def random_problem(rng, steps):
    params = {
        "w1": rng.normal(size=(4, 3)),
        "b1": rng.normal(size=(4,)),
        "w2": rng.normal(size=(2, 4)),
        "b2": rng.normal(size=(2,)),
    }
    scales = rng.uniform(0.05, 3, size=steps)  # shrinking and growing: AMSGrad's max matters
    grads = [{k: rng.normal(size=v.shape) * s for k, v in params.items()} for s in scales]
    return params, grads


def run_torch(cls, kw, params, grads, scheduler=None):
    tparams = {k: tt(v, True) for k, v in params.items()}
    opt = getattr(torch.optim, cls)(list(tparams.values()), **kw)
    sched = scheduler(opt) if scheduler else None
    traj = []
    for g in grads:
        for k, p in tparams.items():
            p.grad = tt(g[k])
        opt.step()
        if sched:
            sched.step()
        traj.append({k: npy(p).copy() for k, p in tparams.items()})
    return traj


def run_fnn(opt, params, grads):
    params = {k: jnp.asarray(v) for k, v in params.items()}
    state = opt.init(params)
    traj = []
    for g in grads:
        updates, state = opt.update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
        params = optim.apply_updates(params, updates)
        traj.append(params)
    return traj


@pytest.mark.parametrize("cls, kw", OPT_CASES, ids=[f"{c}-{k}" for c, k in OPT_CASES])
def test_optimizer_trajectory(x64, cls, kw):
    # SGD-1, ADAG-1, RMS-1, ADAM-1, ADAM-2, ADAMW-1 with weight_decay_mask all-True.
    rng = rng_for("opt", cls, kw)
    params, grads = random_problem(rng, 6)
    want = run_torch(cls, kw, params, grads)
    fkw = dict(kw, weight_decay_mask=ALL_TRUE)
    got = run_fnn(getattr(optim, cls.lower())(**fkw), params, grads)
    for step, (a, b) in enumerate(zip(got, want, strict=True)):
        for k in params:
            close(a[k], b[k], rtol=1e-10, atol=1e-12, msg=f"{k} after step {step + 1}")


def test_optimizer_defaults_match_torch():
    p = [torch.zeros(1, requires_grad=True)]
    for cls in ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]:
        tdef = getattr(torch.optim, cls)(p).defaults
        fdef = getattr(optim, cls.lower())().hyperparams
        for k, v in fdef.items():
            if k in tdef and k not in ("weight_decay_mask",):
                assert (tuple(v) if isinstance(v, tuple) else v) == (
                    tuple(tdef[k]) if isinstance(tdef[k], tuple) else tdef[k]
                ), (cls, k)


def test_default_mask_equals_torch_param_groups(x64):
    # WD-1: fnn's default (decay only ndim >= 2) is torch with a no-decay group for biases.
    rng = rng_for("wdgroups")
    params, grads = random_problem(rng, 4)
    tparams = {k: tt(v, True) for k, v in params.items()}
    opt = torch.optim.AdamW(
        [
            {"params": [tparams["w1"], tparams["w2"]]},
            {"params": [tparams["b1"], tparams["b2"]], "weight_decay": 0.0},
        ],
        lr=0.1,
        weight_decay=0.3,
    )
    for g in grads:
        for k, p in tparams.items():
            p.grad = tt(g[k])
        opt.step()
    got = run_fnn(optim.adamw(lr=0.1, weight_decay=0.3), params, grads)[-1]
    for k in params:
        close(got[k], tparams[k], rtol=1e-10, atol=1e-12, msg=k)


# ----------------------------------------------------------------------------- schedules

SCHEDULES = [
    ("StepLR", dict(step_size=3, gamma=0.5), lambda lr: optim.step_lr(lr, 3, 0.5)),
    ("StepLR", dict(step_size=1), lambda lr: optim.step_lr(lr, 1)),
    (
        "MultiStepLR",
        dict(milestones=[5, 2, 5, 9], gamma=0.3),
        lambda lr: optim.multistep_lr(lr, [5, 2, 5, 9], 0.3),
    ),
    ("ExponentialLR", dict(gamma=0.9), lambda lr: optim.exponential_lr(lr, 0.9)),
    ("LinearLR", {}, lambda lr: optim.linear_lr(lr)),
    (
        "LinearLR",
        dict(start_factor=0.25, end_factor=0.75, total_iters=4),
        lambda lr: optim.linear_lr(lr, 0.25, 0.75, 4),
    ),
    (
        "LinearLR",
        dict(start_factor=1.0, end_factor=0.0, total_iters=6),
        lambda lr: optim.linear_lr(lr, 1.0, 0.0, 6),
    ),
    ("CosineAnnealingLR", dict(T_max=5), lambda lr: optim.cosine_annealing_lr(lr, 5)),
    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01), lambda lr: optim.cosine_annealing_lr(lr, 4, 0.01)),
    ("CosineAnnealingLR", dict(T_max=1, eta_min=0.02), lambda lr: optim.cosine_annealing_lr(lr, 1, 0.02)),
]


@pytest.mark.parametrize("step_type", ["python-int", "int32"])
@pytest.mark.parametrize("cls, kw, make", SCHEDULES, ids=[f"{c}-{k}" for c, k, _ in SCHEDULES])
def test_schedule_lr_per_step(x64, cls, kw, make, step_type):
    # SCHED-1: lr used by update number k (from 0) = torch's lr after k scheduler.step() calls;
    # run well past T_max / milestones (cosine keeps going periodically). The optimizers call
    # schedules with their int32 step count (base.py): in float64 the lr must still be
    # torch's float64 lr, not a float32 rounding of it.
    as_step = int if step_type == "python-int" else (lambda k: jnp.asarray(k, jnp.int32))
    lr = 0.3
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = getattr(torch.optim.lr_scheduler, cls)(opt, **kw)
    schedule = make(lr)
    for step in range(26):
        close(schedule(as_step(step)), opt.param_groups[0]["lr"], rtol=1e-10, atol=1e-14, msg=f"step {step}")
        opt.step()
        sched.step()


def test_linear_lr_warmup_trajectory_float64(x64):
    rng = rng_for("linlr")
    params, grads = random_problem(rng, 6)
    want = run_torch(
        "AdamW",
        dict(lr=0.3),
        params,
        grads,
        lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=4),
    )
    got = run_fnn(
        optim.adamw(lr=optim.linear_lr(0.3, 0.25, 1.0, 4), weight_decay_mask=ALL_TRUE), params, grads
    )
    for a, b in zip(got, want, strict=True):
        for k in params:
            close(a[k], b[k], rtol=1e-10, atol=1e-12, msg=k)


def test_scheduled_optimizer_trajectory(x64):
    # lr=schedule: the first update uses schedule(0), as torch's optimizer before sched.step().
    rng = rng_for("schedopt")
    params, grads = random_problem(rng, 9)
    want = run_torch(
        "SGD",
        dict(lr=0.2, momentum=0.9),
        params,
        grads,
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=0.01),
    )
    got = run_fnn(optim.sgd(lr=optim.cosine_annealing_lr(0.2, 4, 0.01), momentum=0.9), params, grads)
    for a, b in zip(got, want, strict=True):
        for k in params:
            close(a[k], b[k], rtol=1e-10, atol=1e-12, msg=k)
    want = run_torch(
        "Adagrad",
        dict(lr=0.2, lr_decay=0.3),
        params,
        grads,
        lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5),
    )
    got = run_fnn(optim.adagrad(lr=optim.step_lr(0.2, 2, 0.5), lr_decay=0.3), params, grads)
    for a, b in zip(got, want, strict=True):
        for k in params:
            close(a[k], b[k], rtol=1e-10, atol=1e-12, msg=k)


# ----------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm(x64, norm_type, max_norm):
    # CLIP-1: coef = min(1, max_norm / (total + 1e-6)); returns the pre-clip total.
    rng = rng_for("clip", norm_type, max_norm)
    grads = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=(4,)), "c": rng.normal(size=(2, 2, 2))}
    tparams = {k: tt(np.zeros_like(v), True) for k, v in grads.items()}
    for k, p in tparams.items():
        p.grad = tt(grads[k])
    total_t = torch.nn.utils.clip_grad_norm_(list(tparams.values()), max_norm, norm_type)
    clipped, total = optim.clip_grad_norm({k: jnp.asarray(v) for k, v in grads.items()}, max_norm, norm_type)
    close(total, total_t, rtol=1e-12)
    for k in grads:
        close(clipped[k], tparams[k].grad, rtol=1e-12, msg=k)


def test_clip_golden_and_zero_grads(x64):
    # CLIP-1 golden [3, 4] -> [0.59999988, 0.79999984]; all-zero grads stay zero.
    for g in (np.array([3.0, 4.0]), np.zeros(3)):
        p = tt(np.zeros_like(g), True)
        p.grad = tt(g)
        total_t = torch.nn.utils.clip_grad_norm_([p], 1.0)
        clipped, total = optim.clip_grad_norm({"g": jnp.asarray(g)}, 1.0)
        close(total, total_t, rtol=1e-14)
        close(clipped["g"], p.grad, rtol=1e-14)


# ----------------------------------------------------------------------------- argument ranges
# Valid torch arguments that fnn rejects (not documented deviations; Adagrad/RMSprop's eps > 0
# and RMSprop's alpha < 1 are documented in their docstrings and not listed here).


def _lse_tuple_dim():
    x = rng_for("lse-tuple").normal(size=(2, 3, 4))
    close(F.logsumexp(jnp.asarray(x), (0, 2)), torch.logsumexp(tt(x), dim=(0, 2)))


def _clip_max_norm_zero():
    g = np.array([1.0, -2.0, 2.0])
    p = tt(np.zeros(3), True)
    p.grad = tt(g)
    total_t = torch.nn.utils.clip_grad_norm_([p], 0.0)  # torch: grads become zeros
    clipped, total = optim.clip_grad_norm({"g": jnp.asarray(g)}, 0.0)
    close(total, total_t)
    close(clipped["g"], p.grad)


def test_adam_eps_zero_is_rejected_on_purpose():
    # torch accepts Adam(eps=0); fnn's issue asks that eps <= 0 raise at construction (a
    # zero gradient with eps = 0 divides 0 by 0). Documented in fnn/optim/moments.py.
    with pytest.raises(ValueError, match="eps"):
        optim.adam(lr=0.1, eps=0.0)


def _gamma_zero(cls, make):
    def check():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
        sched = getattr(torch.optim.lr_scheduler, cls)(
            opt, gamma=0.0, **({"step_size": 2} if cls == "StepLR" else {})
        )
        schedule = make()
        for step in range(5):
            close(schedule(step), opt.param_groups[0]["lr"])
            opt.step()
            sched.step()

    return check


@pytest.mark.parametrize(
    "check",
    [
        _lse_tuple_dim,
        _clip_max_norm_zero,
        _gamma_zero("StepLR", lambda: optim.step_lr(0.3, 2, 0.0)),
        _gamma_zero("ExponentialLR", lambda: optim.exponential_lr(0.3, 0.0)),
    ],
    ids=["logsumexp-tuple-dim", "clip-max_norm-0", "steplr-gamma-0", "exponentiallr-gamma-0"],
)
def test_edge_arguments_torch_accepts(x64, check):
    check()

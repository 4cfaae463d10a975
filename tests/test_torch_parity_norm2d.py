"""Live parity with PyTorch for batch normalization of (N, C, *) inputs, channel dropout and
the BatchNorm2d / Dropout2d layers, on random shapes and options (rules BN2D-1..4,
DROP2D-1..3). Skipped where torch is not installed (CI reads tests/torch_reference/norm2d.json).

Each batch_norm case compares the output, the running statistics, the manual backward,
jax.vjp and jax.grad with torch autograd in float64; a float32 case checks the one-pass
sums of 4-D inputs against torch's float32. Dropout masks come from different generators,
so dropout2d is compared by its law: whole channels, torch's scale, the drop rate.
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
from fnn import nn  # noqa: E402

TF = torch.nn.functional
torch.set_num_threads(1)


def rng_for(*salt):
    return np.random.default_rng(zlib.crc32(repr(salt).encode()))


def tt(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def close(got, want, rtol=1e-9, atol=1e-11, msg=""):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol, err_msg=msg)


def J(a):
    return None if a is None else jnp.asarray(a)


@pytest.mark.parametrize("seed", range(8))
def test_batch_norm_on_random_nd_input(x64, seed):
    # BN2D-1/2 on random 4-D or 5-D shapes, modes and options (momentum None included).
    rng = rng_for("bn2d", seed)
    ndim = int(rng.choice([4, 5]))
    shape = (
        int(rng.integers(1, 4)),
        int(rng.integers(1, 5)),
        *(int(s) for s in rng.integers(1, 4, ndim - 2)),
    )
    if math.prod(shape) // shape[1] == 1:
        shape = (2, *shape[1:])
    training, affine, track = (bool(b) for b in rng.integers(0, 2, 3))
    momentum = None if track and training and seed % 3 == 0 else float(rng.choice([0.1, 0.5, 1.0]))
    eps, nbt = float(rng.choice([1e-5, 1e-3])), int(rng.integers(0, 4))
    c = shape[1]
    x = rng.normal(size=shape) * 2 + rng.normal(size=(1, c) + (1,) * (ndim - 2)) * 3
    w, b = (rng.normal(size=c), rng.normal(size=c)) if affine else (None, None)
    rm, rv = (rng.normal(size=c), rng.uniform(0.5, 2, size=c)) if track else (None, None)
    xt = tt(x, True)
    wt, bt = (tt(w, True), tt(b, True)) if affine else (None, None)
    if momentum is None:  # the module's cumulative average (BN-3)
        module = (torch.nn.BatchNorm2d if ndim == 4 else torch.nn.BatchNorm3d)(
            c, eps=eps, momentum=None
        ).double()
        with torch.no_grad():
            module.running_mean.copy_(tt(rm)), module.running_var.copy_(tt(rv))
            module.num_batches_tracked.fill_(nbt)
            if affine:
                module.weight.copy_(tt(w)), module.bias.copy_(tt(b))
            else:
                module.weight.fill_(1), module.bias.fill_(0)
        yt = module(xt)
        wt, bt = (module.weight, module.bias) if affine else (None, None)
        rmt, rvt = module.running_mean, module.running_var
    else:
        rmt, rvt = (tt(rm), tt(rv)) if track else (None, None)
        yt = TF.batch_norm(xt, rmt, rvt, wt, bt, training or not track, momentum, eps)
    args = dict(training=training, momentum=momentum, eps=eps, num_batches_tracked=nbt)
    y, new_rm, new_rv = F.batch_norm(jnp.asarray(x), J(rm), J(rv), J(w), J(b), **args)
    close(y, yt, msg="output")
    if track:
        close(new_rm, rmt, msg="running_mean")
        close(new_rv, rvt, msg="running_var")
    g = rng.normal(size=shape)
    wants = torch.autograd.grad(yt, [xt] + ([wt, bt] if affine else []), tt(g))
    got = F.batch_norm_backward(jnp.asarray(g), jnp.asarray(x), J(rm), J(rv), J(w), J(b), **args)

    def f(a, ww, bb):
        return jnp.vdot(F.batch_norm(a, J(rm), J(rv), ww, bb, **args)[0], jnp.asarray(g))

    auto = jax.grad(f, argnums=(0, 1, 2) if affine else 0)(jnp.asarray(x), J(w), J(b))
    auto = auto if affine else (auto,)
    for i, want in enumerate(wants):
        close(got[i], want, rtol=1e-8, atol=1e-10, msg=f"manual {i}")
        close(auto[i], want, rtol=1e-8, atol=1e-10, msg=f"jax.grad {i}")
    if not affine:
        assert got[1] is None and got[2] is None


def test_float32_one_pass_sums_match_torch_far_from_zero():
    # BN2D-1 in float32 at a training size, channel means 10³ standard deviations from 0:
    # the one-pass sums about a pivot (fnn/_fast/batch_norm.py) keep torch's accuracy.
    rng = rng_for("bn2d-f32")
    x = (rng.normal(size=(16, 4, 10, 10)) * 0.01 + np.array([10.0, -3.0, 0.0, 1e3])[:, None, None]).astype(
        np.float32
    )
    g = rng.normal(size=x.shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    module = torch.nn.BatchNorm2d(4)
    yt = module(xt)
    (gt,) = torch.autograd.grad(yt, [xt], torch.tensor(g))
    bn = nn.BatchNorm2d(4)
    params, state = bn.init(jax.random.key(0))
    y, new_state, pullback = bn.apply_vjp(params, state, jnp.asarray(x), train=True)
    _, gx = pullback(jnp.asarray(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(gx, gt.numpy(), rtol=2e-3, atol=2e-3 * np.abs(gt.numpy()).max())
    np.testing.assert_allclose(new_state["running_mean"], module.running_mean.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(new_state["running_var"], module.running_var.numpy(), rtol=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_batchnorm2d_module_steps_state_dict_and_buffers(x64, seed):
    # BN2D-3: a torch BatchNorm2d's state_dict loads; train/eval steps agree, buffers too.
    rng = rng_for("BatchNorm2d", seed)
    c = int(rng.integers(1, 5))
    kw = dict(
        num_features=c,
        eps=float(rng.choice([1e-5, 1e-3])),
        momentum=[0.1, None, 0.4][seed],
        affine=bool(seed != 1),
        track_running_stats=bool(seed != 2),
    )
    module = torch.nn.BatchNorm2d(**kw).double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(tt(rng.normal(size=tuple(p.shape))))
    layer = nn.BatchNorm2d(**kw, dtype="float64")
    params, state = layer.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    for train in (True, True, False, True, False):
        module.train(train)
        x = (
            rng.normal(size=(int(rng.integers(2, 4)), c, int(rng.integers(1, 4)), int(rng.integers(1, 4))))
            + 1
        )
        xt = tt(x, True)
        yt = module(xt)
        g = rng.normal(size=x.shape)
        wants = torch.autograd.grad(yt, [xt, *module.parameters()], tt(g))
        y, state, pullback = layer.apply_vjp(params, state, jnp.asarray(x), train=train)
        gp, gx = pullback(jnp.asarray(g))
        close(y, yt, msg=f"output train={train}")
        close(gx, wants[0], rtol=1e-8, atol=1e-10)
        for name, want in zip(("weight", "bias"), wants[1:], strict=False):
            close(gp[name], want, rtol=1e-8, atol=1e-10, msg=name)
        got = layer.state_dict(params, state)
        for name, want in module.state_dict().items():
            close(got[name], want.numpy(), msg=f"{name} after train={train}")


def test_batchnorm2d_refuses_3d_input_like_torch():
    # BN2D-4: torch's "expected 4D input (got 3D input)"
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input\)"):
        torch.nn.BatchNorm2d(3)(torch.ones(2, 3, 4))
    params, state = nn.BatchNorm2d(3).init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input"):
        nn.BatchNorm2d(3).apply(params, state, jnp.ones((2, 3, 4)), train=True)


def _channel_law(y, x, p):
    """Whole channels dropped, kept ones scaled by 1/(1 - p); returns the dropped fraction."""
    n, c = y.shape[:2]
    y, x = y.reshape(n, c, -1), x.reshape(n, c, -1)
    dropped = (y == 0).all(-1)
    assert ((y == 0).any(-1) == dropped).all(), "a channel partly dropped"
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - p), rtol=1e-12)
    return dropped.mean()


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout2d_law_matches_torch(x64, p):
    # DROP2D-1: both libraries drop whole channels at rate p and scale the rest by 1/(1 - p).
    rng = rng_for("dropout2d", p)
    x = rng.uniform(0.5, 2, size=(200, 50, 2, 3))
    torch.manual_seed(0)
    yt = TF.dropout2d(tt(x), p=p).numpy()
    y = np.asarray(F.dropout2d(jnp.asarray(x), jax.random.key(0), p))
    bound = 5 * math.sqrt(p * (1 - p) / 10000)
    for out in (y, yt):
        assert abs(_channel_law(out, x, p) - p) < bound
    g = np.asarray(F.dropout2d_backward(jnp.ones_like(jnp.asarray(x)), jnp.asarray(x), jax.random.key(0), p))
    np.testing.assert_allclose(g, y / x, rtol=1e-12)


def test_dropout2d_edge_cases_equal_torch_exactly(x64):
    # DROP2D-2: p = 0 / eval identity, p = 1 zeros, gradients ones / zeros, never NaN.
    x = rng_for("dropout2d-edges").normal(size=(3, 4, 2, 2))
    key = jax.random.key(0)
    for p, training in [(0.0, True), (1.0, True), (0.5, False), (1.0, False)]:
        xt = tt(x, True)
        yt = TF.dropout2d(xt, p=p, training=training)
        (gt,) = torch.autograd.grad(yt, [xt], tt(np.ones_like(x)))
        close(F.dropout2d(jnp.asarray(x), key, p, training), yt, rtol=0, atol=0)
        close(F.dropout2d_backward(jnp.ones(x.shape), jnp.asarray(x), key, p, training), gt, rtol=0, atol=0)
        grad = jax.grad(lambda a, p=p, t=training: F.dropout2d(a, key, p, t).sum())(jnp.asarray(x))
        close(grad, gt, rtol=0, atol=0)


def test_dropout2d_reads_3d_input_as_torch_2_13_does(x64):
    # DROP2D-3: a 3-D input is (N, C, L): one draw per (n, c), constant along L, and a warning.
    x = rng_for("dropout2d-3d").uniform(0.5, 2, size=(100, 30, 4))
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="3D input to dropout2d"):
        yt = TF.dropout2d(tt(x), p=0.5).numpy()
    with pytest.warns(UserWarning, match="Received a 3D input"):
        y = np.asarray(F.dropout2d(jnp.asarray(x), jax.random.key(1), 0.5))
    for out in (y, yt):
        assert abs(_channel_law(out, x, 0.5) - 0.5) < 5 * math.sqrt(0.25 / 3000)


def test_dropout2d_layer_matches_the_module_in_each_mode(x64):
    x = rng_for("Dropout2d").uniform(0.5, 2, size=(40, 25, 2, 2))
    module, layer = torch.nn.Dropout2d(0.3), nn.Dropout2d(0.3)
    module.eval()
    close(layer.apply({}, {}, jnp.asarray(x), train=False)[0], module(tt(x)), rtol=0, atol=0)
    module.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 4-D: neither warns
        yt = module(tt(x)).numpy()
        y = np.asarray(layer.apply({}, {}, jnp.asarray(x), key=jax.random.key(2), train=True)[0])
    for out in (y, yt):
        assert abs(_channel_law(out, x, 0.3) - 0.3) < 5 * math.sqrt(0.21 / 1000)


@pytest.mark.parametrize("bias", [True, False])
def test_fold_conv_batchnorm_equals_torch_fuse_conv_bn_eval(x64, bias):
    # BN2D-5: fnn's folded Conv2d -> BatchNorm2d weights are torch's fuse_conv_bn_eval's
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    rng = rng_for("fold", bias)
    conv, bn = (
        torch.nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=bias).double(),
        torch.nn.BatchNorm2d(6).double(),
    )
    with torch.no_grad():
        bn.weight.copy_(tt(rng.normal(size=6))), bn.bias.copy_(tt(rng.normal(size=6)))
        bn.running_mean.copy_(tt(rng.normal(size=6))), bn.running_var.copy_(tt(rng.uniform(0.5, 2, 6)))
    conv.eval(), bn.eval()
    fused = fuse_conv_bn_eval(conv, bn)
    model = nn.Sequential(
        nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=bias, dtype="float64"),
        nn.BatchNorm2d(6, dtype="float64"),
    )
    flat = {f"0.{k}": v.numpy() for k, v in conv.state_dict().items()}
    flat |= {f"1.{k}": v.numpy() for k, v in bn.state_dict().items()}
    folded, fparams, fstate = nn.fold_batchnorm(model, *model.load_state_dict(flat))
    close(fparams[0]["weight"], fused.weight, rtol=1e-12, atol=1e-14)
    close(fparams[0]["bias"], fused.bias, rtol=1e-12, atol=1e-14)
    x = rng.normal(size=(2, 4, 5, 5))
    close(folded.apply(fparams, fstate, jnp.asarray(x), train=False)[0], fused(tt(x)), rtol=1e-10, atol=1e-12)

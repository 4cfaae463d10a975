"""Live PyTorch parity for conv1d/conv2d, pad and Conv1d/Conv2d on random shapes and options
(CONV-1..8, PAD-1..3); skipped when torch is not importable.

Each case draws its shapes and options from a seeded generator, runs torch in float64 and
compares fnn's forward, manual backward and jax.grad through the forward.
"""

import math
import warnings
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional
TOL = {"rtol": 1e-10, "atol": 1e-10}


def random_conv(rng, n):
    """Shapes and options torch accepts: stride, padding (int, tuple, 'same', 'valid'),
    dilation, groups, bias, batched or not."""
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 5, size=n))
    dilation = tuple(int(d) for d in rng.integers(1, 3, size=n))
    kind = rng.choice(["int", "tuple", "same", "valid"])
    stride = 1 if kind == "same" else tuple(int(s) for s in rng.integers(1, 4, size=n))
    padding = {
        "int": int(rng.integers(0, 3)),
        "tuple": tuple(int(p) for p in rng.integers(0, 3, size=n)),
    }.get(kind, str(kind))
    spatial = tuple(d * (k - 1) + 1 + int(rng.integers(0, 6)) for d, k in zip(dilation, kernel, strict=True))
    batched = rng.random() < 0.8
    shape = ((int(rng.integers(1, 4)),) if batched else ()) + (c_in, *spatial)
    w_shape = (c_out, c_in // groups, *kernel)
    return (
        shape,
        w_shape,
        rng.random() < 0.7,
        {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
    )


def torch_grads(fn, args, cot):
    ts = [None if a is None else torch.tensor(a, requires_grad=True) for a in args]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = fn(*ts)
    grads = torch.autograd.grad(y, [t for t in ts if t is not None], torch.tensor(cot(tuple(y.shape))))
    return y.detach().numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_conv_on_random_shapes_and_options(x64, n, seed):
    rng = np.random.default_rng(100 * n + seed)
    shape, w_shape, has_bias, kw = random_conv(rng, n)
    x, w = rng.normal(size=shape), rng.normal(size=w_shape)
    b = rng.normal(size=w_shape[0]) if has_bias else None
    tconv = TF.conv1d if n == 1 else TF.conv2d
    draws = {}

    def cotangent(shape):
        draws["g"] = np.random.default_rng(seed).normal(size=shape)
        return draws["g"]

    y_t, grads_t = torch_grads(lambda *a: tconv(*a, **kw), [x, w, b], cotangent)
    conv, backward = (F.conv1d, F.conv1d_backward) if n == 1 else (F.conv2d, F.conv2d_backward)

    @fast_jit
    def run(x, w, b, g):
        def loss(x, w, b):
            return jnp.vdot(conv(x, w, b, **kw), g)

        argnums = (0, 1) if b is None else (0, 1, 2)
        return conv(x, w, b, **kw), backward(g, x, w, b, **kw), jax.grad(loss, argnums)(x, w, b)

    y, manual, auto = run(
        jnp.asarray(x), jnp.asarray(w), None if b is None else jnp.asarray(b), jnp.asarray(draws["g"])
    )
    np.testing.assert_allclose(y, y_t, **TOL)
    assert (manual[2] is None) == (b is None)
    for got, want in zip([m for m in manual if m is not None], grads_t, strict=True):
        np.testing.assert_allclose(got, want, **TOL)
    for got, want in zip(auto, grads_t, strict=True):
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("seed", range(3))
def test_pad_on_random_shapes(x64, mode, seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 3))
    shape = tuple(int(s) for s in rng.integers(1, 3, size=int(rng.integers(1, 3)))) + tuple(
        int(s) for s in rng.integers(3, 6, size=k)
    )
    limit = {"reflect": lambda s: s - 1, "circular": lambda s: s // 2}.get(mode, lambda s: s + 2)
    pad = []
    for size in reversed(shape[-k:]):
        low = -1 if mode == "circular" else -2
        pad += [int(rng.integers(low, limit(size) + 1)), int(rng.integers(0, limit(size) + 1))]
    x = rng.normal(size=shape)
    value = 0.5 if mode == "constant" else None
    y_t, (gx_t,) = torch_grads(
        lambda t: TF.pad(t, pad, mode=mode, value=value),
        [x],
        lambda s: np.cos(np.arange(math.prod(s))).reshape(s),
    )
    fill = 0.0 if value is None else value

    @fast_jit
    def run(x):
        y = F.pad(x, pad, mode, fill)
        g = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return (
            y,
            F.pad_backward(g, x, pad, mode),
            jax.grad(lambda x: jnp.vdot(F.pad(x, pad, mode, fill), g))(x),
        )

    y, manual, auto = run(jnp.asarray(x))
    np.testing.assert_allclose(y, y_t, **TOL)
    np.testing.assert_allclose(manual, gx_t, **TOL)
    np.testing.assert_allclose(auto, gx_t, **TOL)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("n", [1, 2])
def test_conv_layer_loads_torchs_state_dict_and_matches(x64, n, padding_mode):
    rng = np.random.default_rng(zlib.crc32(f"{n}{padding_mode}".encode()))
    shape, w_shape, has_bias, kw = random_conv(rng, n)
    if kw["padding"] != "same" and padding_mode != "zeros":  # copy modes: pads within the input
        kw["padding"] = 1
        shape = shape[:-n] + tuple(max(s, 3) for s in shape[-n:])
    args = {"in_channels": w_shape[1] * kw["groups"], "out_channels": w_shape[0], "kernel_size": w_shape[2:]}
    module = getattr(torch.nn, f"Conv{n}d")(**args, **kw, bias=has_bias, padding_mode=padding_mode).double()
    layer = getattr(nn, f"Conv{n}d")(**args, **kw, bias=has_bias, padding_mode=padding_mode, dtype="float64")
    params, state = layer.load_state_dict({k: v.detach().numpy() for k, v in module.state_dict().items()})
    x = rng.normal(size=shape)
    xt = torch.tensor(x, requires_grad=True)
    y_t = module(xt)
    g = rng.normal(size=tuple(y_t.shape))
    grads_t = torch.autograd.grad(y_t, [xt, *module.parameters()], torch.tensor(g))

    @fast_jit
    def run(params, x, g):
        y, _, pullback = layer.apply_vjp(params, state, x, train=True)
        auto = jax.grad(lambda p, x: jnp.vdot(layer.apply(p, state, x, train=True)[0], g), (0, 1))(params, x)
        return y, pullback(g), auto

    y, (gp, gx), (gp_auto, gx_auto) = run(params, jnp.asarray(x), jnp.asarray(g))
    np.testing.assert_allclose(y, y_t.detach().numpy(), **TOL)
    for got in (gx, gx_auto):
        np.testing.assert_allclose(got, grads_t[0].numpy(), **TOL)
    for (name, _), want in zip(module.named_parameters(), grads_t[1:], strict=True):
        np.testing.assert_allclose(gp[name], want.numpy(), **TOL)
        np.testing.assert_allclose(gp_auto[name], want.numpy(), **TOL)
    assert list(layer.state_dict(params, state)) == list(module.state_dict())

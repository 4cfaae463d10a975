"""Live PyTorch parity for max_pool1d/2d, avg_pool1d/2d and adaptive_avg_pool2d on random
shapes and options (POOL-1..6, AVGPOOL-1..3, ADAPTIVE-1..2); skipped when torch is not
importable.

Each case draws its shapes and options from a seeded generator, runs torch in float64 and
compares fnn's forward, manual backward and jax.vjp of the forward. Max-pool inputs are small
integers, so most windows hold ties (POOL-5).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional
TOL = {"rtol": 1e-12, "atol": 1e-12}


def random_pool(rng, name):
    """(input shape, options) torch accepts for the op `name`."""
    n = 1 if name.endswith("1d") else 2
    kernel = tuple(int(k) for k in rng.integers(1, 5, size=n))
    kw = {
        "kernel_size": kernel,
        "stride": None if rng.random() < 0.3 else tuple(int(s) for s in rng.integers(1, 4, size=n)),
        "padding": tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel),
        "ceil_mode": bool(rng.random() < 0.5),
    }
    dilation = (1,) * n
    if name.startswith("max"):
        dilation = tuple(int(d) for d in rng.integers(1, 3, size=n))
        kw["dilation"] = dilation
    else:
        kw["count_include_pad"] = bool(rng.random() < 0.5)
        if n == 2 and rng.random() < 0.3:
            kw["divisor_override"] = int(rng.integers(1, 5))
    spatial = tuple(d * (k - 1) + 1 + int(rng.integers(0, 6)) for d, k in zip(dilation, kernel, strict=True))
    batch = (int(rng.integers(1, 3)),) if rng.random() < 0.8 else ()
    return (*batch, int(rng.integers(1, 3)), *spatial), kw


def check(name, x, kw):
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(TF, name)(xt, **kw)
    cot = np.cos(np.arange(yt.numel())).reshape(tuple(yt.shape))
    (gt,) = torch.autograd.grad(yt, [xt], torch.tensor(cot))
    op, backward = getattr(F, name), getattr(F, name + "_backward")

    @fast_jit
    def run(x, g):
        y, pull = jax.vjp(lambda x: op(x, **kw), x)
        return y, backward(g, x, **kw), pull(g)[0]

    y, manual, auto = run(jnp.asarray(x), jnp.asarray(cot))
    msg = f"{name} {x.shape} {kw}"
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL, err_msg=msg)
    np.testing.assert_allclose(manual, gt.numpy(), **TOL, err_msg=msg)
    np.testing.assert_allclose(auto, gt.numpy(), **TOL, err_msg=msg)


@pytest.mark.parametrize("name", ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d"])
def test_pool_on_random_shapes_and_options(x64, name):
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(4):
        shape, kw = random_pool(rng, name)
        x = (
            rng.integers(-2, 3, size=shape).astype(np.float64)
            if name[:3] == "max"
            else rng.normal(size=shape)
        )
        check(name, x, kw)


def test_adaptive_avg_pool2d_on_random_shapes(x64):
    rng = np.random.default_rng(7)
    for _ in range(4):
        shape = (int(rng.integers(1, 3)), *(int(s) for s in rng.integers(1, 8, size=2)))
        out = tuple(None if rng.random() < 0.2 else int(o) for o in rng.integers(1, 9, size=2))
        check("adaptive_avg_pool2d", rng.normal(size=shape), {"output_size": out})


@pytest.mark.parametrize("name", ["max_pool1d", "max_pool2d"])
def test_max_pool_second_order_on_random_shapes_and_options(x64, name):
    """Hessian-vector products of sum(max_pool(x)³) on integer-valued (tied) inputs: torch's
    double backward against fnn's forward-over-reverse and reverse-over-reverse."""
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    for _ in range(3):
        shape, kw = random_pool(rng, name)
        x = rng.integers(-2, 3, size=shape).astype(np.float64)
        v = rng.normal(size=shape)
        xt = torch.tensor(x, requires_grad=True)
        (gt,) = torch.autograd.grad((getattr(TF, name)(xt, **kw) ** 3).sum(), [xt], create_graph=True)
        (hvt,) = torch.autograd.grad(gt, [xt], torch.tensor(v))
        op = getattr(F, name)

        def f(z, op=op, kw=kw):
            return jnp.sum(op(z, **kw) ** 3)

        @fast_jit
        def run(x, v, f=f):
            fwd_rev = jax.jvp(jax.grad(f), (x,), (v,))[1]
            rev_rev = jax.grad(lambda z: jnp.vdot(jax.grad(f)(z), v))(x)
            return fwd_rev, rev_rev

        msg = f"{name} {shape} {kw}"
        for hv in run(jnp.asarray(x), jnp.asarray(v)):
            np.testing.assert_allclose(hv, hvt.numpy(), **TOL, err_msg=msg)

"""fnn/_fast/pooling.py equals the readable definitions of fnn/functional/pooling.py, bit for bit.

For windows that tile the input (kernel == stride, no padding or dilation, sizes divisible),
the reshape path's window choice, tangent gather and gradient routing are compared with
``window_choice``, ``gather`` and ``route`` on the same arguments: only selections, so the
values are equal exactly (NaN where NaN), in float32 and float64, on inputs full of ties,
with NaN and -inf. ``computed_once`` is the function it wraps, under jit and vmap, and the
public ops (which use both seams) equal the definitions.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

import fnn.functional as F
from fnn._fast import pooling as fast
from fnn.functional import pooling as P

# (input shape, kernel): windows that tile the input
TILING = [
    ((2, 3, 6, 8), (2, 2)),
    ((1, 2, 9, 6), (3, 2)),
    ((3, 2, 4, 4), (4, 4)),
    ((2, 3, 12), (3,)),
    ((2, 1, 5), (1,)),
]
IDS = [f"{s}-k{k}" for s, k in TILING]


def _tied(shape, dtype, seed=0, specials=True):
    """Small integers (most windows hold ties), with some NaN and -inf."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, shape).astype(np.float64)
    if specials:
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, max(1, flat.size // 20), replace=False)] = np.nan
        flat[rng.choice(flat.size, max(1, flat.size // 20), replace=False)] = -np.inf
    return jnp.asarray(x, dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape, kernel", TILING, ids=IDS)
def test_tiling_path_equals_the_definition(x64, shape, kernel, dtype):
    x = _tied(shape, dtype)
    n = len(kernel)
    geom, _ = P.geometry("max_pool", x, n, kernel, None, 0)
    assert fast.tiles(geom.size, geom.kernel, geom.stride, geom.padding, geom.dilation)
    y = P._max_pool_definition(x, geom)
    g = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), dtype)
    dx = jnp.asarray(np.random.default_rng(2).normal(size=x.shape), dtype)

    @fast_jit
    def both(x, y, g, dx):
        c_fast, c_def = fast.window_choice(x, y, kernel), P.window_choice(x, y, geom)
        return (
            (c_fast, c_def),
            (fast.gather(dx, c_def, kernel), P.gather(dx, c_def, geom)),
            (fast.route(g, c_def, kernel), P.route(g, c_def, geom)),
        )

    for got, want in both(x, y, g, dx):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation, expected",
    [
        ((6, 6), (2, 2), (2, 2), (0, 0), (1, 1), True),
        ((7, 6), (2, 2), (2, 2), (0, 0), (1, 1), False),  # 7 is not a multiple of 2
        ((6, 6), (2, 2), (1, 1), (0, 0), (1, 1), False),  # overlapping
        ((6, 6), (2, 2), (2, 2), (1, 1), (1, 1), False),  # padded
        ((6, 6), (2, 2), (2, 2), (0, 0), (2, 1), False),  # dilated
    ],
)
def test_tiles_only_when_the_windows_tile_the_input(size, kernel, stride, padding, dilation, expected):
    assert fast.tiles(size, kernel, stride, padding, dilation) is expected


def test_computed_once_is_the_function_it_wraps(x64):
    x = _tied((2, 3, 7, 7), jnp.float64)
    geom, _ = P.geometry("max_pool2d", x, 2, 3, 2, 1)
    y = P._max_pool_definition(x, geom)
    choice = functools.partial(P.window_choice, geom=geom)

    @jax.jit
    def once(x, y):
        return fast.computed_once(choice, x, y), fast.computed_once(
            lambda x: P._max_pool_definition(x, geom), x
        )

    c, y2 = once(x, y)
    np.testing.assert_array_equal(c, choice(x, y))
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(
        jax.vmap(lambda a, b: fast.computed_once(choice, a[None], b[None])[0])(x, y), c
    )
    empty = jnp.zeros((0, 3, 7, 7))
    assert fast.computed_once(lambda a: a + 1, empty).shape == empty.shape


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 2},
        {"kernel_size": 3, "stride": 2, "padding": 1},
        {"kernel_size": (2, 3), "stride": 1, "dilation": (2, 1)},
    ],
    ids=str,
)
def test_public_max_pool_equals_the_definitions(x64, kw):
    """F.max_pool2d, its manual backward and jax.vjp (through both seams) against the
    definitions alone: the forward exactly, the gradients to rounding (overlapping windows add
    their contributions in another order)."""
    x = _tied((2, 2, 8, 8), jnp.float64, specials=False)
    geom, _ = P.geometry(
        "max_pool2d", x, 2, kw["kernel_size"], kw.get("stride"), kw.get("padding", 0), kw.get("dilation", 1)
    )
    y = P._max_pool_definition(x, geom)
    g = jnp.asarray(np.random.default_rng(3).normal(size=y.shape))

    @fast_jit
    def sides(x, g):
        want = P.route(g, P.window_choice(x, P._max_pool_definition(x, geom), geom), geom)
        vjp = jax.vjp(lambda z: F.max_pool2d(z, **kw), x)[1](g)[0]
        return F.max_pool2d(x, **kw), F.max_pool2d_backward(g, x, **kw), vjp, want

    fwd, manual, autodiff, want = sides(x, g)
    np.testing.assert_array_equal(fwd, y)
    np.testing.assert_allclose(manual, want, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(autodiff, want, rtol=1e-14, atol=1e-14)

"""Live parity with PyTorch for what fnn.models adds: unflatten (FLAT-2), LeCun's scaled tanh
(ACT-9, torch has none: its reference is ``A * torch.tanh(S * x)``), and the LeNet-5 and
modern CNN of fnn.models against the same torch networks with the same weights (a torch
state_dict loaded into fnn), forward and gradients in training and eval. Skipped where torch
is not installed (CI reads tests/torch_reference/*.json instead).
"""

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from fnn import functional as F  # noqa: E402

torch.set_num_threads(1)


def rng_for(*salt):
    return np.random.default_rng(zlib.crc32(repr(salt).encode()))


def tt(a, grad=False):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


@pytest.mark.parametrize(
    "shape, dim, sizes", [((3, 784), 1, (1, 28, 28)), ((2, 12, 3), -2, (2, -1)), ((6,), 0, (3, 2, 1))]
)
def test_unflatten(x64, shape, dim, sizes):
    # FLAT-2: torch.unflatten's shape and element order; the backward is torch's gradient
    rng = rng_for("unflatten", shape, dim)
    x = rng.normal(size=shape)
    xt = tt(x, True)
    yt = torch.unflatten(xt, dim, sizes)
    g = rng.normal(size=tuple(yt.shape))
    (gt,) = torch.autograd.grad(yt, [xt], tt(g))
    y = F.unflatten(jnp.asarray(x), dim, sizes)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    grad = F.unflatten_backward(jnp.asarray(g), jnp.asarray(x), dim, sizes)
    np.testing.assert_array_equal(grad, gt.numpy())


@pytest.mark.parametrize("amplitude, slope", [(1.7159, 2 / 3), (2.0, 0.25), (-1.0, 3.0)])
def test_scaled_tanh(x64, amplitude, slope):
    # ACT-9: A tanh(S x), with ±1000 and 0 planted; manual backward and jax.vjp vs autograd
    x = rng_for("scaled_tanh", amplitude).normal(size=(4, 5)) * 3
    x.reshape(-1)[:3] = [0.0, 1000.0, -1000.0]
    g = rng_for("cotangent", amplitude).normal(size=x.shape)
    xt = tt(x, True)
    yt = amplitude * torch.tanh(slope * xt)
    (gt,) = torch.autograd.grad(yt, [xt], tt(g))
    y, pullback = jax.vjp(lambda a: F.scaled_tanh(a, amplitude, slope), jnp.asarray(x))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-14, atol=1e-15)
    # near saturation 1 − tanh² cancels: both sides round it, to ~1e-16 of A·S·g
    manual = F.scaled_tanh_backward(jnp.asarray(g), jnp.asarray(x), amplitude, slope)
    np.testing.assert_allclose(manual, gt.numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(pullback(jnp.asarray(g))[0], gt.numpy(), rtol=1e-13, atol=1e-14)

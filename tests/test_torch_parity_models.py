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


class TorchScaledTanh(torch.nn.Module):
    def forward(self, x):
        return 1.7159 * torch.tanh(2 / 3 * x)


def torch_lenet5():
    T = torch.nn
    return T.Sequential(
        T.Flatten(),
        T.Unflatten(1, (1, 28, 28)),
        T.Conv2d(1, 6, 5, padding=2),
        TorchScaledTanh(),
        T.AvgPool2d(2),
        T.Conv2d(6, 16, 5),
        TorchScaledTanh(),
        T.AvgPool2d(2),
        T.Conv2d(16, 120, 5),
        TorchScaledTanh(),
        T.Flatten(),
        T.Linear(120, 84),
        TorchScaledTanh(),
        T.Linear(84, 10),
    )


def torch_cnn(channels, convs, hidden):
    T = torch.nn
    layers, width = [T.Flatten(), T.Unflatten(1, (1, 28, 28))], 1
    for c in channels:
        for _ in range(convs):
            layers += [T.Conv2d(width, c, 3, padding=1, bias=False), T.BatchNorm2d(c), T.ReLU()]
            width = c
        layers.append(T.MaxPool2d(2))
    side = 28 // 2 ** len(channels)
    head = (
        [T.Linear(width * side * side, hidden, bias=False), T.BatchNorm1d(hidden), T.ReLU()] if hidden else []
    )
    width = hidden or width * side * side
    return T.Sequential(*layers, T.Flatten(), *head, T.Linear(width, 10))


def _compare(model, module, x, labels, steps):
    """Load the torch module's state_dict into fnn, then per step (train or eval): logits,
    the loss's gradients (manual backward and jax.grad) and the buffers equal torch's."""
    module = module.double()
    params, state = model.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    assert list(model.state_dict(params, state)) == list(module.state_dict())  # torch's names, order
    xt, yt = tt(x), torch.tensor(labels)
    for train in steps:
        module.train(train)
        module.zero_grad()
        logits_t = module(xt)
        torch.nn.functional.cross_entropy(logits_t, yt).backward()
        y, new_state = model.apply(params, state, jnp.asarray(x), train=train)
        np.testing.assert_allclose(y, logits_t.detach().numpy(), rtol=1e-9, atol=1e-10)
        g = F.cross_entropy_backward(jnp.asarray(1.0), y, jnp.asarray(labels))
        manual, _ = model.backward(params, state, jnp.asarray(x), g, train=train)
        auto = jax.grad(
            lambda p, state=state, train=train: F.cross_entropy(
                model.apply(p, state, jnp.asarray(x), train=train)[0], jnp.asarray(labels)
            )
        )(params)
        want = {n: p.grad.numpy() for n, p in module.named_parameters()}
        for grads in (manual, auto):
            got = dict(model.named_arrays(grads, tuple({} for _ in model.layers)))
            assert sorted(got) == sorted(want)
            for n in want:
                np.testing.assert_allclose(got[n], want[n], rtol=1e-8, atol=1e-11, err_msg=n)
        buffers = dict(model.named_arrays(tuple({} for _ in model.layers), new_state))
        for n, b in module.named_buffers():
            np.testing.assert_allclose(buffers[n], b.numpy(), rtol=1e-12, atol=1e-14, err_msg=n)
        state = new_state


def test_lenet5_equals_torch_with_torch_weights(x64):
    from fnn import models

    torch.manual_seed(0)
    rng = rng_for("lenet5")
    _compare(
        models.lenet5(dtype="float64"),
        torch_lenet5(),
        rng.normal(size=(4, 28, 28)),
        rng.integers(0, 10, 4),
        [True, False],
    )


@pytest.mark.parametrize("channels, convs, hidden", [((4, 8), 2, 16), ((6,), 1, 0)])
def test_cnn_equals_torch_with_torch_weights(x64, channels, convs, hidden):
    # dropout 0: torch's masks are not JAX's (the Dropout/Dropout2d tests compare masks given)
    from fnn import models

    torch.manual_seed(1)
    rng = rng_for("cnn", channels)
    model = models.cnn(channels, convs, hidden=hidden, dropout=0.0, dtype="float64")
    _compare(
        model,
        torch_cnn(channels, convs, hidden),
        rng.normal(size=(5, 784)),
        rng.integers(0, 10, 5),
        [True, True, False],
    )

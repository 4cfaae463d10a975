"""fnn.diagnostics on conv nets: the probe's per-channel dead fraction, the conv weights'
update ratio and the saturation of tanh and LeNet-5's scaled tanh, each against a numpy
computation of its definition on constructed weights (a float64 correlation written here);
the rules on conv layers (hand-built records, as tests/test_diagnostics_rules.py); and the
report's filter grid and feature maps, decoded from its PNGs and compared pixel by pixel
with a colour map written here."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_diagnostics_report import Page, decode_png  # tests/: the report's own HTML/PNG readers

from fnn import functional as F
from fnn import nn, optim
from fnn.diagnostics import Probe, diagnose, probes
from fnn.diagnostics.report import _activation_maps, _conv_filters, _templates

# ---------------------------------------------------------------------------------------------
# numpy references


def np_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross-correlation, stride 1, no padding:
    out[n, o, i, j] = sum_{c, u, v} x[n, c, i + u, j + v] w[o, c, u, v] + b[o]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    kh, kw = w.shape[2:]
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for u in range(kh):
        for v in range(kw):
            out += np.einsum("nchw,oc->nohw", x[:, :, u : u + oh, v : v + ow], w[:, :, u, v])
    return out + np.asarray(b, np.float64)[None, :, None, None]


def np_diverging(v: np.ndarray, scale: float) -> np.ndarray:
    """The report's colour map by its definition: t = v / scale in [-1, 1]; white (255, 255,
    255) to blue (33, 102, 172) for t < 0, to red (178, 24, 43) for t > 0, linearly in |t|."""
    t = np.clip(np.asarray(v, np.float64) / scale, -1, 1)[..., None]
    end = np.where(t < 0, [33.0, 102.0, 172.0], [178.0, 24.0, 43.0])
    return np.rint(255.0 + np.abs(t) * (end - 255.0)).astype(np.uint8)


def set_params(model, params, **by_index):
    """``params`` with the layers at the given indices replaced (float32 arrays)."""
    params = list(params)
    for i, p in by_index.items():
        params[int(i.removeprefix("layer"))] = {k: jnp.asarray(v, jnp.float32) for k, v in p.items()}
    return tuple(params)


# ---------------------------------------------------------------------------------------------
# The probe: dead channels and the conv update ratio


def dead_channel_case(bias3: float):
    """Conv2d(1, 4, 3) weights with a known set of dead channels on inputs in [0, 0.1) with one 1.

    Channels 0 and 2: bias -100, dead. Channel 1: only the kernel's top-left tap (weight 1)
    and bias -0.5, so it is positive at one position of one sample (x[0, 0, 0, 0] = 1) and
    nowhere else: alive as a channel, though 35 of its 36 (position) units are dead over the
    batch. Channel 3: small weights, bias ``bias3`` (0.5: alive everywhere; -100: dead).
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.1, size=(8, 1, 6, 6)).astype(np.float32)
    x[0, 0, 0, 0] = 1.0
    w = np.zeros((4, 1, 3, 3), np.float32)
    w[0], w[2] = rng.normal(size=(2, 1, 3, 3))
    w[1, 0, 0, 0] = 1.0
    w[3] = 0.1 * rng.normal(size=(1, 3, 3))
    b = np.array([-100.0, -0.5, -100.0, bias3], np.float32)
    return x, w, b


@pytest.mark.parametrize(
    ("activation", "bias3", "grad", "dead"),
    [(nn.ReLU(), 0.5, "autodiff", 2), (nn.ReLU(), -100.0, "manual", 3), (nn.ELU(), -100.0, "autodiff", 3)],
)
def test_dead_channels_and_the_conv_update_ratio_equal_numpy(activation, bias3, grad, dead):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), activation, nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    x, w, b = dead_channel_case(bias3)
    y = np.arange(8, dtype=np.int32) % 3
    params, state = model.init(jax.random.key(1))
    params = set_params(model, params, layer0={"weight": w, "bias": b})
    lr = 0.5
    result = fit_one_step(model, params, state, x, y, lr, grad)
    record = result.history[0]
    layer = {entry["index"]: entry for entry in record["probe"]["layers"]}
    assert [(i, e["kind"]) for i, e in layer.items()] == [
        (0, "conv"),
        (1, activation_kind(activation)),
        (4, "linear"),
    ]
    assert layer[0]["name"] == "Conv2d(1, 4, kernel_size=3)" and layer[1]["unit"] == "channel"
    assert "unit" not in layer[0] and "unit" not in layer[4]

    # Dead channels by their definition: pre-activation <= 0 for every sample and position.
    pre = np_conv2d(x, w, b)
    dead_channels = np.all(pre <= 0, axis=(0, 2, 3))
    assert dead_channels.sum() == dead and dead_channels.tolist()[:3] == [True, False, True]
    assert layer[1]["dead_fraction"] == [pytest.approx(dead / 4, rel=1e-7)]
    per_position = np.all(pre <= 0, axis=0).mean()  # what the probe counts in an MLP
    assert per_position > dead / 4 + 0.2  # channel 1 makes the two definitions differ

    # The update ratio by its definition, with the gradient of a loss written here (jax.grad).
    def objective(p):
        logits, _ = model.apply(p, state, jnp.asarray(x), train=True)
        return F.cross_entropy(logits, jnp.asarray(y))

    g = np.asarray(jax.grad(objective)(params)[0]["weight"], np.float64)
    w64, w_new = np.asarray(w, np.float64), np.asarray(result.params[0]["weight"], np.float64)
    np.testing.assert_allclose(w_new, w64 - lr * g, rtol=1e-5, atol=1e-7)  # plain SGD moved it so
    assert layer[0]["weight_norm"] == [pytest.approx(np.sqrt(np.sum(w64**2)), rel=1e-6)]
    assert layer[0]["grad_norm"] == [pytest.approx(np.sqrt(np.sum(g**2)), rel=1e-4)]
    ratio = np.sqrt(np.sum((w_new - w64) ** 2)) / np.sqrt(np.sum(w64**2))
    assert layer[0]["update_ratio"] == [pytest.approx(ratio, rel=1e-4)]
    assert ratio == pytest.approx(lr * np.sqrt(np.sum(g**2)) / np.sqrt(np.sum(w64**2)), rel=1e-4)
    assert np.all(g[dead_channels] == 0)  # a dead channel's kernel gets no gradient

    # The rules: dead-relu counts channels, for nn.ReLU only (ELU still passes gradient).
    fired = [(d["rule"], d["layer"], d["value"]) for d in record["diagnoses"]]
    if isinstance(activation, nn.ReLU) and dead / 4 > 0.5:
        assert fired == [("dead-relu", "1 ReLU()", pytest.approx(0.75))]
        message = record["diagnoses"][0]["message"]
        assert message.startswith("75% of channels dead (0 for every sample and position of a batch)")
    else:
        assert fired == []


def activation_kind(layer) -> str:
    return {nn.ReLU: "relu", nn.ELU: "elu"}[type(layer)]


def fit_one_step(model, params, state, x, y, lr, grad="autodiff"):
    from fnn.train import fit

    return fit(
        model, nn.CrossEntropyLoss(), optim.sgd(lr=lr), (x, y), epochs=1, batch_size=len(x), grad=grad,
        params=params, state=state, key=jax.random.key(0), probe=Probe(every=1), progress=False,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The probe: saturation of tanh and of LeNet-5's scaled tanh after convolutions


def test_tanh_and_scaled_tanh_saturation_after_convs_equal_numpy():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Conv2d(4, 2, 1), nn.ScaledTanh(), nn.Flatten(), nn.Linear(32, 3)
    )
    rng = np.random.default_rng(8)
    x = rng.normal(size=(6, 1, 6, 6)).astype(np.float32)
    w1 = (rng.normal(size=(4, 1, 3, 3)) * np.array([3.0, 0.2, 2.0, 3.0])[:, None, None, None]).astype(
        np.float32
    )
    b1 = rng.normal(size=4).astype(np.float32)
    w2, b2 = (2 * rng.normal(size=(2, 4, 1, 1))).astype(np.float32), rng.normal(size=2).astype(np.float32)
    params, state = model.init(jax.random.key(0))
    params = set_params(model, params, layer0={"weight": w1, "bias": b1}, layer2={"weight": w2, "bias": b2})
    record = fit_one_step(model, params, state, x, np.zeros(6, np.int32), 0.01).history[0]
    layer = {entry["index"]: entry for entry in record["probe"]["layers"]}
    kinds = [(i, e["kind"]) for i, e in layer.items()]
    assert kinds == [(0, "conv"), (1, "tanh"), (2, "conv"), (3, "tanh"), (5, "linear")]

    # tanh saturates where |y| > 0.98; A·tanh(Sx) where |y| > 0.98·A (1% of its range 2A from a limit).
    a1 = np.tanh(np_conv2d(x, w1, b1))
    a2 = 1.7159 * np.tanh(2 / 3 * np_conv2d(a1, w2, b2))
    for i, a, threshold in ((1, a1, 0.98), (3, a2, 0.98 * 1.7159)):
        assert np.min(np.abs(np.abs(a) - threshold)) > 1e-4  # no value on the edge in float32
        expected = np.mean(np.abs(a) > threshold)
        assert 0.05 < expected < 0.95
        assert layer[i]["saturated_fraction"] == [pytest.approx(expected, rel=1e-6)]
        assert layer[i]["mean"] == [pytest.approx(a.mean(), rel=1e-4, abs=1e-6)]
        assert layer[i]["std"] == [pytest.approx(a.std(), rel=1e-4)]
    # The rules: saturation for each layer over half saturated, valued at that fraction.
    fired = {d["layer"]: d["value"] for d in record["diagnoses"] if d["rule"] == "saturation"}
    expected_fired = {
        f"{i} {layer[i]['name']}": layer[i]["saturated_fraction"][0]
        for i in (1, 3)
        if layer[i]["saturated_fraction"][0] > 0.5
    }
    assert fired == expected_fired and list(fired) == ["1 Tanh()"]  # 57% saturated; the scaled tanh 12.5%


@dataclass(frozen=True)
class Bounded(nn.Elementwise):
    """3·sigmoid(x) - 1: limits -1 and 2, an activation fnn does not know by name."""

    def _forward(self, x):
        return 3 * jax.nn.sigmoid(x) - 1


@dataclass(frozen=True)
class Doubling(nn.Elementwise):
    def _forward(self, x):
        return 2 * x


def test_saturation_limits_and_kinds_of_unknown_elementwise_layers():
    bounded = Bounded()
    assert probes.saturation_limits(bounded) == (-1.0, 2.0) and probes.layer_kind(bounded) == "saturating"
    assert probes.saturation_limits(Doubling()) is None and probes.layer_kind(Doubling()) is None
    assert probes.saturation_limits(nn.ScaledTanh()) == pytest.approx((-1.7159, 1.7159), rel=1e-7)
    assert probes.saturation_limits(nn.Sigmoid()) == (0.0, 1.0)
    assert probes.layer_kind(nn.Unflatten(1, (1, 4, 4))) is None  # reshapes: no limits
    assert probes.layer_kind(nn.BatchNorm2d(3)) == "batchnorm"
    assert probes.layer_name(nn.BatchNorm2d(3)) == "BatchNorm2d(3)"
    assert probes.layer_name(nn.Conv2d(4, 8, 5, stride=2, padding=2, groups=2, bias=False)) == (
        "Conv2d(4, 8, kernel_size=5, stride=2, padding=2, groups=2, bias=False)"
    )


def test_channel_units_follow_the_nearest_linear_flatten_or_spatial_layer():
    layers = (
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2), nn.ELU(),
        nn.Flatten(), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(),
    )  # fmt: skip
    assert [probes.channel_units(layers, i) for i in (2, 4, 6, 8)] == [True, True, False, False]


# ---------------------------------------------------------------------------------------------
# The rules on conv layers, from hand-built records


def conv(index, weight_norm, update_ratio, n):
    return {
        "index": index, "name": "Conv2d(1, 6, kernel_size=5, padding=2)", "kind": "conv",
        "weight_norm": [weight_norm] * n, "grad_norm": [1.0] * n, "update_ratio": [update_ratio] * n,
    }  # fmt: skip


def linear(index, weight_norm, update_ratio, n):
    return {
        "index": index, "name": "Linear(120, 84)", "kind": "linear",
        "weight_norm": [weight_norm] * n, "grad_norm": [1.0] * n, "update_ratio": [update_ratio] * n,
    }  # fmt: skip


def record(loss, layers):
    n = len(loss)
    probe = {"every": 10, "step": [10 * (j + 1) for j in range(n)], "loss": loss, "grad_norm": [1.0] * n}
    return {"epoch": 1, "train_loss": float(np.mean(loss)), "probe": probe | {"layers": layers}}


def test_a_conv_weights_update_ratio_counts_in_lr_too_large():
    n = 3
    layers = [conv(0, 2.0, 3.0, n), linear(5, 1.0, 0.1, n)]
    (d,) = diagnose([record([2.3, 2.2, 2.1], layers)])
    expected = math.sqrt((2.0 * 3.0) ** 2 + (1.0 * 0.1) ** 2) / math.sqrt(2.0**2 + 1.0**2)
    assert (d.rule, d.step, d.value) == ("lr-too-large", 10, pytest.approx(expected))
    assert f"of the Linear and Conv weights was {expected:.4g} at step 10" in d.message  # 2.684
    # Without the conv the Linear weights alone moved by a tenth of their norm: no finding.
    assert diagnose([record([2.3, 2.2, 2.1], layers[1:])]) == []


def test_lr_too_small_reads_a_conv_only_model():
    (d,) = diagnose([record([2.3] * 4, [conv(0, 2.0, 1e-7, 4)])])
    assert (d.rule, d.value) == (
        "lr-too-small",
        1e-7,
    ) and "of the Conv weights stayed at or below" in d.message


def test_dead_relu_counts_channels_or_units_as_the_record_says():
    relu = {"index": 1, "name": "ReLU()", "kind": "relu", "mean": [0.1] * 3, "std": [0.2] * 3}
    relu["dead_fraction"] = [0.6, 0.7, 0.8]
    (d,) = diagnose([record([2.3, 2.2, 2.1], [relu | {"unit": "channel"}])])
    assert (d.rule, d.layer, d.value) == ("dead-relu", "1 ReLU()", 0.7)
    assert d.message.startswith("70% of channels dead (0 for every sample and position of a batch)")
    (d,) = diagnose([record([2.3, 2.2, 2.1], [relu])])
    assert d.message.startswith("70% of units dead (0 for every sample of a batch)")
    with pytest.raises(ValueError, match=r"\['unit'\] must be 'unit' or 'channel', got 'pixel'"):
        diagnose([record([2.3], [relu | {"unit": "pixel", "dead_fraction": [0.1], "mean": [0], "std": [1]}])])


def test_saturation_reads_a_saturating_layer():
    layer = {"index": 2, "name": "Bounded()", "kind": "saturating", "mean": [0.0] * 3, "std": [1.0] * 3}
    (d,) = diagnose([record([2.3, 2.2, 2.1], [layer | {"saturated_fraction": [0.9, 0.4, 0.8]}])])
    assert (d.rule, d.layer, d.value, d.step) == ("saturation", "2 Bounded()", 0.8, 10)


# ---------------------------------------------------------------------------------------------
# The report: the first convolution's filters and the first block's feature maps


KNOWN = np.array([[-2.0, 0.0, 2.0], [1.0, -1.0, 0.5], [0.0, 0.0, -0.5]])


def known_filters(out_channels=4, in_channels=1):
    """Kernel 0 is KNOWN; the others are KNOWN scaled and shifted, so each has its own scale."""
    w = np.stack(
        [np.stack([KNOWN * (o + 1) + 0.25 * c for c in range(in_channels)]) for o in range(out_channels)]
    )
    return w.astype(np.float32)


def test_the_filter_grid_has_one_image_per_output_channel_with_its_values():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    params, state = model.init(jax.random.key(0))
    w = known_filters()
    params = set_params(model, params, layer0={"weight": w, "bias": np.zeros(4)})
    page = Page(_conv_filters(model, params, state, 64))
    figures, images = page.all("figure", cls="filter"), page.all("img")
    assert [f["data-channel"] for f in figures] == ["0", "1", "2", "3"] and len(images) == 4
    pixels = [decode_png(a["src"]) for a in images]
    # KNOWN: -2 is full blue, 2 full red, 0 white, 1 halfway to red (216.5 rounds to even 216).
    assert pixels[0][0].tolist() == [[33, 102, 172], [255, 255, 255], [178, 24, 43]]
    assert pixels[0][1, 0].tolist() == [216, 140, 149]
    for o in range(4):
        np.testing.assert_array_equal(pixels[o], np_diverging(w[o, 0], np.abs(w[o, 0]).max()))
    assert "±2" in page.text[None] and "Layer 0 Conv2d(1, 4, kernel_size=3)" in page.text[None]
    assert len(Page(_conv_filters(model, params, state, 3)).all("img")) == 3  # max_channels


def test_filters_of_several_input_channels_sit_side_by_side_on_one_scale():
    model = nn.Sequential(nn.Conv2d(2, 3, 3))
    params, state = model.init(jax.random.key(0))
    w = known_filters(3, 2)
    params = set_params(model, params, layer0={"weight": w, "bias": np.zeros(3)})
    pixels = [decode_png(a["src"]) for a in Page(_conv_filters(model, params, state, 64)).all("img")]
    assert [p.shape for p in pixels] == [(3, 7, 3)] * 3
    for o, p in enumerate(pixels):
        scale = np.abs(w[o]).max()
        np.testing.assert_array_equal(p[:, :3], np_diverging(w[o, 0], scale))
        np.testing.assert_array_equal(p[:, 4:], np_diverging(w[o, 1], scale))
        assert np.all(p[:, 3] == 200)  # the grey gap between input channels


@pytest.mark.parametrize("batch_norm", [False, True])
def test_feature_maps_are_the_first_blocks_output_for_test_image_0(batch_norm):
    bn = (nn.BatchNorm2d(3),) if batch_norm else ()
    model = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 3, 3), *bn, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3 * 13 * 13, 10),
    )  # fmt: skip
    params, state = model.init(jax.random.key(0))
    w = known_filters(3)
    b = np.array([0.0, -1000.0, 0.1], np.float32)  # channel 1 never fires: an all-white map
    params = set_params(model, params, layer1={"weight": w, "bias": b})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 784)).astype(np.float32)
    page = Page(_activation_maps(model, params, state, x, np.array([7, 1]), {"dataset": "mnist"}, 64))

    pre = np_conv2d(x[:1].reshape(1, 1, 28, 28), w, b)[0]
    if batch_norm:  # eval mode with the initial running statistics: mean 0, var 1, eps 1e-5
        pre = pre / np.sqrt(1 + 1e-5)
    maps = np.maximum(pre, 0)
    figures = page.all("figure")
    assert [f.get("data-channel") for f in figures] == [None, "0", "1", "2"]  # the input, then 3 maps
    images = [decode_png(a["src"]) for a in page.all("img")]
    assert images[0].shape == (28, 28)  # the test image itself, grayscale
    scale = maps.max()
    for c in range(3):
        assert images[c + 1].shape == (26, 26, 3)  # after the ReLU, before the pooling
        # float32 maps against float64 ones: a colour may round the other way at .5
        expected = np_diverging(maps[c], scale).astype(int)
        assert np.abs(images[c + 1].astype(int) - expected).max() <= 1
    assert np.all(images[2] == 255) and "all 0" in page.text[None]
    assert "true 7" in page.text[None] and ("1 Conv2d" in page.text[None]) and "ReLU()" in page.text[None]


def test_a_model_without_convolutions_gets_a_sentence():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    params, state = model.init(jax.random.key(0))
    x = np.zeros((1, 784), np.float32)
    assert "no convolution layer" in _conv_filters(model, params, state, 64)
    text = _activation_maps(model, params, state, x, np.array([0]), {"dataset": "mnist"}, 64)
    assert "no convolution layer" in text and "<img" not in text


def test_a_linear_after_convolutions_with_784_inputs_draws_no_templates():
    # fnn.models.cnn((8, 16)) ends in Linear(16·7·7 = 784, 10): channels × positions, not pixels.
    model = nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 4, 15), nn.Flatten(), nn.Linear(784, 10))
    text = _templates(model, model.init(jax.random.key(0))[0], {"dataset": "mnist"}, 60)
    assert "reads the convolutions' 784 features, not the pixels" in text and "<img" not in text

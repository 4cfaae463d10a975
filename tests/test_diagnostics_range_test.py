"""fnn.diagnostics.lr_find: the LR range test and `python -m fnn lr-find`.

Each result is checked against something computed here independently: the closed form of
the exponential range, a numpy EMA with bias correction, the min/10 rule in numpy, the
largest stable gradient-descent rate 2/λ_max of a quadratic, the compiled train epoch's own
per-step losses, and the CLI's JSON against the same numpy rule.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import nn, optim, train
from fnn.__main__ import main
from fnn.diagnostics import LRFindResult, lr_find
from fnn.diagnostics.range_test import summarize


def regression(n=64, seed=0):
    """Inputs with unequal scales (so the Hessian's eigenvalues differ) and a linear target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * np.array([1.0, 0.5, 2.0])
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(n, 1))
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


def largest_stable_lr(x):
    """2/λ_max of the Hessian of MSELoss (mean over n) for Linear(3, 1) with bias:
    H = (2/n)·[x 1]ᵀ[x 1]; full-batch gradient descent converges iff lr < 2/λ_max."""
    xa = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
    return 2 / np.linalg.eigvalsh(2 / len(x) * xa.T @ xa).max()


def numpy_ema(losses, beta):
    out, average = [], 0.0
    for t, value in enumerate(losses):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta ** (t + 1)))
    return np.array(out)


def numpy_suggestion(lrs, smoothed, factor):
    """(index of the first diverged step or None, lr at the smoothed minimum before it / 10)."""
    end = len(lrs)
    for t in range(len(lrs)):
        if not np.isfinite(smoothed[t]) or smoothed[t] > factor * np.nanmin(smoothed[: t + 1]):
            end = t
            break
    return (None if end == len(lrs) else end), lrs[int(np.argmin(smoothed[:end]))] / 10


def find(x, y, make_optimizer=lambda lr: optim.sgd(lr=lr), **kwargs):
    kwargs = {"key": jax.random.key(0), "batch_size": len(x), **kwargs}
    return lr_find(nn.Linear(3, 1), nn.MSELoss(), make_optimizer, (x, y), **kwargs)


@pytest.mark.slow
def test_lrs_follow_the_exponential_closed_form():
    x, y = regression()
    r = find(x, y, min_lr=1e-4, max_lr=0.1, steps=12)
    t = np.arange(12)
    np.testing.assert_allclose(r.lrs, 1e-4 * (0.1 / 1e-4) ** (t / 11), rtol=1e-5)
    assert isinstance(r, LRFindResult) and r.losses.shape == r.smoothed.shape == r.valid.shape == (12,)


@pytest.mark.slow
def test_lrs_without_an_lr_link_are_the_schedule():
    # optim.scale has no learning-rate state: lrs come from the range's closed form itself
    x, y = regression()
    r = find(x, y, make_optimizer=lambda lr: optim.scale(-1e-3), min_lr=1e-3, max_lr=1.0, steps=4)
    np.testing.assert_allclose(r.lrs, [1e-3, 1e-2, 1e-1, 1.0], rtol=1e-5)


@pytest.mark.slow
def test_smoothing_is_a_bias_corrected_moving_average():
    x, y = regression()
    r = find(x, y, min_lr=1e-4, max_lr=0.5, steps=20, beta=0.9)
    np.testing.assert_allclose(r.smoothed, numpy_ema(r.losses, 0.9), rtol=1e-12)


@pytest.mark.slow
def test_quadratic_diverges_past_two_over_lambda_max_and_the_suggestion_lies_below():
    x, y = regression()
    stable = largest_stable_lr(x)
    r = find(x, y, min_lr=1e-3 * stable, max_lr=100 * stable, steps=60)
    assert r.diverged_at is not None
    # below 2/λ_max every eigen-component of the error shrinks, so the loss cannot rise
    assert r.lrs[r.diverged_at] > stable
    assert np.all(np.diff(r.losses[r.lrs < stable]) <= 1e-6 * r.losses[0])
    final = r.losses[-1]
    assert not np.isfinite(final) or final > 1e3 * r.losses[0]
    assert r.suggested_lr < stable


@pytest.mark.slow
def test_suggestion_and_divergence_match_the_rule_computed_in_numpy():
    x, y = regression()
    stable = largest_stable_lr(x)
    r = find(x, y, min_lr=1e-3 * stable, max_lr=100 * stable, steps=60, diverge_factor=3.0)
    smoothed = numpy_ema(r.losses, 0.98)
    diverged_at, suggested = numpy_suggestion(r.lrs, smoothed, 3.0)
    assert r.diverged_at == diverged_at
    assert r.valid.tolist() == [t < diverged_at for t in range(60)]
    assert r.suggested_lr == pytest.approx(suggested, rel=1e-12)
    assert "divided by 10" in r.rule


def test_summarize_on_a_hand_made_curve():
    # beta 0: smoothed = raw. The minimum 0.5 is at lr 1; 2.1 > 4 x 0.5 diverges at index 5;
    # the later 0.2 (after a NaN) does not count: the valid steps are a prefix.
    lrs = [1e-3, 1e-2, 1e-1, 1.0, 2.0, 4.0, 8.0, 16.0]
    losses = [3.0, 2.0, 1.0, 0.5, 1.9, 2.1, np.nan, 0.2]
    r = summarize(lrs, losses, beta=0.0)
    assert r.diverged_at == 5 and r.valid.tolist() == [True] * 5 + [False] * 3
    assert r.suggested_lr == pytest.approx(0.1)


def test_summarize_refuses_a_non_finite_first_loss():
    with pytest.raises(FloatingPointError, match=r"loss of the first step .* is not finite"):
        summarize([0.1, 1.0], [np.nan, 1.0])


@pytest.mark.slow
def test_batches_and_dropout_keys_are_those_of_the_train_epoch():
    # A constant-lr optimizer (it ignores the range), so lr_find's losses over 1.5 epochs must
    # be the compiled epoch's own per-step losses for the same init and run key.
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(40, 4)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 40), jnp.int32)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    opt, key = optim.sgd(lr=0.05, momentum=0.9), jax.random.key(3)
    r = lr_find(model, nn.CrossEntropyLoss(), lambda lr: opt, (x, y), key=key, steps=6, batch_size=8)
    ts = train.init_train_state(model, opt, key)
    epoch = train.make_train_epoch(model, nn.CrossEntropyLoss(), opt, 8)
    params, state, opt_state, losses = ts.params, ts.state, ts.opt_state, []
    for e in range(2):
        params, state, opt_state, m = epoch(params, state, opt_state, jax.random.fold_in(ts.key, e), x, y)
        losses.extend(np.asarray(m["loss"]).tolist())
    np.testing.assert_allclose(r.losses, losses[:6], rtol=1e-5)
    np.testing.assert_allclose(r.lrs, 0.05, rtol=1e-6)


@pytest.mark.slow
def test_manual_backward_gives_the_same_curve():
    x, y = regression()
    auto = find(x, y, min_lr=1e-3, max_lr=0.1, steps=8)
    manual = find(x, y, min_lr=1e-3, max_lr=0.1, steps=8, grad="manual")
    np.testing.assert_allclose(manual.losses, auto.losses, rtol=1e-5)


@pytest.mark.slow
def test_the_callers_arrays_are_untouched():
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    params, state = model.init(jax.random.key(0))
    before = [np.array(a) for a in jax.tree.leaves((params, state))]
    x, y = regression()
    opt = lambda lr: optim.sgd(lr=lr, momentum=0.9)  # noqa: E731
    r = lr_find(
        model, nn.MSELoss(), opt, (x, y), key=jax.random.key(1), params=params, state=state, steps=10,
        batch_size=16, max_lr=1.0,
    )  # fmt: skip
    assert np.isfinite(r.losses[0])
    for a, b in zip(before, jax.tree.leaves((params, state)), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.slow
def test_the_whole_scan_is_traced_once_and_not_again():
    traces = []

    def counting_mse(output, target):
        traces.append(1)  # runs at trace time only
        return jnp.mean((output - target) ** 2)

    x, y = regression()
    kwargs = dict(key=jax.random.key(0), batch_size=16, min_lr=1e-3, max_lr=0.1, steps=50)
    lr_find(nn.Linear(3, 1), counting_mse, lambda lr: optim.sgd(lr=lr), (x, y), **kwargs)
    assert len(traces) == 1  # one trace for 50 steps
    lr_find(nn.Linear(3, 1), counting_mse, lambda lr: optim.sgd(lr=lr), (x, y), **kwargs)
    assert len(traces) == 1  # equal arguments: the compiled scan is reused


@pytest.mark.slow
def test_mixed_precision_sweep_computes_in_bfloat16_from_float32_params():
    # DTYPE-4: the first step's loss is the init params' loss with x and params rounded to
    # bf16, the output cast up; computed here by hand from the same init.
    x, y = regression()
    model, key = nn.Linear(3, 1), jax.random.key(0)
    kwargs = dict(key=key, batch_size=64, min_lr=1e-3, max_lr=0.1, steps=5)
    mixed = lr_find(
        model, nn.MSELoss(), lambda lr: optim.sgd(lr=lr), (x, y), compute_dtype="bfloat16", **kwargs
    )
    plain = lr_find(model, nn.MSELoss(), lambda lr: optim.sgd(lr=lr), (x, y), **kwargs)
    params = train.init_train_state(model, optim.sgd(lr=0.1), key).params
    w, b = (params[k].astype(jnp.bfloat16) for k in ("weight", "bias"))
    out = (x.astype(jnp.bfloat16) @ w.T + b).astype(jnp.float32)
    # batch_size = n: the one batch is the whole (shuffled) set, and the mean ignores the order
    hand = float(jnp.mean((out - y) ** 2))
    # XLA:CPU may skip rounding an elementwise bf16 intermediate (the bias add) to bf16, so
    # allow that (3e-5 here), still far closer than the float32 sweep's first loss (5e-4).
    np.testing.assert_allclose(mixed.losses[0], hand, rtol=1e-4)
    assert abs(mixed.losses[0] - hand) < abs(plain.losses[0] - hand) / 5
    np.testing.assert_allclose(mixed.losses, plain.losses, rtol=2**-6)


BAD = [
    (dict(min_lr=0.0), ValueError, "min_lr must be a finite number > 0, got 0.0"),
    (dict(min_lr=-1e-3), ValueError, "min_lr must be a finite number > 0, got -0.001"),
    (dict(max_lr=float("inf")), ValueError, "max_lr must be a finite number > 0, got inf"),
    (dict(min_lr=1.0, max_lr=1.0), ValueError, "max_lr must be greater than min_lr"),
    (dict(min_lr="1e-3"), TypeError, "min_lr must be a number, got '1e-3'"),
    (dict(steps=1), ValueError, "steps must be >= 2"),
    (dict(steps=10.0), TypeError, "steps must be an int, got 10.0"),
    (dict(beta=1.0), ValueError, r"beta must be in \[0, 1\), got 1.0"),
    (dict(diverge_factor=1.0), ValueError, "diverge_factor must be a finite number > 1, got 1.0"),
    (dict(batch_size=65), ValueError, "data: batch_size 65 exceeds the number of samples 64"),
    (dict(grad="numeric"), ValueError, "grad must be 'autodiff' or 'manual'"),
    (dict(make_optimizer=lambda lr: lr), TypeError, "make_optimizer.* must return an fnn.optim optimizer"),
    (dict(compute_dtype="float64"), ValueError, "compute_dtype must be None or one of float32, bfloat16"),
]


@pytest.mark.parametrize(
    "kwargs, error, message", BAD, ids=[m.split(" ")[0] + str(i) for i, (_, _, m) in enumerate(BAD)]
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    x, y = regression()
    with pytest.raises(error, match=message):
        find(x, y, **kwargs)


def test_labels_out_of_range_are_refused_before_compiling():
    x = jnp.zeros((8, 3))
    with pytest.raises(ValueError, match=r"data labels must be in \[0, 2\), got 5"):
        lr_find(
            nn.Linear(3, 2), nn.CrossEntropyLoss(), lambda lr: optim.sgd(lr=lr),
            (x, jnp.array([0, 1, 5, 0, 1, 0, 1, 0])), key=jax.random.key(0), batch_size=4,
        )  # fmt: skip


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def tiny_mnist(monkeypatch):
    """A small random stand-in for MNIST, so the command runs in seconds."""
    from fnn import data

    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 256), ("test", 32))}
    labels = {s: rng.integers(0, 10, len(images[s])).astype(np.int32) for s in images}
    monkeypatch.setattr(data, "mnist", lambda split: (images[split], labels[split]))


@pytest.mark.slow
def test_cli_prints_the_suggestion_last_and_writes_its_files(tmp_path, capsys, tiny_mnist):
    out = tmp_path / "find"
    args = [
        "lr-find",
        "--hidden",
        "32",
        "--steps",
        "12",
        "--batch-size",
        "32",
        "--max-lr",
        "1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("suggested_lr=")
    saved = json.loads((out / "lr_find.json").read_text())
    assert float(last.split("=")[1]) == pytest.approx(saved["suggested_lr"], rel=1e-5)
    assert saved["config"]["hidden"] == [32] and "lr" not in saved["config"] and len(saved["lrs"]) == 12
    losses = np.array([np.nan if v is None else v for v in saved["losses"]])
    diverged_at, suggested = numpy_suggestion(np.array(saved["lrs"]), numpy_ema(losses, 0.98), 4.0)
    assert saved["diverged_at"] == diverged_at and saved["suggested_lr"] == pytest.approx(suggested)
    assert (out / "lr_find.svg").read_text().startswith("<svg")


CLI_BAD = [
    (["--steps", "1"], "--steps must be an integer >= 2 (the range needs its two ends), got 1"),
    (["--min-lr", "1", "--max-lr", "0.5"], "--max-lr must be greater than --min-lr, got 1.0 and 0.5"),
    (["--min-lr", "0"], "argument --min-lr: must be a finite number > 0, got '0'"),
    (["--lr", "0.1"], "unrecognized arguments: --lr 0.1"),
    (["--model", "softmax", "--hidden", "64"], "--hidden configure --model mlp, not softmax"),
    (["--batch-size", "300"], "--batch-size 300 is larger than the training set (256 samples)"),
]


@pytest.mark.parametrize("args, message", CLI_BAD, ids=[a[0] for a, _ in CLI_BAD])
def test_cli_bad_arguments_get_one_line_and_status_2(args, message, capsys, tiny_mnist, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["lr-find", *args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m fnn") and message in err[-1] and "Traceback" not in "\n".join(err)


def test_cli_nan_data_is_named_as_bad_data_in_one_line_and_status_1(tmp_path, capsys, monkeypatch):
    import fnn.__main__ as cli

    bad = jnp.full((64, 28, 28), jnp.nan, jnp.float32), jnp.zeros(64, jnp.int32)
    monkeypatch.setattr(cli, "load_data", lambda *a: (bad, bad))
    assert (
        main(["lr-find", "--model", "softmax", "--steps", "4", "--batch-size", "16", "--out", str(tmp_path)])
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    # Caught on the host before compiling, not reported as a diverged first step.
    assert err == ["fnn lr-find: error: data x holds nan at row 0, position (0, 0)"]

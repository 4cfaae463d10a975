"""fnn.train: manual and autodiff steps agree, no retrace, fit/evaluate behaviour, resume
after a killed run is bit-identical, and bad input fails before compiling."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import checkpoint, nn, optim
from fnn import functional as F
from fnn.train import evaluate, fit, make_train_epoch, make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toy_data(n=512, d=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    teacher = rng.normal(size=(d, classes)).astype(np.float32)
    return x, np.argmax(x @ teacher, axis=1).astype(np.int32)


def toy_model(d=20, classes=4):
    return nn.Sequential(nn.Linear(d, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, classes))


def test_manual_and_autodiff_steps_agree():
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    opt = optim.sgd(lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = toy_data(64)
    outs = []
    for grad in ("autodiff", "manual"):
        step = make_train_step(model, F.cross_entropy, opt, grad=grad)
        carry = (params, state, opt.init(params))
        for i in range(3):
            *carry, metrics = step(*carry, jax.random.key(i), x, y)
        outs.append((carry, metrics))
    (c_auto, m_auto), (c_man, m_man) = outs
    for a, b in zip(jax.tree.leaves(c_auto), jax.tree.leaves(c_man)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(m_auto["loss"], m_man["loss"], rtol=1e-5)


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_second_step_does_not_retrace(grad):
    traces = []

    def counted_loss(input, target, reduction="mean"):
        traces.append(1)  # runs only while tracing
        return F.cross_entropy(input, target, reduction=reduction)

    counted_loss.backward = F.cross_entropy_backward
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    opt = optim.adam(lr=1e-3, weight_decay=1e-4)
    step = make_train_step(model, counted_loss, opt, grad=grad)
    carry = (params, state, opt.init(params))
    x, y = toy_data(32)
    for i in range(3):
        *carry, _ = step(*carry, jax.random.key(i), x, y)
    assert len(traces) == 1


def test_epoch_metrics_and_shapes():
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    opt = optim.sgd(lr=0.1)
    x, y = toy_data(100)
    epoch = make_train_epoch(model, F.cross_entropy, opt, batch_size=32)
    params2, state2, _, metrics = epoch(params, state, opt.init(params), jax.random.key(1), x, y)
    assert metrics["loss"].shape == (3,) and metrics["accuracy"].shape == (3,)  # 100 // 32, last batch dropped
    assert int(state2[1]["num_batches_tracked"]) == 3


def test_fit_learns_and_records_history(capsys):
    x, y = toy_data(1024)
    result = fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.1, momentum=0.9), (x[:768], y[:768]), epochs=4,
                 batch_size=64, key=jax.random.key(0), eval_data=(x[768:], y[768:]), progress=False)
    h = result.history
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    assert set(h[0]) >= {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds",
                         "train_seconds"}
    assert 0 < h[0]["train_seconds"] <= h[0]["seconds"]
    assert h[-1]["train_loss"] < h[0]["train_loss"] and h[-1]["test_accuracy"] > 0.85
    assert capsys.readouterr().err == ""  # progress=False (and not a TTY) prints nothing


def test_fit_is_deterministic_and_keeps_caller_arrays():
    x, y = toy_data(256)
    model = toy_model()
    params, state = model.init(jax.random.key(3))
    runs = [fit(model, F.cross_entropy, optim.sgd(lr=0.1), (x, y), epochs=2, batch_size=32, key=jax.random.key(0),
                params=params, state=state, progress=False) for _ in range(2)]
    for a, b in zip(jax.tree.leaves(runs[0].params), jax.tree.leaves(runs[1].params)):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(np.asarray(params[0]["weight"])).all()  # not donated away


def test_evaluate_pads_the_last_batch():
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    x, y = toy_data(103)
    a = evaluate(model, params, state, (x, y), batch_size=10)
    b = evaluate(model, params, state, (x, y), batch_size=1000)
    logits, _ = model.apply(params, state, jnp.asarray(x), train=False)
    np.testing.assert_allclose(a["loss"], float(F.cross_entropy(logits, jnp.asarray(y))), rtol=1e-5)
    np.testing.assert_allclose(a["accuracy"], float(jnp.mean(jnp.argmax(logits, 1) == y)), rtol=1e-6)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)


CHILD = textwrap.dedent("""
    import sys, jax
    sys.path.insert(0, {tests!r})
    from test_train import toy_data, toy_model
    from fnn import optim, functional as F
    from fnn.train import fit
    x, y = toy_data(20000)
    fit(toy_model(), F.cross_entropy, optim.adam(lr=1e-3), (x, y), epochs={epochs}, batch_size=16,
        key=jax.random.key(0), progress=False, checkpoint_dir={ckpt!r})
""")


# An epoch of the child takes ~30 ms on an idle machine: 24 of them leave the watcher here
# about a second to see the epoch-2 checkpoint and kill the run before it ends by itself.
EPOCHS = 24


def test_killed_run_resumes_bit_identical(tmp_path):
    ckpt_dir = str(tmp_path / "ckpt")
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=os.path.join(ROOT, "tests"), ckpt=ckpt_dir,
                                                                 epochs=EPOCHS)],
                             env={**os.environ, "PYTHONPATH": ROOT})
    path = os.path.join(ckpt_dir, "checkpoint.npz")
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        if os.path.exists(path):
            try:
                epoch = checkpoint.load(path)[1]["epoch"]
            except (ValueError, OSError):  # mid-replace on a slow filesystem: look again
                epoch = 0
            if epoch >= 2:
                child.send_signal(signal.SIGKILL)
                killed_at = epoch
                break
        time.sleep(0.005)
    child.wait()
    assert killed_at is not None and killed_at < EPOCHS, "the run must be killed mid-way"
    assert child.returncode == -signal.SIGKILL

    x, y = toy_data(20000)
    kwargs = dict(epochs=EPOCHS, batch_size=16, key=jax.random.key(0), progress=False)
    resumed = fit(toy_model(), F.cross_entropy, optim.adam(lr=1e-3), (x, y), checkpoint_dir=ckpt_dir,
                  resume=True, **kwargs)
    whole = fit(toy_model(), F.cross_entropy, optim.adam(lr=1e-3), (x, y), **kwargs)
    assert len(resumed.history) == EPOCHS
    for a, b in zip(jax.tree.leaves((resumed.params, resumed.state, resumed.opt_state)),
                    jax.tree.leaves((whole.params, whole.state, whole.opt_state))):
        np.testing.assert_array_equal(a, b)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]


def test_bad_input_fails_before_compiling():
    x, y = toy_data(64)
    model, opt = toy_model(), optim.sgd(lr=0.1)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\).*, 7\]"):
        fit(model, F.cross_entropy, opt, (x, np.where(y == 0, 7, y)), epochs=1, batch_size=8, key=jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size 100 exceeds the number of samples 64"):
        fit(model, F.cross_entropy, opt, (x, y), epochs=1, batch_size=100, key=jax.random.key(0))
    with pytest.raises(ValueError, match="same length"):
        fit(model, F.cross_entropy, opt, (x, y[:10]), epochs=1, batch_size=8, key=jax.random.key(0))
    with pytest.raises(ValueError, match="grad must be"):
        make_train_step(model, F.cross_entropy, opt, grad="numeric")
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        fit(model, F.cross_entropy, opt, (x, y), epochs=1, batch_size=8, key=jax.random.key(0), resume=True)


def test_nan_loss_stops_fit_and_keeps_last_good_checkpoint(tmp_path):
    x, y = toy_data(256)
    model = toy_model()
    common = dict(batch_size=32, key=jax.random.key(0), progress=False, checkpoint_dir=str(tmp_path))
    fit(model, F.cross_entropy, optim.sgd(lr=0.1, momentum=0.9), (x, y), epochs=1, **common)
    path = tmp_path / "checkpoint.npz"
    before = path.read_bytes()
    with pytest.raises(FloatingPointError, match=r"epoch 2, step \d+"):
        fit(model, F.cross_entropy, optim.sgd(lr=1e30, momentum=0.9), (x, y), epochs=3, resume=True, **common)
    assert path.read_bytes() == before


def test_checkpoint_from_a_different_model_names_the_leaf(tmp_path):
    x, y = toy_data(64)
    common = dict(epochs=1, batch_size=32, key=jax.random.key(0), progress=False, checkpoint_dir=str(tmp_path))
    fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.1), (x, y), **common)
    other = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 4))
    with pytest.raises(ValueError, match=r"params.*weight.*\(16, 20\)"):
        fit(other, F.cross_entropy, optim.sgd(lr=0.1), (x, y), resume=True, **{**common, "epochs": 2})


def test_building_the_same_step_twice_reuses_the_compiled_function():
    model, opt = toy_model(), optim.sgd(lr=0.1)
    assert make_train_step(model, F.cross_entropy, opt) is make_train_step(model, F.cross_entropy, opt)
    assert make_train_epoch(model, F.cross_entropy, opt, 32) is make_train_epoch(model, F.cross_entropy, opt, 32)
    assert make_train_epoch(model, F.cross_entropy, opt, 32) is make_train_epoch(
        model, F.cross_entropy, opt, batch_size=32, grad="autodiff", mesh=None)
    assert make_train_step(model, F.cross_entropy, opt, "manual") is not make_train_step(model, F.cross_entropy, opt)


def test_predict_matches_apply_and_checks_input():
    from fnn.train import predict
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    x, _ = toy_data(37)
    want, _ = model.apply(params, state, jnp.asarray(x), train=False)
    np.testing.assert_allclose(predict(model, params, state, x, batch_size=8), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be > 0, got 0"):
        predict(model, params, state, x, batch_size=0)
    with pytest.raises(ValueError, match="at least one sample"):
        predict(model, params, state, x[:0])


def test_on_epoch_end_sees_each_record_as_it_happens():
    seen = []
    x, y = toy_data(128)
    result = fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.1), (x, y), epochs=3, batch_size=32,
                 key=jax.random.key(0), progress=False, on_epoch_end=lambda r: seen.append(dict(r)))
    assert [r["epoch"] for r in seen] == [1, 2, 3] and seen == result.history

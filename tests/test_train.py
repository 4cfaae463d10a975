"""fnn.train: steps and epochs, continuation bit for bit, divergence that keeps the last
good state, losses as specs, task metrics, callbacks, safe checkpoints and progress.

References: another implementation of the same loop (a Python loop of single steps),
closed forms (lr sequences, MAE, gradient norms by jax.grad), counters in the model's
own state (BatchNorm's num_batches_tracked counts applied steps), and an uninterrupted
run for every continuation. The tests that fit, run an epoch or evaluate a dataset are marked
slow (tests/README.md, "Tiers"); single steps and refusals are the fast tier."""

import io
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
from fast_jit import fast_jit  # tests/fast_jit.py
from poison import PoisonAt  # tests/poison.py

from fnn import checkpoint, nn, optim, train
from fnn import functional as F
from fnn.train import (
    Callback,
    EarlyStopping,
    LambdaCallback,
    TrainingDiverged,
    TrainState,
    evaluate,
    fit,
    make_train_epoch,
    make_train_step,
    predict,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toy_data(n=512, d=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    teacher = rng.normal(size=(d, classes)).astype(np.float32)
    return x, np.argmax(x @ teacher, axis=1).astype(np.int32)


def toy_model(d=20, classes=4):
    return nn.Sequential(
        nn.Linear(d, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, classes)
    )


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        if isinstance(u, int):
            assert u == v
            continue
        if jnp.issubdtype(u.dtype, jax.dtypes.prng_key):
            u, v = jax.random.key_data(u), jax.random.key_data(v)
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


# ---------------------------------------------------------------- steps and epochs


def test_manual_and_autodiff_steps_agree():
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    opt = optim.sgd(lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = toy_data(64)
    outs = []
    for grad in ("autodiff", "manual"):
        step = make_train_step(model, nn.CrossEntropyLoss(), opt, grad=grad)
        carry = (params, state, opt.init(params))
        for i in range(3):
            *carry, metrics = step(*carry, jax.random.key(i), x, y)
        outs.append((carry, metrics))
    (c_auto, m_auto), (c_man, m_man) = outs
    for a, b in zip(jax.tree.leaves(c_auto), jax.tree.leaves(c_man), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    for name in ("loss", "grad_norm"):
        np.testing.assert_allclose(m_auto[name], m_man[name], rtol=1e-5)


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_second_step_does_not_retrace(grad):
    traces = []

    def counted_loss(input, target, reduction="mean"):
        traces.append(1)  # runs only while tracing
        return F.cross_entropy(input, target, reduction=reduction)

    model = toy_model()
    params, state = model.init(jax.random.key(0))
    opt = optim.adam(lr=1e-3, weight_decay=1e-4)
    step = make_train_step(
        model, nn.FunctionLoss(counted_loss, backward=F.cross_entropy_backward), opt, grad=grad
    )
    carry = (params, state, opt.init(params))
    x, y = toy_data(32)
    for i in range(3):
        *carry, _ = step(*carry, jax.random.key(i), x, y)
    assert len(traces) == 1


@pytest.mark.slow
def test_epoch_metrics_and_shapes():
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    opt = optim.sgd(lr=0.1)
    x, y = toy_data(100)
    epoch = make_train_epoch(model, F.cross_entropy, opt, batch_size=32)
    _, state2, _, metrics = epoch(params, state, opt.init(params), jax.random.key(1), x, y)
    assert set(metrics) == {"loss", "accuracy", "grad_norm", "lr", "ok"}
    assert all(v.shape == (3,) for v in metrics.values())  # 100 // 32: the last batch is dropped
    assert np.asarray(metrics["ok"]).all()
    np.testing.assert_allclose(metrics["lr"], 0.1)
    assert int(state2[1]["num_batches_tracked"]) == 3


def test_grad_norm_and_lr_are_what_they_claim():
    """Full-batch steps: the recorded gradient norm is ‖jax.grad‖ at the step's params, and
    the lr is the schedule's closed form at each step."""
    model = nn.Sequential(nn.Linear(20, 4))
    x, y = toy_data(64)
    schedule = optim.step_lr(0.5, step_size=2, gamma=0.1)
    opt = optim.sgd(lr=schedule)
    params, state = model.init(jax.random.key(0))
    step = make_train_step(model, nn.CrossEntropyLoss(), opt)
    opt_state = opt.init(params)
    grad = fast_jit(jax.grad(lambda p, s: F.cross_entropy(model.apply(p, s, x, train=True)[0], y)))
    for i in range(4):
        grads = grad(params, state)
        want = float(np.sqrt(sum(np.sum(np.square(np.asarray(g))) for g in jax.tree.leaves(grads))))
        params, state, opt_state, m = step(params, state, opt_state, jax.random.key(i), x, y)
        np.testing.assert_allclose(float(m["grad_norm"]), want, rtol=1e-5)
        np.testing.assert_allclose(float(m["lr"]), 0.5 * 0.1 ** (i // 2), rtol=1e-6)


# ---------------------------------------------------------------- fit and its history


@pytest.mark.slow
def test_fit_learns_and_records_history(capsys):
    x, y = toy_data(1024)
    result = fit(
        toy_model(),
        nn.CrossEntropyLoss(),
        optim.sgd(lr=0.1, momentum=0.9),
        (x[:768], y[:768]),
        epochs=4,
        batch_size=64,
        key=jax.random.key(0),
        eval_data=(x[768:], y[768:]),
        progress=False,
    )
    h = result.history
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    assert set(h[0]) == {
        "epoch",
        "train_loss",
        "train_accuracy",
        "grad_norm",
        "lr",
        "test_loss",
        "test_accuracy",
        "seconds",
        "train_seconds",
    }
    assert 0 < h[0]["train_seconds"] <= h[0]["seconds"] and h[0]["lr"] == pytest.approx(0.1)
    assert h[-1]["train_loss"] < h[0]["train_loss"] and h[-1]["test_accuracy"] > 0.85
    assert result.train_state.epoch == 4 and result.train_state.step == 4 * (768 // 64)
    assert capsys.readouterr().err == ""  # progress=False (and not a TTY) prints nothing


@pytest.mark.slow
def test_fit_is_deterministic_and_keeps_caller_arrays():
    x, y = toy_data(128)
    model = toy_model()
    params, state = model.init(jax.random.key(3))
    runs = [
        fit(
            model,
            F.cross_entropy,
            optim.sgd(lr=0.1),
            (x, y),
            epochs=2,
            batch_size=32,
            key=jax.random.key(0),
            params=params,
            state=state,
            progress=False,
        )
        for _ in range(2)
    ]
    assert_trees_equal(runs[0].train_state, runs[1].train_state)
    assert np.isfinite(np.asarray(params[0]["weight"])).all()  # not donated away


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_opt",
    [
        lambda: optim.adam(lr=1e-2, weight_decay=1e-4),
        lambda: optim.sgd(lr=optim.cosine_annealing_lr(0.1, T_max=40), momentum=0.9),
    ],
)
def test_continuing_from_a_train_state_equals_never_stopping(make_opt):
    x, y = toy_data(320)
    common = dict(batch_size=32, eval_data=toy_data(64, seed=1), progress=False)
    whole = fit(
        toy_model(), nn.CrossEntropyLoss(), make_opt(), (x, y), epochs=4, key=jax.random.key(5), **common
    )
    first = fit(
        toy_model(), nn.CrossEntropyLoss(), make_opt(), (x, y), epochs=2, key=jax.random.key(5), **common
    )
    kept = jax.tree.map(np.array, (first.train_state.params, first.train_state.opt_state))
    second = fit(
        toy_model(),
        nn.CrossEntropyLoss(),
        make_opt(),
        (x, y),
        epochs=4,
        train_state=first.train_state,
        **common,
    )
    assert_trees_equal(second.train_state, whole.train_state)  # params, BN stats, Adam moments, key, counts
    assert (second.train_state.epoch, second.train_state.step) == (4, 40)
    assert [h["train_loss"] for h in first.history + second.history] == [
        h["train_loss"] for h in whole.history
    ]
    assert_trees_equal(
        (first.train_state.params, first.train_state.opt_state), kept
    )  # the caller's TrainState was not donated away


# ---------------------------------------------------------------- divergence


def poisoned_model(at):
    return nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), PoisonAt(at), nn.Linear(16, 4))


@pytest.mark.slow
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_divergence_returns_the_state_from_just_before_the_bad_step(grad, tmp_path):
    x, y = toy_data(256)  # 8 steps of 32 per epoch; global step 13 (0-based) is epoch 2, step 6
    opt = optim.sgd(lr=0.1, momentum=0.9)
    with pytest.raises(
        TrainingDiverged,
        match=r"epoch 2, step 6/8: non-finite loss nan with learning rate 0\.1\b"
        r".*smaller learning rate",
    ) as info:
        fit(
            poisoned_model(13),
            nn.CrossEntropyLoss(),
            opt,
            (x, y),
            epochs=3,
            batch_size=32,
            key=jax.random.key(0),
            grad=grad,
            progress=False,
            checkpoint_dir=str(tmp_path),
        )
    e = info.value
    assert isinstance(e, FloatingPointError) and (e.epoch, e.step, e.lr) == (2, 6, pytest.approx(0.1))
    assert np.isnan(e.loss)
    ts = e.result.train_state
    assert (ts.epoch, ts.step) == (1, 13) and [h["epoch"] for h in e.result.history] == [1]
    # The model's own counters saw exactly the 13 applied steps.
    assert int(ts.state[1]["num_batches_tracked"]) == 13 and int(ts.state[3]["count"]) == 13
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves((ts.params, ts.opt_state)))

    # Another implementation of the same 13 steps: epoch 1 by fit, then 5 single steps in a
    # Python loop over the documented draws of epoch 2 (fold_in(run key, 1)). The model is the
    # one poisoned at step 13, which these 13 steps never reach: epoch 1 reuses the compiled
    # epoch above instead of compiling another with a different poison constant.
    first = fit(
        poisoned_model(13),
        nn.CrossEntropyLoss(),
        opt,
        (x, y),
        epochs=1,
        batch_size=32,
        key=jax.random.key(0),
        grad=grad,
        progress=False,
    ).train_state
    k_perm, k_steps = jax.random.split(jax.random.fold_in(first.key, 1))
    order = np.asarray(jax.random.permutation(k_perm, 256)).reshape(8, 32)
    step = make_train_step(poisoned_model(13), nn.CrossEntropyLoss(), opt, grad)
    carry = (first.params, first.state, first.opt_state)
    for i, k in zip(range(5), jax.random.split(k_steps, 8), strict=False):  # 5 of the 8 steps
        *carry, _ = step(*carry, k, x[order[i]], y[order[i]])
    for a, b in zip(
        jax.tree.leaves((ts.params, ts.opt_state)), jax.tree.leaves((carry[0], carry[2])), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # On disk: the epoch-1 checkpoint and the pre-divergence state beside it.
    saved, meta = checkpoint.load(tmp_path / "diverged.npz", like=ts)
    assert_trees_equal(saved, ts)
    assert meta["diverged"]["step"] == 6
    latest, meta = checkpoint.load(tmp_path / "checkpoint.npz", like=first)
    assert meta["epoch"] == 1
    assert_trees_equal((latest.params, latest.opt_state), (first.params, first.opt_state))


# ---------------------------------------------------------------- losses and metrics


@pytest.mark.slow
def test_regression_records_mae_not_accuracy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 5)).astype(np.float32)
    y = (x @ rng.normal(size=(5, 2))).astype(np.float32)
    model = nn.Sequential(nn.Linear(5, 2))
    result = fit(
        model,
        nn.MSELoss(),
        optim.sgd(lr=0.05),
        (x, y),
        epochs=3,
        batch_size=32,
        key=jax.random.key(0),
        eval_data=(x, y),
        progress=False,
    )
    h = result.history[-1]
    assert "train_accuracy" not in h and "test_accuracy" not in h
    out = np.asarray(model.apply(result.params, result.state, x, train=False)[0])
    np.testing.assert_allclose(h["test_mae"], np.abs(out - y).mean(), rtol=1e-5)
    np.testing.assert_allclose(h["test_loss"], np.square(out - y).mean(), rtol=1e-5)


@pytest.mark.slow
def test_metrics_argument_chooses_and_accepts_functions():
    x, y = toy_data(128)

    def top2(output, target):
        return jnp.any(jnp.argsort(output, axis=1)[:, -2:] == target[:, None], axis=1).astype(jnp.float32)

    result = fit(
        toy_model(),
        F.cross_entropy,
        optim.sgd(lr=0.1),
        (x, y),
        epochs=1,
        batch_size=32,
        key=jax.random.key(0),
        eval_data=(x, y),
        metrics={"top2": top2},
        progress=False,
    )
    out = np.asarray(predict(toy_model(), result.params, result.state, x))
    want = np.mean([yi in np.argsort(o)[-2:] for o, yi in zip(out, y, strict=True)])
    assert result.history[0]["test_top2"] == pytest.approx(want) and "test_accuracy" not in result.history[0]
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        fit(
            toy_model(),
            nn.CrossEntropyLoss(),
            optim.sgd(lr=0.1),
            (x, y),
            epochs=1,
            batch_size=32,
            key=jax.random.key(0),
            metrics="f1",
        )


@pytest.mark.slow
def test_evaluate_is_exact_at_the_dataset_level():
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    x, y = toy_data(103)
    y = y.copy()
    y[::7] = -100  # ignored samples
    loss = nn.CrossEntropyLoss(weight=[1.0, 2.0, 0.5, 1.5])

    @fast_jit  # the reference, in one program (tests/fast_jit.py)
    def reference(x, y):
        logits, _ = model.apply(params, state, x, train=False)
        return logits, F.cross_entropy(logits, y, weight=jnp.array([1.0, 2.0, 0.5, 1.5]))

    logits, want = reference(jnp.asarray(x), jnp.asarray(y))
    want = float(want)
    for batch_size in (10, 1000):
        got = evaluate(model, params, state, (x, np.where(y < 0, 0, y)), batch_size=batch_size)
        np.testing.assert_allclose(got["accuracy"], np.mean(np.argmax(logits, 1) == np.where(y < 0, 0, y)))
    # ignore_index labels are not class labels, so check the weighted loss on the arrays directly
    from fnn.train.evaluation import evaluate_checked
    from fnn.train.metrics import resolve_metrics

    for batch_size in (10, 1000):
        got = evaluate_checked(
            model, params, state, jnp.asarray(x), jnp.asarray(y), loss, resolve_metrics((), y), batch_size
        )
        np.testing.assert_allclose(got["loss"], want, rtol=1e-5)


@pytest.mark.slow
def test_manual_grad_with_a_loss_without_backward_says_what_is_missing():
    def my_loss(output, target):
        return jnp.mean((output - jax.nn.one_hot(target, 4)) ** 2)

    x, y = toy_data(64)
    with pytest.raises(ValueError, match="backward"):
        fit(
            toy_model(),
            my_loss,
            optim.sgd(lr=0.1),
            (x, y),
            epochs=1,
            batch_size=32,
            key=jax.random.key(0),
            grad="manual",
            progress=False,
        )
    result = fit(
        toy_model(),
        my_loss,
        optim.sgd(lr=0.1),
        (x, y),
        epochs=1,
        batch_size=32,
        key=jax.random.key(0),
        progress=False,
    )  # autodiff needs no backward
    assert np.isfinite(result.history[0]["train_loss"])


@pytest.mark.slow
def test_equal_optimizers_and_losses_share_one_compiled_epoch():
    # jit's own cache over hashable specs: equal arguments (however spelled) trace once.
    traces = []

    def counted(input, target, reduction="mean"):
        traces.append(1)  # runs at trace time only
        return F.cross_entropy(input, target, reduction=reduction)

    loss = nn.FunctionLoss(counted, backward=F.cross_entropy_backward)
    model, (x, y) = toy_model(), toy_data(64)

    def run(epoch):
        params, state = model.init(jax.random.key(0))
        opt_state = optim.sgd(lr=0.1).init(params)
        return epoch(params, state, opt_state, jax.random.key(1), x, y)

    run(make_train_epoch(model, loss, optim.sgd(lr=0.1), 32))
    run(make_train_epoch(model, loss, optim.sgd(lr=0.1), batch_size=32, grad="autodiff"))
    assert len(traces) == 1
    run(make_train_epoch(model, loss, optim.sgd(lr=0.2), 32))  # another optimizer: another program
    assert len(traces) == 2


# ---------------------------------------------------------------- callbacks


class FakeRun:
    def __init__(self):
        self.train_state = TrainState({"w": jnp.zeros(2)}, {}, (), jax.random.key(0), 0, 0)
        self.stop_training = False


def test_early_stopping_follows_keras_rule_on_a_known_sequence():
    stopper, run = EarlyStopping(monitor="test_loss", patience=3, min_delta=0.01), FakeRun()
    stopper.on_train_begin(run)
    losses = [1.0, 0.9, 0.895, 0.95, 0.97]  # 0.895 is within min_delta of 0.9: no improvement
    for epoch, value in enumerate(losses, 1):
        run.train_state = run.train_state._replace(params={"w": jnp.full(2, float(epoch))}, epoch=epoch)
        stopper.on_epoch_end(run, {"epoch": epoch, "test_loss": value})
        assert run.stop_training == (epoch == 5)
    stopper.on_train_end(run)
    assert (stopper.best_epoch, stopper.stopped_epoch, run.train_state.epoch) == (2, 5, 2)
    np.testing.assert_array_equal(run.train_state.params["w"], [2.0, 2.0])


@pytest.mark.slow
def test_early_stopping_in_fit_restores_the_best_epoch_without_recompiling():
    traces = []

    def counted(input, target, reduction="mean"):
        traces.append(1)
        return F.cross_entropy(input, target, reduction=reduction)

    x, y = toy_data(256)
    loss = nn.FunctionLoss(counted, backward=F.cross_entropy_backward)
    # mode='max' on a falling loss: epoch 1 stays best, so patience 2 stops after epoch 3.
    stopper = EarlyStopping(monitor="train_loss", mode="max", patience=2)
    common = dict(batch_size=32, key=jax.random.key(0), progress=False)
    result = fit(toy_model(), loss, optim.adam(lr=1e-2), (x, y), epochs=10, callbacks=[stopper], **common)
    assert [h["epoch"] for h in result.history] == [1, 2, 3] and stopper.stopped_epoch == 3
    assert len(traces) == 1  # three epochs and a stop, one compile
    one = fit(toy_model(), loss, optim.adam(lr=1e-2), (x, y), epochs=1, **common)
    assert_trees_equal(result.train_state, one.train_state)


@pytest.mark.slow
def test_reduce_lr_on_plateau_changes_the_lr_between_epochs_without_recompiling():
    traces = []

    def counted(input, target, reduction="mean"):
        traces.append(1)
        return F.cross_entropy(input, target, reduction=reduction)

    x, y = toy_data(256)
    plateau = optim.ReduceLROnPlateau(mode="max", factor=0.5, patience=0)  # a falling loss never "improves"
    result = fit(
        toy_model(),
        nn.FunctionLoss(counted, backward=F.cross_entropy_backward),
        optim.sgd(lr=0.1),
        (x, y),
        epochs=4,
        batch_size=32,
        key=jax.random.key(0),
        callbacks=[plateau],
        progress=False,
    )
    # torch: epoch 1 sets best; each later epoch is bad with patience 0 and halves the lr.
    np.testing.assert_allclose([h["lr"] for h in result.history], [0.1, 0.1, 0.05, 0.025], rtol=1e-6)
    assert len(traces) == 1


@pytest.mark.slow
def test_a_custom_callback_sees_each_epoch_and_its_state_survives_resume(tmp_path):
    class CountEpochs(Callback):
        def __init__(self):
            self.seen = 0

        def on_epoch_end(self, run, record):
            self.seen += 1
            record["seen"] = self.seen

        def state_dict(self):
            return {"seen": self.seen}

        def load_state_dict(self, state):
            self.seen = state["seen"]

    x, y = toy_data(128)
    common = dict(batch_size=32, key=jax.random.key(0), progress=False, checkpoint_dir=str(tmp_path))
    fit(
        toy_model(), F.cross_entropy, optim.sgd(lr=0.1), (x, y), epochs=2, callbacks=[CountEpochs()], **common
    )
    counter = CountEpochs()
    result = fit(
        toy_model(),
        F.cross_entropy,
        optim.sgd(lr=0.1),
        (x, y),
        epochs=3,
        callbacks=[counter],
        resume=True,
        **common,
    )
    assert [h["seen"] for h in result.history] == [1, 2, 3] and counter.seen == 3


@pytest.mark.slow
def test_lambda_callback_sees_each_record_as_it_happens():
    seen = []
    x, y = toy_data(128)
    result = fit(
        toy_model(),
        F.cross_entropy,
        optim.sgd(lr=0.1),
        (x, y),
        epochs=3,
        batch_size=32,
        key=jax.random.key(0),
        progress=False,
        callbacks=[LambdaCallback(on_epoch_end=lambda run, r: seen.append(dict(r)))],
    )
    assert [r["epoch"] for r in seen] == [1, 2, 3] and seen == result.history


# ---------------------------------------------------------------- checkpoints


@pytest.mark.slow
def test_resume_refuses_another_config_and_names_the_field(tmp_path):
    x, y = toy_data(128)
    common = dict(epochs=1, key=jax.random.key(0), progress=False, checkpoint_dir=str(tmp_path))
    fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.1), (x, y), batch_size=32, **common)
    again = {**common, "epochs": 2}
    with pytest.raises(ValueError, match="the batch_size differs: checkpoint has 32, this run has 16"):
        fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.1), (x, y), batch_size=16, resume=True, **again)
    with pytest.raises(ValueError, match=r"the optimizer differs: .*lr=0\.1.*lr=0\.2"):
        fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.2), (x, y), batch_size=32, resume=True, **again)
    with pytest.raises(ValueError, match="the model differs"):
        fit(
            nn.Sequential(nn.Linear(20, 4)),
            F.cross_entropy,
            optim.sgd(lr=0.1),
            (x, y),
            batch_size=32,
            resume=True,
            **again,
        )
    with pytest.raises(ValueError, match="the loss differs"):
        fit(
            toy_model(),
            nn.CrossEntropyLoss(label_smoothing=0.1),
            optim.sgd(lr=0.1),
            (x, y),
            batch_size=32,
            resume=True,
            **again,
        )
    with pytest.raises(ValueError, match=r"the data differs: .*\(128, 20\).*\(96, 20\)"):
        fit(
            toy_model(),
            F.cross_entropy,
            optim.sgd(lr=0.1),
            (x[:96], y[:96]),
            batch_size=32,
            resume=True,
            **again,
        )


@pytest.mark.slow
def test_an_existing_checkpoint_is_not_overwritten_silently(tmp_path):
    x, y = toy_data(128)
    common = dict(
        epochs=1, batch_size=32, key=jax.random.key(0), progress=False, checkpoint_dir=str(tmp_path)
    )
    fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.1), (x, y), **common)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(FileExistsError, match=r"resume=True.*overwrite=True"):
        fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.2), (x, y), **common)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    other_key = {**common, "key": jax.random.key(1)}  # another run, through the same compiled epoch
    fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.1), (x, y), overwrite=True, **other_key)
    assert (tmp_path / "checkpoint.npz").read_bytes() != before


@pytest.mark.slow
def test_keep_best_keeps_the_epoch_with_the_lowest_monitored_value(tmp_path):
    x, y = toy_data(256)
    result = fit(
        toy_model(),
        F.cross_entropy,
        optim.sgd(lr=0.5, momentum=0.9),
        (x[:192], y[:192]),
        epochs=5,
        batch_size=32,
        key=jax.random.key(0),
        eval_data=(x[192:], y[192:]),
        progress=False,
        checkpoint_dir=str(tmp_path),
        keep_best="test_loss",
    )
    losses = [h["test_loss"] for h in result.history]
    _, meta = checkpoint.load(tmp_path / "best.npz")
    assert meta["epoch"] == 1 + int(np.argmin(losses))


@pytest.mark.slow
def test_resume_with_the_same_config_equals_an_uninterrupted_run(tmp_path):
    # The epoch program of the continuation test's Adam run (320 samples, batch 32).
    x, y = toy_data(320)
    common = dict(batch_size=32, key=jax.random.key(0), progress=False)
    adam = optim.adam(lr=1e-2, weight_decay=1e-4)
    whole = fit(toy_model(), nn.CrossEntropyLoss(), adam, (x, y), epochs=3, **common)
    fit(
        toy_model(),
        nn.CrossEntropyLoss(),
        adam,
        (x, y),
        epochs=1,
        checkpoint_dir=str(tmp_path),
        **common,
    )
    resumed = fit(
        toy_model(),
        nn.CrossEntropyLoss(),
        adam,
        (x, y),
        epochs=3,
        checkpoint_dir=str(tmp_path),
        resume=True,
        **common,
    )
    assert_trees_equal(resumed.train_state, whole.train_state)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]


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


@pytest.mark.slow
def test_killed_run_resumes_bit_identical(tmp_path):
    ckpt_dir = str(tmp_path / "ckpt")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=os.path.join(ROOT, "tests"), ckpt=ckpt_dir, epochs=EPOCHS)],
        env={**os.environ, "PYTHONPATH": ROOT},
    )
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
    resumed = fit(
        toy_model(),
        F.cross_entropy,
        optim.adam(lr=1e-3),
        (x, y),
        checkpoint_dir=ckpt_dir,
        resume=True,
        **kwargs,
    )
    whole = fit(toy_model(), F.cross_entropy, optim.adam(lr=1e-3), (x, y), **kwargs)
    assert len(resumed.history) == EPOCHS
    assert_trees_equal(resumed.train_state, whole.train_state)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]


# ---------------------------------------------------------------- bad input


def test_bad_input_fails_before_compiling(tmp_path):
    x, y = toy_data(64)
    model, opt = toy_model(), optim.sgd(lr=0.1)
    key = jax.random.key(0)
    cases = [
        (
            dict(train_data=(x, np.where(y == 0, 7, y))),
            ValueError,
            r"train_data labels must be in \[0, 4\).*, 7\]",
        ),
        (
            dict(eval_data=(x, np.where(y == 0, -1, y))),
            ValueError,
            r"eval_data labels must be in \[0, 4\).*\[-1,",
        ),
        (dict(batch_size=100), ValueError, "train_data: batch_size 100 exceeds the number of samples 64"),
        (dict(batch_size=0), ValueError, "batch_size must be > 0, got 0"),
        (dict(train_data=(x, y[:10])), ValueError, "same length"),
        (dict(epochs=-1), ValueError, r"epochs must be an int >= 0, got -1"),
        (dict(grad="numeric"), ValueError, "grad must be 'autodiff' or 'manual'"),
        (dict(resume=True), ValueError, "resume=True needs checkpoint_dir"),
        (dict(key=None), ValueError, "fit needs key="),
        (dict(keep_best="test_loss"), ValueError, "keep_best needs checkpoint_dir"),
        (dict(callbacks=[print]), TypeError, "callbacks must be fnn.train.Callback objects"),
        (dict(train_state=(1, 2)), TypeError, "train_state must be an fnn.train.TrainState"),
        (dict(callbacks=[EarlyStopping(monitor="test_loss")]), ValueError, r"test_\* metrics need eval_data"),
    ]
    for overrides, error, message in cases:
        kwargs = dict(train_data=(x, y), epochs=1, batch_size=8, key=key, progress=False)
        kwargs.update(overrides)
        with pytest.raises(error, match=message):
            fit(model, F.cross_entropy, opt, **kwargs)
    with pytest.raises(ValueError, match="grad must be"):
        make_train_step(model, F.cross_entropy, opt, grad="numeric")
    with pytest.raises(ValueError, match="patience must be an int >= 0"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        EarlyStopping(mode="best")


@pytest.mark.slow
def test_checkpoint_from_a_different_model_names_the_field(tmp_path):
    x, y = toy_data(128)
    common = dict(
        epochs=1, batch_size=32, key=jax.random.key(0), progress=False, checkpoint_dir=str(tmp_path)
    )
    fit(toy_model(), F.cross_entropy, optim.sgd(lr=0.1), (x, y), **common)
    other = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 4))
    with pytest.raises(
        ValueError, match=r"the model differs: .*out_features=32.*this run has .*out_features=16"
    ):
        fit(other, F.cross_entropy, optim.sgd(lr=0.1), (x, y), resume=True, **{**common, "epochs": 2})


@pytest.mark.slow
def test_predict_matches_apply_and_checks_input():
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    x, _ = toy_data(37)
    want, _ = fast_jit(lambda x: model.apply(params, state, x, train=False))(jnp.asarray(x))
    np.testing.assert_allclose(predict(model, params, state, x, batch_size=8), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be > 0, got 0"):
        predict(model, params, state, x, batch_size=0)
    with pytest.raises(ValueError, match="at least one sample"):
        predict(model, params, state, x[:0])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        evaluate(model, params, state, (x, np.full(37, 4)))


# ---------------------------------------------------------------- bad labels (LBL-1)


@pytest.mark.slow
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_epoch_stops_at_the_step_with_a_bad_label(grad):
    # LBL-1: inside the compiled epoch a label outside [0, C) cannot raise; its step's loss
    # is NaN, so that step and the later ones are not applied (ok False) with either
    # gradient source, and the earlier steps are.
    model, opt = nn.Linear(4, 3), optim.sgd(lr=0.1)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype(np.float32), rng.integers(0, 3, 16).astype(np.int32)
    key = jax.random.key(1)
    k_perm, _ = jax.random.split(key)  # the epoch's documented shuffle
    order = np.asarray(jax.random.permutation(k_perm, 16)).reshape(4, 4)
    bad_step = 1
    y[order[bad_step, 2]] = -1  # a plain gather would read class 2 here
    params, state = model.init(jax.random.key(0))
    epoch = make_train_epoch(model, nn.CrossEntropyLoss(), opt, 4, grad)
    *_, metrics = epoch(jax.tree.map(jnp.array, params), state, opt.init(params), key, x, y)
    loss, ok = np.asarray(metrics["loss"]), np.asarray(metrics["ok"])
    assert np.isnan(loss[bad_step]) and np.isfinite(loss[:bad_step]).all()
    np.testing.assert_array_equal(ok, np.arange(4) < bad_step)


@pytest.mark.slow
def test_divergence_message_points_at_the_labels():
    # LBL-1: a loss that reads labels the host check cannot see (here it shifts them, so
    # label 0 becomes -1) diverges, and the message names labels as a possible cause.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype(np.float32), rng.integers(1, 3, 16).astype(np.int32)
    y[3] = 0

    def shifted(out, y):
        return F.cross_entropy(out, y - 1)

    with pytest.raises(TrainingDiverged, match=r"non-finite loss nan.*class labels outside \[0, C\)") as info:
        fit(
            nn.Linear(4, 3),
            shifted,
            optim.sgd(lr=0.1),
            (x, y),
            epochs=1,
            batch_size=16,
            key=jax.random.key(0),
            progress=False,
        )
    assert (info.value.epoch, info.value.step) == (1, 1)


def test_fit_and_evaluate_name_the_bad_label_before_compiling():
    # LBL-1 (host side): the value, its index and the model's class range, before compiling.
    model = toy_model()
    params, state = model.init(jax.random.key(0))
    x, y = toy_data(64)
    bad = y.copy()
    bad[5] = 9
    with pytest.raises(ValueError, match=r"^data labels must be in \[0, 4\), got 9 at index 5 \(1 of 64"):
        evaluate(model, params, state, (x, bad))
    common = dict(epochs=1, batch_size=8, key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match=r"^train_data labels must be in \[0, 4\), got 9 at index 5"):
        fit(model, nn.CrossEntropyLoss(), optim.sgd(lr=0.1), (x, bad), **common)
    with pytest.raises(ValueError, match=r"^eval_data labels must be in \[0, 4\), got 9 at index 5"):
        fit(model, nn.CrossEntropyLoss(), optim.sgd(lr=0.1), (x, y), eval_data=(x, bad), **common)


@pytest.mark.slow
def test_evaluate_accepts_the_loss_ignore_index():
    # NLL-1 through evaluate: labels equal to ignore_index pass the host check and carry no
    # weight; the result equals F.cross_entropy over the whole set (golden-tested op).
    model = nn.Linear(20, 4)
    params, state = model.init(jax.random.key(0))
    x, y = toy_data(40)
    y[::7] = 7
    loss = nn.CrossEntropyLoss(weight=[1.0, 2.0, 0.5, 1.5], ignore_index=7)
    weight = jnp.array([1.0, 2.0, 0.5, 1.5])
    want = fast_jit(  # the reference in one program
        lambda x, y: F.cross_entropy(
            model.apply(params, state, x, train=False)[0], y, weight=weight, ignore_index=7
        )
    )(jnp.asarray(x), jnp.asarray(y))
    got = evaluate(model, params, state, (x, y), batch_size=16, loss=loss)
    np.testing.assert_allclose(got["loss"], want, rtol=1e-5)


# ---------------------------------------------------------------- progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.slow
def test_progress_bar_moves_during_the_epoch_on_a_terminal(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    x, y = toy_data(512)
    fit(
        toy_model(), F.cross_entropy, optim.sgd(lr=0.1), (x, y), epochs=1, batch_size=4, key=jax.random.key(0)
    )
    text = terminal.getvalue()
    steps = [int(s.split("/")[0]) for s in text.split("] ")[1:]]
    assert len(set(steps)) >= 10 and max(steps) == 128 and min(steps) < 128  # updates inside the epoch
    assert "samples/s" in text and "ETA" in text


def test_nan_or_inf_in_the_data_is_named_as_bad_data_before_compiling():
    # Not a divergence at step 3 with advice to lower the learning rate: the host check names
    # the array, the row and the column.
    x, y = toy_data(64)
    x = np.array(x)
    x[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"^train_data x holds nan at row 3, column 5$"):
        fit(toy_model(), nn.CrossEntropyLoss(), optim.sgd(lr=0.1), (x, y), epochs=1, batch_size=32,
            key=jax.random.key(0), progress=False)  # fmt: skip
    xr, yr = np.ones((8, 2), np.float32), np.ones((8, 1), np.float32)
    bad_y = yr.copy()
    bad_y[6, 0] = -np.inf
    with pytest.raises(ValueError, match=r"^eval_data y holds -inf at row 6, column 0$"):
        fit(nn.Linear(2, 1), nn.MSELoss(), optim.sgd(lr=0.1), (xr, yr), epochs=1, batch_size=4,
            eval_data=(xr, bad_y), key=jax.random.key(0), progress=False)  # fmt: skip


def test_a_users_loop_around_train_step_matches_numpy_sgd_and_traces_once():
    # The README's five-line loop: jit with the specs static. A Linear + MSE + SGD step is
    # W <- W - lr·(2/N)·(W x - y)ᵀ x per batch, computed here in numpy; the step counter is
    # weakly typed like init_train_state's 0, so the second step reuses the first trace.
    traces = []

    def counted(out, target):
        traces.append(1)  # runs at trace time only
        return F.mse_loss(out, target)

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)).astype(np.float32), rng.normal(size=(32, 2)).astype(np.float32)
    model, opt = nn.Linear(3, 2, bias=False), optim.sgd(lr=0.1)
    ts = train.init_train_state(model, opt, jax.random.key(0))
    w = np.asarray(ts.params["weight"], np.float64)
    step = jax.jit(train.train_step, static_argnums=(0, 1, 2))
    for i in range(0, 32, 8):
        ts, metrics = step(model, nn.FunctionLoss(counted, backward=F.mse_loss_backward), opt, ts,
                           (x[i : i + 8], y[i : i + 8]))  # fmt: skip
        xb, yb = x[i : i + 8].astype(np.float64), y[i : i + 8].astype(np.float64)
        w -= 0.1 * 2 * (xb @ w.T - yb).T @ xb / yb.size
    assert len(traces) == 1 and int(ts.step) == 4 and bool(metrics["ok"])
    np.testing.assert_allclose(ts.params["weight"], w, rtol=1e-5, atol=1e-6)

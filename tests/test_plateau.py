"""fnn.optim.ReduceLROnPlateau against torch's: exactly equal lr sequences (float64).

The fixture tests/torch_reference/plateau.json is torch's own output (see
tests/torch_reference/plateau.py), so these tests run without torch; one more test
compares live on random sequences when torch is importable.
"""

import dataclasses
import json
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from fnn import optim
from fnn.optim import PlateauState, ReduceLROnPlateau

FIXTURE = json.loads((pathlib.Path(__file__).parent / "torch_reference" / "plateau.json").read_text())
CASES = FIXTURE["cases"]


def lr_sequence(plateau, lr, metrics):
    s = plateau.init(lr)
    out = []
    for m in metrics:
        s = plateau.step(s, m)
        out.append(s.lr)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_lr_sequence_equals_torch_exactly(case):
    got = lr_sequence(ReduceLROnPlateau(**case["kwargs"]), case["lr"], case["metrics"])
    assert got == case["lrs"]  # bit-for-bit: == on Python floats, no tolerance


def test_fixture_covers_every_argument_and_edge_value():
    used = {
        k: {c["kwargs"][k] for c in CASES if k in c["kwargs"]}
        for k in ["mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"]
    }
    assert all(used.values()), used
    assert used["mode"] == {"max"} and used["threshold_mode"] == {"abs"}  # 'min', 'rel' by default
    assert {0, 1} <= used["patience"] and 0.0 in used["factor"] and 0.0 in used["eps"]
    metrics = [m for c in CASES for m in c["metrics"]]
    assert any(math.isnan(m) for m in metrics)
    assert math.inf in metrics and -math.inf in metrics
    assert sum(c["lrs"] != [c["lr"]] * len(c["lrs"]) for c in CASES) >= 25  # most cases reduce
    assert len(CASES) >= 30


def test_live_against_torch_on_random_sequences():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(20240611)
    for trial in range(200):
        kwargs = {
            "mode": str(rng.choice(["min", "max"])),
            "factor": float(rng.choice([0.0, 0.1, 0.5, 0.9, rng.uniform(0, 1)])),
            "patience": int(rng.integers(0, 5)),
            "threshold": float(rng.choice([0.0, 1e-4, 0.05, rng.uniform(0, 0.5)])),
            "threshold_mode": str(rng.choice(["rel", "abs"])),
            "cooldown": int(rng.integers(0, 4)),
            "min_lr": float(rng.choice([0.0, 1e-5, 1e-3])),
            "eps": float(rng.choice([0.0, 1e-8, 1e-4])),
        }
        lr = float(rng.choice([1.0, 0.1, 3e-4]))
        n = int(rng.integers(1, 80))
        metrics = np.round(rng.normal(0, 1, n).cumsum() * rng.choice([1, -1]), int(rng.integers(0, 4)))
        metrics = [float(m) for m in metrics]
        for i in rng.choice(n, size=int(rng.integers(0, 4))):
            metrics[i] = float(rng.choice([math.nan, math.inf, -math.inf]))
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
        want = []
        for m in metrics:
            sched.step(m)
            want.append(float(opt.param_groups[0]["lr"]))
        assert lr_sequence(ReduceLROnPlateau(**kwargs), lr, metrics) == want, (trial, kwargs, lr, metrics)


def test_defaults_are_torchs():
    p = ReduceLROnPlateau()
    assert dataclasses.asdict(p) == {
        "mode": "min",
        "factor": 0.1,
        "patience": 10,
        "threshold": 1e-4,
        "threshold_mode": "rel",
        "cooldown": 0,
        "min_lr": 0.0,
        "eps": 1e-8,
    }
    assert p.init(0.1) == PlateauState(0.1, math.inf, 0, 0, 0)
    assert ReduceLROnPlateau(mode="max").init(0.1).best == -math.inf


def test_state_is_plain_python_and_json_round_trips():
    p = ReduceLROnPlateau(patience=1, cooldown=2, factor=0.5)
    s = p.init(0.1)
    for m in [1.0, 2.0, 2.0, jnp.float32(0.5), np.float64(0.7), 3]:  # arrays and ints are metrics too
        s = p.step(s, m)
    assert [type(v) for v in s] == [float, float, int, int, int]
    text = json.dumps(s._asdict())
    restored = PlateauState(**json.loads(text))
    assert restored == s
    # the fresh state has best = inf: Python's json writes and reads Infinity
    assert PlateauState(**json.loads(json.dumps(p.init(0.1)._asdict()))).best == math.inf
    # continuing from the restored state is the same as continuing from the original
    for m in [0.9, 0.9, 0.9, 0.9]:
        s, restored = p.step(s, m), p.step(restored, m)
    assert s == restored


def test_step_is_pure_and_the_scheduler_immutable_and_hashable():
    p = ReduceLROnPlateau(patience=0)
    s0 = p.init(1.0)
    s1 = p.step(s0, 1.0)
    s2 = p.step(s1, 1.0)
    assert s0 == PlateauState(1.0, math.inf, 0, 0, 0) and s1.lr == 1.0 and s2.lr == 0.1
    assert p.step(s1, 1.0) == s2  # same input, same output
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.factor = 0.5
    assert p == ReduceLROnPlateau(patience=0) and hash(p) == hash(ReduceLROnPlateau(patience=0))
    assert p != ReduceLROnPlateau(patience=1) and {p: 1}[ReduceLROnPlateau(patience=0)] == 1
    assert ReduceLROnPlateau(min_lr=0, factor=0) == ReduceLROnPlateau(min_lr=0.0, factor=0.0)
    assert type(ReduceLROnPlateau(min_lr=0).min_lr) is float


def test_drives_the_optimizers_lr_scale():
    # The intended use: the plateau's lr, as a scale of the optimizer's base lr.
    base = 0.1
    opt, plateau = optim.sgd(lr=base), ReduceLROnPlateau(patience=0, factor=0.5)
    p = jnp.zeros(1)
    state, s = opt.init(p), plateau.init(base)
    for val_loss in [1.0, 1.0, 1.0]:
        u, state = opt.update(jnp.ones(1), state)
        s = plateau.step(s, val_loss)
        state = optim.with_lr_scale(state, s.lr / base)
    u, state = opt.update(jnp.ones(1), state)
    assert s.lr == 0.025
    np.testing.assert_allclose(u, [-0.025], rtol=1e-7)
    np.testing.assert_allclose(optim.last_lr(state), 0.025, rtol=1e-7)


BAD = [
    # torch's checks (ValueError, clearer messages)
    ({"factor": 1.0}, ValueError, r"factor should be < 1.0, got 1.0"),
    ({"factor": 2}, ValueError, r"factor should be < 1.0, got 2"),
    ({"mode": "avg"}, ValueError, r"mode 'avg' is unknown: it must be 'min' or 'max'"),
    ({"mode": None}, ValueError, r"mode None is unknown"),
    (
        {"threshold_mode": "relative"},
        ValueError,
        r"threshold mode 'relative' is unknown: it must be 'rel' or 'abs'",
    ),
    # fnn's additions
    ({"factor": -0.5}, ValueError, r"factor must be a finite number >= 0, got -0.5"),
    ({"factor": math.nan}, ValueError, r"factor must be a finite number >= 0, got nan"),
    ({"patience": -1}, ValueError, r"patience must be an integer >= 0, got -1"),
    ({"patience": 2.5}, ValueError, r"patience must be an integer >= 0, got 2.5"),
    ({"cooldown": -2}, ValueError, r"cooldown must be an integer >= 0, got -2"),
    ({"threshold": -1e-4}, ValueError, r"threshold must be a finite number >= 0, got -0.0001"),
    ({"min_lr": -1e-3}, ValueError, r"min_lr must be a finite number >= 0, got -0.001"),
    ({"min_lr": math.inf}, ValueError, r"min_lr must be a finite number >= 0, got inf"),
    ({"min_lr": [0.0, 0.1]}, TypeError, r"min_lr must be one number .*got \[0.0, 0.1\]"),
    ({"eps": math.nan}, ValueError, r"eps must be a finite number >= 0, got nan"),
    ({"eps": "1e-8"}, TypeError, r"eps must be a number, got '1e-8' of type str"),
]


@pytest.mark.parametrize("kwargs,error,match", BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ReduceLROnPlateau(**kwargs)


@pytest.mark.parametrize(
    "lr,error,match",
    [
        (-0.1, ValueError, r"lr must be a finite number >= 0, got -0.1"),
        (math.nan, ValueError, r"lr must be a finite number >= 0, got nan"),
        (optim.step_lr(0.1, 2), TypeError, r"lr must be a number here, not a schedule"),
    ],
)
def test_bad_initial_lr(lr, error, match):
    with pytest.raises(error, match=match):
        ReduceLROnPlateau().init(lr)

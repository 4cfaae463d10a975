"""fnn.optim.schedules against torch.optim.lr_scheduler's closed forms (SCHED-1).

step = number of updates already done, from 0 (torch's last_epoch after that many
scheduler.step() calls).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn.optim as optim


def values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_step_lr(x64):
    # SCHED-1 StepLR: lr·γ^⌊t/step⌋
    steps = range(10)
    np.testing.assert_allclose(
        values(optim.step_lr(0.1, step_size=3, gamma=0.5), steps),
        [0.1 * 0.5 ** (t // 3) for t in steps],
        rtol=1e-15,
    )
    np.testing.assert_allclose(
        values(optim.step_lr(0.1, 3, 0.5), [0, 2, 3, 5, 6]), [0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-15
    )
    assert float(optim.step_lr(1.0, 2)(4)) == pytest.approx(0.01)  # default gamma 0.1


def test_multistep_lr(x64):
    # torch MultiStepLR closed form: lr·γ^bisect_right(sorted milestones, t)
    sched = optim.multistep_lr(1.0, milestones=[5, 2], gamma=0.1)
    np.testing.assert_allclose(values(sched, [0, 1, 2, 4, 5, 9]), [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-15)
    twice = optim.multistep_lr(1.0, milestones=[3, 3], gamma=0.5)  # torch counts repeats
    np.testing.assert_allclose(values(twice, [2, 3]), [1.0, 0.25])


def test_exponential_lr(x64):
    steps = [0, 1, 2, 7]
    np.testing.assert_allclose(
        values(optim.exponential_lr(0.2, gamma=0.9), steps), [0.2 * 0.9**t for t in steps], rtol=1e-14
    )


def test_exponential_lr_with_a_floor_is_pylearn2s_exponential_decay(x64):
    # pylearn2 ExponentialDecay(decay_factor=1.000004, min_lr=1e-6): the update after k
    # others uses max(0.1 / 1.000004**k, 1e-6) (closed form in float64, independent of fnn)
    sched = optim.exponential_lr(0.1, gamma=1 / 1.000004, min_lr=1e-6)
    steps = [0, 1, 500, 150_000, 2_878_000, 2_879_000, 10_000_000]
    expected = [max(0.1 / 1.000004**k, 1e-6) for k in steps]
    np.testing.assert_allclose(values(sched, steps), expected, rtol=1e-9)  # γ is 1 − 4e-6 to 1 ulp
    assert float(sched(10_000_000)) == 1e-6 and float(sched(2_878_000)) > 1e-6
    assert (
        repr(optim.exponential_lr(0.1, 0.5, min_lr=0.01)) == "exponential_lr(lr=0.1, gamma=0.5, min_lr=0.01)"
    )
    assert optim.exponential_lr(0.1, 0.5, min_lr=0.0) == optim.exponential_lr(0.1, 0.5)  # no floor: torch's
    assert optim.exponential_lr(0.1, 0.5, min_lr=0.01) != optim.exponential_lr(0.1, 0.5)
    np.testing.assert_allclose(values(optim.exponential_lr(0.3, gamma=0.0), [0, 1, 5]), [0.3, 0, 0])


def test_exponential_lr_keeps_float32_precision_over_long_runs():
    # γ**step in float32 would inherit γ's 3e-8 representation error times the step (0.45%
    # at 150k steps); exp(step·ln γ) stays within float32 rounding of the float64 value.
    sched = optim.exponential_lr(0.1, gamma=1 / 1.000004)
    for k in [150_000, 500_000, 2_000_000]:
        got = sched(jnp.asarray(k, jnp.int32))
        assert got.dtype == jnp.float32
        assert float(got) == pytest.approx(0.1 / 1.000004**k, rel=2e-6)


def test_linear_lr_warmup(x64):
    # SCHED-1 LinearLR: lr·(s + (e − s)·min(t, T)/T); defaults s = 1/3, e = 1, T = 5.
    sched = optim.linear_lr(0.3)
    steps = range(8)
    expected = [0.3 * (1 / 3 + (1 - 1 / 3) * min(t, 5) / 5) for t in steps]
    np.testing.assert_allclose(values(sched, steps), expected, rtol=1e-14)
    np.testing.assert_allclose(values(sched, [0, 5, 100]), [0.1, 0.3, 0.3], rtol=1e-14)
    decay = optim.linear_lr(1.0, start_factor=1.0, end_factor=0.5, total_iters=4)
    np.testing.assert_allclose(values(decay, [0, 2, 4, 9]), [1.0, 0.75, 0.5, 0.5])


def test_cosine_annealing_is_periodic_past_t_max(x64):
    # SCHED-1: η_min + (η0 − η_min)(1 + cos(πt/T_max))/2, rising again after T_max (torch),
    # not clamped (optax).
    sched = optim.cosine_annealing_lr(1.0, T_max=10, eta_min=0.1)
    steps = [0, 3, 5, 10, 15, 20, 27]
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * t / 10)) / 2 for t in steps]
    np.testing.assert_allclose(values(sched, steps), expected, rtol=1e-14)
    np.testing.assert_allclose(values(sched, [5, 10, 15, 20]), [0.55, 0.1, 0.55, 1.0], rtol=1e-14)


def test_warmup_cosine(x64):
    sched = optim.warmup_cosine(1.0, warmup_steps=4, total_steps=12, eta_min=0.1)
    np.testing.assert_allclose(
        values(sched, [0, 2, 4, 8, 12, 30]), [0.0, 0.5, 1.0, 0.55, 0.1, 0.1], rtol=1e-14, atol=1e-15
    )
    no_warmup = optim.warmup_cosine(2.0, warmup_steps=0, total_steps=4)
    np.testing.assert_allclose(values(no_warmup, [0, 2, 4]), [2.0, 1.0, 0.0], atol=1e-15)


def test_schedules_accept_traced_int32_steps():
    sched = optim.cosine_annealing_lr(1.0, T_max=4)
    got = jax.jit(jax.vmap(sched))(jnp.arange(9, dtype=jnp.int32))
    np.testing.assert_allclose(got, [(1 + math.cos(math.pi * t / 4)) / 2 for t in range(9)], atol=1e-6)
    assert sched.hyperparams == {"lr": 1.0, "T_max": 4, "eta_min": 0.0}


def test_schedule_as_lr_advances_with_the_step_count():
    # Unit gradients: SGD's update is −lr(step); the first update uses step 0.
    opt = optim.sgd(lr=optim.step_lr(0.1, step_size=2, gamma=0.5))
    p = jnp.zeros(1)
    state = opt.init(p)
    got = []
    for _ in range(5):
        u, state = jax.jit(opt.update)(jnp.ones(1), state, p)
        got.append(float(u[0]))
    np.testing.assert_allclose(got, [-0.1, -0.1, -0.05, -0.05, -0.025], rtol=1e-6)
    assert int(state[-1].step) == 5


def test_schedule_inside_scan_and_with_adagrad_lr_decay(x64):
    # ADAG-1 with a schedule: clr = lr(s)/(1 + s·lr_decay); unit grads give G = s + 1.
    lr = optim.exponential_lr(0.1, gamma=0.5)
    opt = optim.adagrad(lr=lr, lr_decay=1.0)
    p = jnp.zeros(2)

    def body(state, _):
        u, state = opt.update(jnp.ones(2), state, p)
        return state, u[0]

    _, us = jax.lax.scan(body, opt.init(p), None, length=4)
    expected = [-(0.1 * 0.5**s / (1 + s)) / (math.sqrt(s + 1) + 1e-10) for s in range(4)]
    np.testing.assert_allclose(us, expected, rtol=1e-13)


def test_adamw_decay_follows_the_scheduled_lr(x64):
    # ADAMW-1: θ ← θ·(1 − lr(s)·λ); with zero grads the Adam step is 0.
    opt = optim.adamw(lr=optim.step_lr(0.1, step_size=1, gamma=0.5), weight_decay=0.5)
    p = jnp.full((2, 2), 1.0)
    state = opt.init(p)
    expected = 1.0
    for s in range(3):
        u, state = opt.update(jnp.zeros_like(p), state, p)
        p = optim.apply_updates(p, u)
        expected *= 1 - 0.1 * 0.5**s * 0.5
    np.testing.assert_allclose(p, np.full((2, 2), expected), rtol=1e-14)


BAD = [
    (lambda: optim.step_lr(-0.1, 2), "lr must be a finite number >= 0, got -0.1"),
    (lambda: optim.step_lr(0.1, 0), "step_size must be an integer >= 1, got 0"),
    (lambda: optim.step_lr(0.1, 1.5), "step_size must be an integer >= 1, got 1.5"),
    (lambda: optim.step_lr(0.1, 2, gamma=-1.0), "gamma must be >= 0, got -1.0"),
    (lambda: optim.multistep_lr(0.1, [2, -1]), "milestones must be an integer >= 0, got -1"),
    (lambda: optim.multistep_lr(0.1, [2], gamma=-0.5), "gamma must be >= 0, got -0.5"),
    (lambda: optim.exponential_lr(0.1, gamma=-2), "gamma must be >= 0, got -2"),
    (lambda: optim.exponential_lr(0.1, gamma=0.9, min_lr=-1e-6), "min_lr must be >= 0, got -1e-06"),
    (
        lambda: optim.exponential_lr(0.1, gamma=0.9, min_lr=0.2),
        "min_lr must be <= lr, got min_lr=0.2 and lr=0.1",
    ),
    (lambda: optim.linear_lr(0.1, start_factor=0.0), r"start_factor must be in \(0, 1\], got 0.0"),
    (lambda: optim.linear_lr(0.1, end_factor=1.5), r"end_factor must be in \[0.0, 1.0\], got 1.5"),
    (lambda: optim.linear_lr(0.1, total_iters=0), "total_iters must be an integer >= 1, got 0"),
    (lambda: optim.cosine_annealing_lr(0.1, T_max=0), "T_max must be an integer >= 1, got 0"),
    (lambda: optim.cosine_annealing_lr(0.1, 10, eta_min=-1), "eta_min must be >= 0, got -1"),
    (lambda: optim.warmup_cosine(0.1, -1, 10), "warmup_steps must be an integer >= 0, got -1"),
    (
        lambda: optim.warmup_cosine(0.1, 5, 5),
        r"total_steps must be an integer >= 6 \(more than warmup_steps\), got 5",
    ),
    (lambda: optim.cosine_annealing_lr(float("nan"), 10), "lr must be a finite number >= 0, got nan"),
    (lambda: optim.exponential_lr(float("inf"), 0.9), "lr must be a finite number >= 0, got inf"),
    (lambda: optim.linear_lr(-1), "lr must be a finite number >= 0, got -1"),
]


@pytest.mark.parametrize("make,match", BAD, ids=[m for _, m in BAD])
def test_bad_schedule_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_schedule_is_not_a_schedules_lr():
    with pytest.raises(TypeError, match="lr must be a number here, not a schedule"):
        optim.step_lr(optim.exponential_lr(0.1, 0.9), 2)


SCHEDULES = [
    # (make, a variant with one argument changed)
    (lambda: optim.step_lr(0.1, step_size=3, gamma=0.5), lambda: optim.step_lr(0.1, step_size=3)),
    (lambda: optim.multistep_lr(0.1, [2, 5]), lambda: optim.multistep_lr(0.1, [2, 6])),
    (lambda: optim.exponential_lr(0.1, gamma=0.9), lambda: optim.exponential_lr(0.2, gamma=0.9)),
    (
        lambda: optim.exponential_lr(0.1, 0.9, min_lr=1e-3),
        lambda: optim.exponential_lr(0.1, 0.9, min_lr=1e-4),
    ),
    (lambda: optim.linear_lr(0.1), lambda: optim.linear_lr(0.1, total_iters=6)),
    (
        lambda: optim.cosine_annealing_lr(0.1, T_max=100),
        lambda: optim.cosine_annealing_lr(0.1, T_max=100, eta_min=1e-3),
    ),
    (lambda: optim.warmup_cosine(0.1, 5, 50), lambda: optim.warmup_cosine(0.1, 5, 51)),
]


@pytest.mark.parametrize("make,other", SCHEDULES)
def test_schedules_are_equal_and_hashable_by_value(make, other):
    a, b, c = make(), make(), other()
    assert a is not b and a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert a != c and len({a, b, c}) == 2
    assert float(a(7)) == float(b(7))
    with pytest.raises(TypeError):
        a.hyperparams["lr"] = 1.0  # read-only, so the hash cannot go stale
    with pytest.raises(AttributeError):
        a.name = "other"  # frozen


def test_schedule_identity_is_name_and_arguments():
    assert optim.cosine_annealing_lr(0.1, T_max=100) == optim.cosine_annealing_lr(0.1, T_max=100)
    assert optim.step_lr(1, 2) == optim.step_lr(1.0, 2)  # lr is stored as a float
    # the same values, but equality is by construction (kind and arguments), not by values
    assert optim.exponential_lr(0.1, 0.5) != optim.step_lr(0.1, 1, 0.5)
    assert isinstance(optim.linear_lr(0.1), optim.LRSchedule)
    assert repr(optim.step_lr(0.1, 3)) == "step_lr(lr=0.1, step_size=3, gamma=0.1)"

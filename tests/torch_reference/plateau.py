"""Write plateau.json: torch's ReduceLROnPlateau lr after every step(metric), the fixture of
tests/test_plateau.py (which runs without torch).

Needs torch 2.13 (CPU) and numpy, not fnn. From the repository root:

    /work/torch213/bin/python tests/torch_reference/plateau.py

or, on a fresh machine,

    python -m venv v && v/bin/pip install numpy torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    v/bin/python tests/torch_reference/plateau.py

Top level {"torch", "generator", "cases"}.
Each case is {"api" ("fnn.optim.ReduceLROnPlateau"), "name", "kwargs" (ReduceLROnPlateau's,
fnn's and torch's names alike, without the optimizer), "lr" (the
optimizer's initial lr), "metrics", "lrs" (param_groups[0]["lr"] after each step)}. Metric
sequences are written so that every branch of torch's rule is taken: plateaus, exact ties
with best, values one ulp either side of the improvement bar (chosen from torch's own
`best` as the run goes), NaN, ±inf, negative metrics (the 'rel' quirk), reductions clamped
by min_lr and reductions skipped by eps. JSON floats round-trip exactly (repr); NaN and
±inf are written as NaN / Infinity, which Python's json reads back.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).with_suffix(".json")
API = "fnn.optim.ReduceLROnPlateau"
INF, NAN = math.inf, math.nan


def make(kwargs, lr):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    return opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)


def run(kwargs, lr, metrics):
    """torch's lr after each step on a fixed metric sequence."""
    opt, sched = make(kwargs, lr)
    lrs = []
    for m in metrics:
        sched.step(m)
        lrs.append(float(opt.param_groups[0]["lr"]))
    return lrs


def bar(sched):
    """The value a metric must beat to count as better than torch's current best."""
    t, best = sched.threshold, sched.best
    if sched.mode == "min":
        return best * (1.0 - t) if sched.threshold_mode == "rel" else best - t
    return best * (t + 1.0) if sched.threshold_mode == "rel" else best + t


def run_near_bar(kwargs, lr, n, seed):
    """Metrics at the bar, one ulp better or one ulp worse, picked from torch's live best."""
    rng = np.random.default_rng(seed)
    opt, sched = make(kwargs, lr)
    better = -INF if sched.mode == "min" else INF
    metrics, lrs = [], []
    for _ in range(n):
        b = bar(sched)
        if math.isinf(b):  # before the first step: any finite value
            m = float(rng.uniform(0.5, 2.0))
        else:
            m = [b, math.nextafter(b, better), math.nextafter(b, -better), sched.best][rng.integers(4)]
        sched.step(m)
        metrics.append(m)
        lrs.append(float(opt.param_groups[0]["lr"]))
    return metrics, lrs


def random_walk(n, seed, ties=True, nans=0.0):
    """A noisy decreasing loss with plateaus; rounding makes exact ties frequent."""
    rng = np.random.default_rng(seed)
    x = 2.0 + np.cumsum(rng.normal(-0.02, 0.05, n))
    x[n // 3 : n // 2] = x[n // 3]  # a flat plateau
    if ties:
        x = np.round(x, 2)
    out = [float(v) for v in x]
    for i in np.flatnonzero(rng.random(n) < nans):
        out[i] = NAN
    return out


DESCENT = [
    1.0,
    0.9,
    0.8,
    0.8,
    0.8,
    0.79995,
    0.79,
    0.79,
    0.79,
    0.79,
    0.78,
    0.78,
    0.78,
    0.78,
    0.78,
    0.78,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
    0.5,
]
ACCURACY = [
    0.1,
    0.3,
    0.5,
    0.5,
    0.5,
    0.50004,
    0.6,
    0.6,
    0.6,
    0.6,
    0.61,
    0.61,
    0.61,
    0.61,
    0.9,
    0.9,
    0.9,
    0.9,
    0.9,
    0.9,
    0.9,
    0.9,
    0.9,
]
SPECIAL = [1.0, NAN, NAN, 0.5, INF, 0.5, NAN, 0.4, 0.4, -INF, 0.3, NAN, -1.0, INF, NAN, NAN, 0.1]
NEGATIVE = [
    -1.0,
    -1.0,
    -1.00005,
    -1.0002,
    -1.0002,
    -0.5,
    -2.0,
    -2.0,
    -2.0001,
    -2.0003,
    -2.0003,
    -2.0003,
    -3.0,
    0.0,
    0.0,
    0.0,
    -3.0,
]
ZEROS = [0.0, 0.0, -0.0, 0.0, 1e-300, 0.0, -1e-300, 0.0, 0.0, 0.0, 5e-324, 0.0, 0.0]


def cases():
    d = {}
    yield "defaults_descent", d, 0.1, DESCENT + DESCENT[::-1]
    yield "defaults_random", d, 0.1, random_walk(80, 1)
    yield "patience0", {"patience": 0}, 1.0, DESCENT
    yield "patience0_factor0.5", {"patience": 0, "factor": 0.5}, 1.0, random_walk(60, 2)
    yield "patience1", {"patience": 1, "factor": 0.5}, 0.1, DESCENT
    yield "patience3_cooldown2", {"patience": 3, "cooldown": 2, "factor": 0.5}, 0.1, random_walk(80, 3)
    yield "patience0_cooldown1", {"patience": 0, "cooldown": 1, "factor": 0.5}, 0.1, DESCENT
    yield "patience0_cooldown3", {"patience": 0, "cooldown": 3, "factor": 0.9}, 0.1, random_walk(60, 4)
    yield "max_rel", {"mode": "max", "patience": 2, "factor": 0.5}, 0.1, ACCURACY
    yield "max_abs", {"mode": "max", "threshold_mode": "abs", "threshold": 0.01, "patience": 1}, 0.1, ACCURACY
    yield "min_abs", {"threshold_mode": "abs", "threshold": 0.01, "patience": 1, "factor": 0.5}, 0.1, DESCENT
    yield (
        "min_abs_big_threshold",
        {"threshold_mode": "abs", "threshold": 0.5, "patience": 2},
        1.0,
        random_walk(60, 5),
    )
    yield "threshold0_ties", {"threshold": 0.0, "patience": 1, "factor": 0.5}, 0.1, DESCENT
    yield "rel_threshold0.1", {"threshold": 0.1, "patience": 2, "factor": 0.5}, 0.1, random_walk(60, 6, False)
    yield "min_lr_clamps", {"patience": 0, "factor": 0.1, "min_lr": 1e-3}, 0.1, random_walk(40, 7)
    yield "min_lr_above_lr", {"patience": 0, "min_lr": 0.5}, 0.1, DESCENT
    yield "eps_skips", {"patience": 0, "factor": 0.5, "eps": 1e-3}, 0.01, random_walk(40, 8)
    yield "eps0", {"patience": 0, "factor": 0.5, "eps": 0.0}, 1e-6, random_walk(60, 9)
    yield "eps_equal_to_step", {"patience": 0, "factor": 0.5, "eps": 0.25}, 1.0, DESCENT
    yield "factor0", {"patience": 1, "factor": 0.0, "min_lr": 1e-4}, 0.1, DESCENT
    yield "factor0.999", {"patience": 0, "factor": 0.999}, 0.1, random_walk(60, 10)
    yield "special_min", {"patience": 1, "factor": 0.5}, 0.1, SPECIAL
    yield "special_max", {"mode": "max", "patience": 1, "factor": 0.5}, 0.1, SPECIAL + [-x for x in SPECIAL]
    yield "special_abs", {"threshold_mode": "abs", "patience": 0, "factor": 0.5, "cooldown": 1}, 0.1, SPECIAL
    yield "nan_first", {"patience": 2, "factor": 0.5}, 0.1, [NAN, NAN, NAN, NAN, 1.0, NAN, 0.9, NAN, NAN, NAN]
    yield (
        "inf_first_max",
        {"mode": "max", "patience": 0, "factor": 0.5},
        0.1,
        [-INF, -INF, 0.0, INF, INF, 1.0],
    )
    yield "negative_min_rel", {"patience": 1, "factor": 0.5}, 0.1, NEGATIVE
    yield "negative_max_rel", {"mode": "max", "patience": 1, "factor": 0.5}, 0.1, NEGATIVE
    yield "zeros_rel", {"patience": 1, "factor": 0.5}, 0.1, ZEROS
    yield "random_nans", {"patience": 2, "factor": 0.3, "cooldown": 1}, 0.05, random_walk(80, 11, nans=0.15)
    yield "lr_zero", {"patience": 0}, 0.0, DESCENT


NEAR = [
    ("near_bar_min_rel", {"patience": 1, "factor": 0.5}),
    ("near_bar_min_abs", {"threshold_mode": "abs", "threshold": 1e-3, "patience": 1, "factor": 0.5}),
    ("near_bar_max_rel", {"mode": "max", "patience": 0, "factor": 0.7, "cooldown": 1}),
    ("near_bar_max_abs", {"mode": "max", "threshold_mode": "abs", "patience": 2, "factor": 0.5}),
]


def main():
    out = []
    for name, kwargs, lr, metrics in cases():
        lrs = run(kwargs, lr, metrics)
        out.append({"api": API, "name": name, "kwargs": kwargs, "lr": lr, "metrics": metrics, "lrs": lrs})
    for i, (name, kwargs) in enumerate(NEAR):
        metrics, lrs = run_near_bar(kwargs, 0.1, 60, seed=100 + i)
        out.append({"api": API, "name": name, "kwargs": kwargs, "lr": 0.1, "metrics": metrics, "lrs": lrs})
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in out)
    generator = json.dumps("tests/torch_reference/plateau.py")
    OUT.write_text(
        f'{{"torch":{json.dumps(torch.__version__)},"generator":{generator},"cases":[\n{lines}\n]}}\n'
    )
    print(f"wrote {len(out)} cases to {OUT}")


if __name__ == "__main__":
    main()

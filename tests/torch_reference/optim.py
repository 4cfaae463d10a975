"""Write optim.json: torch.optim trajectories under every option of fnn's optimizers, every
learning-rate schedule per step, scheduled and max-norm-constrained trajectories, and
torch.nn.utils.clip_grad_norm_ / get_total_norm, the fixture of tests/test_reference_optim.py
(which runs without torch).

Needs torch 2.13 (CPU) and numpy, not fnn. From the repository root:

    /work/torch213/bin/python tests/torch_reference/optim.py

or, on a fresh machine,

    python -m venv v && v/bin/pip install numpy torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    v/bin/python tests/torch_reference/optim.py

Top level {"torch", "generator", "cases"}; every case has "api" (the fnn name), "kwargs"
(fnn's argument names and values, defaults included) and "name", then:

- optimizers (fnn.optim.sgd, adam, adamw, rmsprop, adagrad): the loss Σ(0.5·c·θ² + d·θ) over
  θ = [W | b] with W (4, 3) and b (4,) (b is θ's last column), so grad = c·θ + d. "c", "d",
  "W0", "b0", then "W", "b" after every one of STEPS steps. kwargs["weight_decay_mask"] is
  "all" (fnn: decay every leaf, torch: one param group) or null (fnn's default WD-1: decay
  leaves with ndim >= 2; torch: b in a second group with weight_decay=0); "torch_groups" says
  which. kwargs["lr"] is a number, or {"api": <schedule>, "kwargs": {...}} for a scheduled
  run (torch: the matching lr_scheduler, stepped after every opt.step()).
  Cases named *_torch_defaults hold "torch_defaults": torch's constructor defaults, by fnn name.
- fnn.optim.max_norm: the same loss, "optimizer" (an sgd api/kwargs pair) chained with
  max_norm(**kwargs); torch renormalises W with torch.renorm after every step.
- schedules (fnn.optim.step_lr, ...): "lrs", the lr of each of the first N_LR updates
  (param_groups[0]["lr"] before each opt.step(); scheduler.step() after it), and "torch",
  the torch construction used. warmup_cosine has no single torch scheduler: it is
  SequentialLR(LambdaLR(t/W), CosineAnnealingLR(T − W, eta_min), ConstantLR(eta_min/lr)) with
  milestones [W, T] (LambdaLR because LinearLR cannot start at factor 0). exponential_lr's
  min_lr floor is fnn's (pylearn2's): torch's ExponentialLR lr, then max(·, min_lr).
- fnn.optim.clip_grad_norm / clip_by_global_norm: "grads" (a dict of arrays), "clipped",
  "total" (clip_grad_norm_'s return, the pre-clip norm; non-finite grads included).
  fnn.optim.global_norm: "grads", "total" (torch.nn.utils.get_total_norm).

float64 throughout; JSON floats round-trip exactly, NaN and ±inf are written as NaN and
Infinity. Deterministic (numpy seeds), so rerunning rewrites the file byte for byte.
"""

from __future__ import annotations

import json
import math
import pathlib
import warnings

import numpy as np
import torch

OUT = pathlib.Path(__file__).with_suffix(".json")
STEPS = 12
N_LR = 25
L = torch.optim.lr_scheduler

# fnn's signatures (defaults included) and the torch class of each optimizer
OPTIMIZERS = {
    "sgd": (
        torch.optim.SGD,
        dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    ),
    "adam": (
        torch.optim.Adam,
        dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
    ),
    "adamw": (
        torch.optim.AdamW,
        dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
    ),
    "rmsprop": (
        torch.optim.RMSprop,
        dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
    ),
    "adagrad": (
        torch.optim.Adagrad,
        dict(
            lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, maximize=False
        ),
    ),
}
ALL = "all"  # weight_decay_mask: every leaf (torch's behaviour)

OPTIMIZER_CASES = [
    ("sgd", {}),
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1, "weight_decay_mask": ALL}),
    ("sgd", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.2}),
    (
        "sgd",
        {"lr": 0.05, "momentum": 0.5, "dampening": 0.5, "weight_decay": 0.2, "maximize": True},
    ),
    ("sgd", {"lr": 0.1, "weight_decay": 0.3, "maximize": True, "weight_decay_mask": ALL}),
    ("adam", {}),
    ("adam", {"lr": 0.1}),
    ("adam", {"lr": 0.05, "betas": [0.8, 0.99], "eps": 1e-3}),
    ("adam", {"lr": 0.1, "amsgrad": True}),
    ("adam", {"lr": 0.1, "weight_decay": 0.1, "weight_decay_mask": ALL}),
    ("adam", {"lr": 0.1, "weight_decay": 0.1, "maximize": True}),
    (
        "adam",
        {"lr": 0.05, "betas": [0.5, 0.9], "weight_decay": 0.05, "amsgrad": True, "weight_decay_mask": ALL},
    ),
    ("adamw", {}),
    ("adamw", {"lr": 0.1}),
    ("adamw", {"lr": 0.1, "weight_decay": 0.5, "amsgrad": True, "weight_decay_mask": ALL}),
    (
        "adamw",
        {
            "lr": 0.05,
            "betas": [0.5, 0.9],
            "eps": 1e-6,
            "weight_decay": 0.2,
            "maximize": True,
            "weight_decay_mask": ALL,
        },
    ),
    ("rmsprop", {}),
    ("rmsprop", {"lr": 0.01, "centered": True}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1, "weight_decay_mask": ALL}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-3, "weight_decay": 0.05}),
    ("rmsprop", {"lr": 0.02, "alpha": 0.8, "centered": True, "momentum": 0.5, "maximize": True}),
    ("adagrad", {}),
    ("adagrad", {"lr": 0.1}),
    (
        "adagrad",
        {
            "lr": 0.1,
            "lr_decay": 0.1,
            "initial_accumulator_value": 0.5,
            "weight_decay": 0.1,
            "weight_decay_mask": ALL,
        },
    ),
    ("adagrad", {"lr": 0.1, "eps": 1e-3, "weight_decay": 0.05, "maximize": True}),
]

# (schedule, fnn kwargs, torch construction) — the torch side takes the optimizer
SCHEDULE_CASES = [
    ("step_lr", dict(lr=0.3, step_size=3, gamma=0.5), lambda o, k: L.StepLR(o, k["step_size"], k["gamma"])),
    ("step_lr", dict(lr=0.3, step_size=1, gamma=0.1), lambda o, k: L.StepLR(o, k["step_size"], k["gamma"])),
    ("step_lr", dict(lr=0.3, step_size=2, gamma=0.0), lambda o, k: L.StepLR(o, k["step_size"], k["gamma"])),
    (
        "multistep_lr",
        dict(lr=0.3, milestones=[5, 2, 5, 9], gamma=0.3),
        lambda o, k: L.MultiStepLR(o, k["milestones"], k["gamma"]),
    ),
    (
        "multistep_lr",
        dict(lr=0.2, milestones=[4], gamma=0.1),
        lambda o, k: L.MultiStepLR(o, k["milestones"], k["gamma"]),
    ),
    ("exponential_lr", dict(lr=0.3, gamma=0.9, min_lr=0.0), lambda o, k: L.ExponentialLR(o, k["gamma"])),
    ("exponential_lr", dict(lr=0.3, gamma=0.0, min_lr=0.0), lambda o, k: L.ExponentialLR(o, k["gamma"])),
    ("exponential_lr", dict(lr=0.1, gamma=0.8, min_lr=0.03), lambda o, k: L.ExponentialLR(o, k["gamma"])),
    (
        "linear_lr",
        dict(lr=0.3, start_factor=1 / 3, end_factor=1.0, total_iters=5),
        lambda o, k: L.LinearLR(o, k["start_factor"], k["end_factor"], k["total_iters"]),
    ),
    (
        "linear_lr",
        dict(lr=0.3, start_factor=0.25, end_factor=0.75, total_iters=4),
        lambda o, k: L.LinearLR(o, k["start_factor"], k["end_factor"], k["total_iters"]),
    ),
    (
        "linear_lr",
        dict(lr=0.3, start_factor=1.0, end_factor=0.0, total_iters=6),
        lambda o, k: L.LinearLR(o, k["start_factor"], k["end_factor"], k["total_iters"]),
    ),
    (
        "cosine_annealing_lr",
        dict(lr=0.3, T_max=5, eta_min=0.0),
        lambda o, k: L.CosineAnnealingLR(o, k["T_max"], k["eta_min"]),
    ),
    (
        "cosine_annealing_lr",
        dict(lr=0.3, T_max=4, eta_min=0.01),
        lambda o, k: L.CosineAnnealingLR(o, k["T_max"], k["eta_min"]),
    ),
    (
        "cosine_annealing_lr",
        dict(lr=0.3, T_max=1, eta_min=0.02),
        lambda o, k: L.CosineAnnealingLR(o, k["T_max"], k["eta_min"]),
    ),
    ("warmup_cosine", dict(lr=0.3, warmup_steps=3, total_steps=10, eta_min=0.01), None),
    ("warmup_cosine", dict(lr=0.3, warmup_steps=0, total_steps=6, eta_min=0.0), None),
    ("warmup_cosine", dict(lr=0.1, warmup_steps=1, total_steps=4, eta_min=0.02), None),
    ("warmup_cosine", dict(lr=0.5, warmup_steps=4, total_steps=12, eta_min=0.0), None),
]
SCHEDULES = {name: make for name, _, make in SCHEDULE_CASES}


def warmup_cosine(o, k):
    lr, w, t, eta = k["lr"], k["warmup_steps"], k["total_steps"], k["eta_min"]
    scheds, milestones = [], []
    if w:
        scheds.append(L.LambdaLR(o, lambda step: step / w))
        milestones.append(w)
    scheds.append(L.CosineAnnealingLR(o, T_max=t - w, eta_min=eta))
    scheds.append(L.ConstantLR(o, factor=eta / lr, total_iters=10**9))
    milestones.append(t)
    return L.SequentialLR(o, scheds, milestones=milestones)


def make_scheduler(name, opt, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's deprecation notes about step(epoch)
        return warmup_cosine(opt, kwargs) if name == "warmup_cosine" else SCHEDULES[name](opt, kwargs)


def torch_lr(name, kwargs, lr):
    """The floor of fnn's exponential_lr on torch's lr (the rest is torch's own)."""
    return max(lr, kwargs["min_lr"]) if name == "exponential_lr" else lr


def schedule_case(name, kwargs):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=kwargs["lr"])
    sched = make_scheduler(name, opt, kwargs)
    lrs = []
    for _ in range(N_LR):
        lrs.append(torch_lr(name, kwargs, opt.param_groups[0]["lr"]))
        opt.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sched.step()
    return {"lrs": lrs, "torch": type(sched).__name__ if name != "warmup_cosine" else "SequentialLR"}


def problem():
    rng = np.random.default_rng(1)
    c = rng.uniform(0.5, 2.0, size=(4, 4))  # columns 0..2: W, column 3: b
    d = rng.normal(size=(4, 4))
    return c, d, rng.normal(size=(4, 3)) * 0.8, rng.normal(size=4)


def trajectory(opt_name, kwargs, after_step=None):
    """torch's W, b after each step; kwargs are fnn's (mask 'all' or None, lr maybe a schedule)."""
    c, d, W0, b0 = problem()
    W = torch.tensor(W0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    cls, _ = OPTIMIZERS[opt_name]
    tkw = {k: (tuple(v) if k == "betas" else v) for k, v in kwargs.items() if k != "weight_decay_mask"}
    schedule = tkw["lr"] if isinstance(tkw["lr"], dict) else None
    if schedule:
        tkw["lr"] = schedule["kwargs"]["lr"]
    if kwargs["weight_decay_mask"] == ALL:
        groups, torch_groups = [W, b], "one group: W and b decay"
    else:  # fnn's default WD-1: decay ndim >= 2 only
        groups = [{"params": [W]}, {"params": [b], "weight_decay": 0.0}]
        torch_groups = "two groups: W decays, b has weight_decay=0"
    opt = cls(groups, **tkw)
    sched = make_scheduler(schedule["api"].rsplit(".", 1)[1], opt, schedule["kwargs"]) if schedule else None
    ct, dt = torch.tensor(c), torch.tensor(d)
    Ws, bs = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        theta = torch.cat([W, b[:, None]], dim=1)
        (0.5 * ct * theta**2 + dt * theta).sum().backward()
        opt.step()
        if after_step:
            after_step(W)
        if sched:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sched.step()
        Ws.append(W.detach().numpy().tolist())
        bs.append(b.detach().numpy().tolist())
    return {
        "torch_groups": torch_groups,
        "c": c.tolist(),
        "d": d.tolist(),
        "W0": W0.tolist(),
        "b0": b0.tolist(),
        "W": Ws,
        "b": bs,
    }


def optimizer_cases():
    count = {}
    for opt_name, options in OPTIMIZER_CASES:
        cls, defaults = OPTIMIZERS[opt_name]
        kwargs = {**defaults, "weight_decay_mask": None, **options}
        i = count[opt_name] = count.get(opt_name, -1) + 1
        case = {"api": f"fnn.optim.{opt_name}", "name": f"{opt_name}_{i}", "kwargs": kwargs}
        if not options:  # fnn's defaults: also torch's constructor defaults, by name
            case["name"] = f"{opt_name}_torch_defaults"
            tdef = cls([torch.zeros(1, requires_grad=True)]).defaults
            case["torch_defaults"] = {
                k: (list(v) if k == "betas" else v) for k, v in tdef.items() if k in defaults
            }
        yield {**case, **trajectory(opt_name, kwargs)}
    # scheduled learning rates: torch's scheduler stepped after every opt.step()
    for opt_name, options, sched_name, sched_kwargs in [
        ("sgd", {"momentum": 0.9}, "cosine_annealing_lr", dict(lr=0.2, T_max=4, eta_min=0.01)),
        ("adagrad", {"lr_decay": 0.3}, "step_lr", dict(lr=0.2, step_size=2, gamma=0.5)),
        (
            "adamw",
            {"weight_decay_mask": ALL},
            "linear_lr",
            dict(lr=0.3, start_factor=0.25, end_factor=1.0, total_iters=4),
        ),
        ("adam", {}, "warmup_cosine", dict(lr=0.2, warmup_steps=3, total_steps=9, eta_min=0.01)),
        ("rmsprop", {"momentum": 0.5}, "exponential_lr", dict(lr=0.02, gamma=0.9, min_lr=0.0)),
    ]:
        _, defaults = OPTIMIZERS[opt_name]
        lr = {"api": f"fnn.optim.{sched_name}", "kwargs": sched_kwargs}
        kwargs = {**defaults, "weight_decay_mask": None, **options, "lr": lr}
        name = f"{opt_name}_scheduled_{sched_name}"
        yield {"api": f"fnn.optim.{opt_name}", "name": name, "kwargs": kwargs, **trajectory(opt_name, kwargs)}


def max_norm_cases():
    for i, kwargs in enumerate(
        [
            dict(max_norm=1.0, dim=0, p=2.0, mask=None),
            dict(max_norm=0.8, dim=1, p=1.0, mask=None),
            dict(max_norm=0.6, dim=0, p=math.inf, mask=None),
        ]
    ):
        sgd = {**OPTIMIZERS["sgd"][1], "weight_decay_mask": None, "lr": 0.1, "momentum": 0.5}

        def renorm(W, kw=kwargs):
            with torch.no_grad():
                W.copy_(torch.renorm(W, kw["p"], kw["dim"], kw["max_norm"]))

        optimizer = {"api": "fnn.optim.sgd", "kwargs": sgd}
        case = {
            "api": "fnn.optim.max_norm",
            "name": f"max_norm_{i}",
            "kwargs": kwargs,
            "optimizer": optimizer,
        }
        yield {**case, **trajectory("sgd", sgd, after_step=renorm)}


def grads_sets():
    rng = np.random.default_rng(2)
    normal = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=(4,)), "c": rng.normal(size=(2, 2, 2))}
    yield "random", normal
    yield "zeros", {k: np.zeros_like(v) for k, v in normal.items()}
    yield "golden", {"g": np.array([3.0, 4.0])}  # CLIP-1
    inf = {k: v.copy() for k, v in normal.items()}
    inf["b"][1] = math.inf
    yield "inf", inf
    nan = {k: v.copy() for k, v in normal.items()}
    nan["a"][2, 0] = math.nan
    yield "nan", nan


def clip_torch(grads, max_norm, norm_type):
    params = {k: torch.zeros(v.shape, dtype=torch.float64, requires_grad=True) for k, v in grads.items()}
    for k, p in params.items():
        p.grad = torch.tensor(grads[k])
    total = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm, norm_type)
    return {k: p.grad.numpy().tolist() for k, p in params.items()}, float(total)


def clip_cases():
    for gname, grads in grads_sets():
        lists = {k: v.tolist() for k, v in grads.items()}
        for norm_type in [2.0, 1.0, 3.0, math.inf]:
            maxes = [0.5, 1e3, 0.0] if gname == "random" else [1.0]
            for max_norm in maxes:
                kwargs = {"max_norm": max_norm, "norm_type": norm_type}
                clipped, total = clip_torch(grads, max_norm, norm_type)
                body = {"kwargs": kwargs, "grads": lists, "clipped": clipped, "total": total}
                yield {
                    "api": "fnn.optim.clip_grad_norm",
                    "name": f"clip_{gname}_{norm_type}_{max_norm}",
                    **body,
                }
                if gname in ("random", "inf") and max_norm != 0.0:
                    name = f"clip_transform_{gname}_{norm_type}_{max_norm}"
                    yield {"api": "fnn.optim.clip_by_global_norm", "name": name, **body}
            if gname in ("random", "zeros", "inf"):
                total = torch.nn.utils.get_total_norm([torch.tensor(v) for v in grads.values()], norm_type)
                body = {"kwargs": {"norm_type": norm_type}, "grads": lists, "total": float(total)}
                yield {"api": "fnn.optim.global_norm", "name": f"global_norm_{gname}_{norm_type}", **body}


def main():
    torch.manual_seed(0)
    cases = [*optimizer_cases(), *max_norm_cases()]
    for name, kwargs, _ in SCHEDULE_CASES:
        i = sum(c["api"] == f"fnn.optim.{name}" for c in cases)
        cases.append(
            {
                "api": f"fnn.optim.{name}",
                "name": f"{name}_{i}",
                "kwargs": kwargs,
                **schedule_case(name, kwargs),
            }
        )
    cases += list(clip_cases())
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    head = {"torch": torch.__version__, "generator": "tests/torch_reference/optim.py"}
    head = json.dumps(head, separators=(",", ":"))[:-1]
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases)
    OUT.write_text(f'{head},"cases":[\n{lines}\n]}}\n')
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()

"""Write max_norm.json: torch.renorm outputs, and SGD trajectories with scheduled lr and
momentum under a max-norm constraint, the fixture of the max-norm and momentum-schedule
tests in tests/test_optim.py (which run without torch).

Needs torch 2.13 (CPU) and numpy, not fnn. From the repository root:

    /work/torch213/bin/python tests/torch_reference/max_norm.py

or, on a fresh machine,

    python -m venv v && v/bin/pip install numpy torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    v/bin/python tests/torch_reference/max_norm.py

Top level {"torch", "generator", "renorm", "sgd"}. Every case also has "api" (the fnn name)
and "kwargs" (fnn's argument names), the fixture contract of tests/torch_reference/README.md;
the fixture coverage test (tests/test_reference_coverage.py) reads both lists.
"renorm": cases {"api", "kwargs", "name", "input", "p", "dim", "maxnorm", "output"}: torch.renorm in float64
on random arrays whose slices straddle maxnorm (some exactly at it, some zero).
"sgd": cases {"api", "name", "kwargs" (SGD's, fnn's and torch's names alike, without lr, momentum
and the mask: fnn runs with weight_decay_mask decaying every leaf, torch's behaviour), "lrs", "mus"
(the lr and momentum set in param_groups[0] before each step), "maxnorm", "c", "d", "W0",
"b0", "W", "b" (after every step)}: the loss Σ(0.5·c·θ² + d·θ) over W (4, 3) and b (4,), so
grad = c·θ + d, and after each step `W.copy_(torch.renorm(W, 2, 0, maxnorm))` (b is not
constrained). lrs = max(0.1·0.8^t, 0.03) and mus = 0.5 + 0.04·min(t, 5) for t = 0, 1, ...
JSON floats round-trip exactly (repr); inf is written as Infinity.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).with_suffix(".json")
STEPS = 12


def renorm_cases():
    rng = np.random.default_rng(0)
    x2 = rng.normal(size=(5, 4))
    x2[1] *= 0.1  # well under the limit
    x2[2] = 0.0  # a zero row
    x2[3] *= 1.5 / np.linalg.norm(x2[3])  # exactly at the limit
    x3 = rng.normal(size=(3, 2, 4))
    yield "rows_p2", x2, 2.0, 0, 1.5
    yield "cols_p2", x2, 2.0, 1, 1.0
    yield "neg_dim", x2, 2.0, -1, 1.0
    yield "p1", x2, 1.0, 0, 1.0
    yield "p3", x2, 3.0, 0, 0.8
    yield "p_inf", x2, math.inf, 0, 0.5
    yield "maxnorm0", x2, 2.0, 0, 0.0
    yield "3d_dim0", x3, 2.0, 0, 1.0
    yield "3d_dim1", x3, 2.0, 1, 1.2


def sgd_run(kwargs, maxnorm):
    rng = np.random.default_rng(1)
    c = rng.uniform(0.5, 2.0, size=(4, 4))  # columns 0..2: W, column 3: b
    d = rng.normal(size=(4, 4))
    W = torch.tensor(rng.normal(size=(4, 3)) * 0.8, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(rng.normal(size=4), dtype=torch.float64, requires_grad=True)
    W0, b0 = W.detach().numpy().tolist(), b.detach().numpy().tolist()
    ct, dt = torch.tensor(c), torch.tensor(d)
    opt = torch.optim.SGD([W, b], lr=0.1, momentum=0.5, **kwargs)
    lrs, mus, Ws, bs = [], [], [], []
    for t in range(STEPS):
        lr, mu = max(0.1 * 0.8**t, 0.03), 0.5 + 0.04 * min(t, 5)
        opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"] = lr, mu
        opt.zero_grad()
        theta = torch.cat([W, b[:, None]], dim=1)
        (0.5 * ct * theta**2 + dt * theta).sum().backward()
        opt.step()
        if maxnorm is not None:
            with torch.no_grad():
                W.copy_(torch.renorm(W, 2, 0, maxnorm))
        lrs.append(lr)
        mus.append(mu)
        Ws.append(W.detach().numpy().tolist())
        bs.append(b.detach().numpy().tolist())
    return {"lrs": lrs, "mus": mus, "c": c.tolist(), "d": d.tolist(), "W0": W0, "b0": b0, "W": Ws, "b": bs}


def main():
    out = {
        "torch": torch.__version__,
        "generator": "tests/torch_reference/max_norm.py",
        "renorm": [],
        "sgd": [],
    }
    for name, x, p, dim, maxnorm in renorm_cases():
        y = torch.renorm(torch.tensor(x, dtype=torch.float64), p, dim, maxnorm)
        out["renorm"].append(
            {
                "api": "fnn.optim.renorm",
                "kwargs": {"p": p, "dim": dim, "maxnorm": maxnorm},
                "name": name,
                "input": x.tolist(),
                "p": p,
                "dim": dim,
                "maxnorm": maxnorm,
                "output": y.numpy().tolist(),
            }
        )
    for name, kwargs, maxnorm in [
        ("momentum_schedule", {}, 1.0),
        ("nesterov", {"nesterov": True}, 1.0),
        ("dampening_weight_decay", {"dampening": 0.3, "weight_decay": 0.1}, 0.7),
        ("no_constraint", {}, None),
    ]:
        out["sgd"].append(
            {
                "api": "fnn.optim.sgd",
                "name": name,
                "kwargs": kwargs,
                "maxnorm": maxnorm,
                **sgd_run(kwargs, maxnorm),
            }
        )
    OUT.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {len(out['renorm'])} renorm and {len(out['sgd'])} sgd cases to {OUT}")


if __name__ == "__main__":
    main()

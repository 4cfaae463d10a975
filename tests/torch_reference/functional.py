"""Write functional.json: PyTorch's forward values and gradients for every non-loss op of
fnn.functional, with each of its options, the fixture of tests/test_reference_functional.py
(which runs without torch).

Needs torch 2.13 (CPU) and numpy, not fnn or jax. From the repository root:

    /work/torch213/bin/python tests/torch_reference/functional.py

or, on a fresh machine:

    python -m venv v && v/bin/pip install numpy torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    v/bin/python tests/torch_reference/functional.py

Deterministic (numpy generators seeded from each case's name): rerunning rewrites the file
byte for byte. Everything is float64; JSON floats round-trip exactly (repr), inf and nan are
written as Infinity and NaN.

Layout: {"torch", "generator", "cases": [...]}, each case

    {"api": "fnn.functional.<op>", "name": unique id,
     "kwargs": every argument of the fnn op after its first one, by fnn's names; arrays
               (weight, bias, running_mean, running_var) as nested lists or null,
               tuples (dim, normalized_shape, shape) as lists,
     "input": the op's first argument,
     "output": torch's forward output,
     "cotangent": a random dL/d(output) (absent for one_hot and dropout_mask),
     "grad": {"input": dL/d(input), "weight": ..., "bias": ...}: torch autograd's gradients
             of <output, cotangent> w.r.t. the op's differentiable arguments, null where the
             argument is None,
     plus per-op extras below}.

The torch reference of each op is the torch function of the same name with the same
arguments, except:
- maxout: torch has none; the reference is `x.view(N, C // pieces, pieces, *rest).max(dim=2)
  .values`, whose gradient goes to the first maximal piece on ties (ACT-8).
- scaled_tanh: torch has none; the reference is `amplitude * torch.tanh(slope * x)` (ACT-9).
- unflatten: torch.unflatten with the same dim and sizes (FLAT-2).
- logsumexp: torch.logsumexp with the same dim (fnn's default dim=-1 is written out).
- batch_norm with momentum=None (cumulative average, BN-3): torch.nn.functional.batch_norm
  takes no None, so the reference is a torch.nn.BatchNorm1d(momentum=None) module whose
  num_batches_tracked is set to kwargs["num_batches_tracked"] before one training forward.
  batch_norm in eval without buffers (BN-5) is torch's module behaviour: batch statistics,
  i.e. torch.nn.functional.batch_norm(..., training=True) with no buffers.
  Extra outputs: "running_mean_out", "running_var_out" (fnn's 2nd and 3rd results, null
  when the buffers are None).
- dropout: torch's generator differs from JAX's, so the masks cannot be shared by key.
  For 0 < p < 1 in training, the case stores a random keep mask "mask" (0/1) with torch's
  `x * mask / (1 - p)` as "output" and its gradient as grad["input"], and the same for the
  complementary mask as "output_complement" / "grad_complement"; every element is thus
  given by torch both kept and dropped, and the test picks, element by element, the one
  that fnn's own mask (F.dropout_mask with kwargs["key"]) selects. p = 0, p = 1 and eval
  call torch.nn.functional.dropout itself (DROP-2: identity; zeros with zero gradient).
  kwargs["key"] is the seed of jax.random.key (null where no key is needed).
- dropout_mask: kwargs {"key" (seed), "shape", "p", "dtype"}; "output" is torch's
  `torch.nn.functional.dropout(ones, p)` for the given p (its kept elements hold torch's
  scale 1/(1 - p)); the test checks that fnn's mask takes only the values 0 and that scale,
  and is all ones at p = 0 and all zeros at p = 1.
- one_hot: torch.nn.functional.one_hot on int64 indices; integer output, no gradient.
"""

from __future__ import annotations

import json
import pathlib
import zlib

import numpy as np
import torch

TF = torch.nn.functional
OUT = pathlib.Path(__file__).with_suffix(".json")
ARRAY_KWARGS = ("weight", "bias", "running_mean", "running_var")
SPECIALS = (0.0, 1000.0, -1000.0, 1.0, -1.0, -0.0)
CASES: list[dict] = []


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def edge_normal(rng, shape, scale=3.0, specials=SPECIALS):
    """Normal values with exact specials planted (kinks at 0, saturation at +-1000)."""
    x = rng.normal(size=shape) * scale
    flat = x.reshape(-1)
    k = min(len(specials), flat.size)
    flat[rng.choice(flat.size, k, replace=False)] = specials[:k]
    return flat.reshape(shape)


def t64(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def listed(a):
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        a = a.detach().numpy()
    return np.asarray(a).tolist()


def jsonable(kwargs):
    return {k: (listed(v) if isinstance(v, (np.ndarray, torch.Tensor)) else v) for k, v in kwargs.items()}


def add(api, name, x, kwargs, ref, rng, diff=(), extra=None):
    """Run `ref(x_t, kw_t) -> output or (output, extras)` in torch and record the case.

    kwargs holds fnn's arguments (numpy arrays for array arguments); kw_t is the same with
    tensors, those named in `diff` requiring grad. The gradient of <output, cotangent> is
    taken w.r.t. the input and every non-None argument in `diff`.
    """
    xt = t64(x, True)
    kw_t = {
        k: (t64(v, k in diff) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
        for k, v in kwargs.items()
    }
    result = ref(xt, kw_t)
    out, extras = result if isinstance(result, tuple) else (result, {})
    cot = rng.normal(size=tuple(out.shape))
    live = [xt] + [kw_t[k] for k in diff if kw_t.get(k) is not None]
    grads = iter(torch.autograd.grad(out, live, t64(cot)))
    grad = {"input": listed(next(grads))}
    for k in diff:
        grad[k] = None if kw_t.get(k) is None else listed(next(grads))
    case = {
        "api": api,
        "kwargs": jsonable(kwargs),
        "name": name,
        "input": listed(x),
        "cotangent": cot.tolist(),
        "output": listed(out),
        "grad": grad,
    }
    case.update({k: listed(v) for k, v in extras.items()})
    case.update(extra or {})
    CASES.append(case)


# ----------------------------------------------------------------------------- activations


def scaled_tanh(x, kw):
    return kw["amplitude"] * torch.tanh(kw["slope"] * x)  # ACT-9: LeCun 1998's A tanh(S x)


def activations():
    # ACT-1..5, ACT-7: one elementwise input per case, with every special value planted.
    unary = [
        ("relu", {}, lambda x, kw: torch.relu(x)),
        ("sigmoid", {}, lambda x, kw: torch.sigmoid(x)),
        ("tanh", {}, lambda x, kw: torch.tanh(x)),
        ("abs", {}, lambda x, kw: torch.abs(x)),
        ("leaky_relu", {"negative_slope": 0.01}, lambda x, kw: TF.leaky_relu(x, **kw)),
        ("leaky_relu", {"negative_slope": 0.2}, lambda x, kw: TF.leaky_relu(x, **kw)),
        ("leaky_relu", {"negative_slope": -0.5}, lambda x, kw: TF.leaky_relu(x, **kw)),
        ("elu", {"alpha": 1.0}, lambda x, kw: TF.elu(x, **kw)),
        ("elu", {"alpha": 0.5}, lambda x, kw: TF.elu(x, **kw)),
        ("elu", {"alpha": 2.0}, lambda x, kw: TF.elu(x, **kw)),
        ("softplus", {"beta": 1.0, "threshold": 20.0}, lambda x, kw: TF.softplus(x, **kw)),
        ("softplus", {"beta": 2.0, "threshold": 20.0}, lambda x, kw: TF.softplus(x, **kw)),
        ("softplus", {"beta": 2.0, "threshold": 1.0}, lambda x, kw: TF.softplus(x, **kw)),
        ("softplus", {"beta": 0.5, "threshold": 0.0}, lambda x, kw: TF.softplus(x, **kw)),
        ("scaled_tanh", {"amplitude": 1.7159, "slope": 2 / 3}, scaled_tanh),
        ("scaled_tanh", {"amplitude": 2.0, "slope": 0.25}, scaled_tanh),
    ]
    for op, kw, ref in unary:
        name = op + "".join(f"-{k}={v}" for k, v in kw.items())
        rng = rng_for(name)
        add(f"fnn.functional.{op}", name, edge_normal(rng, (3, 4, 2)), dict(kw), ref, rng)

    # ACT-5: the switch is beta * x > threshold, strict: points below, at and above it.
    for beta, thr in [(2.0, 1.0), (4.0, 2.0)]:
        name = f"softplus-threshold-boundary-beta={beta}-threshold={thr}"
        x = np.array([thr / beta - 1e-7, thr / beta, thr / beta + 1e-7, 10.0, -3.0, 0.0])
        add(
            "fnn.functional.softplus",
            name,
            x,
            {"beta": beta, "threshold": thr},
            lambda x, kw: TF.softplus(x, **kw),
            rng_for(name),
        )

    # ACT-3: one shared slope and one per channel (dim 1), on 1-D, 2-D and 3-D input.
    for shape, nw in [((6,), 1), ((4, 3), 3), ((2, 3, 5), 1), ((2, 3, 5), 3)]:
        name = f"prelu-{shape}-weight{nw}"
        rng = rng_for(name)
        x = edge_normal(rng, shape)
        w = rng.uniform(-0.5, 1.0, size=(nw,))
        add(
            "fnn.functional.prelu",
            name,
            x,
            {"weight": w},
            lambda x, kw: TF.prelu(x, kw["weight"]),
            rng,
            diff=("weight",),
        )


def reductions():
    # ACT-6: dims of either sign, with +-1000 logits and a tie.
    for op in ("softmax", "log_softmax"):
        for shape, dim in [((5,), -1), ((2, 3, 4), 0), ((2, 3, 4), -2), ((2, 3, 4), 2)]:
            name = f"{op}-{shape}-dim={dim}"
            rng = rng_for(name)
            x = edge_normal(rng, shape)
            x.reshape(-1)[-2:] = 2.5
            add(
                f"fnn.functional.{op}",
                name,
                x,
                {"dim": dim},
                lambda x, kw, op=op: getattr(torch, op)(x, dim=kw["dim"]),
                rng,
            )
    for shape, dim, keepdim in [
        ((5,), 0, False),
        ((2, 3, 4), 1, False),
        ((2, 3, 4), -3, True),
        ((2, 3, 4), [0, 2], False),
        ((2, 3, 4), [-1, 1], True),
    ]:
        name = f"logsumexp-{shape}-dim={dim}-keepdim={keepdim}"
        rng = rng_for(name)
        add(
            "fnn.functional.logsumexp",
            name,
            edge_normal(rng, shape),
            {"dim": dim, "keepdim": keepdim},
            lambda x, kw: torch.logsumexp(x, dim=kw["dim"], keepdim=kw["keepdim"]),
            rng,
        )
    # Rows of -inf and +inf: torch gives -inf and +inf (and NaN gradients there).
    name = "logsumexp-infinities"
    x = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [-np.inf, 2.0]])
    add(
        "fnn.functional.logsumexp",
        name,
        x,
        {"dim": 1, "keepdim": False},
        lambda x, kw: torch.logsumexp(x, dim=kw["dim"], keepdim=kw["keepdim"]),
        rng_for(name),
    )


def maxout():
    # ACT-8: x.view(N, C // k, k, *rest).max(dim=2) sends a tie's gradient to the first index.
    for shape, pieces in [((4, 6), 2), ((3, 6, 2), 3), ((3, 4), 1)]:
        name = f"maxout-{shape}-pieces={pieces}"
        rng = rng_for(name)
        x = np.round(rng.normal(size=shape), 0)  # rounding plants many ties

        def ref(x, kw, shape=shape):
            n, c = shape[:2]
            return x.view((n, c // kw["pieces"], kw["pieces"], *shape[2:])).max(dim=2).values

        add("fnn.functional.maxout", name, x, {"pieces": pieces}, ref, rng)


# ----------------------------------------------------------------------------- linear, flatten


def linear_flatten():
    # LIN-1 (any leading dims), LIN-2 (bias None).
    for shape, bias in [((5,), True), ((4, 5), False), ((4, 5), True), ((2, 3, 5), False)]:
        name = f"linear-{shape}-bias={bias}"
        rng = rng_for(name)
        kw = {"weight": rng.normal(size=(3, 5)), "bias": rng.normal(size=(3,)) if bias else None}
        add(
            "fnn.functional.linear",
            name,
            rng.normal(size=shape),
            kw,
            lambda x, kw: TF.linear(x, kw["weight"], kw["bias"]),
            rng,
            diff=("weight", "bias"),
        )
    # FLAT-1 (torch.flatten with the same explicit dims; fnn's default start_dim is 1, that
    # of torch.nn.Flatten). A 0-d input counts as 1-d.
    for shape, s, e in [
        ((2, 3, 4, 5), 1, -1),
        ((2, 3, 4, 5), 0, 2),
        ((2, 3, 4, 5), -3, -2),
        ((2, 3, 4, 5), 2, 2),
        ((2, 3), 1, 1),
        ((4,), 0, 0),
        ((), 0, -1),
    ]:
        name = f"flatten-{shape}-start_dim={s}-end_dim={e}"
        rng = rng_for(name)
        add(
            "fnn.functional.flatten",
            name,
            rng.normal(size=shape),
            {"start_dim": s, "end_dim": e},
            lambda x, kw: torch.flatten(x, kw["start_dim"], kw["end_dim"]),
            rng,
        )
    # FLAT-2: torch.unflatten, sizes with and without an inferred -1, negative dims.
    for shape, d, sizes in [((2, 6), 1, [2, 3]), ((2, 12), -1, [1, 3, -1]), ((3, 4, 2), 0, [3, 1])]:
        name = f"unflatten-{shape}-dim={d}-sizes={sizes}"
        rng = rng_for(name)
        add(
            "fnn.functional.unflatten",
            name,
            rng.normal(size=shape),
            {"dim": d, "sizes": sizes},
            lambda x, kw: torch.unflatten(x, kw["dim"], kw["sizes"]),
            rng,
        )


# ----------------------------------------------------------------------------- dropout


def dropout():
    # DROP-2: p = 0 and eval are the identity (gradient ones), p = 1 zeros (gradient zeros).
    for p, training in [(0.0, True), (1.0, True), (0.5, False), (1.0, False), (0.0, False)]:
        name = f"dropout-p={p}-training={training}"
        rng = rng_for(name)
        add(
            "fnn.functional.dropout",
            name,
            rng.normal(size=(4, 5)),
            {"key": 0 if 0 < p < 1 and training else None, "p": p, "training": training},
            lambda x, kw: TF.dropout(x, p=kw["p"], training=kw["training"]),
            rng,
        )
    # DROP-1: for a given keep mask, y = x * mask / (1 - p); the mask and its complement.
    for p, shape, seed in [(0.5, (4, 5), 1), (0.2, (3, 2, 4), 2), (0.8, (6, 5), 3)]:
        name = f"dropout-p={p}-{shape}-mask"
        rng = rng_for(name)
        x = rng.normal(size=shape)
        mask = (rng.uniform(size=shape) >= p).astype(np.float64)
        mask.reshape(-1)[:2] = [0.0, 1.0]  # both states present
        cot = rng.normal(size=shape)

        def torch_dropout(m, x=x, p=p, cot=cot):
            xt = t64(x, True)
            y = xt * t64(m) / (1 - p)
            (gx,) = torch.autograd.grad(y, [xt], t64(cot))
            return y, gx

        y, gx = torch_dropout(mask)
        yc, gxc = torch_dropout(1 - mask)
        CASES.append(
            {
                "api": "fnn.functional.dropout",
                "kwargs": {"key": seed, "p": p, "training": True},
                "name": name,
                "input": x.tolist(),
                "cotangent": cot.tolist(),
                "mask": mask.tolist(),
                "output": listed(y),
                "grad": {"input": listed(gx)},
                "output_complement": listed(yc),
                "grad_complement": listed(gxc),
            }
        )
    # DROP-1, DROP-3: the values a mask can take (torch's kept value of ones is 1/(1 - p)).
    for p, dtype in [(0.0, "float64"), (1.0, "float64"), (0.3, "float64"), (0.5, "float32"), (0.25, None)]:
        name = f"dropout_mask-p={p}-dtype={dtype}"
        torch.manual_seed(zlib.crc32(name.encode()))
        shape = [5, 6]
        y = TF.dropout(torch.ones(shape, dtype=torch.float64), p=p, training=True)
        CASES.append(
            {
                "api": "fnn.functional.dropout_mask",
                "kwargs": {"key": 4, "shape": shape, "p": p, "dtype": dtype},
                "name": name,
                "output": listed(y),
            }
        )


# ----------------------------------------------------------------------------- normalization


def batch_norm():
    # BN-1 (biased var), BN-2 (unbiased running update), BN-3 (momentum None), BN-4 (eval
    # with buffers), BN-5 (no buffers: batch statistics in both modes), BN-6 (no weight/bias),
    # BN-8 (gradients through the batch statistics).
    cases = [
        # (shape, training, weight, bias, track, momentum, eps, num_batches_tracked)
        ((6, 3), True, True, True, True, 0.1, 1e-5, None),
        ((6, 3), True, False, False, True, 0.7, 1e-5, None),
        ((6, 3), True, True, False, True, 0.1, 1e-3, None),
        ((4, 3, 5), True, True, True, True, 0.1, 1e-5, None),
        ((6, 3), False, True, True, True, 0.1, 1e-5, None),
        ((4, 3, 5), False, False, False, True, 0.1, 0.5, None),
        ((1, 3), False, True, True, True, 0.1, 1e-5, None),
        ((6, 3), True, True, True, False, 0.1, 1e-5, None),
        ((4, 3, 2), False, True, True, False, 0.1, 1e-5, None),
        ((5, 3), True, True, True, True, None, 1e-5, 0),
        ((4, 3, 2), True, False, False, True, None, 1e-5, 1),
    ]
    for shape, training, has_w, has_b, track, momentum, eps, nbt in cases:
        name = (
            f"batch_norm-{shape}-training={training}-weight={has_w}-bias={has_b}-track={track}"
            f"-momentum={momentum}-eps={eps}" + ("" if nbt is None else f"-num_batches_tracked={nbt}")
        )
        rng = rng_for(name)
        c = shape[1]
        x = rng.normal(size=shape) * 2 + 1
        kw = {
            "running_mean": rng.normal(size=c) if track else None,
            "running_var": rng.uniform(0.5, 2, size=c) if track else None,
            "weight": rng.normal(size=c) if has_w else None,
            "bias": rng.normal(size=c) if has_b else None,
            "training": training,
            "momentum": momentum,
            "eps": eps,
            "num_batches_tracked": nbt,
        }

        def ref(x, kw):
            c = x.shape[1]
            rm = None if kw["running_mean"] is None else kw["running_mean"].clone()
            rv = None if kw["running_var"] is None else kw["running_var"].clone()
            if kw["momentum"] is None:
                m = torch.nn.BatchNorm1d(c, eps=kw["eps"], momentum=None, affine=False).double()
                m.running_mean.copy_(rm)
                m.running_var.copy_(rv)
                m.num_batches_tracked.fill_(kw["num_batches_tracked"])
                y = m(x)
                if kw["weight"] is not None:
                    y = y * kw["weight"].view((1, c) + (1,) * (x.dim() - 2))
                if kw["bias"] is not None:
                    y = y + kw["bias"].view((1, c) + (1,) * (x.dim() - 2))
                rm, rv = m.running_mean, m.running_var
            else:
                # torch's module normalizes with batch statistics whenever it has no buffers.
                use_batch = kw["training"] or rm is None
                y = TF.batch_norm(
                    x,
                    rm,
                    rv,
                    kw["weight"],
                    kw["bias"],
                    training=use_batch,
                    momentum=kw["momentum"],
                    eps=kw["eps"],
                )
            return y, {"running_mean_out": rm, "running_var_out": rv}

        add("fnn.functional.batch_norm", name, x, kw, ref, rng, diff=("weight", "bias"))


def layer_norm():
    cases = [
        # (shape, normalized_shape, weight, bias, eps)
        ((4, 5), 5, True, True, 1e-5),
        ((4, 5), 5, True, False, 1e-5),
        ((2, 3, 4), [3, 4], True, True, 1e-5),
        ((2, 3, 4), [2, 3, 4], True, True, 0.1),
        ((2, 3, 4), 4, False, False, 1e-5),
        ((6,), 6, True, True, 1e-5),
    ]
    for shape, ns, has_w, has_b, eps in cases:
        name = f"layer_norm-{shape}-normalized_shape={ns}-weight={has_w}-bias={has_b}-eps={eps}"
        rng = rng_for(name)
        x = rng.normal(size=shape) * 3 + 1
        x.reshape(-1)[:2] = 0.0
        nshape = (ns,) if isinstance(ns, int) else tuple(ns)
        kw = {
            "normalized_shape": ns,
            "weight": rng.normal(size=nshape) if has_w else None,
            "bias": rng.normal(size=nshape) if has_b else None,
            "eps": eps,
        }
        add(
            "fnn.functional.layer_norm",
            name,
            x,
            kw,
            lambda x, kw, nshape=nshape: TF.layer_norm(x, list(nshape), kw["weight"], kw["bias"], kw["eps"]),
            rng,
            diff=("weight", "bias"),
        )


# ----------------------------------------------------------------------------- encoding


def one_hot():
    for shape, num_classes in [((5,), 4), ((5,), -1), ((2, 3), 6), ((2, 3), -1), ((), 3)]:
        name = f"one_hot-{shape}-num_classes={num_classes}"
        rng = rng_for(name)
        idx = rng.integers(0, 3, size=shape)
        y = TF.one_hot(torch.tensor(idx, dtype=torch.int64), num_classes)
        CASES.append(
            {
                "api": "fnn.functional.one_hot",
                "kwargs": {"num_classes": num_classes},
                "name": name,
                "input": idx.tolist(),
                "output": y.numpy().tolist(),
            }
        )


def main():
    torch.set_num_threads(1)
    for build in (activations, reductions, maxout, linear_flatten, dropout, batch_norm, layer_norm, one_hot):
        build()
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    out = {"torch": torch.__version__, "generator": "tests/torch_reference/functional.py", "cases": CASES}
    OUT.write_text(json.dumps(out, separators=(",", ":"), allow_nan=True) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()

"""Three-way gradient check: manual backward vs jax.grad vs central finite differences.

Everything runs in float64 (inside ``jax.enable_x64``; floating inputs are cast). A scalar
objective L is built from the thing under test: for an op or a layer,
L = Σ f(inputs)·v with a random cotangent v (so the manual side is ``backward(v, ...)``);
for a model plus loss, L is the loss itself. Per leaf of the differentiated tree the
report gives

- the max abs and leaf-wise relative (max|a−b| / max|b|) difference between the manual gradient and ``jax.grad`` (every
  element), and
- the max abs / rel difference between the manual gradient and central differences
  (L(θ+εeᵢ) − L(θ−εeᵢ))/2ε on ``fd_samples`` random coordinates per leaf (all of them for
  small leaves): exhaustive differences on an MNIST-sized layer would take 10⁵ forwards.

A leaf passes when both comparisons satisfy |a − b| ≤ atol + rtol·|b| (the finite-difference
comparison with its own, looser, tolerances). ``print(report)`` gives a readable table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn.functional.backward import backward_of


@dataclass(frozen=True)
class LeafReport:
    name: str
    shape: tuple[int, ...]
    autodiff_abs: float
    autodiff_rel: float
    fd_abs: float
    fd_rel: float
    fd_points: int
    passed: bool


@dataclass(frozen=True)
class GradReport:
    title: str
    leaves: list[LeafReport] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(leaf.passed for leaf in self.leaves)

    def __str__(self) -> str:
        head = ("leaf", "shape", "|manual-jax|", "rel", "|manual-FD|", "rel", "FD pts", "ok")
        rows = [
            (
                leaf.name,
                str(leaf.shape),
                f"{leaf.autodiff_abs:.2e}",
                f"{leaf.autodiff_rel:.2e}",
                f"{leaf.fd_abs:.2e}",
                f"{leaf.fd_rel:.2e}",
                str(leaf.fd_points),
                "PASS" if leaf.passed else "FAIL",
            )
            for leaf in self.leaves
        ]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        line = lambda r: "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
        )
        verdict = "all leaves agree" if self.passed else "MISMATCH"
        return "\n".join(
            [f"{self.title}: {verdict}", line(head), line(tuple("-" * w for w in widths)), *map(line, rows)]
        )


def _name(path) -> str:
    parts = []
    for k in path:
        parts.append(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))))
    return ".".join(parts)


def _to64(tree: Any) -> Any:
    return jax.tree.map(
        lambda a: (
            jnp.asarray(a, jnp.float64)
            if jnp.issubdtype(jnp.result_type(a), jnp.floating)
            else jnp.asarray(a)
        ),
        tree,
    )


def _rel(a: np.ndarray, b: np.ndarray, atol: float) -> float:
    """Leaf-wise relative error max|a−b| / max|b|; 0 when both are zero to within atol
    (e.g. a bias followed by BatchNorm, whose true gradient is exactly 0)."""
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return 0.0 if scale <= atol else float(np.max(np.abs(a - b), initial=0.0)) / scale


def _close(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> bool:
    return bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


def _finite_differences(
    objective: Callable[[Any], jax.Array], tree: Any, indices: list[np.ndarray], eps: float
) -> list[np.ndarray]:
    """Central differences at the given flat coordinates of each leaf, in one compiled
    program that takes the tree as an argument (closing over it would bake every leaf
    into the program as a constant and make XLA fold them)."""
    treedef = jax.tree.structure(tree)

    @jax.jit
    def run(tree, indices):
        leaves = jax.tree.leaves(tree)
        out = []
        for i, idx in enumerate(indices):

            def perturbed(flat_i, delta, i=i):
                new = list(leaves)
                new[i] = leaves[i].reshape(-1).at[flat_i].add(delta).reshape(leaves[i].shape)
                return objective(jax.tree.unflatten(treedef, new))

            f = jax.vmap(perturbed)
            out.append((f(idx, jnp.full(idx.shape, eps)) - f(idx, jnp.full(idx.shape, -eps))) / (2 * eps))
        return out

    return [np.asarray(d) for d in run(tree, [jnp.asarray(i) for i in indices])]


def _compare(
    title: str,
    objective: Callable[[Any], jax.Array],
    tree: Any,
    manual: Any,
    *,
    key: jax.Array,
    eps: float,
    atol: float,
    rtol: float,
    fd_atol: float,
    fd_rtol: float,
    fd_samples: int,
) -> GradReport:
    """Compare `manual` (same structure as `tree`) against jax.grad and finite differences."""
    autodiff = jax.jit(jax.grad(objective))(tree)
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    manual_leaves = treedef.flatten_up_to(manual)
    auto_leaves = treedef.flatten_up_to(autodiff)
    keys = jax.random.split(key, len(paths_leaves))
    for (path, leaf), m in zip(paths_leaves, manual_leaves):
        if jnp.shape(m) != leaf.shape:
            raise ValueError(
                f"manual gradient of {_name(path)} has shape {jnp.shape(m)}, expected {leaf.shape}"
            )
    indices = [
        np.arange(leaf.size)
        if leaf.size <= fd_samples
        else np.asarray(jax.random.choice(k, leaf.size, (fd_samples,), replace=False))
        for (_, leaf), k in zip(paths_leaves, keys)
    ]
    fds = _finite_differences(objective, tree, indices, eps)
    reports = []
    for (path, leaf), m, a, idx, fd in zip(paths_leaves, manual_leaves, auto_leaves, indices, fds):
        m, a = np.asarray(m, np.float64), np.asarray(a, np.float64)
        m_at = m.reshape(-1)[idx]
        ok = _close(m, a, atol, rtol) and _close(m_at, fd, fd_atol, fd_rtol)
        reports.append(
            LeafReport(
                _name(path),
                tuple(leaf.shape),
                float(np.max(np.abs(m - a), initial=0.0)),
                _rel(m, a, atol),
                float(np.max(np.abs(m_at - fd), initial=0.0)),
                _rel(m_at, fd, fd_atol),
                len(idx),
                ok,
            )
        )
    return GradReport(title, reports)


_DEFAULTS = dict(eps=1e-6, atol=1e-10, rtol=1e-8, fd_atol=1e-6, fd_rtol=1e-4, fd_samples=16)


def check_op(
    op: Callable,
    op_backward: Callable,
    inputs: dict[str, Any],
    *,
    kwargs: dict | None = None,
    key: jax.Array | None = None,
    **tolerances,
) -> GradReport:
    """Check ``op_backward`` against ``op``. ``inputs`` maps the op's differentiable
    argument names to arrays, in the op's argument order; ``kwargs`` holds the rest
    (non-differentiable arguments such as ``target`` or ``dim``). The backward must return
    one gradient per entry of ``inputs`` (a bare array when there is one)."""
    opts = {**_DEFAULTS, **tolerances}
    key = jax.random.key(0) if key is None else key
    kwargs = dict(kwargs or {})
    with jax.enable_x64(True):
        tree = _to64(inputs)
        kwargs = {k: _to64(v) if isinstance(v, (jax.Array, np.ndarray)) else v for k, v in kwargs.items()}
        k_v, k_fd = jax.random.split(key)
        out = op(**tree, **kwargs)
        v = jax.random.normal(k_v, jnp.shape(out), jnp.float64)
        objective = lambda t: jnp.sum(op(**t, **kwargs) * v)
        grads = op_backward(v, **tree, **kwargs)
        grads = grads if isinstance(grads, tuple) else (grads,)
        manual = dict(zip(inputs, grads))  # `inputs` keeps argument order; `tree` is key-sorted
        return _compare(getattr(op, "__name__", "op"), objective, tree, manual, key=k_fd, **opts)


def check_layer(
    layer,
    params: Any,
    state: Any,
    x: jax.Array,
    *,
    key: jax.Array | None = None,
    train: bool = True,
    **tolerances,
) -> GradReport:
    """Check ``layer.backward`` for the params and the input x (dropout: same key both ways)."""
    opts = {**_DEFAULTS, **tolerances}
    with jax.enable_x64(True):
        params, state, x = _to64(params), _to64(state), _to64(x)
        y, _ = layer.apply(params, state, x, key=key, train=train)
        v = jax.random.normal(jax.random.key(1), y.shape, jnp.float64)

        def objective(t):
            return jnp.sum(layer.apply(t["params"], state, t["input"], key=key, train=train)[0] * v)

        grad_p, grad_x = layer.backward(params, state, x, v, key=key, train=train)
        return _compare(
            type(layer).__name__,
            objective,
            {"params": params, "input": x},
            {"params": grad_p, "input": grad_x},
            key=jax.random.key(2),
            **opts,
        )


def check_model(
    model,
    loss_fn: Callable,
    params: Any,
    state: Any,
    x: jax.Array,
    target: jax.Array,
    *,
    key: jax.Array | None = None,
    train: bool = True,
    **tolerances,
) -> GradReport:
    """Check the manual gradient of ``loss_fn(model(x), target)`` with respect to params.
    ``loss_fn`` must have a manual backward (see ``fnn.functional.backward_of``)."""
    opts = {**_DEFAULTS, **tolerances}
    loss_backward = backward_of(loss_fn)
    with jax.enable_x64(True):
        params, state = _to64(params), _to64(state)
        x = _to64(x)

        def objective(p):
            return loss_fn(model.apply(p, state, x, key=key, train=train)[0], target)

        y, _, pullback = model.apply_vjp(params, state, x, key=key, train=train)
        grad_p, _ = pullback(loss_backward(jnp.ones((), jnp.float64), y, target))
        return _compare(
            f"{type(model).__name__} + {getattr(loss_fn, '__name__', 'loss')}",
            objective,
            params,
            grad_p,
            key=jax.random.key(3),
            **opts,
        )

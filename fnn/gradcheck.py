"""Three-way gradient check, first and second order: manual backward vs jax.grad vs
central finite differences.

Everything runs in float64 (inside ``jax.enable_x64``; floating inputs are cast). A scalar
objective L is built from the thing under test: for an op or a layer, L = Σ f(inputs)·v
with a random cotangent v (so the manual gradient is G(θ) = ``backward(v, ...)``); for a
model plus loss, L is the loss itself. Per leaf of the differentiated tree the report gives

- first order: the max abs and relative difference (``relative_error``) of the manual
  gradient from ``jax.grad`` (every element) and from central differences
  (L(θ+εeᵢ) − L(θ−εeᵢ))/2ε on ``fd_samples`` random coordinates (all of a small leaf);
- second order, along one random unit direction t: the manual HVP ``jax.jvp(G, (θ,), (t,))``
  against ``jax.jvp(jax.grad(L), (θ,), (t,))`` and against the central differences
  (G(θ + h·t) − G(θ − h·t))/2h. It fails when the backward is right in value but not
  differentiable as written (a misplaced ``stop_gradient``, a ``custom_vjp`` without a
  second derivative).

A leaf passes when every comparison satisfies |a − b| ≤ atol + rtol·|b| elementwise, with
the ``Tolerances`` of its column. ``print(report)`` gives a readable table;
``second_order=False`` leaves out the HVP columns and their cost. The coordinates and the
direction come from ``numpy.random.default_rng`` seeded with the check's key, so a key gives
the same report every time (for a given numpy version).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn.functional.backward import backward_of

__all__ = [
    "GradReport",
    "LeafReport",
    "Tolerances",
    "check_layer",
    "check_model",
    "check_op",
    "relative_error",
]


@dataclass(frozen=True)
class Tolerances:
    """The steps and tolerances of a gradient check, one pair (atol, rtol) per column.

    A comparison passes when |a − b| ≤ atol + rtol·|b| elementwise; the finite-difference
    columns get looser tolerances, since a central difference is only O(ε²) accurate.

    Attributes:
        eps: the step ε of the first-order central differences.
        atol, rtol: manual gradient vs ``jax.grad``.
        fd_atol, fd_rtol: manual gradient vs central differences of step ``eps``.
        fd_samples: coordinates differenced per leaf (all of them for a smaller leaf).
        hvp_eps: the step h of the central differences of the manual gradient.
        hvp_atol, hvp_rtol: manual HVP vs the autodiff HVP.
        hvp_fd_atol, hvp_fd_rtol: manual HVP vs central differences of step ``hvp_eps``.

    Example:
        >>> Tolerances(fd_samples=4).fd_samples, Tolerances().rtol
        (4, 1e-08)
    """

    eps: float = 1e-6
    atol: float = 1e-10
    rtol: float = 1e-8
    fd_atol: float = 1e-6
    fd_rtol: float = 1e-4
    fd_samples: int = 16
    hvp_eps: float = 1e-6
    hvp_atol: float = 1e-12
    hvp_rtol: float = 1e-8
    hvp_fd_atol: float = 1e-8
    hvp_fd_rtol: float = 1e-4


def _check_tolerances(tolerances: Any) -> Tolerances:
    if not isinstance(tolerances, Tolerances):
        raise TypeError(f"tolerances must be an fnn.gradcheck.Tolerances, got {type(tolerances).__name__}")
    return tolerances


@dataclass(frozen=True)
class LeafReport:
    """One leaf's row of the table: max abs and relative (``relative_error``) differences of
    the manual gradient from ``jax.grad`` and from finite differences, and of the manual HVP
    from the autodiff HVP and from finite differences of the manual gradient (``None`` when
    the check ran with ``second_order=False``)."""

    name: str
    shape: tuple[int, ...]
    autodiff_abs: float
    autodiff_rel: float
    fd_abs: float
    fd_rel: float
    fd_points: int
    passed: bool
    hvp_autodiff_abs: float | None = None
    hvp_autodiff_rel: float | None = None
    hvp_fd_abs: float | None = None
    hvp_fd_rel: float | None = None


@dataclass(frozen=True)
class GradReport:
    """The result of a gradient check: one ``LeafReport`` row per parameter or input.

    Attributes:
        title: what was checked (the op, layer or model), printed above the table.
        leaves: the rows, in the order of the pytree's leaves.
    """

    title: str
    leaves: list[LeafReport] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(leaf.passed for leaf in self.leaves)

    @property
    def second_order(self) -> bool:
        """Whether the report has the HVP columns."""
        return any(leaf.hvp_autodiff_abs is not None for leaf in self.leaves)

    def __str__(self) -> str:
        hvp = self.second_order
        head = ("leaf", "shape", "|manual-jax|", "rel", "|manual-FD|", "rel", "FD pts")
        head += ("|Hv manual-jax|", "rel", "|Hv manual-FD|", "rel", "ok") if hvp else ("ok",)
        rows = []
        for leaf in self.leaves:
            row = (leaf.name, str(leaf.shape), f"{leaf.autodiff_abs:.2e}", f"{leaf.autodiff_rel:.2e}")
            row += (f"{leaf.fd_abs:.2e}", f"{leaf.fd_rel:.2e}", str(leaf.fd_points))
            if hvp:
                row += tuple(
                    f"{value:.2e}"
                    for value in (
                        leaf.hvp_autodiff_abs,
                        leaf.hvp_autodiff_rel,
                        leaf.hvp_fd_abs,
                        leaf.hvp_fd_rel,
                    )
                )
            rows.append((*row, "PASS" if leaf.passed else "FAIL"))
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

        def line(r):
            return "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
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


def relative_error(a: Any, b: Any, atol: float = 0.0) -> float:
    """Leaf-wise relative error max|a − b| / max(max|a|, max|b|), the report's ``rel``.

    The worst difference measured against the larger of the two leaves' magnitudes (the
    symmetric form of gradient checking): it is defined when one side is all zeros (then
    it is 1, a total mismatch, never inf or NaN) and does not blow up on single entries
    near zero, where an elementwise ratio would. When both leaves are zero to within
    ``atol`` it is 0: e.g. the bias of a Linear layer feeding a BatchNorm, whose true
    gradient is exactly 0 and computes as ~1e-17 on both sides.

    Args:
        a: one array (the manual side, in the report).
        b: the array it is compared with, of the same shape.
        atol: magnitudes at or below this count as zero.

    Returns:
        A float in [0, 2]; 0 for empty arrays.

    >>> relative_error(np.array([1.0, -4.0]), np.array([2.0, -3.0]))
    0.25
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error needs arrays of one shape, got {a.shape} and {b.shape}")
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return 0.0 if scale <= atol else float(np.max(np.abs(a - b), initial=0.0)) / scale


def _close(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> bool:
    return bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


def _generator(key: jax.Array) -> np.random.Generator:
    """The host-side random stream of a check: a numpy Generator seeded with the key's bits.

    It draws the sampled coordinates (``Generator.choice`` without replacement, per leaf in
    order) and then the direction t (``standard_normal`` per leaf, scaled to unit length);
    numpy does not promise its streams across versions. Drawing on the host compiles
    nothing, where ``jax.random.choice(..., replace=False)`` compiles one shuffle per
    distinct leaf size.
    """
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng(np.asarray(data, np.uint32).reshape(-1))


def _sample_indices(rng: np.random.Generator, sizes: list[int], samples: int) -> list[np.ndarray]:
    """The finite-difference coordinates of each leaf: all of them for a leaf of at most
    ``samples`` elements, else ``samples`` distinct flat indices drawn without replacement
    (exhaustive differences on an MNIST-sized layer would take 10⁵ forwards)."""
    return [np.arange(n) if n <= samples else rng.choice(n, samples, replace=False) for n in sizes]


def _finite_differences(
    objective: Callable[[Any], jax.Array], tree: Any, indices: list[np.ndarray], eps: float
) -> list[np.ndarray]:
    """Central differences (L(θ+εeᵢ) − L(θ−εeᵢ))/2ε at the given flat coordinates of each
    leaf, in one compiled program that takes the tree as an argument (closing over it would
    bake every leaf into the program as a constant and make XLA fold them).

    The program holds one copy of the objective: ``lax.map`` runs it once per point (leaf,
    index, ±ε), and every leaf gets a one-element add that is the point's ±ε on its leaf and
    an exact +0 on the others, so the program's size does not grow with the number of
    leaves or of points.
    """
    treedef = jax.tree.structure(tree)
    leaf_ids = np.concatenate([np.full(len(idx), i) for i, idx in enumerate(indices)] + [np.zeros(0, int)])
    flat = np.concatenate([np.asarray(idx, np.int64).reshape(-1) for idx in indices] + [np.zeros(0, int)])
    if flat.size == 0:
        return [np.zeros(0) for _ in indices]

    @jax.jit
    def run(tree, leaf_ids, flat, deltas):
        leaves = jax.tree.leaves(tree)

        def at(point):
            leaf_id, i, delta = point
            new = [
                a
                if a.size == 0
                else a.reshape(-1)
                .at[jnp.where(leaf_id == k, i, 0)]
                .add(jnp.where(leaf_id == k, delta, 0.0).astype(a.dtype))
                .reshape(a.shape)
                for k, a in enumerate(leaves)
            ]
            return objective(jax.tree.unflatten(treedef, new))

        values = jax.lax.map(at, (leaf_ids, flat, deltas))
        n = flat.shape[0] // 2
        return (values[:n] - values[n:]) / (2 * eps)

    both = np.concatenate([np.full(flat.size, eps), np.full(flat.size, -eps)])
    diffs = np.asarray(run(tree, np.tile(leaf_ids, 2), np.tile(flat, 2), both))
    return np.split(diffs, np.cumsum([len(idx) for idx in indices])[:-1])


def _derivatives(
    objective: Callable[[Any], jax.Array],
    manual_fn: Callable[[Any], Any],
    tree: Any,
    direction: Any | None,
    eps: float,
    output: Callable[[Any], Any] | None,
) -> dict[str, Any]:
    """The manual gradient and ``jax.grad``, and with a ``direction`` t (second order) the
    manual HVP, the autodiff HVP and the central differences (G(θ + h·t) − G(θ − h·t))/2h of
    the manual gradient, plus ``output(tree)`` if given: all in one compiled program with
    the tree as an argument. The gradients are the primal outputs of the two ``jax.jvp``s,
    so the second order costs no separate first-order program.
    """

    @jax.jit
    def run(tree, t):
        out = {"output": None if output is None else output(tree)}
        if t is None:
            out["manual"], out["autodiff"] = manual_fn(tree), jax.grad(objective)(tree)
            return out
        out["manual"], out["manual_hvp"] = jax.jvp(manual_fn, (tree,), (t,))
        out["autodiff"], out["autodiff_hvp"] = jax.jvp(jax.grad(objective), (tree,), (t,))
        # θ ± h·t as one batch of two: one copy of the manual backward in the program, not two.
        signs = jnp.array([1.0, -1.0], jnp.float64)
        g = jax.vmap(lambda s: manual_fn(jax.tree.map(lambda p, d: p + (s * eps) * d, tree, t)))(signs)
        out["manual_fd"] = jax.tree.map(lambda u: (u[0] - u[1]) / (2 * eps), g)
        return out

    return run(tree, direction)


def _check_manual_shapes(paths_leaves: list, treedef: Any, manual_fn: Callable, tree: Any) -> None:
    manual_shapes = treedef.flatten_up_to(jax.eval_shape(lambda: manual_fn(tree)))
    for (path, leaf), m in zip(paths_leaves, manual_shapes, strict=True):
        if jnp.shape(m) != leaf.shape:
            raise ValueError(
                f"manual gradient of {_name(path)} has shape {jnp.shape(m)}, expected {leaf.shape}"
            )


def _direction(rng: np.random.Generator, paths_leaves: list, treedef: Any) -> Any:
    """One random direction of unit length over the whole tree (a normal draw per element).

    A ReLU kink crossed between θ − h·t and θ + h·t makes the gradient jump, and its
    difference quotient with it.
    """
    draws = [rng.standard_normal(leaf.shape) for _, leaf in paths_leaves]
    norm = np.sqrt(sum(np.sum(d * d) for d in draws))
    return jax.tree.unflatten(treedef, [d / norm for d in draws])


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b), initial=0.0))


def _leaf_report(name: str, shape: tuple, m, a, idx, fd, hvp, tol: Tolerances) -> LeafReport:
    """One row: the manual gradient ``m`` against ``jax.grad``'s ``a`` and against the finite
    differences ``fd`` at the flat coordinates ``idx``; with ``hvp`` = (manual HVP, autodiff
    HVP, finite differences of the manual gradient), the second-order columns too."""
    m, a = np.asarray(m, np.float64), np.asarray(a, np.float64)
    m_at = m.reshape(-1)[idx]
    ok = _close(m, a, tol.atol, tol.rtol) and _close(m_at, fd, tol.fd_atol, tol.fd_rtol)
    hvp_columns = {}
    if hvp is not None:
        hm, ha, hfd = (np.asarray(h, np.float64) for h in hvp)
        ok = (
            ok
            and _close(hm, ha, tol.hvp_atol, tol.hvp_rtol)
            and _close(hm, hfd, tol.hvp_fd_atol, tol.hvp_fd_rtol)
        )
        hvp_columns = dict(
            hvp_autodiff_abs=_max_abs(hm, ha),
            hvp_autodiff_rel=relative_error(hm, ha, tol.hvp_atol),
            hvp_fd_abs=_max_abs(hm, hfd),
            hvp_fd_rel=relative_error(hm, hfd, tol.hvp_fd_atol),
        )
    return LeafReport(
        name,
        tuple(shape),
        _max_abs(m, a),
        relative_error(m, a, tol.atol),
        _max_abs(m_at, fd),
        relative_error(m_at, fd, tol.fd_atol),
        len(idx),
        ok,
        **hvp_columns,
    )


def _compare(
    title: str,
    objective: Callable[[Any], jax.Array],
    tree: Any,
    manual_fn: Callable[[Any], Any],
    *,
    key: jax.Array,
    second_order: bool,
    tolerances: Tolerances,
    output: Callable[[Any], Any] | None = None,
    check_output: Callable[[Any], None] | None = None,
) -> GradReport:
    """Compare ``manual_fn(tree)`` (same structure as `tree`) against jax.grad and finite
    differences, and (second_order) its forward-mode derivative against the HVP of jax.grad
    and finite differences of ``manual_fn``.

    ``manual_fn`` is traced under jit (as ``train(grad='manual')`` does), first with the
    tree closed over, so that the value checks at the entry of a backward (labels in range,
    probabilities in [0, 1]) see concrete arrays, as an eager call would, without compiling
    each of its ops eagerly; a check on a value computed inside (a loss's input in a model)
    needs ``check_output``, which gets the concrete ``output(tree)``. Every derivative then
    comes from two compiled programs, one for the gradients and HVPs and one for the finite
    differences.
    """
    tol = tolerances
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    _check_manual_shapes(paths_leaves, treedef, manual_fn, tree)
    rng = _generator(key)
    indices = _sample_indices(rng, [leaf.size for _, leaf in paths_leaves], tol.fd_samples)
    direction = _direction(rng, paths_leaves, treedef) if second_order else None
    results = _derivatives(objective, manual_fn, tree, direction, tol.hvp_eps, output)
    if check_output is not None:
        check_output(results["output"])
    fds = _finite_differences(objective, tree, indices, tol.eps)
    columns = [treedef.flatten_up_to(results[k]) for k in ("manual", "autodiff")]
    hvps = [None] * len(paths_leaves)  # per leaf: (manual HVP, autodiff HVP, FD of the manual gradient)
    if second_order:
        names = ("manual_hvp", "autodiff_hvp", "manual_fd")
        hvps = zip(*(treedef.flatten_up_to(results[k]) for k in names), strict=True)
    rows = zip(paths_leaves, *columns, indices, fds, hvps, strict=True)
    reports = [
        _leaf_report(_name(p), leaf.shape, m, a, i, fd, hvp, tol) for (p, leaf), m, a, i, fd, hvp in rows
    ]
    return GradReport(title, reports)


def check_op(
    op: Callable,
    op_backward: Callable,
    inputs: dict[str, Any],
    *,
    kwargs: dict | None = None,
    key: jax.Array | None = None,
    second_order: bool = True,
    tolerances: Tolerances = Tolerances(),
) -> GradReport:
    """Check ``op_backward`` against ``op``, with L = Σ op(inputs)·v for a random v.

    Args:
        op: the forward, called as ``op(**inputs, **kwargs)``.
        op_backward: its manual backward, called as ``op_backward(v, **inputs, **kwargs)``;
            it returns one gradient per entry of ``inputs``, in order (a bare array for one).
        inputs: the op's differentiable arguments by name, in the op's argument order.
        kwargs: the rest (non-differentiable arguments such as ``target`` or ``dim``).
        key: for the cotangent, the sampled coordinates and the HVP direction.
        second_order: also check the Hessian-vector product along a random direction
            (forward-over-reverse through the manual backward, in the gradients' program).
        tolerances: the steps and tolerances of each column, a ``Tolerances`` (default
            ``Tolerances()``).

    Returns:
        A ``GradReport`` with one row per entry of ``inputs``.
    """
    tolerances = _check_tolerances(tolerances)
    key = jax.random.key(0) if key is None else key
    kwargs = dict(kwargs or {})
    with jax.enable_x64(True):
        tree = _to64(inputs)
        kwargs = {k: _to64(v) if isinstance(v, (jax.Array, np.ndarray)) else v for k, v in kwargs.items()}
        k_v, k_fd = jax.random.split(key)
        out = op(**tree, **kwargs)
        v = jax.random.normal(k_v, jnp.shape(out), jnp.float64)

        def objective(t):
            return jnp.sum(op(**t, **kwargs) * v)

        def manual_fn(t):
            grads = op_backward(v, **t, **kwargs)
            # None is the gradient of an optional input left out of `inputs` (the backward convention)
            grads = [g for g in (grads if isinstance(grads, tuple) else (grads,)) if g is not None]
            if len(grads) != len(inputs):
                raise ValueError(
                    f"the backward returned {len(grads)} gradients for the "
                    f"{len(inputs)} inputs {list(inputs)}"
                )
            return dict(zip(inputs, grads, strict=True))  # `inputs` keeps argument order; `t` is key-sorted

        return _compare(
            getattr(op, "__name__", "op"),
            objective,
            tree,
            manual_fn,
            key=k_fd,
            second_order=second_order,
            tolerances=tolerances,
        )


def check_layer(
    layer,
    params: Any,
    state: Any,
    x: jax.Array,
    *,
    key: jax.Array | None = None,
    train: bool = True,
    second_order: bool = True,
    tolerances: Tolerances = Tolerances(),
) -> GradReport:
    """Check ``layer.backward`` for the params and the input x, with L = Σ apply(...)·v.

    Args:
        layer: an ``fnn.nn`` layer (or anything with ``apply`` and ``backward``).
        params, state, x: the forward's arguments; state is not differentiated.
        key: the forward's key (dropout: the same mask both ways).
        train: the forward's mode.
        second_order: also check the Hessian-vector product along a random direction.
        tolerances: the steps and tolerances of each column (default ``Tolerances()``).

    Returns:
        A ``GradReport`` with rows ``params.<name>...`` and ``input``.
    """
    tolerances = _check_tolerances(tolerances)
    with jax.enable_x64(True):
        params, state, x = _to64(params), _to64(state), _to64(x)
        y, _ = layer.apply(params, state, x, key=key, train=train)
        v = jax.random.normal(jax.random.key(1), y.shape, jnp.float64)

        def objective(t):
            return jnp.sum(layer.apply(t["params"], state, t["input"], key=key, train=train)[0] * v)

        def manual_fn(t):
            grad_p, grad_x = layer.backward(t["params"], state, t["input"], v, key=key, train=train)
            return {"params": grad_p, "input": grad_x}

        return _compare(
            type(layer).__name__,
            objective,
            {"params": params, "input": x},
            manual_fn,
            key=jax.random.key(2),
            second_order=second_order,
            tolerances=tolerances,
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
    second_order: bool = True,
    tolerances: Tolerances = Tolerances(),
) -> GradReport:
    """Check the manual gradient of ``loss_fn(model(x), target)`` with respect to params.

    Args:
        model: a layer (typically ``nn.Sequential``) with ``apply`` and ``apply_vjp``.
        loss_fn: a loss with a manual backward (see ``fnn.functional.backward_of``).
        params, state, x, target: the forward's arguments; only params are differentiated.
        key: the forward's key (dropout: the same mask both ways).
        train: the forward's mode (BatchNorm's batch statistics in training).
        second_order: also check the Hessian-vector product along a random direction.
        tolerances: the steps and tolerances of each column (default ``Tolerances()``).

    Returns:
        A ``GradReport`` with one row per parameter leaf.
    """
    tolerances = _check_tolerances(tolerances)
    loss_backward = backward_of(loss_fn)
    with jax.enable_x64(True):
        params, state = _to64(params), _to64(state)
        x = _to64(x)

        def objective(p):
            return loss_fn(model.apply(p, state, x, key=key, train=train)[0], target)

        def manual_fn(p):
            y, _, pullback = model.apply_vjp(p, state, x, key=key, train=train)
            return pullback(loss_backward(jnp.ones((), jnp.float64), y, target))[0]

        def check_output(y):
            # The loss backward's value checks (labels in range, probabilities in [0, 1]) on the
            # concrete model output, as an eager call of manual_fn ran them; tracing compiles nothing.
            jax.eval_shape(lambda: loss_backward(jnp.ones((), jnp.float64), y, target))

        return _compare(
            f"{type(model).__name__} + {getattr(loss_fn, '__name__', 'loss')}",
            objective,
            params,
            manual_fn,
            key=jax.random.key(3),
            second_order=second_order,
            output=lambda p: model.apply(p, state, x, key=key, train=train)[0],
            check_output=check_output,
            tolerances=tolerances,
        )

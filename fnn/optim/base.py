"""Gradient transformations: the optax shape, without optax.

A `GradientTransformation` is a pair of pure functions `init(params) -> state` and
`update(grads, state, params=None) -> (updates, new_state)`; `apply_updates(params,
updates)` adds the updates to the parameters. Optimizers are `chain`s of small transforms;
their last link multiplies by -lr, so `updates` is the step itself (θ_new = θ + updates).

State structures, shapes and dtypes are fixed by `init` (step counters are int32 scalars,
buffers are zeros_like(params)), and every `update` returns a state of exactly that type,
so a jitted step traces once and never recompiles. Every step count counts the updates
already done, from 0, like torch's scheduler epoch counter: the first update sees step 0
(the rule texts' t = step + 1).

The learning rate lives in the state (`LearningRateState`, the link every optimizer ends
with): its int32 step count, a float32 `lr_scale` (1.0 at init) that multiplies every
update, and the float32 `last_lr` the latest update used. `with_lr_scale` changes the scale
between epochs (e.g. from ReduceLROnPlateau) without rebuilding the optimizer or retracing
the jitted step; `learning_rate_state` and `last_lr` read it.

Transforms built with equal hyperparameters are equal and hash equal (their `spec`, see
`make_spec`), so equal optimizers share one compiled step. Weight decay (WD-1): torch
decays every parameter of a group; fnn by default only leaves with ndim >= 2 (no decay for
biases and norm scales). `weight_decay_mask` is a pytree of bools shaped like params, or a
function params -> such a pytree (`lambda p: jax.tree.map(lambda _: True, p)` is torch's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_lr, check_positive

__all__ = [
    "GradientTransformation",
    "LearningRateState",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "default_weight_decay_mask",
    "last_lr",
    "learning_rate_state",
    "scale",
    "scale_by_learning_rate",
    "with_lr_scale",
]

PyTree = Any
Schedule = Callable[[Any], Any]
InitFn = Callable[[PyTree], PyTree]
UpdateFn = Callable[..., tuple[PyTree, PyTree]]


@dataclasses.dataclass(frozen=True, eq=False)
class GradientTransformation:
    """A gradient transformation: the pure pair `init` and `update`, in optax's shape.

    `init(params) -> state`; `update(grads, state, params=None) -> (updates, state)`.

    `hyperparams` exposes the arguments an optimizer was built with (read-only). `spec`, a
    hashable description of what the transform computes (built by `make_spec`), decides
    equality and the hash when present: equal specs mean equal updates, so equal
    optimizers share one compiled step. Without a spec two transforms are equal only when
    they hold the same init and update functions (in practice: the same object).

    Attributes:
        init: params -> state; fixes the state's structure, shapes and dtypes.
        update: (grads, state, params=None) -> (updates, new_state); updates has the grads'
            structure and is added to params by `apply_updates`.
        hyperparams: the constructor's arguments, a read-only mapping.
        spec: the hashable description that decides equality, or None.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> optim.sgd(lr=0.1, momentum=0.9) == optim.sgd(lr=0.1, momentum=0.9)
        True
        >>> optim.sgd(lr=0.1).hyperparams["lr"]
        0.1
    """

    init: InitFn
    update: UpdateFn
    hyperparams: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    spec: Hashable | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hyperparams", MappingProxyType(dict(self.hyperparams)))

    def _key(self) -> tuple:
        return ("spec", self.spec) if self.spec is not None else ("fns", self.init, self.update)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GradientTransformation):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def typed_items(args: Mapping[str, Any]) -> tuple:
    """``args`` as sorted ``(name, type, value)`` triples: the part of a spec (and of an
    `LRSchedule`'s key) that compares arguments by value and type, since 0.9 ==
    np.float64(0.9) but JAX promotes them differently."""
    return tuple(sorted((k, type(v), v) for k, v in args.items()))


def make_spec(name: str, **args: Any) -> tuple | None:
    """The hashable spec `(name, sorted (arg, type, value))` of a transform, or None.

    None when an argument is unhashable (e.g. a dict mask): such a transform falls back to
    identity equality instead of failing to build. Functions among the arguments (a mask
    function, a custom schedule) hash by identity. The type is part of the spec because
    0.9 == np.float64(0.9) but JAX promotes them differently (a numpy scalar is not weakly
    typed), so they may compile differently.

    Args:
        name: the transform's name.
        **args: its arguments.

    Returns:
        The spec tuple, or None.
    """
    spec = (name, typed_items(args))
    try:
        hash(spec)
    except TypeError:
        return None
    return spec


class LearningRateState(NamedTuple):
    """State of `scale_by_learning_rate`, the last link of every optimizer.

    Attributes:
        step: int32 scalar, the number of updates done.
        lr_scale: float32 scalar that multiplies every update; 1.0 at init.
        last_lr: float32 scalar, lr(step)·lr_scale of the latest update; 0.0 at init.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> state = optim.sgd(lr=0.1).init(jnp.zeros(2))
        >>> s = optim.learning_rate_state(state)
        >>> s.step.item(), s.lr_scale.item(), s.last_lr.item()
        (0, 1.0, 0.0)
    """

    step: jax.Array  # int32 scalar, updates done
    lr_scale: jax.Array  # float32 scalar, multiplies every update; 1.0 at init
    last_lr: jax.Array  # float32 scalar, lr(step)·lr_scale of the latest update; 0.0 at init


def init_step() -> jax.Array:
    """A fresh step counter.

    Returns:
        The int32 scalar 0.
    """
    return jnp.zeros((), jnp.int32)


def check_tree_match(grads: PyTree, reference: PyTree, what: str) -> None:
    """Trace-time check that grads has the structure of the params/state they update.

    Args:
        grads: the incoming gradients or updates.
        reference: the params or state buffers they must match.
        what: the reference's name, for the error message.

    Raises:
        ValueError: the structures differ (both are named).
    """
    tg, tr = jax.tree.structure(grads), jax.tree.structure(reference)
    if tg != tr:
        raise ValueError(f"grads must have the same tree structure as {what}, got grads {tg} and {what} {tr}")


def check_half_open(name: str, value: float, low: float = 0.0, high: float = 1.0) -> None:
    """Raise a ValueError naming `name` unless low <= value < high.

    Args:
        name: the argument's name, for the message.
        value: the number to check.
        low: the inclusive lower bound (default 0).
        high: the exclusive upper bound (default 1).
    """
    if not (low <= value < high):
        raise ValueError(f"{name} must be in [{low}, {high}), got {value}")


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply `transforms` in order; the state is the tuple of their states.

    Args:
        *transforms: GradientTransformations; each one's updates are the next one's grads.

    Returns:
        A GradientTransformation; chains of equal transforms are equal.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(lr=0.1))
        >>> params = jnp.zeros(2)
        >>> updates, _ = opt.update(jnp.array([3.0, 4.0]), opt.init(params), params)
        >>> updates.tolist()  # clipped to norm 1, then -lr·g
        [-0.06, -0.08]
    """

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params=None):
        if len(state) != len(transforms):
            raise ValueError(
                f"state must have one entry per chained transform ({len(transforms)}), got {len(state)}"
            )
        if params is not None:
            check_tree_match(grads, params, "params")
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            grads, s = t.update(grads, s, params)
            new_state.append(s)
        return grads, tuple(new_state)

    # Chains of equal transforms are equal (each link's own equality decides).
    return GradientTransformation(init, update, spec=("chain", transforms))


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """Add the updates to the parameters, θ + u per leaf, keeping each parameter's dtype.

    Keeping the dtype means the train step never retraces.

    Args:
        params: a pytree of arrays.
        updates: a pytree of the same structure (from an optimizer's `update`).

    Returns:
        The new parameters, with params' structure, shapes and dtypes.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> optim.apply_updates({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([0.5, 0.5])})["w"].tolist()
        [1.5, 2.5]
    """
    check_tree_match(updates, params, "params")
    return jax.tree.map(lambda p, u: (p + u).astype(jnp.result_type(p)), params, updates)


def scale(factor: float) -> GradientTransformation:
    """Multiply the updates by a constant: u ← factor·u.

    scale(-1) is `maximize` (torch negates the gradient first).

    Args:
        factor: the constant.

    Returns:
        A stateless GradientTransformation.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> t = optim.scale(-2.0)
        >>> t.update(jnp.array([1.0, -3.0]), t.init(None))[0].tolist()
        [-2.0, 6.0]
    """

    def update(grads, state, params=None):
        return jax.tree.map(lambda g: g * jnp.asarray(factor, jnp.result_type(g)), grads), state

    return GradientTransformation(
        lambda params: (), update, {"factor": factor}, make_spec("scale", factor=factor)
    )


def scale_by_learning_rate(lr: float | Schedule) -> GradientTransformation:
    """The last link of every optimizer: u ← (−lr(step)·u)·lr_scale.

    Its state (`LearningRateState`) always carries the int32 count of updates done, the
    float32 lr_scale and the float32 last_lr, even when lr is a plain number.

    The scale multiplies last, after −lr·u is formed in u's dtype, and the product is cast
    back to u's dtype: with lr_scale = 1 the update is bit-identical to −lr·u.

    Args:
        lr: the learning rate, a finite number >= 0, or a schedule step -> lr (step = updates
            already done, from 0).

    Returns:
        A GradientTransformation whose state is a LearningRateState.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> t = optim.scale_by_learning_rate(optim.step_lr(0.1, step_size=1, gamma=0.5))
        >>> state = t.init(None)
        >>> u, state = t.update(jnp.array([1.0]), state)
        >>> u2, state = t.update(jnp.array([1.0]), state)
        >>> u.tolist(), u2.tolist(), optim.last_lr(state).item()
        ([-0.1], [-0.05], 0.05)
    """
    lr = check_lr(lr)

    def init(params):
        return LearningRateState(init_step(), jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32))

    def update(grads, state, params=None):
        value = lr(state.step) if callable(lr) else lr
        lr_scale = jnp.asarray(state.lr_scale, jnp.float32)  # a numpy scalar from a checkpoint too

        def scaled(g):
            dtype = jnp.result_type(g)
            return ((-jnp.asarray(value, dtype) * g) * lr_scale).astype(dtype)

        new = jax.tree.map(scaled, grads)
        last = jnp.asarray(value, jnp.float32) * lr_scale
        return new, LearningRateState(state.step + 1, lr_scale, last)

    return GradientTransformation(init, update, {"lr": lr}, make_spec("scale_by_learning_rate", lr=lr))


def _is_lr_state(x: Any) -> bool:
    return isinstance(x, LearningRateState)


def learning_rate_state(opt_state: PyTree) -> LearningRateState:
    """The one `LearningRateState` in an optimizer state (at any depth, e.g. in a chain).

    Args:
        opt_state: a state from `opt.init` or `opt.update`.

    Returns:
        That LearningRateState.

    Raises:
        ValueError: when the state holds none or more than one (e.g. two chained
            optimizers), naming how many it found.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.adam(lr=1e-3)
        >>> params = jnp.zeros(2)
        >>> _, state = opt.update(jnp.ones(2), opt.init(params), params)
        >>> optim.learning_rate_state(state).step.item()
        1
    """
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_lr_state) if _is_lr_state(x)]
    if len(found) != 1:
        raise ValueError(
            f"opt_state must hold exactly one LearningRateState (the last link of an "
            f"fnn.optim optimizer), found {len(found)}"
        )
    return found[0]


def with_lr_scale(opt_state: PyTree, scale: Any) -> PyTree:
    """The state with its LearningRateState's lr_scale replaced: later updates are multiplied by `scale`.

    Typically scale = plateau_lr / base_lr (ReduceLROnPlateau). Structure, shapes and dtypes
    are unchanged (float32 scalar), so a jitted step that takes the state does not retrace.

    Args:
        opt_state: a state holding exactly one LearningRateState.
        scale: a finite number >= 0 (or a float32-castable scalar array, also traced).

    Returns:
        The new state; `opt_state` itself is not modified.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.sgd(lr=0.1)
        >>> params = jnp.zeros(1)
        >>> state = optim.with_lr_scale(opt.init(params), 0.5)
        >>> updates, state = opt.update(jnp.array([1.0]), state, params)
        >>> updates.tolist(), optim.last_lr(state).item()
        ([-0.05], 0.05)
    """
    old = learning_rate_state(opt_state).lr_scale
    if jnp.shape(scale) != ():
        raise ValueError(f"scale must be a scalar, got shape {jnp.shape(scale)}")
    new = jnp.asarray(scale, jnp.float32)
    if not isinstance(scale, jax.core.Tracer):
        if not (math.isfinite(float(scale)) and float(scale) >= 0):
            raise ValueError(f"scale must be a finite number >= 0, got {scale}")
        if isinstance(old, jax.Array) and not isinstance(old, jax.core.Tracer):
            new = jax.device_put(new, old.sharding)  # keep the placement (e.g. replicated on a mesh)
    return jax.tree.map(
        lambda x: x._replace(lr_scale=new) if _is_lr_state(x) else x, opt_state, is_leaf=_is_lr_state
    )


def last_lr(opt_state: PyTree) -> jax.Array:
    """The learning rate the latest update used, lr(step)·lr_scale (0.0 before the first update).

    Args:
        opt_state: a state holding exactly one LearningRateState.

    Returns:
        A float32 scalar array.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.sgd(lr=optim.exponential_lr(1.0, gamma=0.5))
        >>> params, state = jnp.zeros(1), opt.init(jnp.zeros(1))
        >>> for _ in range(3):
        ...     _, state = opt.update(jnp.ones(1), state, params)
        >>> optim.last_lr(state).item()  # the third update used lr(2)
        0.25
    """
    return learning_rate_state(opt_state).last_lr


def default_weight_decay_mask(params: PyTree) -> PyTree:
    """fnn's default weight-decay mask (WD-1, not torch's): decay only leaves with ndim >= 2.

    Args:
        params: a pytree of arrays.

    Returns:
        A pytree of Python bools of params' structure: True for weight matrices and kernels,
        False for biases and norm scales.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> optim.default_weight_decay_mask({"weight": jnp.zeros((2, 3)), "bias": jnp.zeros(2)})
        {'bias': False, 'weight': True}
    """
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def resolve_mask(mask: PyTree | Callable[[PyTree], PyTree] | None, params: PyTree) -> PyTree:
    """The weight-decay mask as a pytree of params' structure.

    Args:
        mask: a pytree of bools, a function params -> such a pytree, or None for the WD-1
            default (ndim >= 2).
        params: the parameters.

    Returns:
        A pytree of bools (Python or array) of params' structure.

    Raises:
        ValueError: the mask's structure differs from params' (both are named).
    """
    if mask is None:
        mask = default_weight_decay_mask
    mask = mask(params) if callable(mask) else mask
    try:
        return jax.tree.map(lambda m, p: m, mask, params)
    except ValueError as e:
        raise ValueError(
            f"weight_decay_mask must have the tree structure of params, got mask "
            f"{jax.tree.structure(mask)} and params {jax.tree.structure(params)}"
        ) from e


def add_decayed_weights(weight_decay: float, mask: PyTree | Callable | None = None) -> GradientTransformation:
    """Add L2 weight decay to the updates: u ← u + λ·θ on the leaves where mask is True.

    Coupled L2 before the optimizer's math (SGD-1/ADAG-1/RMS-1/ADAM-1); placed after the
    Adam scaling and before scale_by_learning_rate it is AdamW's decoupled θ·(1 − lr·λ),
    ADAMW-1.

    Python-bool mask leaves are resolved at trace time (unmasked leaves cost nothing);
    array-valued mask leaves go through jnp.where.

    Args:
        weight_decay: λ, a number >= 0.
        mask: a pytree of bools shaped like params, or a function params -> such a pytree;
            default (None): leaves with ndim >= 2 (WD-1).

    Returns:
        A stateless GradientTransformation; its update needs params.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> t = optim.add_decayed_weights(0.1)
        >>> params = {"weight": jnp.array([[1.0, 2.0]]), "bias": jnp.array([1.0])}
        >>> grads = {"weight": jnp.zeros((1, 2)), "bias": jnp.zeros(1)}
        >>> u, _ = t.update(grads, t.init(params), params)
        >>> u["weight"].tolist(), u["bias"].tolist()  # the bias is not decayed (WD-1)
        ([[0.1, 0.2]], [0.0])
    """
    check_positive("weight_decay", weight_decay, strict=False)

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("add_decayed_weights needs params: call update(grads, state, params)")
        check_tree_match(grads, params, "params")

        def decay(g, p, m):
            d = g + jnp.asarray(weight_decay, jnp.result_type(g)) * p.astype(jnp.result_type(g))
            if isinstance(m, (bool, np.bool_)):
                return d if m else g
            return jnp.where(m, d, g)

        return jax.tree.map(decay, grads, params, resolve_mask(mask, params)), state

    return GradientTransformation(
        lambda params: (),
        update,
        {"weight_decay": weight_decay, "mask": mask},
        make_spec("add_decayed_weights", weight_decay=weight_decay, mask=mask),
    )


def optimizer(
    name: str, transforms: list[GradientTransformation], **hyperparams: Any
) -> GradientTransformation:
    """Chain the transforms and label the result with its torch-named hyperparameters.

    The name and hyperparameters are also its spec: equal arguments, equal optimizers.

    Args:
        name: the optimizer's name ('sgd', 'adam', ...).
        transforms: the links, in order.
        **hyperparams: the constructor's arguments, under torch's names.

    Returns:
        The chained GradientTransformation with `hyperparams` (name included) and its spec.
    """
    return dataclasses.replace(
        chain(*transforms), hyperparams=dict(name=name, **hyperparams), spec=make_spec(name, **hyperparams)
    )


def decay_and_maximize(weight_decay: float, mask: Any, maximize: bool) -> list[GradientTransformation]:
    """torch's prologue for every optimizer: g ← −g if maximize, then g ← g + λθ.

    Args:
        weight_decay: λ (0: no decay link).
        mask: the weight-decay mask (see `add_decayed_weights`).
        maximize: negate the gradient first.

    Returns:
        The list of links (possibly empty) to put before the optimizer's own.
    """
    out = [scale(-1.0)] if maximize else []
    if weight_decay != 0:
        out.append(add_decayed_weights(weight_decay, mask))
    return out

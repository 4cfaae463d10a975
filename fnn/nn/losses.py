"""Loss specs: torch.nn's loss classes as immutable, hashable specs over fnn.functional.

A spec holds only options, with torch's class names, argument names, order and defaults
(torch's deprecated ``size_average`` and ``reduce`` are omitted; ``reduction`` replaces
them). Options are checked at construction with the validators ``fnn.functional`` uses;
what depends on the data (a weight's length against C, pos_weight against the input) is
checked when called, by the op itself.

Array options (``weight``, ``pos_weight``) must be concrete and floating, as the ops want;
they are stored as (nested) tuples of Python floats, so a spec is immutable, hashable and
usable as a static argument of ``jax.jit``, and specs with equal options are equal and hash
equal (``CrossEntropyLoss(weight=[1., 2.]) == CrossEntropyLoss(weight=np.array([1., 2.]))``).
They become arrays again when the spec is called (cast to the input's dtype by the op).

Every spec has the same four members (see ``Loss``):
- ``loss(output, target)``: the ``fnn.functional`` op with the spec's options;
- ``loss.backward(grad_output, output, target)``: the op's hand-derived ``*_backward``
  with the same options (dL/d output);
- ``loss.per_sample(output, target) -> (loss_sum, weight)``: per-sample numerators and
  denominators of the 'mean' reduction, whatever the spec's own reduction, so that
  evaluation can compute an exact dataset-level mean loss in batches;
- ``loss.reduction``.

``FunctionLoss`` adapts a plain function ``fn(output, target) -> loss`` to this interface
and ``as_loss`` turns either into a ``Loss``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from fnn import functional as F
from fnn._checks import check_floating, check_ndim, check_positive, check_range, check_reduction
from fnn.functional._loss_utils import check_ignore_index, class_weight, index_targets, picked
from fnn.functional.backward import backward_of

Array = jax.Array

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "FunctionLoss",
    "HuberLoss",
    "L1Loss",
    "Loss",
    "MSELoss",
    "NLLLoss",
    "SmoothL1Loss",
    "as_loss",
]


def _nested_tuple(value: Any) -> Any:
    return tuple(_nested_tuple(v) for v in value) if isinstance(value, list) else value


def _frozen_floats(name: str, value: Any) -> Any:
    """An array option as nested tuples of Python floats (a 0-d one as a float), or None."""
    if value is None:
        return None
    array = np.asarray(value)
    check_floating(name, array)  # the ops reject integer weights too; say so now, not at the first call
    return _nested_tuple(array.astype(np.float64).tolist())


def _as_array(value: Any) -> np.ndarray | None:
    # float64 numpy: the op casts it to the input's dtype, so float64 runs keep full precision.
    return None if value is None else np.asarray(value, np.float64)


def _batch_axes(losses: Array, who: str) -> tuple[int, ...]:
    if losses.ndim == 0:
        raise ValueError(
            f"{who}.per_sample needs a batch dimension (dim 0), got unreduced losses of shape ()"
        )
    return tuple(range(1, losses.ndim))


@dataclass(frozen=True)
class Loss:
    """Base of the loss specs: a frozen, hashable dataclass holding a loss's options.

    Subclasses declare their options as fields (``reduction`` among them) and name their
    ``fnn.functional`` op and its backward in ``_op`` / ``_op_backward``; fields listed in
    ``_array_fields`` are stored as tuples of floats and passed to the op as arrays.
    A custom loss can subclass it too: a frozen dataclass with a ``reduction`` field (or
    its own ``__post_init__``) that overrides ``__call__``, ``backward`` and ``per_sample``.
    """

    _op: ClassVar[Callable[..., Array]]
    _op_backward: ClassVar[Callable[..., Array]]
    _array_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        check_reduction(self.reduction)
        for name in self._array_fields:
            object.__setattr__(self, name, _frozen_floats(name, getattr(self, name)))

    def _options(self, **override: Any) -> dict[str, Any]:
        """The op's keyword arguments: every field, array options as arrays."""
        options = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in self._array_fields:
            options[name] = _as_array(options[name])
        return {**options, **override}

    def __call__(self, output: Array, target: Array) -> Array:
        """The loss, as the ``fnn.functional`` op with this spec's options computes it.

        Args:
            output: the model's output (the op's ``input``).
            target: the target, as the op takes it.

        Returns:
            A scalar for reduction 'mean' or 'sum'; the unreduced losses for 'none'.
        """
        return self._op(output, target, **self._options())

    def backward(self, grad_output: Array, output: Array, target: Array) -> Array:
        """dL/d output by the op's hand-derived backward, with this spec's options.

        Args:
            grad_output: dL/d loss: a scalar for 'mean'/'sum', the 'none' output's shape for 'none'.
            output, target: as for ``__call__``.

        Returns:
            The gradient with respect to ``output``, of its shape.
        """
        return self._op_backward(grad_output, output, target, **self._options())

    def per_sample(self, output: Array, target: Array) -> tuple[Array, Array]:
        """Per-sample numerators and denominators of this loss's 'mean' reduction.

        For ANY subset S of the samples (within a batch or across batches),
        Σ_S loss_sum / Σ_S weight equals this loss of S with reduction='mean', whatever
        this spec's own ``reduction`` is. Evaluation uses it for an exact dataset-level
        mean over batches of any size.

        Args:
            output: batched model output, samples on dim 0.
            target: the matching target.

        Returns:
            ``(loss_sum, weight)``, two arrays of shape (N,) in the output's float dtype.

        Example:
            >>> import jax.numpy as jnp
            >>> from fnn import nn
            >>> loss = nn.CrossEntropyLoss(weight=[1.0, 3.0])
            >>> logits, labels = jnp.array([[2.0, 0.0], [0.0, 0.0]]), jnp.array([0, 1])
            >>> loss_sum, weight = loss.per_sample(logits, labels)
            >>> loss_sum.round(4).tolist(), weight.tolist()  # w_y·ℓ and w_y per sample
            ([0.1269, 2.0794], [1.0, 3.0])
        """
        raise NotImplementedError(f"{type(self).__name__}.per_sample")


class _PointwiseLoss(Loss):
    """Element-wise losses: 'mean' divides by the number of elements (BCE-3, BCEL-1)."""

    def per_sample(self, output: Array, target: Array) -> tuple[Array, Array]:
        """loss_sum_i: sum of sample i's element losses (weights included, as in 'none');
        weight_i: its number of elements, since 'mean' divides by the element count, not
        by Σ weight (BCE-3). See ``Loss.per_sample``."""
        losses = self._op(output, target, **self._options(reduction="none"))
        axes = _batch_axes(losses, type(self).__name__)
        count = int(np.prod(losses.shape[1:]))
        return jnp.sum(losses, axis=axes), jnp.full(losses.shape[:1], count, losses.dtype)


class _ClassLoss(Loss):
    """NLL and cross-entropy: 'mean' is the weighted mean of NLL-1 / CE-2, or Σ/N for CE-3."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "ignore_index", check_ignore_index(self.ignore_index))
        if self.weight is not None:
            # one entry per class; its length against C is checked when called
            check_ndim("weight", np.asarray(self.weight), (1,))

    def per_sample(self, output: Array, target: Array) -> tuple[Array, Array]:
        """Index targets: loss_sum_i = Σ_d w_{y_{i,d}}·ℓ_{i,d} (the 'none' output, label
        smoothing included) and weight_i = Σ_d w_{y_{i,d}}·1[y_{i,d} ≠ ignore_index] (1 per
        position without ``weight``): 'mean' divides by Σ w_y, the smoothing term included
        (NLL-1, CE-2, NLL-3). Probability targets (CE-3): weight_i = the number of positions
        d1·…·dK, as 'mean' divides by N·d1·…·dK, not by the weights. See ``Loss.per_sample``.
        """
        losses = self._op(output, target, **self._options(reduction="none"))  # validates everything
        x = jnp.asarray(output)
        if x.ndim < 2:
            raise ValueError(
                f"{type(self).__name__}.per_sample needs a batch: output (N, C) or "
                f"(N, C, d1, ..., dK), got the unbatched shape {x.shape}"
            )
        axes = _batch_axes(losses, type(self).__name__)
        loss_sum = jnp.sum(losses, axis=axes)
        if jnp.shape(target) == x.shape:  # class probabilities (only F.cross_entropy gets here)
            return loss_sum, jnp.full(loss_sum.shape, int(np.prod(x.shape[2:])), losses.dtype)
        t = index_targets(x, False, target, self.ignore_index)
        w = class_weight(_as_array(self.weight), x.shape[1], losses.dtype)
        _, _, wn, _ = picked(t, self.ignore_index, w, x.shape[1], losses.dtype)
        return loss_sum, jnp.sum(wn, axis=axes)


@dataclass(frozen=True)
class CrossEntropyLoss(_ClassLoss):
    """torch.nn.CrossEntropyLoss over logits: ``F.cross_entropy`` (CE-1..6).

    Args:
        weight: per-class weights (C,), or None.
        ignore_index: target value that contributes neither loss nor weight (index targets).
        reduction: 'mean' (weighted, CE-2; Σ/N for probability targets, CE-3), 'sum' or 'none'.
        label_smoothing: ε in [0, 1] (CE-2, CE-3).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> logits, labels = jnp.array([[2.0, 0.0], [0.0, 0.0]]), jnp.array([0, 1])
        >>> loss = nn.CrossEntropyLoss()
        >>> loss(logits, labels).round(4).tolist()  # mean of -log softmax at the labels
        0.41
        >>> loss.backward(jnp.array(1.0), logits, labels).round(4).tolist()  # (p - onehot) / N
        [[-0.0596, 0.0596], [0.25, -0.25]]
    """

    weight: Any = None
    ignore_index: int = -100
    reduction: str = "mean"
    label_smoothing: float = 0.0

    _op = staticmethod(F.cross_entropy)
    _op_backward = staticmethod(F.cross_entropy_backward)
    _array_fields = ("weight",)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0)  # F.cross_entropy's check
        object.__setattr__(self, "label_smoothing", float(self.label_smoothing))


@dataclass(frozen=True)
class NLLLoss(_ClassLoss):
    """torch.nn.NLLLoss over log-probabilities: ``F.nll_loss`` (NLL-1..4).

    Args:
        weight: per-class weights (C,), or None.
        ignore_index: target value that contributes neither loss nor weight.
        reduction: 'mean' (weighted mean, NLL-1), 'sum' or 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> log_probs, labels = jnp.array([[-1.0, -2.0], [-3.0, -0.5]]), jnp.array([0, 1])
        >>> nn.NLLLoss()(log_probs, labels).tolist()
        0.75
        >>> nn.NLLLoss(weight=[1.0, 3.0])(log_probs, labels).tolist()  # (1·1 + 3·0.5) / (1 + 3)
        0.625
        >>> nn.NLLLoss(ignore_index=1)(log_probs, labels).tolist()  # only the first item counts
        1.0
    """

    weight: Any = None
    ignore_index: int = -100
    reduction: str = "mean"

    _op = staticmethod(F.nll_loss)
    _op_backward = staticmethod(F.nll_loss_backward)
    _array_fields = ("weight",)


@dataclass(frozen=True)
class MSELoss(_PointwiseLoss):
    """torch.nn.MSELoss: ``F.mse_loss``, (x − y)² (MSE-1).

    Args:
        reduction: 'mean' (over all elements), 'sum' or 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> x, y = jnp.array([1.0, 2.0]), jnp.zeros(2)
        >>> nn.MSELoss()(x, y).tolist(), nn.MSELoss().backward(jnp.array(1.0), x, y).tolist()
        (2.5, [1.0, 2.0])
    """

    reduction: str = "mean"

    _op = staticmethod(F.mse_loss)
    _op_backward = staticmethod(F.mse_loss_backward)


@dataclass(frozen=True)
class L1Loss(_PointwiseLoss):
    """torch.nn.L1Loss: ``F.l1_loss``, |x − y| with gradient 0 at x = y (L1-1).

    Args:
        reduction: 'mean' (over all elements), 'sum' or 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> x, y = jnp.array([1.0, -2.0, 0.0]), jnp.zeros(3)
        >>> nn.L1Loss(reduction="none")(x, y).tolist()
        [1.0, 2.0, 0.0]
        >>> nn.L1Loss().backward(jnp.array(1.0), x, y).round(4).tolist()  # sign(x - y) / 3
        [0.3333, -0.3333, 0.0]
    """

    reduction: str = "mean"

    _op = staticmethod(F.l1_loss)
    _op_backward = staticmethod(F.l1_loss_backward)


@dataclass(frozen=True)
class HuberLoss(_PointwiseLoss):
    """torch.nn.HuberLoss: ``F.huber_loss`` (HUB-1).

    Args:
        reduction: 'mean' (over all elements), 'sum' or 'none'.
        delta: δ > 0, where the quadratic turns linear.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> nn.HuberLoss(reduction="none")(jnp.array([0.5, 3.0]), jnp.zeros(2)).tolist()
        [0.125, 2.5]
    """

    reduction: str = "mean"
    delta: float = 1.0

    _op = staticmethod(F.huber_loss)
    _op_backward = staticmethod(F.huber_loss_backward)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("delta", self.delta)  # F.huber_loss's check
        object.__setattr__(self, "delta", float(self.delta))


@dataclass(frozen=True)
class SmoothL1Loss(_PointwiseLoss):
    """torch.nn.SmoothL1Loss: ``F.smooth_l1_loss`` (SL1-1; β = 0 is exactly L1).

    Args:
        reduction: 'mean' (over all elements), 'sum' or 'none'.
        beta: β >= 0, where the quadratic turns linear.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> nn.SmoothL1Loss(reduction="none", beta=2.0)(jnp.array([1.0, 3.0]), jnp.zeros(2)).tolist()
        [0.25, 2.0]
    """

    reduction: str = "mean"
    beta: float = 1.0

    _op = staticmethod(F.smooth_l1_loss)
    _op_backward = staticmethod(F.smooth_l1_loss_backward)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("beta", self.beta, strict=False)  # F.smooth_l1_loss's check
        object.__setattr__(self, "beta", float(self.beta))


@dataclass(frozen=True)
class BCELoss(_PointwiseLoss):
    """torch.nn.BCELoss over probabilities: ``F.binary_cross_entropy`` (BCE-1..3).

    Args:
        weight: element-wise rescaling that broadcasts to the input, or None.
        reduction: 'mean' (over all elements, not Σ weight: BCE-3), 'sum' or 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> p, y = jnp.array([0.5, 0.9, 0.0]), jnp.ones(3)
        >>> nn.BCELoss(reduction="none")(p, y).round(4).tolist()  # log clamped at -100 (BCE-1)
        [0.6931, 0.1054, 100.0]
    """

    weight: Any = None
    reduction: str = "mean"

    _op = staticmethod(F.binary_cross_entropy)
    _op_backward = staticmethod(F.binary_cross_entropy_backward)
    _array_fields = ("weight",)


@dataclass(frozen=True)
class BCEWithLogitsLoss(_PointwiseLoss):
    """torch.nn.BCEWithLogitsLoss: ``F.binary_cross_entropy_with_logits`` (BCEL-1).

    Args:
        weight: element-wise rescaling that broadcasts to the input, or None.
        reduction: 'mean' (over all elements), 'sum' or 'none'.
        pos_weight: weight of the positive term, broadcast along the last (class) dim, or None.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> loss = nn.BCEWithLogitsLoss(reduction="none", pos_weight=jnp.array([2.0]))
        >>> loss(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])).round(4).tolist()  # 2·log 2, log 2
        [1.3863, 0.6931]
    """

    weight: Any = None
    reduction: str = "mean"
    pos_weight: Any = None

    _op = staticmethod(F.binary_cross_entropy_with_logits)
    _op_backward = staticmethod(F.binary_cross_entropy_with_logits_backward)
    _array_fields = ("weight", "pos_weight")


def _name(fn: Callable) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None) or repr(fn)


@dataclass(frozen=True, init=False, eq=False)
class FunctionLoss(Loss):
    """A plain loss function ``fn(output, target) -> scalar`` as a ``Loss``.

    - ``__call__`` is ``fn(output, target)``.
    - ``backward`` is the given ``backward``, else ``fnn.functional.backward_of(fn)``
      (an ``fnn.functional`` loss, a keyword ``functools.partial`` of one, or a function
      with a ``.backward`` attribute), looked up when ``backward`` is called, not here:
      a function without one still serves ``grad='autodiff'`` and evaluation.
    - ``per_sample`` calls ``fn(output, target, reduction='none')`` and averages over the
      non-batch dims, with weight 1 per sample. That is exact for a loss whose 'mean' gives
      every sample the same weight (e.g. plain cross-entropy on (N, C)); with class weights
      or ignore_index, use ``CrossEntropyLoss`` / ``NLLLoss``, whose ``per_sample`` is exact.
    - Equality and hash are by the identity of ``fn`` (and of ``backward``): two separately
      built ``functools.partial`` objects are different losses (and different jit keys).

    Args:
        fn: ``fn(output, target) -> loss``.
        backward: ``backward(grad_output, output, target) -> dL/d output``, or None.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> import fnn.functional as F
        >>> loss = nn.FunctionLoss(F.mse_loss)
        >>> x, y = jnp.array([1.0, 2.0]), jnp.zeros(2)
        >>> loss(x, y).tolist(), loss.backward(jnp.array(1.0), x, y).tolist(), loss.reduction
        (2.5, [1.0, 2.0], 'mean')
    """

    fn: Callable[..., Array]
    backward_fn: Callable[..., Array] | None

    def __init__(self, fn: Callable[..., Array], backward: Callable[..., Array] | None = None):
        if not callable(fn):
            raise TypeError(
                f"FunctionLoss needs a function fn(output, target) -> loss, got {type(fn).__name__}"
            )
        if backward is not None and not callable(backward):
            raise TypeError(
                "FunctionLoss backward must be a function backward(grad_output, output, "
                f"target), got {type(backward).__name__}"
            )
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "backward_fn", backward)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return other.fn is self.fn and other.backward_fn is self.backward_fn

    def __hash__(self) -> int:
        return hash((type(self), id(self.fn), id(self.backward_fn)))

    @property
    def reduction(self) -> str | None:
        """What ``fn(output, target)`` reduces with, as far as its signature says: the
        default of its ``reduction`` parameter (a partial's bound value), else None."""
        try:
            param = inspect.signature(self.fn).parameters.get("reduction")
        except (TypeError, ValueError):  # no signature (some builtins)
            return None
        return None if param is None or param.default is inspect.Parameter.empty else param.default

    def __call__(self, output: Array, target: Array) -> Array:
        return self.fn(output, target)

    def backward(self, grad_output: Array, output: Array, target: Array) -> Array:
        """dL/d output by the given backward, or by ``backward_of(fn)``; ValueError if neither.

        Args:
            grad_output: dL/d loss, a scalar for a reduced loss.
            output, target: as for ``__call__``.

        Returns:
            The gradient with respect to ``output``, of its shape.
        """
        return self._backward()(grad_output, output, target)

    def _backward(self) -> Callable[..., Array]:
        if self.backward_fn is not None:
            return self.backward_fn
        try:
            return backward_of(self.fn)
        except ValueError:
            raise ValueError(
                f"{_name(self.fn)} has no hand-derived backward, and grad='manual' needs the loss's "
                "hand-derived backward: FunctionLoss(fn, backward=fn_backward) with "
                "fn_backward(grad_output, output, target) -> grad wrt output"
            ) from None

    def per_sample(self, output: Array, target: Array) -> tuple[Array, Array]:
        """``(mean over non-batch dims of fn(output, target, reduction='none'), ones)``; see the class.

        Args:
            output: batched model output, samples on dim 0.
            target: the matching target.

        Returns:
            ``(loss_sum, weight)``, two arrays of shape (N,).
        """
        try:
            inspect.signature(self.fn).bind(output, target, reduction="none")
        except TypeError:
            raise TypeError(
                f"evaluation needs per-sample loss values, but {_name(self.fn)} takes no `reduction` "
                "argument: give it one (fn(output, target, reduction='none') returning the unreduced "
                "losses, samples on dim 0), or use an nn loss spec (e.g. nn.CrossEntropyLoss()), or "
                "subclass nn.Loss with per_sample(output, target) -> (loss_sum, weight)"
            ) from None
        except ValueError:
            pass  # no signature to inspect: try the call
        losses = jnp.asarray(self.fn(output, target, reduction="none"))
        axes = _batch_axes(losses, f"FunctionLoss({_name(self.fn)})")
        return jnp.mean(losses, axis=axes), jnp.ones(losses.shape[:1], losses.dtype)


def as_loss(obj: Loss | Callable[..., Array]) -> Loss:
    """A ``Loss`` for ``obj``: a ``Loss`` as is, a plain function wrapped in ``FunctionLoss``.

    ``F.cross_entropy`` or ``functools.partial(F.cross_entropy, label_smoothing=0.1)`` thus
    keep their manual backward (through ``backward_of``).

    Args:
        obj: a ``Loss`` instance or a function ``fn(output, target) -> loss``.

    Returns:
        A ``Loss``.

    Example:
        >>> import fnn.functional as F
        >>> from fnn import nn
        >>> nn.as_loss(nn.MSELoss())
        MSELoss(reduction='mean')
        >>> nn.as_loss(F.cross_entropy).fn is F.cross_entropy
        True
    """
    if isinstance(obj, Loss):
        return obj
    if isinstance(obj, type) and issubclass(obj, Loss):
        raise TypeError(
            f"as_loss needs a loss instance, got the class {obj.__name__}: write {obj.__name__}()"
        )
    if callable(obj):
        return FunctionLoss(obj)
    raise TypeError(
        f"as_loss needs an fnn.nn.Loss or a function fn(output, target) -> loss, got {type(obj).__name__}"
    )

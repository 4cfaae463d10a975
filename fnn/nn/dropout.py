"""Dropout (DROP-1..3) and Dropout2d (DROP2D-1..3): inverted dropout in training, identity in eval.

One mask path: ``apply_vjp`` draws the mask once (``F.dropout_mask``) and its pullback
multiplies by that same mask; the inherited ``backward`` runs ``apply_vjp`` and so draws
the same mask again from the same key. ``apply`` is ``F.dropout``, which draws it with the
same ``F.dropout_mask``, so all three agree for one key.
"""

from __future__ import annotations

from dataclasses import dataclass

from fnn import _checks
from fnn import functional as F
from fnn.functional.stochastic import _channel_mask_shape, _check_p
from fnn.nn.base import Layer

__all__ = ["Dropout", "Dropout2d"]


@dataclass(frozen=True)
class Dropout(Layer):
    """torch.nn.Dropout: inverted dropout in training, identity in eval (DROP-1..3).

    Zeroes each element with probability p and scales the rest by 1/(1−p) when
    ``train=True``; needs ``key`` then (unless p = 0). Forward and backward of one step
    must be given the same key (the backward redraws the forward's mask from it).

    Args:
        p: the probability of zeroing an element, in [0, 1] (default 0.5); p = 1 gives zeros.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> x = jnp.ones(8)
        >>> y, _ = nn.Dropout(0.5).apply({}, {}, x, key=jax.random.key(0), train=True)
        >>> sorted(set(y.tolist()))  # dropped, or kept and scaled by 1/(1 - p)
        [0.0, 2.0]
        >>> nn.Dropout(0.5).apply({}, {}, x, train=False)[0].tolist() == x.tolist()
        True
    """

    p: float = 0.5

    def __post_init__(self):
        _check_p(self.p)  # the same message as F.dropout (DROP-2)

    def _needs_key(self, key, train):
        if train and self.p > 0:
            _checks.check_key("key", key, "Dropout")

    def apply(self, params, state, x, *, key=None, train):
        self._needs_key(key, train)
        return F.dropout(x, key, self.p, training=train), state

    def apply_vjp(self, params, state, x, *, key=None, train):
        """Forward and pullback share one mask: the pullback does not draw it again, which
        would cost a second pass of the random generator that XLA does not merge.

        Args:
            params, state, x, key, train: as for ``apply``; ``key`` is needed when training
                with p > 0.

        Returns:
            ``(y, state, pullback)``, ``pullback(grad_y) -> ({}, grad_y * mask)``.
        """
        self._needs_key(key, train)
        _checks.check_floating("input", x)  # as F.dropout checks in apply
        if not train or self.p == 0:
            mask = None  # identity, gradient ones (DROP-2)
        else:
            mask = F.dropout_mask(key, x.shape, self.p, x.dtype)  # p = 1: zeros, never NaN (DROP-2)

        def pullback(grad_y):
            # as F.dropout_backward: a mis-shaped grad_y must not broadcast against the mask
            _checks.check_same_shape("grad_y", grad_y, "x", x)
            return {}, (grad_y if mask is None else grad_y * mask)

        return (x if mask is None else x * mask), state, pullback


@dataclass(frozen=True)
class Dropout2d(Dropout):
    """torch.nn.Dropout2d: zeroes whole channels in training, identity in eval (DROP2D-1..3).

    Each channel x[n, c] of an (N, C, H, W) input is zeroed with probability p and the kept
    ones are scaled by 1/(1−p) when ``train=True`` (``F.dropout2d``); needs ``key`` then
    (unless p = 0). A 3-D input is read as (N, C, L) with a warning, as torch 2.13 does
    (DROP2D-3). Forward and backward of one step must be given the same key.

    Args:
        p: the probability of zeroing a channel, in [0, 1] (default 0.5).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> x = jnp.ones((1, 8, 2, 2))
        >>> y, _ = nn.Dropout2d(0.5).apply({}, {}, x, key=jax.random.key(0), train=True)
        >>> y[0, :, 0, 0].tolist() == y[0, :, 1, 1].tolist(), sorted(set(y.ravel().tolist()))
        (True, [0.0, 2.0])
    """

    def _needs_key(self, key, train):
        if train and self.p > 0:
            _checks.check_key("key", key, "Dropout2d")

    def apply(self, params, state, x, *, key=None, train):
        self._needs_key(key, train)
        return F.dropout2d(x, key, self.p, training=train), state

    def apply_vjp(self, params, state, x, *, key=None, train):
        """Forward and pullback share one channel mask (drawn once, as ``Dropout.apply_vjp``).

        Args:
            params, state, x, key, train: as for ``apply``.

        Returns:
            ``(y, state, pullback)``, ``pullback(grad_y) -> ({}, grad_y * mask)``.
        """
        self._needs_key(key, train)
        _checks.check_floating("input", x)
        mask_shape = _channel_mask_shape(x, "Dropout2d")
        if not train or self.p == 0:
            mask = None  # identity, gradient ones (DROP2D-2)
        else:
            mask = F.dropout_mask(key, mask_shape[:2], self.p, x.dtype).reshape(mask_shape)

        def pullback(grad_y):
            _checks.check_same_shape("grad_y", grad_y, "x", x)
            return {}, (grad_y if mask is None else grad_y * mask)

        return (x if mask is None else x * mask), state, pullback

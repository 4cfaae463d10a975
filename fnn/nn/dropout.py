"""Dropout layer (DROP-1..3): inverted dropout in training, identity in eval."""
from __future__ import annotations

from dataclasses import dataclass

from fnn import _checks
from fnn import functional as F
from fnn.functional.dropout import _check_p
from fnn.nn.base import Layer


@dataclass(frozen=True)
class Dropout(Layer):
    """Zeroes each element with probability p and scales the rest by 1/(1−p) when
    ``train=True``; needs ``key`` then (unless p = 0). The backward regenerates the same
    mask from the same key, so forward and backward must be given the same key."""
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
        """Forward and pullback sharing one mask: drawing it again in the backward (as
        ``backward`` must) costs a second pass of the random generator, which XLA does
        not merge with the first."""
        self._needs_key(key, train)
        if not train or self.p == 0:
            return x, state, lambda grad_y: ({}, grad_y)
        mask = F.dropout_mask(key, x.shape, self.p, x.dtype)
        return x * mask, state, lambda grad_y: ({}, grad_y * mask)

    def backward(self, params, state, x, grad_y, *, key=None, train):
        self._needs_key(key, train)
        return {}, F.dropout_backward(grad_y, x, key, self.p, training=train)

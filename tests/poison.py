"""A test layer that makes one chosen training step non-finite, shared by the divergence
tests of fnn.train and of the monitors (not a test module: pytest collects nothing here)."""

from dataclasses import dataclass

import jax.numpy as jnp

from fnn import nn


@dataclass(frozen=True)
class PoisonAt(nn.Layer):
    """Counts training steps in its state and multiplies by NaN at step `at` (0-based);
    in eval mode it is the identity and counts nothing."""

    at: int

    def init(self, key):
        return {}, {"count": jnp.zeros((), jnp.int32)}

    def apply(self, params, state, x, *, key=None, train):
        y, new_state, _ = self.apply_vjp(params, state, x, key=key, train=train)
        return y, new_state

    def apply_vjp(self, params, state, x, *, key=None, train):
        if not train:
            return x, state, lambda g: ({}, g)
        factor = jnp.where(state["count"] == self.at, jnp.nan, 1.0)
        return x * factor, {"count": state["count"] + 1}, lambda g: ({}, g * factor)

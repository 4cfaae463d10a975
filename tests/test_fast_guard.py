"""fnn._fast.guard: the divergence guard's CPU form (a lax.cond around the update) and its
plain form (a where per leaf) both equal the definition: the new leaf where ok, else the old."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn._fast.guard import keep_if, select

NEW = {"w": np.array([[np.nan, 1.0], [2.0, np.inf]], np.float32), "n": np.int32(7), "flag": np.array([True])}
OLD = {"w": np.array([[0.5, -1.0], [3.0, 4.0]], np.float32), "n": np.int32(6), "flag": np.array([False])}


@pytest.mark.parametrize("form", ["keep_if", "select"])
@pytest.mark.parametrize("ok", [True, False])
def test_both_forms_pick_whole_pytrees_bit_for_bit(ok, form):
    guard = (lambda g, n, o: keep_if(g, lambda: n, o)) if form == "keep_if" else select
    got = jax.jit(guard)(jnp.asarray(ok), jax.tree.map(jnp.asarray, NEW), jax.tree.map(jnp.asarray, OLD))
    want = NEW if ok else OLD  # the definition, in numpy: NaNs, infs and ints included
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == np.asarray(w).dtype and g.shape == np.shape(w)
        np.testing.assert_array_equal(np.asarray(g), w)


def test_keep_if_does_not_run_the_update_on_a_rejected_step_on_the_cpu():
    # The CPU form is a cond: the update's side of the program is not taken when ok is False.
    calls = []

    def update():
        jax.debug.callback(lambda: calls.append(1))
        return jnp.ones(2)

    jax.jit(lambda ok: keep_if(ok, update, jnp.zeros(2)))(jnp.asarray(False)).block_until_ready()
    assert calls == [] if jax.default_backend() == "cpu" else True

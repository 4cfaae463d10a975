"""F.one_hot: torch's semantics (int indicators, inferred class count), errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import functional as F


def test_one_hot_values_and_inference():
    np.testing.assert_array_equal(F.one_hot(jnp.array([0, 2, 1]), 3), [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert F.one_hot(jnp.array([[1], [3]])).shape == (2, 1, 4)  # inferred: max + 1
    assert F.one_hot(jnp.array([1]), 5).dtype == jnp.int32


def test_one_hot_under_jit_needs_num_classes():
    np.testing.assert_array_equal(jax.jit(lambda t: F.one_hot(t, 4))(jnp.array([3])), [[0, 0, 0, 1]])
    with pytest.raises(ValueError, match="num_classes=-1 needs concrete"):
        jax.jit(F.one_hot)(jnp.array([3]))


def test_one_hot_bad_input():
    with pytest.raises(TypeError, match="integer dtype"):
        F.one_hot(jnp.array([1.0]))
    with pytest.raises(ValueError, match=r"values must be in \[0, 3\), got 3"):
        F.one_hot(jnp.array([0, 3]), 3)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        F.one_hot(jnp.array([0]), 0)

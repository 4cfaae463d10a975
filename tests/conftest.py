"""Shared fixtures. x64 is switched on only inside tests that ask for it."""

import jax
import pytest


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (jax.enable_x64 context)."""
    with jax.enable_x64(True):
        yield

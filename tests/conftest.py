"""Shared fixtures. x64 is switched on only inside tests that ask for it."""

import jax
import pytest


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (jax.enable_x64 context)."""
    with jax.enable_x64(True):
        yield


# The fixture generators import torch, which the test environment deliberately lacks; they are
# scripts, not test modules, so --doctest-modules must not import them.
collect_ignore_glob = ["torch_reference/*.py"]

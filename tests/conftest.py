"""Shared fixtures (x64 is switched on only inside tests that ask for it), and one
compilation cache for the whole run.

Most of the suite's time is XLA compiling, and the same program (an eager op at a given
shape, a toy model's epoch) is compiled by both pytest-xdist workers and by tests in
different files. JAX's persistent cache, in a directory of this run, lets a worker load a
program that either worker compiled before instead of compiling it again (the scripts that
tests start as subprocesses compile on their own). A hit is the executable the miss
compiled, so no result changes. The directory is new for each run and removed at its end:
a run never reads programs from an earlier one. To keep compiled programs between runs of
a working loop, set FNN_TEST_JAX_CACHE to a directory of your own (JAX's key holds the
jax version, the XLA flags and the program, so an entry never serves another program).
"""

import os
import shutil
import tempfile

_CACHE_ENV = "FNN_TEST_JAX_CACHE"
if _CACHE_ENV in os.environ:
    _OWN_CACHE = None  # the user's directory, or this run's, made by the xdist controller
else:  # the controller (or a run without xdist): its workers inherit the variable
    _OWN_CACHE = os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="fnn-test-jax-cache-")

import jax  # noqa: E402
import pytest  # noqa: E402

# Every program, however small: an eager op compiles in tens of milliseconds and loads in one.
jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (jax.enable_x64 context)."""
    with jax.enable_x64(True):
        yield


# The fixture generators import torch, which the test environment deliberately lacks; they are
# scripts, not test modules, so --doctest-modules must not import them.
collect_ignore_glob = ["torch_reference/*.py"]

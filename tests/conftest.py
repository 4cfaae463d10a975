"""Shared fixtures (x64 is switched on only inside tests that ask for it), and the compiled
programs shared between tests, workers and runs.

Most of the suite's time is XLA compiling, and the same program (an eager op at a given
shape, a toy model's epoch) is compiled by both pytest-xdist workers, by tests in different
files, and again by the next run of a working loop. JAX's persistent compilation cache lets
a process load a program compiled before instead of compiling it again. A hit is the
executable the miss compiled, and JAX's key holds the jax and jaxlib versions, the XLA
flags and the whole program, so an entry never serves another program: no result changes.

The cache lives in pytest's cache directory (.pytest_cache/d/jax-compilation-cache, kept
between runs, emptied by ``pytest --cache-clear``; a fresh clone starts with none). Without
pytest's cache (``-p no:cacheprovider``) the run gets a directory of its own, shared by its
workers and removed at its end. FNN_TEST_JAX_CACHE=DIR puts it in DIR instead, and
FNN_TEST_JAX_CACHE=off compiles everything in every process. The scripts that tests start
as subprocesses compile on their own.
"""

import os
import shutil
import tempfile

import jax
import pytest

_CACHE_ENV = "FNN_TEST_JAX_CACHE"
_MAX_BYTES = 2 << 30  # a cache kept between runs is emptied when it grows past 2 GiB
_own_cache = None  # the directory this process made for its run, removed at the end


def _cache_dir(config):
    global _own_cache
    chosen = os.environ.get(_CACHE_ENV)
    if chosen:
        return None if chosen == "off" else chosen
    if getattr(config, "cache", None) is not None:
        path = config.cache.mkdir("jax-compilation-cache")
        if "PYTEST_XDIST_WORKER" not in os.environ:  # the controller, before its workers start
            size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
            if size > _MAX_BYTES:
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir()
        return str(path)
    # No pytest cache: a directory for this run; the workers inherit the variable.
    _own_cache = os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="fnn-test-jax-cache-")
    return _own_cache


def pytest_configure(config):
    path = _cache_dir(config)
    if path is not None:
        jax.config.update("jax_compilation_cache_dir", path)
        # Every program, however small: an eager op compiles in tens of milliseconds, loads in one.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
    if _own_cache is not None:
        shutil.rmtree(_own_cache, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """--dist loadgroup on pytest >= 9.2: keep each xdist_group on one worker.

    xdist tells its scheduler a test's group by appending "@group" to the test's id, which it
    does by setting ``item._nodeid``; pytest 9.2 keeps the id in ``item._id`` instead, so the
    suffix is lost and a group's tests (and its module-scoped fixture, a CLI run or a training
    run) are spread over every worker (pytest-dev/pytest-xdist#1386). This appends the suffix
    the same way in the new field, on the workers only, and does nothing where xdist did it.
    """
    if not (hasattr(config, "workerinput") and config.getvalue("loadgroup")):
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})  # fmt: skip
        suffix = "@" + "_".join(groups)
        if groups and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            item._id = type(item._id).parse(item.nodeid + suffix)


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (jax.enable_x64 context)."""
    with jax.enable_x64(True):
        yield


# The fixture generators import torch, which the test environment deliberately lacks; they are
# scripts, not test modules, so --doctest-modules must not import them.
collect_ignore_glob = ["torch_reference/*.py"]

"""The divergence guard, computed without copies on the CPU.

``keep_if(ok, update, old)`` equals ``jax.tree.map(lambda n, o: jnp.where(ok, n, o),
update(), old)``, leaf by leaf and bit for bit (``tests/test_fast_guard.py`` proves it on the
CPU for both forms). ``update`` is a function, so that on the CPU the update runs inside a
``lax.cond`` on the one scalar: the taken branch writes the new arrays straight into the
step's output buffers, and a rejected step passes the old ones through. Off the CPU the
per-leaf ``where`` is the faster form (a GPU conditional waits for its predicate on the
host; the selects fuse into the update for free). ``platform_dependent`` picks one when
the step is lowered. experiments/README.md ("The divergence guard") has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["keep_if", "select"]


def keep_if(ok: jax.Array, update: Callable[[], Any], old: Any) -> Any:
    """``update()`` where ``ok``, else ``old``: whole pytrees of the same structure.

    Args:
        ok: a scalar bool.
        update: computes the new pytree.
        old: the pytree to keep when ``ok`` is False.

    Returns:
        A pytree of ``old``'s structure.
    """

    def on_cpu():
        return jax.lax.cond(ok, update, lambda: old)

    return jax.lax.platform_dependent(cpu=on_cpu, default=lambda: select(ok, update(), old))


def select(ok: jax.Array, new: Any, old: Any) -> Any:
    """The guard's plain form: ``jnp.where(ok, new, old)`` on every leaf.

    Args:
        ok: a scalar bool.
        new, old: pytrees of the same structure.

    Returns:
        ``new`` where ``ok``, else ``old``.
    """
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

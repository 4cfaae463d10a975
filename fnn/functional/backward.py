"""Find the hand-derived backward of a functional op: ``backward_of(F.cross_entropy)``.

Used wherever a loss is given as a plain function and its manual gradient is needed
(``fnn.train`` with ``grad='manual'``, ``fnn.gradcheck.check_model``). Resolution order:

1. a ``backward`` attribute on the function itself (how a user-defined loss opts in);
2. ``functools.partial(F.op, **kw)`` -> ``functools.partial(F.op_backward, **kw)``;
3. the ``<name>_backward`` beside the op in ``fnn.functional``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable


def backward_of(fn: Callable) -> Callable:
    """The hand-derived backward of a loss function, in the resolution order above.

    Args:
        fn: an ``fnn.functional`` op, a ``functools.partial`` of one with its options bound
            by keyword, or any function with a ``backward`` attribute.

    Returns:
        ``backward(grad_output, *fn's arguments)``: the op's ``*_backward``, with the
        partial's keywords bound the same way.

    Raises:
        TypeError: a partial binds options by position.
        ValueError: no manual backward is known for ``fn``.

    Example:
        >>> import functools
        >>> import fnn.functional as F
        >>> backward_of(F.mse_loss) is F.mse_loss_backward
        True
        >>> backward_of(functools.partial(F.cross_entropy, label_smoothing=0.1)).keywords
        {'label_smoothing': 0.1}
    """
    custom = getattr(fn, "backward", None)
    if callable(custom):
        return custom
    if isinstance(fn, functools.partial):
        if fn.args:
            raise TypeError(
                "backward_of: bind a partial loss's options by keyword "
                f"(got positional arguments {fn.args!r}), so that the backward "
                "can take the same ones after grad_output"
            )
        return functools.partial(backward_of(fn.func), **fn.keywords)
    from fnn import functional as F  # the package imports this module; resolve lazily

    name = getattr(fn, "__name__", repr(fn))
    found = getattr(F, f"{name}_backward", None)
    if found is None or getattr(F, name, None) is not fn:
        raise ValueError(
            f"no manual backward known for {name!r}: use an fnn.functional op, "
            "or set `fn.backward = f_backward(grad_output, input, target)`"
        )
    return found

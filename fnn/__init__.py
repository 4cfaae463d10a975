"""fnn: the foundations of neural networks as pure, jit-compiled JAX functions.

``import fnn`` loads every public module, so ``fnn.data.mnist``, ``fnn.nn.Linear`` or
``fnn.train.fit`` work without further imports.
"""

from fnn import (
    autograd,
    checkpoint,
    classic,
    data,
    diagnostics,
    distributed,
    functional,
    gradcheck,
    init,
    models,
    nn,
    optim,
    train,
)

__version__ = "0.1.0"
__all__ = [
    "autograd",
    "checkpoint",
    "classic",
    "data",
    "diagnostics",
    "distributed",
    "functional",
    "gradcheck",
    "init",
    "models",
    "nn",
    "optim",
    "train",
]

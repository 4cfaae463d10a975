"""fnn: the foundations of neural networks as pure, jit-compiled JAX functions."""
__version__ = "0.1.0"

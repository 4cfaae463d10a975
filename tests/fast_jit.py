"""jax.jit for the tests' own comparison programs, compiled without XLA:CPU's slow passes.

A test that puts both sides of a comparison in one program (a manual backward and jax.vjp
of the forward, a fast mask and its definition, finite differences) spends most of its time
in XLA:CPU compiling it: about a second for a small float64 program, a fifth of that without
the fusion emitters and LLVM's optimizations. Both sides are compiled the same way, the
float64 results agree to rounding (integer results exactly), and every tolerance is the one
the test had. fnn's own compiled programs (train steps, epochs, evaluate) and the programs
whose compiled form a test inspects or times against another are compiled as users compile
them, with plain jax.jit.
"""

import jax

FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_cpu_use_fusion_emitters": False,
    "xla_llvm_disable_expensive_passes": True,
}


def fast_jit(fn=None, **jit_kwargs):
    """``jax.jit(fn, compiler_options=FAST_COMPILE, ...)`` on CPU (plain jax.jit elsewhere);
    usable as a decorator with or without arguments."""
    if fn is None:
        return lambda f: fast_jit(f, **jit_kwargs)
    options = FAST_COMPILE if jax.default_backend() == "cpu" else None
    return jax.jit(fn, compiler_options=options, **jit_kwargs)

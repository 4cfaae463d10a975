"""fnn.diagnostics: per-layer monitors inside the compiled epoch (and, on top of them, the
course's rules, the LR range test and the HTML run report)."""

from fnn.diagnostics.monitors import Monitor

__all__ = ["Monitor"]

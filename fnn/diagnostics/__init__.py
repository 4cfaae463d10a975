"""fnn.diagnostics: what the course would diagnose in a run (monitors, rules, the LR range
test, the HTML report)."""

from fnn.diagnostics.lr_find import LRFindResult, lr_find

__all__ = [
    "LRFindResult",
    "lr_find",
]

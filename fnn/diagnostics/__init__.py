"""fnn.diagnostics: what the course would diagnose in a run (monitors, rules, the LR range
test, the HTML report)."""

from fnn.diagnostics.report import write_report

__all__ = [
    "write_report",
]

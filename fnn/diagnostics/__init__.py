"""fnn.diagnostics: what the course would diagnose in a run (monitors, rules, the LR range
test, the HTML report)."""

from fnn.diagnostics.lr_find import LRFindResult, lr_find
from fnn.diagnostics.probes import Probe
from fnn.diagnostics.report import write_report
from fnn.diagnostics.rules import RULES, Diagnosis, Rule, diagnose, format_diagnosis

__all__ = [
    "RULES",
    "Diagnosis",
    "LRFindResult",
    "Probe",
    "Rule",
    "diagnose",
    "format_diagnosis",
    "lr_find",
    "write_report",
]

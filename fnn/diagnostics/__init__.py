"""fnn.diagnostics: what the course would diagnose in a run.

``Probe`` collects per-layer statistics inside the compiled epoch (``fit(probe=True)``),
``diagnose`` applies the course's rules to a history, ``lr_find`` runs the LR range test and
``write_report`` writes a run's one-file HTML report; ``svg`` draws its figures.
"""

from fnn.diagnostics import probes, report, rules, svg
from fnn.diagnostics.probes import Probe
from fnn.diagnostics.range_test import LRFindResult, lr_find
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
    "probes",
    "report",
    "rules",
    "svg",
    "write_report",
]

"""fnn.diagnostics: the course's rules, with remedies, on a training history."""

from fnn.diagnostics.rules import RULES, Diagnosis, Rule, diagnose, format_diagnosis

__all__ = [
    "RULES",
    "Diagnosis",
    "Rule",
    "diagnose",
    "format_diagnosis",
]

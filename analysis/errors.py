"""Errors and warnings raised by the analysis.

Bad pieces of input (one corrupt record, a NaN score, a task too short to fit) are
reported with `AnalysisWarning` and left out of the affected fit; only "nothing usable
at all" is an `AnalysisError`, so one bad run never sinks a whole report.
"""

from __future__ import annotations

import warnings


class AnalysisError(RuntimeError):
    """No usable data (or an unusable configuration): the analysis cannot proceed."""


class AnalysisWarning(UserWarning):
    """A piece of input was skipped or a quantity could not be fitted."""


def warn(message: str) -> None:
    """Emit an `AnalysisWarning` (one line, naming the bad thing)."""
    warnings.warn(message, AnalysisWarning, stacklevel=3)

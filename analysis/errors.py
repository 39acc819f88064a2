"""Errors and warnings raised by the analysis.

Bad pieces of input (one corrupt record, a NaN score, a task too short to fit) are
reported with `AnalysisWarning` and left out of the affected fit; only "nothing usable
at all" is an `AnalysisError`, so one bad run never sinks a whole report.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


class AnalysisError(RuntimeError):
    """No usable data (or an unusable configuration): the analysis cannot proceed."""


class AnalysisWarning(UserWarning):
    """A piece of input was skipped or a quantity could not be fitted."""


def warn(message: str) -> None:
    """Emit an `AnalysisWarning` (one line, naming the bad thing)."""
    warnings.warn(message, AnalysisWarning, stacklevel=3)


def print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A `warnings.showwarning` that prints one line, `warning: <message>`, on stderr: the
    analysis's warnings name the bad thing themselves, so the Python source line that
    raised them is noise (other categories keep their name: `warning: <message> (<Kind>)`)."""
    kind = "" if issubclass(category, AnalysisWarning) else f" ({category.__name__})"
    text = " ".join(str(message).split())  # one line whatever the message holds
    print(f"warning: {text}{kind}", file=file or sys.stderr)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Every warning raised inside prints as `print_warning` does (the previous handler
    comes back on exit)."""
    with warnings.catch_warnings():
        warnings.showwarning = print_warning
        yield

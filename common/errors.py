"""Errors a user can fix: each message is one line naming the bad key and value.

Shared by every layer (train, eval, harness); the CLI prints the message and exits 2.
"""


class HarnessError(Exception):
    """Bad input or an unusable artifact; the CLI prints the message and exits non-zero."""


class ConfigError(HarnessError):
    """A config key holds a value the harness cannot use."""


class DataError(HarnessError):
    """A data source is missing, empty or unreadable."""


class RecordError(HarnessError, ValueError):
    """A run record (record.json) does not match the RunRecord schema. A ValueError too, so a
    reader that skips malformed input (analysis) needs no harness-specific except clause."""

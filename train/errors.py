"""Errors a user can fix: each message is one line naming the bad key and value."""


class HarnessError(Exception):
    """Bad input or an unusable artifact; the CLI prints the message and exits non-zero."""


class ConfigError(HarnessError):
    """A config key holds a value the harness cannot use."""


class DataError(HarnessError):
    """A data source is missing, empty or unreadable."""

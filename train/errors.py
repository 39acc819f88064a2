"""Kept for old imports: the errors live in common/errors.py, shared by every layer."""

from common.errors import ConfigError, DataError, HarnessError, RecordError

__all__ = ["ConfigError", "DataError", "HarnessError", "RecordError"]

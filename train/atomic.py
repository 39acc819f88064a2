"""Kept for old imports: atomic writes live in common/atomic.py, shared by every layer."""

from common.atomic import atomic_path, shareable, write_json, write_text

__all__ = ["atomic_path", "shareable", "write_json", "write_text"]

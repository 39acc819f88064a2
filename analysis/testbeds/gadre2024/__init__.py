"""The gadre2024 testbed: its shipped data, and the loader beside it (loader.py)."""

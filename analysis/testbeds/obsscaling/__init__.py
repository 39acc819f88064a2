"""The obsscaling testbed: its shipped data, and the loader beside it (loader.py)."""

"""Utilities every layer may import: errors, atomic writes, logging. Standard library only."""

"""Validation losses over named sets, the lm-eval adapter and the project's own tasks."""

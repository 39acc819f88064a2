"""Scaling-law analysis over run records and imported testbeds (no torch, no Hydra)."""

"""Orchestration: Hydra configs -> plain dataclasses, run identity, run store, launch, skip."""

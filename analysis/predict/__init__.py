"""Predictions a researcher can bet on: predictors of a larger model's task accuracy, their
calibrated intervals, rolling-origin backtests on every testbed, and `harness predict`
(docs/ARCHITECTURE.md, README "Predictions")."""

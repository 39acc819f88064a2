"""Stage 5, report: report.md rendered from `AnalysisResults`, the figures (drawn from the
written tables, so `harness plot` redraws them) and the several-testbed summary."""

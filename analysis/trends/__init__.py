"""Stage 3b, trends: the rule-based trend categories, their calibration against published
labels, the points comparison and the run-to-run spread."""

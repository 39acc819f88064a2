"""Stage 1, ingest: the analysis table (its contract, row constructors and `validate`), the
harness run records, and the x-axes and points. Imports nothing above it."""

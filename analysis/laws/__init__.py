"""Stage 3a, laws: loss and downstream law fits, their quality flags, and the extrapolation
backtests (leave-largest-out, Gadre's protocol, the OLMo two-step prediction)."""

"""Task suites: lm-eval YAML variant definitions (core/) and how include paths are prepared."""

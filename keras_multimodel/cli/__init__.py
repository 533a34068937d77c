"""The command line's jobs: `train`, `evaluate` and `predict` on the bundled tasks."""

"""The Optuna study: storage, samplers, constraints, the objective and the CLI wiring."""

"""Classical baselines: fixed hand-engineered features and a linear classifier, run like any model."""

"""Evaluation and interpretation of trained models: reports, figures, TensorBoard images."""

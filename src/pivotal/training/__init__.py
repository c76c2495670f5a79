"""Supervised training: labels, splits, the trainer, checkpoints, evaluation, search."""

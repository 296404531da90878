"""Evaluation: the OOF merge and ordinal thresholds, CV reports and plots, local scoring, and the
pipeline benchmark."""

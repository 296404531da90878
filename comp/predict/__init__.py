"""Prediction: TTA views, checkpoints × folds × runs → one submission CSV."""

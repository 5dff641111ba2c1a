"""Plain PyTorch: models, data, the training loop and the per-trial recipe (Ray only in trial.py)."""

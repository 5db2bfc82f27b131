"""Training engine: the loop (trainer.py), lr schedule, checkpoints, run records, distributed set-up, W&B."""

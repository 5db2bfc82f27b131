"""The Optuna sweeper of configs/hparams_search/ (a Hydra plugin: Hydra loads them from the hydra_plugins package)."""

"""Hydra plugins of resnet_repro (Hydra loads plugins only from the hydra_plugins namespace package)."""

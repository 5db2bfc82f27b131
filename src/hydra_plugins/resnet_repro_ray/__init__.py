"""The Ray launcher of configs/launcher/ray.yaml (a Hydra plugin: Hydra loads them from the hydra_plugins package)."""

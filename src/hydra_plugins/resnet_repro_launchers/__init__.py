"""What the launchers of this project share (a plain package: it holds no Hydra plugin)."""

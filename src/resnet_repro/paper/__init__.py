"""The paper's numbers (copied from the paper into CSV files beside this module), as pandas tables."""

from importlib.resources import files

import pandas as pd


def load_table(name: str) -> pd.DataFrame:
    """Read one of the paper's CSV files: cifar10_table6, imagenet_table1_flops, imagenet_tables, peers."""
    return pd.read_csv(files(__package__) / f"{name}.csv")

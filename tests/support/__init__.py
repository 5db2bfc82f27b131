"""What only the tests need: a real single-node SLURM cluster, tiny-run configs, fake data sets, run-record readers.

Imported as ``support`` (tests/ is on sys.path: pytest puts the folder of the rootdir conftest there)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

"""What only the tests need: a real single-node SLURM cluster, tiny-run configs, fake data sets, run-record readers.

Imported as ``support`` (tests/ is on sys.path: pytest puts the folder of the rootdir conftest there)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Where the tests find Fashion-MNIST: the Debian package's folder, or another one named by this variable (make
# gpu-check sets it from --fashion-mnist on machines where the package cannot be installed).
FASHION_MNIST_ENV = "RESNET_REPRO_FASHION_MNIST"
FASHION_MNIST_DIR = Path(os.environ.get(FASHION_MNIST_ENV) or "/usr/share/datasets/fashion-mnist")

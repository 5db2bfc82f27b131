"""Shared fixtures. System-dependent fixtures go through ``require_system``: they skip when a system package is
missing, or fail when RESNET_REPRO_FAIL_ON_SKIP=1 (CI). Helpers that are plain functions live in tests/support/."""

from pathlib import Path

import pytest

from support import FASHION_MNIST_DIR
from support.system import require_system

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM cluster (partition ``debug``, 2 CPUs), stopped at the end of the session.

    A cluster already started with ``scripts/slurm_cluster.py start`` is reused and left running."""
    from support.slurm_cluster import SlurmCluster

    ok, reason = SlurmCluster.available()
    require_system(ok, f"SLURM not available: {reason}")
    with SlurmCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """Folder with the 4 Fashion-MNIST idx .gz files (Debian package dataset-fashion-mnist, or the folder named by
    RESNET_REPRO_FASHION_MNIST)."""
    present = all((FASHION_MNIST_DIR / f).is_file() for f in FASHION_MNIST_FILES)
    require_system(
        present,
        f"Fashion-MNIST not in {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist, or name a folder with its "
        f"four idx .gz files in RESNET_REPRO_FASHION_MNIST",
    )
    return FASHION_MNIST_DIR


@pytest.fixture
def fake_cifar10(tmp_path, monkeypatch) -> tuple[Path, dict[str, str]]:
    """A small fake CIFAR-10 (250 training, 100 test images) in tmp_path/"cifar10", in torchvision's layout, and its
    MD5 table, which this test's torchvision checks the files against (tests/support/fake_data.py; for a subprocess,
    pass the table with fake_data.write_md5_table and start it with fake_data.cifar10_command)."""
    from support.fake_data import make_fake_cifar10, patch_cifar10_md5

    root = tmp_path / "cifar10"
    md5 = make_fake_cifar10(root)
    patch_cifar10_md5(monkeypatch, md5)
    return root, md5


@pytest.fixture
def fake_cifar100(tmp_path, monkeypatch) -> tuple[Path, dict[str, str]]:
    """A small fake CIFAR-100 (300 training, 100 test images) in tmp_path/"cifar100", in the official layout (train,
    test, meta; fine labels), with torchvision's MD5 table patched to accept it for this test."""
    from support.fake_data import make_fake_cifar100, patch_cifar100_md5

    root = tmp_path / "cifar100"
    md5 = make_fake_cifar100(root)
    patch_cifar100_md5(monkeypatch, md5)
    return root, md5

"""Shared fixtures. System-dependent fixtures go through ``require_system``: they skip when a system package is
missing, or fail when RESNET_REPRO_FAIL_ON_SKIP=1 (CI). Helpers that are plain functions live in tests/support/."""

import os
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


# make test runs the suite on 2 pytest-xdist workers. The modules whose tests start SLURM or Ray daemons run on one
# worker, one test after another: two clusters at once would fight over ports, munge and the SLURM state folders, and
# one cluster's clean-up would cancel the other's jobs. (A scheduler of our own, not xdist_group marks: xdist 3.8's
# --dist loadgroup renames node ids in a way pytest 9 ignores, so its groups are silently split.)
CLUSTER_MODULES = {
    "test_cluster_commands",
    "test_hparams_search",
    "test_ray_sweeps",
    "test_slurm_cluster",
    "test_slurm_sweeps",
}


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ClusterModulesOnOneWorker(LoadScopeScheduling):
        """Every test its own unit of work (as --dist load), except the cluster modules' tests: one unit together."""

        def _split_scope(self, nodeid: str) -> str:
            return "cluster" if Path(nodeid.split("::")[0]).stem in CLUSTER_MODULES else nodeid

    return ClusterModulesOnOneWorker(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Under xdist, the slow tests first (in their order otherwise): the last tests to start are then short ones, and
    a worker does not idle for the minute of the main job's smoke profile after the other has finished."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config):
    """One torch thread per xdist worker, in the tests and the processes they start: two workers on two cores, not
    four threads fighting over them. Outside xdist (a single test, a debugger) torch keeps its default."""
    if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)

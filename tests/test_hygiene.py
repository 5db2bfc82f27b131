"""The repository speaks only of itself: no tracked file names a path outside it (a home, work or temporary folder of
some machine). The system paths that the product itself uses are allowed by name, in a short list."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from support.checkout import repository_files

REPO = Path(__file__).resolve().parents[1]

# Absolute paths the product uses on any machine; everything else outside the repository is a finding.
ALLOWED = (
    "/usr/bin/env",  # shebangs
    "/usr/share/datasets/fashion-mnist",  # where the Debian package dataset-fashion-mnist installs the data set
    "/etc/slurm",  # SLURM's standard configuration folder (cluster docs, the test cluster)
    "/dev/null",
    "/dev/full",  # Linux's device whose every write fails with ENOSPC (the tests of a full disk)
    "/proc",  # Linux process information (memory measurements, the test cluster's process checks)
    "/bin/true",
    "/usr/sbin",
    "/usr/local/sbin",  # the test cluster: a no-op mailer, where SLURM daemons install
    "/path/to",  # placeholder in examples
    "/hydra",  # not a file: Hydra's config group of launchers (`override /hydra/launcher: ...`)
)
# A single component is a finding only for these roots ("/model" in a Hydra override is not a path).
FOREIGN_ROOTS = {"work", "tmp", "root", "home", "Users", "mnt", "scratch", "private", "nfs", "gpfs", "lustre"}
# An absolute path starts after a space, quote, bracket, '=' or the line start: not inside a relative path
# (a/b), a URL (https://x/y), a home path (~/x), or a variable ($(VENV)/bin, ${root}/x, <run>/x).
ABSOLUTE = re.compile(r"(?<![\w.~$})\]*/:>%<@-])/[A-Za-z_.][\w.@+-]*(?:/[\w.@+-]*)*")


def foreign_paths(text: str) -> list[tuple[int, str]]:
    """(line number, path) of every absolute path in `text` that lies outside the repository and is not allowed."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for m in ABSOLUTE.finditer(line):
            path = m.group(0).rstrip(".,:;")
            parts = [p for p in path.split("/") if p]
            if len(parts) < 2 and parts[0] not in FOREIGN_ROOTS:
                continue
            if any(path == a or path.startswith(a + "/") for a in ALLOWED):
                continue
            found.append((number, path))
    return found


def scan(repo: Path) -> list[str]:
    """'file:line: path' for each foreign path in the repository's text files."""
    findings = []
    for path in repository_files(repo):
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):  # deleted in the work tree, or a submodule
            continue
        if b"\0" in data[:8192]:
            continue  # binary (figures, PDFs)
        text = data.decode("utf-8", errors="replace")
        findings += [f"{path.relative_to(repo)}:{n}: {p}" for n, p in foreign_paths(text)]
    return findings


def test_no_tracked_file_names_a_path_outside_the_repository():
    findings = scan(REPO)
    assert not findings, (
        "paths outside the repository (use a relative path, a placeholder such as /path/to/, or "
        "add a system path the product needs to ALLOWED):\n" + "\n".join(findings)
    )


def _p(*parts: str) -> str:
    """An absolute path built at run time, so that this file itself holds none."""
    return "/" + "/".join(parts)


@pytest.mark.parametrize(
    "line",
    [
        f"see {_p('work', 'shared', 'NOTES.md')} for the recipe",
        f'DEFAULT = Path("{_p("tmp", "resnet-repro-x")}")',
        f"data.root={_p('home', 'someone', 'cifar10')}",
        f"`{_p('Users', 'someone', 'data')}`",
        f"cd {_p('root')}",
        f"DATA={_p('datasets', 'imagenet')}",
    ],
)
def test_a_foreign_path_is_found(line):
    assert [p for _, p in foreign_paths(line)], line


@pytest.mark.parametrize(
    "line",
    [
        "#!/usr/bin/env python",
        "root: /usr/share/datasets/fashion-mnist",
        "configs in /etc/slurm/slurm.conf",
        "cmd > /dev/null 2>&1",
        "make reproduce-imagenet DATA=/path/to/imagenet",
        "  - override /hydra/launcher: basic",
        "  - override /model: resnet110",
        "PY := $(VENV)/bin/python",
        "see https://github.com/akamaster/pytorch_resnet_cifar10 and results/demo/figures/fig6.png",
        "the run directory <run_root>/<experiment>/<model>/seed<k>/summary.json",
        "lr / 10 at 32k and 48k; 480 img/s; 1/2 of the set",
        "~/.cache/torch",
    ],
)
def test_allowed_and_relative_paths_pass(line):
    assert foreign_paths(line) == []


def test_the_scan_fails_on_an_inserted_file(tmp_path):
    """A scratch repository: clean, then with a tracked file and an untracked one that name machine paths."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "README.md").write_text("# x\n\nData: `/usr/share/datasets/fashion-mnist`; run `make demo`.\n")
    (tmp_path / "figure.png").write_bytes(b"\x89PNG\0\0" + _p("home", "someone").encode())  # binary: skipped
    subprocess.run(["git", "add", "README.md", "figure.png"], cwd=tmp_path, check=True)
    assert scan(tmp_path) == []
    (tmp_path / "notes.py").write_text(f'"""Module."""\n\nBASE = "{_p("work", "shared", "SLURM_NOTES.md")}"\n')
    subprocess.run(["git", "add", "notes.py"], cwd=tmp_path, check=True)
    assert scan(tmp_path) == [f"notes.py:3: {_p('work', 'shared', 'SLURM_NOTES.md')}"]
    (tmp_path / "new.md").write_text(f"output in {_p('tmp', 'run1')}\n")  # not yet added: still found
    assert f"new.md:1: {_p('tmp', 'run1')}" in scan(tmp_path)
    (tmp_path / ".gitignore").write_text("ignored.txt\n")
    (tmp_path / "ignored.txt").write_text(_p("home", "x", "y") + "\n")  # ignored: not part of the repository
    assert len(scan(tmp_path)) == 2

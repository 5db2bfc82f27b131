"""The tests' own helpers, where a fault would hide in every test that uses them."""

from __future__ import annotations

import subprocess
import time

import pytest

from support.processes import alive
from support.runs import run_command


def test_a_command_that_times_out_leaves_no_process_behind(tmp_path):
    """torchrun's ranks once ran on for ever after their test timed out: run_command kills the whole group."""
    pid_file = tmp_path / "child.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run_command(["bash", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], timeout=1)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(child):
        assert time.monotonic() < deadline, f"the command's child {child} still runs 10 s after the timeout"
        time.sleep(0.05)

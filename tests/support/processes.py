"""Processes as Linux's /proc shows them: the tests' own checks of what is still running (standard library only, so
that scripts/slurm_cluster.py can use it without importing torch)."""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first, then the parent's pid), None if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return data.rsplit(")", 1)[1].split()


def process_state(pid: int) -> str | None:
    """State letter (``Z`` = zombie), None if the process is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    """Running: a zombie (ended, waiting for its parent to reap it) is not. PID 1 may reap a reparented daemon seconds
    after it exits (docs/cluster.md, Pitfalls)."""
    return process_state(pid) not in (None, "Z")


def command_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def children(pid: int) -> dict[int, str]:
    """The child processes of `pid` (zombies included: see alive): pid -> command name."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        child = int(stat.parent.name)
        fields = _stat_fields(child)
        if fields and int(fields[1]) == pid and (name := command_name(child)) is not None:
            found[child] = name
    return found

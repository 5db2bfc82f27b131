"""A real single-node SLURM cluster (slurmctld + slurmd + slurmdbd/MariaDB + munge) for tests.

Configs at the standard /etc/slurm paths (so sbatch, sacct, submitit and the jobs themselves find them), everything
else under ``base_dir``. Needs root and the Debian packages ``slurmctld slurmd slurm-client munge slurmdbd
mariadb-server``. docs/cluster.md ("Running the test cluster") explains the settings and the pitfalls they avoid.

    with SlurmCluster() as cluster:      # start(): ~2-3 s warm, up to ~10 s on a fresh base_dir
        subprocess.run(["sbatch", "--wrap", "true"], check=True)

A healthy cluster with the same configuration started detached (``scripts/slurm_cluster.py start``) is reused,
and then left running on ``__exit__``; an explicit ``stop()`` always stops it. Anything else found running (daemons
of a crashed session, stale pid files) is stopped first and the cluster restarted.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from .processes import alive, command_name

DEFAULT_BASE_DIR = Path(tempfile.gettempdir()) / "resnet-repro-slurm"
CONF_DIR = Path("/etc/slurm")
# Start order; stop runs in reverse.
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
# Every executable the cluster needs (first the daemons).
REQUIRED_BINARIES = DAEMONS + (
    "mungekey",
    "mariadb-install-db",
    "mariadb-admin",
    "sbatch",
    "sinfo",
    "squeue",
    "scancel",
    "sacct",
    "sacctmgr",
)
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
_READY_STATES = {"idle", "mixed", "allocated"}


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH_PATH)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _run(args: list[str], timeout: float = 10) -> subprocess.CompletedProcess | None:
    """Run a client command, None on timeout or missing binary (never raises for those)."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return None


class SlurmCluster:
    """Start/stop a single-node SLURM cluster; usable as a context manager."""

    def __init__(
        self,
        base_dir: str | os.PathLike = DEFAULT_BASE_DIR,
        db_port: int = 13306,
        cluster_name: str = "testcluster",
        clean: bool = False,
        detach: bool = False,
        timeout: float = 60.0,
    ):
        """
        base_dir: runtime files (munge/ mysql/ state/ spool/ log/ run/).
        clean: wipe base_dir (state and database together) before starting.
        detach: don't keep Popen handles (daemons outlive this process; ``stop()`` finds them by pid file).
        timeout: bound for each readiness wait, in seconds.
        """
        self.base = Path(base_dir)
        self.db_port = db_port
        self.cluster_name = cluster_name
        self.clean = clean
        self.detach = detach
        self.timeout = timeout
        self.reused = False  # True if start() found a healthy cluster and left it as it was
        self._procs: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------------ paths and configs
    @property
    def log_dir(self) -> Path:
        return self.base / "log"

    @property
    def run_dir(self) -> Path:
        return self.base / "run"

    @property
    def _marker(self) -> Path:
        return self.run_dir / "detached"

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.bgpid"

    def _daemon_pidfiles(self) -> list[Path]:
        """Pid files the daemons write themselves (besides our .bgpid files)."""
        b = self.base
        return [
            b / "munge/munged.pid",
            b / "mysql/mysqld.pid",
            b / "run/slurmdbd.pid",
            b / "run/slurmctld.pid",
            b / "run/slurmd.pid",
        ]

    def slurm_conf(self) -> str:
        b, host = self.base, self.hostname()
        node = _run([_which("slurmd") or "slurmd", "-C"])
        if node is None or node.returncode != 0 or not node.stdout.startswith("NodeName="):
            raise RuntimeError(f"`slurmd -C` failed: {node and (node.stderr or node.stdout)}")
        node_line = node.stdout.splitlines()[0].strip() + " NodeAddr=127.0.0.1"
        # What each setting is for: docs/cluster.md, "Running the test cluster".
        return "\n".join(
            [
                f"ClusterName={self.cluster_name}",
                f"SlurmctldHost={host}(127.0.0.1)",
                f"AuthInfo=socket={b}/munge/munge.socket,cred_expire=5",
                "AccountingStorageType=accounting_storage/slurmdbd",
                f"AccountingStoragePass={b}/munge/munge.socket",  # slurmdbd's clients take the munge socket from here
                f"StateSaveLocation={b}/state",
                f"SlurmdSpoolDir={b}/spool",
                f"SlurmctldPidFile={b}/run/slurmctld.pid",
                f"SlurmdPidFile={b}/run/slurmd.pid",
                f"SlurmctldLogFile={b}/log/slurmctld.log",
                f"SlurmdLogFile={b}/log/slurmd.log",
                "ProctrackType=proctrack/linuxproc",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",  # not CR_Core_Memory: a job without --mem would take the whole node
                "SchedulerParameters=sched_interval=1",  # with cred_expire=5: a requeued job runs again within seconds
                "KillWait=2",  # SIGKILL 2 s after SIGTERM, not 30: submitit ignores SIGTERM and a requeue waits for it
                "ReturnToService=2",
                "JobAcctGatherType=jobacct_gather/linux",
                "JobAcctGatherFrequency=1",
                "MailProg=/bin/true",
                node_line,
                f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def slurmdbd_conf(self) -> str:
        b = self.base
        return "\n".join(
            [
                f"AuthInfo=socket={b}/munge/munge.socket",
                f"PidFile={b}/run/slurmdbd.pid",
                f"LogFile={b}/log/slurmdbd.log",
                "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1",
                f"StoragePort={self.db_port}",
                "StorageUser=root",
                "",
            ]
        )

    @staticmethod
    def hostname() -> str:
        out = _run(["hostname", "-s"])
        if out is not None and out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
        import socket

        return socket.gethostname().split(".")[0]

    def _write_configs(self) -> None:
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        (CONF_DIR / "slurm.conf").write_text(self.slurm_conf())
        (CONF_DIR / "slurm.conf").chmod(0o644)
        dbd = CONF_DIR / "slurmdbd.conf"
        dbd.write_text(self.slurmdbd_conf())
        os.chown(dbd, 0, 0)
        dbd.chmod(0o600)  # slurmdbd refuses to start otherwise

    def _configs_current(self) -> bool:
        try:
            return (CONF_DIR / "slurm.conf").read_text() == self.slurm_conf() and (
                CONF_DIR / "slurmdbd.conf"
            ).read_text() == self.slurmdbd_conf()
        except (OSError, RuntimeError):
            return False

    # ------------------------------------------------------------------ checks
    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") if this machine can run the cluster, else (False, why not)."""
        missing = [b for b in REQUIRED_BINARIES if _which(b) is None]
        if missing:
            return False, (
                f"missing executables {', '.join(missing)}; install with `apt-get install -y "
                "--no-install-recommends slurmctld slurmd slurm-client munge slurmdbd mariadb-server`"
            )
        if os.geteuid() != 0:
            return False, "the test cluster must run as root"
        return True, ""

    def node_state(self) -> str | None:
        out = _run(["sinfo", "-h", "-o", "%T"], timeout=5)
        if out is None or out.returncode != 0:
            return None
        return out.stdout.strip() or None

    def is_healthy(self) -> bool:
        """sinfo answers and the node is usable, and the daemons recorded in base_dir are alive."""
        # Pid files first: sinfo takes seconds to give up when slurmctld is down.
        if not all(pid is not None and alive(pid) for pid in map(self._recorded_pid, DAEMONS)):
            return False
        return self.node_state() in _READY_STATES

    def _recorded_pid(self, name: str) -> int | None:
        try:
            return int(self._pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ start
    def start(self) -> SlurmCluster:
        ok, reason = self.available()
        if not ok:
            raise RuntimeError(f"SLURM not available: {reason}")
        # Reuse only a cluster started detached (scripts/slurm_cluster.py start); daemons left by a crashed test
        # session are restarted, so that this session's stop() leaves nothing behind.
        if not self.clean and self._marker.exists() and self._configs_current() and self.is_healthy():
            self.reused = True
            return self
        self.reused = False
        self._kill_leftovers()
        if self.clean:
            shutil.rmtree(self.base, ignore_errors=True)
        b = self.base
        for d in ("munge", "state", "spool", "log", "run", "mysql"):
            (b / d).mkdir(parents=True, exist_ok=True)
        (b / "munge").chmod(0o755)  # every client must traverse it to reach munged's socket
        self._write_configs()
        try:
            self._start_daemons()
        except BaseException:
            self.stop()
            raise
        if self.detach:
            self._marker.write_text("started detached by SlurmCluster(detach=True)\n")
        return self

    def _start_daemons(self) -> None:
        b = self.base
        key = b / "munge/munge.key"
        if not key.exists():
            self._check_call([_which("mungekey"), "-c", "-k", str(key)], "mungekey", timeout=30)
        self._spawn(
            "munged",
            [
                _which("munged"),
                "-F",
                f"--socket={b}/munge/munge.socket",
                f"--key-file={key}",
                f"--log-file={b}/munge/munged.log",
                f"--pid-file={b}/munge/munged.pid",
                f"--seed-file={b}/munge/munged.seed",
            ],
        )
        if not (b / "mysql/data/mysql").is_dir():
            shutil.rmtree(b / "mysql/data", ignore_errors=True)
            self._check_call(
                [
                    _which("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={b}/mysql/data",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                "mariadb-install",
                timeout=max(self.timeout, 120),
            )
        self._spawn(
            "mariadbd",
            [
                _which("mariadbd"),
                "--no-defaults",
                f"--datadir={b}/mysql/data",
                f"--socket={b}/mysql/mysqld.sock",
                f"--pid-file={b}/mysql/mysqld.pid",
                "--bind-address=127.0.0.1",
                f"--port={self.db_port}",
                "--user=root",
                f"--log-error={b}/log/mariadb.log",
            ],
        )
        sock = b / "munge/munge.socket"
        self._wait("munged", lambda: sock.exists() and stat.S_ISSOCK(sock.stat().st_mode), b / "munge/munged.log")
        ping = [_which("mariadb-admin"), "--no-defaults", "-h127.0.0.1", f"-P{self.db_port}", "-uroot", "ping"]
        self._wait("mariadbd", lambda: _ok(_run(ping, timeout=5)), b / "log/mariadb.log")
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"])
        self._wait(
            "slurmdbd", lambda: _ok(_run(["sacctmgr", "-n", "show", "cluster"], timeout=3)), b / "log/slurmdbd.log"
        )
        self._spawn("slurmctld", [_which("slurmctld"), "-D"])
        self._spawn("slurmd", [_which("slurmd"), "-D"])
        self._wait(
            "slurmctld+slurmd",
            self._node_ready,
            b / "log/slurmctld.log",
            also=b / "log/slurmd.log",
            watch=("slurmctld", "slurmd"),
        )
        # Jobs outlive slurmd: those of a crashed session are re-adopted (node "mixed"); clear them.
        if self._queue():
            self.cancel_all()

    def _node_ready(self) -> bool:
        """Whether the node takes jobs; a node drained by an earlier session (its spool disk was full, say) is resumed:
        the saved state outlives a restart, and is kept because wiping it would reuse job IDs the database holds."""
        state = self.node_state()
        if state is not None and state.startswith("drain"):
            _run(["scontrol", "update", f"NodeName={self.hostname()}", "State=RESUME"], timeout=5)
            return False
        return state in _READY_STATES

    def _spawn(self, name: str, args: list[str]) -> None:
        out = open(self.log_dir / f"{name}.out", "ab")
        try:
            proc = subprocess.Popen(
                args,
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        self._pidfile(name).write_text(f"{proc.pid}\n")
        if not self.detach:
            self._procs[name] = proc

    def _check_call(self, args: list, name: str, timeout: float) -> None:
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as f:
            try:
                rc = subprocess.run(
                    args, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=self.base, stdin=subprocess.DEVNULL
                ).returncode
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{name} took more than {timeout:.0f} s; see {log}") from None
        if rc != 0:
            raise RuntimeError(f"{name} failed with exit code {rc}; see {log}")

    def _wait(self, what: str, ready, log: Path, also: Path | None = None, watch: tuple = ()) -> None:
        watch = watch or (what,)
        logs = f"{log}" + (f" and {also}" if also else "")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if ready():
                    return
            except OSError:
                pass
            for name in watch:
                pid = self._recorded_pid(name)
                if pid is None or not alive(pid):
                    out = self.log_dir / f"{name}.out"
                    raise RuntimeError(f"{name} exited during start-up; see {logs} and {out}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {self.timeout:.0f} s; see {logs}")
            time.sleep(0.1)

    # ------------------------------------------------------------------ jobs
    def _queue(self) -> list[str]:
        out = _run(["squeue", "-h", "-o", "%i"], timeout=5)
        return out.stdout.split() if out is not None and out.returncode == 0 else []

    def cancel_all(self, timeout: float = 30.0) -> None:
        """scancel every job (all run as root) and wait until the queue is empty."""
        if _run(["scancel", "--user=root"], timeout=10) is None:
            return
        deadline = time.monotonic() + timeout
        while self._queue():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jobs still queued {timeout:.0f} s after scancel; see {self.log_dir / 'slurmctld.log'}"
                )
            time.sleep(0.1)

    # ------------------------------------------------------------------ stop
    def stop(self, timeout: float = 15.0) -> None:
        """Cancel all jobs (they outlive slurmd), then TERM slurmd, slurmctld, slurmdbd, mariadbd, munged in turn and
        wait."""
        ctld = self._procs.get("slurmctld")
        ctld_pid = ctld.pid if ctld is not None else self._recorded_pid("slurmctld")
        if ctld_pid is not None and alive(ctld_pid) and self.node_state() is not None:
            try:
                self.cancel_all()
            except RuntimeError:
                pass  # stop the daemons anyway; orphans are re-adopted and cancelled on the next start
        for name in reversed(DAEMONS):
            proc = self._procs.pop(name, None)
            pid = proc.pid if proc is not None else self._recorded_pid(name)
            if pid is not None and (proc is not None or command_name(pid) == name[:15]):
                _terminate(pid, timeout, proc)
            self._pidfile(name).unlink(missing_ok=True)
        self._marker.unlink(missing_ok=True)
        self.reused = False

    def _kill_leftovers(self) -> None:
        """Stop daemons left by an earlier session: by our pid files, by the daemons' own pid files, and
        slurm daemons (which necessarily use /etc/slurm) or munged/mariadbd running from base_dir by name."""
        pids: set[int] = set()
        for name in DAEMONS:
            pid = self._recorded_pid(name)
            if pid is not None and command_name(pid) == name:
                pids.add(pid)
        for f in self._daemon_pidfiles():
            try:
                pid = int(f.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if command_name(pid) in DAEMONS:
                pids.add(pid)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid, comm = int(entry.name), command_name(int(entry.name))
            if comm in ("slurmctld", "slurmd", "slurmdbd") or (
                comm in ("munged", "mariadbd") and str(self.base) in _cmdline(pid)
            ):
                pids.add(pid)
        # Reverse start order so that slurmd goes before slurmctld before slurmdbd, ...
        for pid in sorted(pids, key=lambda p: -DAEMONS.index(command_name(p)) if command_name(p) in DAEMONS else 0):
            _terminate(pid, 15.0)
        for f in self._daemon_pidfiles() + [self._pidfile(n) for n in DAEMONS] + [self._marker]:
            f.unlink(missing_ok=True)
        sock = self.base / "munge/munge.socket"
        for stale in (sock, Path(f"{sock}.lock"), self.base / "mysql/mysqld.sock"):
            stale.unlink(missing_ok=True)

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        if not self.reused:
            self.stop()


def _ok(result: subprocess.CompletedProcess | None) -> bool:
    return result is not None and result.returncode == 0


def _terminate(pid: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM, wait until gone (or a zombie of someone else), SIGKILL after ``timeout``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if proc is not None:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        return
    deadline, killed = time.monotonic() + timeout, False
    while alive(pid):
        if time.monotonic() > deadline:
            if killed:
                raise RuntimeError(f"process {pid} ({command_name(pid)}) survived SIGKILL")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline, killed = time.monotonic() + 5, True
        time.sleep(0.05)

#!/usr/bin/env python
"""Start, stop or inspect the single-node test SLURM cluster (tests/support/slurm_cluster.py, docs/cluster.md).

python scripts/slurm_cluster.py start [--clean]   # daemons keep running after this exits
python scripts/slurm_cluster.py status            # exit code 0 if healthy
python scripts/slurm_cluster.py stop
"""

import argparse
import sys
import time
from pathlib import Path

# The cluster manager is test support, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.slurm_cluster import DEFAULT_BASE_DIR, SlurmCluster  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--base-dir", default=str(DEFAULT_BASE_DIR), help="runtime files (default: %(default)s)")
    p.add_argument("--clean", action="store_true", help="start: wipe the state and database first")
    args = p.parse_args(argv)

    ok, reason = SlurmCluster.available()
    if not ok:
        print(f"SLURM not available: {reason}", file=sys.stderr)
        return 2
    cluster = SlurmCluster(args.base_dir, clean=args.clean, detach=True)
    t0 = time.monotonic()
    if args.action == "start":
        cluster.start()
        how = "already running, reused" if cluster.reused else "started"
        print(
            f"SLURM cluster {how} in {time.monotonic() - t0:.1f} s (node {cluster.node_state()}); "
            f"logs in {cluster.log_dir}"
        )
    elif args.action == "stop":
        cluster.stop()
        print(f"SLURM cluster stopped in {time.monotonic() - t0:.1f} s")
    else:
        healthy = cluster.is_healthy()
        print(
            f"SLURM cluster healthy (node {cluster.node_state()})"
            if healthy
            else f"SLURM cluster not running (no live daemons recorded in {cluster.run_dir})"
        )
        return 0 if healthy else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""make gpu-check: every GPU measurement of the speed issue in one job of at most 8 minutes on one H100/H200
(see src/resnet_repro/bench/gpu_check.py). --dry-run checks it on a CPU in about a minute.

Usage: python scripts/gpu_check.py [--dry-run] [--fashion-mnist DIR] [--out FILE] [--only PART ...]
"""

from resnet_repro.bench.gpu_check import main
from resnet_repro.cli import exit_on_user_error

if __name__ == "__main__":
    exit_on_user_error(main)()

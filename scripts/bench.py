"""Speed benchmark: our training path against the usual way, side by side (see src/resnet_repro/bench/).

Usage: python scripts/bench.py [--quick | --tiny] [--out FILE] [--compile] [--cuda-graphs] [--only NAME ...]
(--help lists every option; make gpu-check runs the GPU measurements: scripts/gpu_check.py)
"""

from resnet_repro.bench import main

if __name__ == "__main__":
    main()

"""Speed benchmark: our training path against the usual way, side by side (see src/resnet_repro/bench/).

Usage: python scripts/bench.py [--quick] [--out FILE] [--compile] [--cuda-graphs] [--only NAME ...]
"""

from resnet_repro.bench import main

if __name__ == "__main__":
    main()

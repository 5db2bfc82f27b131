"""`python -m resnet_repro.bench [--quick] [--only NAME ...]`: the same as `python scripts/bench.py`."""

from .cli import main

if __name__ == "__main__":
    main()

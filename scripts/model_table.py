"""Write results/tables/architectures.md: our nets' parameters and FLOPs against the paper's.

Usage: python scripts/model_table.py [--out results/tables/architectures.md]
"""

import argparse
from pathlib import Path

from resnet_repro.models import architecture_table

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "tables" / "architectures.md")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(architecture_table())
    print(f"wrote {args.out}")

#!/usr/bin/env python
"""Entry point kept for users of the older tool; a thin wrapper over `phased-cpt train`.

    python train_phased.py [CONFIG] [--set key=value ...]     # CONFIG defaults to ./config.yaml
    torchrun --nproc_per_node 8 train_phased.py config.yaml

The `--local_rank` argument that some launchers append is accepted and ignored (the rank is
read from the environment).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # works without `pip install -e .`

from phased_cpt.cli import main  # noqa: E402


def train_args(argv: list[str]) -> list[str]:
    args = [a for a in argv if not a.startswith("--local_rank") and not a.startswith("--local-rank")]
    if not args or args[0].startswith("-"):
        args = ["config.yaml", *args]
    return ["train", *args]


if __name__ == "__main__":
    sys.exit(main(train_args(sys.argv[1:])))

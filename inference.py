#!/usr/bin/env python
"""Chat with a trained run, base model vs fine-tuned; a thin wrapper over `phased-cpt chat`.

    python inference.py                        # newest run under ./outputs, its last finished phase
    python inference.py RUN_DIR --phase 1      # or an adapter directory; --list shows what exists
    python inference.py --prompt "def main(" --out results.jsonl
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # works without `pip install -e .`

from phased_cpt.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["chat", *sys.argv[1:]]))

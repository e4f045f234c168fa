"""phased-cpt: phased continual pre-training of causal LMs with one LoRA adapter.

Layout (docs/architecture.md has the layers and what may import what): `config/` (the strict
config), `data/` (documents -> chunks -> rows), `modeling.py` (model, tokenizer, LoRA), `run_dir.py`
(the run directory contract), `distributed.py` (which process this is), `training/` (the recipe
and one phase), `evaluation/`, `inference/`, `quickstart/` (the embedded demo), `cli/` (the
`phased-cpt` command).
"""

__version__ = "0.1.0"

"""phased-cpt: phased continual pre-training of causal LMs with one LoRA adapter.

Layout: `config.py` (the strict config), `data/` (documents -> rows), `modeling.py` (model,
tokenizer, LoRA), `run_dir.py` (the run directory contract), `training/` (the recipe and one
phase), `quickstart/` (the embedded demo), `cli.py` (the `phased-cpt` command).
"""

__version__ = "0.1.0"

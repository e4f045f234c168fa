"""Training: the phased recipe (`recipe.py`), one phase as one HF Trainer run (`phase.py`),
and where metrics go (`metrics.py`, `callbacks.py`)."""

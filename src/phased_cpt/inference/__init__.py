"""Inference on a trained run: base-vs-fine-tuned chat REPL, scripted comparison, merge/export.

Reads the run directory only (`phased_cpt.run_dir`); never imports `phased_cpt.training`.
"""

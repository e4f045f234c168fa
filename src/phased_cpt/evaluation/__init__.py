"""Evaluation: perplexity on held-out rows, the forgetting matrix, plots and the run report.
Reads the run directory; never imports training."""

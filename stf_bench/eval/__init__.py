"""Accuracy: the lmms-eval adapter for the model family, task selection, the two protocols, and `stf-bench run`."""

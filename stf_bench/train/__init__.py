"""`stf-bench train`: LLaVA-1.5's two-stage recipe on transformers' Trainer (docs/training.md).

data.py (LLaVA-format rows, checks, sources), samples.py (the built-in training sets), labels.py (LLaVA's labels),
batches.py (dataset, collator, modality-grouped sampler), recipe.py (defaults and flags), trainer.py (what trains,
visual tokens in the sequence, loss averaging), outputs.py (what a stage writes), cli.py (the command).
"""

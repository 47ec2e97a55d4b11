"""Published-vs-reproduced tables, bootstrap confidence intervals, plots."""

"""Where the benchmarks' rows come from: the embedded sample data written in the hub's layout (`samples.py`), and
the local parquet files of each benchmark's dataset, from the samples, the hub cache or `--data-dir` (`sources.py`).
What each row holds is the benchmark modules' business (`stf_bench.accuracy`)."""

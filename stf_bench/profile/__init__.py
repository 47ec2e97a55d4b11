"""FLOPs (calflops on `meta`) and time to first token: `stf-bench flops`, `stf-bench latency`."""

"""SQLite results store: runs, per-sample records, FLOPs and latency rows; lmms-eval ingestion."""

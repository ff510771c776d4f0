"""Result files: schema-versioned run JSON, per-sample JSONL, and the metrics behind them."""

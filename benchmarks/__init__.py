"""pacim's regression benchmarks: speed ratios and result figures (run: python -m benchmarks)."""

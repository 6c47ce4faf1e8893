"""Benchmarks of udn-rollout and its simulated cluster (run them with `uv run python -m bench.<name>`)."""

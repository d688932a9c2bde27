"""Reproducible benchmarks: engram and mem0 OSS side by side, in one run, on one machine (``python -m bench.run``)."""

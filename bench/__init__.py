"""Benchmark of secretd's masking against the OpenHands SDK's, run by ``make bench``."""

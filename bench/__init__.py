"""Benchmarks of the Redis engine against redis-py and a naive baseline: ``make bench``."""

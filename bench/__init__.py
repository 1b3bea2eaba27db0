"""Benchmarks: hwq measured beside bare Celery and bare serial, in the same run."""

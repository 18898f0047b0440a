"""Benchmarks that run the trainer end to end (`python bench/<name>.py`)."""

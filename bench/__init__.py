"""Benchmarks that need the ComfyUI host (see sampling.py)."""

"""Helpers shared by the test files (graphs, synthetic data, workflow checks); no tests here."""

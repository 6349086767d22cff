"""Evaluation: baselines, adaptation curves, reports and plots."""

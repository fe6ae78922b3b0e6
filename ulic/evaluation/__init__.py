"""Evaluation tools for ulic: metrics, classical baselines, BD-rate, plots and reports (`ulic eval`).

See docs/evaluation.md for the protocols.
"""

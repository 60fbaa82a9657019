"""Evaluation: metrics, test sets, significance, the hypothesis cache and reports."""

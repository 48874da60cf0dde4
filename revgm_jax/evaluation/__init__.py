"""Evaluation of model parsing: metrics, baselines, multi-image aggregation, reports."""

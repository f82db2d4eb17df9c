"""Latency-constrained selection: subnet x precision x format for a target under a budget."""

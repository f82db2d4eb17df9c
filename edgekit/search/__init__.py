"""Latency-constrained selection: config x precision x format for a target under a budget, over any
:class:`~edgekit.search.space.SearchSpace` (the once-for-all spaces so far)."""

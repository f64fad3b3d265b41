"""Sampling: the sampler contract, the ancestral loop, RGAS, and the one generate() every caller uses."""

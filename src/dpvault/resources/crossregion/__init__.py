"""Cross-region restore (2023-11-01+): answered as Azure answers a vault without it."""

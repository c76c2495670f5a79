"""Backtesting: the event-driven engine, the vectorized fast path, metrics and reports."""

"""Features: technical indicators, Williams market-structure pivots, order-book buckets (COB).

Pure functions of arrays (same length out, NaN during warm-up) plus streaming counterparts
that equal them bar by bar. Nothing here reads the future: a value at bar t uses bars <= t.
"""

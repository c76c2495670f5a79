"""Test oracles: reference implementations from dev-only packages (backtesting.py), kept out of
the shipped ``pivotal`` package. Importable from any test as ``oracles.<module>`` (pytest's
``pythonpath`` includes ``tests/``)."""

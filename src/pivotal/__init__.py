"""pivotal: machine-learning crypto trading, the same code in backtest, paper and live."""

__version__ = "0.1.0"

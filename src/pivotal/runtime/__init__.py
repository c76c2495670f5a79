"""The runtime: the one kernel step every mode runs, market feeds, the loop, the recorder port.

Backtest, replay, paper and live all drive :class:`~pivotal.runtime.kernel.Kernel`; only the
builders (the backtest's replay builder, later the paper and live builders) know the mode.
This layer imports neither :mod:`pivotal.backtest` nor a concrete broker.
"""

"""The trading node: the only place that knows the mode.

:func:`pivotal.node.build.build_node` picks the clock, the market feed and the broker for a
paper or live session (the backtest's builder is :mod:`pivotal.backtest.replay` and
:mod:`pivotal.orchestrator.run`); everything it composes (the orchestrator, the risk manager,
the executor, the runtime's kernel and loop) is the same code every mode runs.
"""

"""Seed 003's orchestrator: data subscriptions, coordinated inference, cross-model feeding,
the mixture-of-experts decision, inference history and the learning loop.

The :class:`~pivotal.orchestrator.orchestrator.Orchestrator` is a
:class:`~pivotal.core.ports.DecisionSource`: the backtester (replay clock + simulated
broker) and the live loop (wall clock + exchange broker) drive the same object.
"""

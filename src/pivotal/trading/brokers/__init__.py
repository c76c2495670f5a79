"""Brokers implementing :class:`pivotal.core.ports.Broker`: the simulator now, exchanges later."""

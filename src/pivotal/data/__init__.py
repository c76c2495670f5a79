"""Market data: the store, import, download, validation, aggregation and the simulator."""

"""Trading: portfolio accounting, the simulated broker, fees, slippage and the risk manager."""

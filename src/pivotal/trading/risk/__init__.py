"""The risk manager: sizing, limits, the drawdown circuit breaker and live risk metrics."""

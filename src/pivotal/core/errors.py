"""The exception hierarchy. Each class tells the caller what to do about it.

- ``TransientError``: retry with backoff (rate limits, timeouts, 5xx).
- ``OperationalError``: halt and alert a person (exchange down for good, disk full).
- ``RiskRejected``: the risk manager refused an order; the reason says why.
- ``ModelError``: a model failed; isolate it and use its fallback.
- ``DataError``: input data is wrong; the message says which file/row and why.
- ``ConfigError``: the configuration is wrong; the message names file, key and what is allowed.
"""

from __future__ import annotations


class PivotalError(Exception):
    """Base of every error pivotal raises on purpose."""


class TransientError(PivotalError):
    """A failure that may succeed if retried later (rate limit, timeout, server error)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OperationalError(PivotalError):
    """A failure that needs a person: stop what depends on it and alert."""


class RiskRejected(PivotalError):
    """An order refused by the risk manager; ``str(err)`` is the reason."""


class ModelError(PivotalError):
    """A model could not produce an output; callers isolate it and fall back."""


class DataError(PivotalError, ValueError):
    """Input data is malformed or inconsistent; the message says where and why."""


class ConfigError(PivotalError, ValueError):
    """The configuration is invalid; the message names the file, the key and what is allowed."""

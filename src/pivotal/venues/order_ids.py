"""Deterministic client order ids: the same decision gives the same id, before and after a
restart, so a re-sent order is recognised by the venue (and by the journal) as the one
already placed instead of becoming a second one.

Format: ``pv`` + the decision time in base 36 (8 characters until the year 5188) + ``_`` +
20 hexadecimal characters of a BLAKE2b hash of (session id, decision time, symbol, index,
tag): 31 characters of ``[A-Za-z0-9_]``, within every venue's limit (Binance and Bybit 36,
MEXC 32). The hash makes ids of different sessions, symbols and orders of one decision differ;
the readable time helps a person match an id on the venue's site to a bar.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

__all__ = ["ID_PATTERN", "MAX_LENGTH", "PREFIX", "client_order_id", "is_pivotal_id"]

PREFIX: Final = "pv"
MAX_LENGTH: Final = 32
ID_PATTERN: Final = re.compile(r"pv[0-9a-z]{1,9}_[0-9a-f]{20}")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(value: int) -> str:
    if value == 0:
        return "0"
    out = []
    while value:
        value, digit = divmod(value, 36)
        out.append(_DIGITS[digit])
    return "".join(reversed(out))


def client_order_id(
    session_id: str, decision_ts: int, symbol: str, index: int, tag: str = ""
) -> str:
    """The client id of the ``index``-th order (0, 1, ...) decided at ``decision_ts`` (UTC ms,
    the bar's close) for ``symbol`` in session ``session_id`` (see the module docstring).

    Raises ``ValueError`` for an empty session id, a negative time or index."""
    if not session_id:
        raise ValueError("session_id must be a non-empty string (it keeps sessions apart)")
    if isinstance(decision_ts, bool) or not isinstance(decision_ts, int) or decision_ts < 0:
        raise ValueError(f"decision_ts must be UTC ms (an int >= 0), got {decision_ts!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    key = "\x1f".join((session_id, str(decision_ts), symbol, str(index), tag))
    digest = hashlib.blake2b(key.encode(), digest_size=10).hexdigest()
    ident = f"{PREFIX}{_base36(decision_ts)}_{digest}"
    assert len(ident) <= MAX_LENGTH
    return ident


def is_pivotal_id(client_order_id: str) -> bool:
    """Whether ``client_order_id`` has the form :func:`client_order_id` makes."""
    return ID_PATTERN.fullmatch(client_order_id) is not None

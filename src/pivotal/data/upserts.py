"""The upserts of candles and trades, shared by the single writes and ``write_batch``: each
runs inside the caller's open transaction (the caller commits or rolls back).

Candles: see :meth:`pivotal.data.duckdb_store.DuckDBStore.write_candles`. Trades are keyed
by (exchange, symbol, trade_id) and carry a ``source`` label (schema 3; '' for rows stored
before). A stored trade whose time, price, quantity or side differs from the incoming one is
replaced (taking the incoming label); an equal one is left as it is, except that a row
without a label takes the incoming one (so re-importing a file labels old rows).
"""

from __future__ import annotations

import contextlib

import duckdb
import pyarrow as pa

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.trades import TRADE_COLUMNS, Trades
from pivotal.data.series import (
    CHANGE_TOLERANCE,
    DERIVED_SOURCE_PREFIXES,
    WriteResult,
    is_derived_source,
    normalize_exchange,
)

__all__ = ["STAGING_VIEWS", "drop_view", "upsert_candles", "upsert_trades"]

STAGING_VIEWS = ("incoming", "incoming_trades", "incoming_cob")
"""The names the upserts register their incoming Arrow tables under. A failed upsert cannot
unregister its view inside the aborted transaction; the store drops them after the rollback."""


def drop_view(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Unregister a staged table; inside an aborted transaction DuckDB refuses, and the store
    unregisters it after its rollback (:data:`STAGING_VIEWS`)."""
    with contextlib.suppress(duckdb.Error):
        con.unregister(name)


_VALUE_COLUMNS = ("open", "high", "low", "close", "volume")
_STORED_IS_DERIVED = (
    "("
    + " OR ".join(f"starts_with(s.source, '{prefix}')" for prefix in DERIVED_SOURCE_PREFIXES)
    + ")"
)


def upsert_candles(
    con: duckdb.DuckDBPyConnection, sid: int, candles: Candles, source: str, overwrite: bool
) -> WriteResult:
    """Upsert ``candles`` of series ``sid`` (see ``write_candles`` for the rules)."""
    if not len(candles):
        return WriteResult(0, 0, 0)
    incoming = candles.to_arrow().rename_columns(["ts", *_VALUE_COLUMNS])
    lo, hi = int(candles.timestamp.min()), int(candles.timestamp.max())
    differs = " OR ".join(
        f"abs(i.{c} - s.{c}) > {CHANGE_TOLERANCE!r} * greatest(abs(i.{c}), abs(s.{c}))"
        for c in _VALUE_COLUMNS
    )
    derived = is_derived_source(source)
    protect = "TRUE" if derived and not overwrite else "FALSE"
    relabel = "FALSE" if derived else "TRUE"
    con.register("incoming", incoming)
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE stored AS SELECT ts, open, high, low, close, "
            "volume, source FROM candles WHERE series_id = ? AND ts BETWEEN ? AND ?",
            [sid, lo, hi],
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE judged AS SELECT i.ts, CASE "
            f"WHEN s.ts IS NULL THEN 'new' "
            f"WHEN ({differs}) AND {protect} AND NOT {_STORED_IS_DERIVED} THEN 'kept' "
            f"WHEN ({differs}) THEN 'changed' "
            f"WHEN {relabel} AND {_STORED_IS_DERIVED} THEN 'relabel' "
            f"ELSE 'same' END AS verdict FROM incoming i LEFT JOIN stored s USING (ts)"
        )
        counts = dict(
            con.execute("SELECT verdict, count(*) FROM judged GROUP BY verdict").fetchall()
        )
        if counts.get("changed") or counts.get("relabel"):
            con.execute(
                "DELETE FROM candles WHERE series_id = ? AND ts IN (SELECT ts FROM "
                "judged WHERE verdict IN ('changed', 'relabel'))",
                [sid],
            )
        if counts.get("new") or counts.get("changed") or counts.get("relabel"):
            con.execute(
                "INSERT INTO candles (series_id, ts, open, high, low, close, volume, "
                "source) SELECT ?, i.ts, i.open, i.high, i.low, i.close, i.volume, ? "
                "FROM incoming i JOIN judged j USING (ts) "
                "WHERE j.verdict IN ('new', 'changed', 'relabel') ORDER BY i.ts",
                [sid, source],
            )
        con.execute("DROP TABLE stored")
        con.execute("DROP TABLE judged")
        con.unregister("incoming")
    except BaseException:
        drop_view(con, "incoming")
        raise
    return WriteResult(
        inserted=int(counts.get("new", 0)),
        updated=int(counts.get("changed", 0)),
        unchanged=int(counts.get("same", 0) + counts.get("relabel", 0)),
        kept=int(counts.get("kept", 0)),
    )


def upsert_trades(
    con: duckdb.DuckDBPyConnection, exchange: str, symbol: Symbol, trades: Trades, source: str
) -> WriteResult:
    """Upsert ``trades`` of one (exchange, symbol) (see the module docstring)."""
    if not len(trades):
        return WriteResult(0, 0, 0)
    exchange = normalize_exchange(exchange)
    incoming = pa.table({c: getattr(trades, c) for c in TRADE_COLUMNS})
    lo, hi = int(trades.trade_id.min()), int(trades.trade_id.max())
    cols = ("timestamp", "price", "quantity", "is_buyer_maker")
    stored_cols = {"timestamp": "ts"}
    differs = " OR ".join(f"i.{c} IS DISTINCT FROM s.{stored_cols.get(c, c)}" for c in cols)
    args = [exchange, str(symbol)]
    con.register("incoming_trades", incoming)
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE stored_trades AS SELECT * FROM trades "
            "WHERE exchange = ? AND symbol = ? AND trade_id BETWEEN ? AND ?",
            [*args, lo, hi],
        )
        counts = con.execute(
            f"SELECT count(*) FILTER (WHERE s.trade_id IS NULL), "
            f"count(*) FILTER (WHERE s.trade_id IS NOT NULL AND ({differs})), "
            f"count(*) FILTER (WHERE s.trade_id IS NOT NULL AND NOT ({differs}) "
            f"AND s.source = '' AND ? <> '') "
            f"FROM incoming_trades i LEFT JOIN stored_trades s USING (trade_id)",
            [source],
        ).fetchall()[0]
        inserted, updated, unlabelled = int(counts[0]), int(counts[1]), int(counts[2])
        if updated:
            con.execute(
                f"DELETE FROM trades WHERE exchange = ? AND symbol = ? AND trade_id IN "
                f"(SELECT i.trade_id FROM incoming_trades i JOIN stored_trades s "
                f"USING (trade_id) WHERE {differs})",
                args,
            )
        if unlabelled:
            con.execute(
                "UPDATE trades SET source = ? WHERE exchange = ? AND symbol = ? "
                "AND trade_id BETWEEN ? AND ? AND source = '' AND trade_id IN "
                "(SELECT trade_id FROM incoming_trades)",
                [source, *args, lo, hi],
            )
        if inserted or updated:
            con.execute(
                "INSERT INTO trades (exchange, symbol, trade_id, ts, price, quantity, "
                "is_buyer_maker, source) SELECT ?, ?, i.trade_id, i.timestamp, i.price, "
                "i.quantity, i.is_buyer_maker, ? FROM incoming_trades i WHERE i.trade_id "
                "NOT IN (SELECT trade_id FROM trades WHERE exchange = ? AND symbol = ? "
                "AND trade_id BETWEEN ? AND ?) ORDER BY i.trade_id",
                [*args, source, *args, lo, hi],
            )
        con.execute("DROP TABLE stored_trades")
        con.unregister("incoming_trades")
    except BaseException:
        drop_view(con, "incoming_trades")
        raise
    return WriteResult(inserted, updated, len(trades) - inserted - updated)

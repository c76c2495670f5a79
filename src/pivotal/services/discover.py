"""Finding the finished runs a server shows: ``pivotal serve --data-dir DIR`` and
``pivotal serve --run RESULT``.

:func:`views_from_data_dir` gives a view of every run in the data dir's run journal (tables in
``pivotal.duckdb``, and in ``runs.duckdb`` beside it when present), every report JSON under
``reports/`` and every session journal under ``trading/*.journal``. :func:`views_from_results`
gives the views of what was named: a report JSON, a session journal file or a run id. Ids are
slugs of the run's name, unique per call (``-2``, ``-3`` ... on a clash).

Stores are opened read-only; a store a running node holds for writing cannot be opened
(DuckDB allows one writer and no reader beside it), and the error says to serve from inside
that node (``pivotal run RUN_FILE --mode paper --serve``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from pivotal.core.errors import DataError, OperationalError
from pivotal.data.duckdb_store import STORE_FILE_NAME, DuckDBStore
from pivotal.data.run_journal_read import RunJournalReader
from pivotal.services.run_rows import records_from_report, records_from_run_journal
from pivotal.services.run_view import (
    FinishedView,
    MarketSource,
    RunView,
    SessionView,
    find_run_file,
)
from pivotal.services.view import NodeView, NotFound

__all__ = ["open_market", "slug", "views_from_data_dir", "views_from_results"]

JOURNAL_STORE = "runs.duckdb"
REPORT_FORMATS = ("pivotal-run", "pivotal-backtest")


def slug(text: str) -> str:
    """A URL-safe id: lower case letters, digits and dashes."""
    value = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return value or "node"


def open_market(path: Path, cache: dict[Path, MarketSource] | None = None) -> MarketSource:
    """The store at ``path`` opened read-only (one per path in ``cache``);
    ``OperationalError`` saying what to do when a running node holds it."""
    path = Path(path).resolve()
    if cache is not None and path in cache:
        return cache[path]
    try:
        store = DuckDBStore(path, read_only=True)
    except OperationalError as exc:
        if "lock" in str(exc).lower() or "another pivotal" in str(exc):
            raise OperationalError(
                f"the store {path} is held by a running pivotal process, so it cannot be read "
                "beside it; serve that node from inside it instead: pivotal run RUN_FILE "
                "--mode paper --serve"
            ) from exc
        raise
    source = MarketSource(store)
    if cache is not None:
        cache[path] = source
    return source


def views_from_data_dir(data_dir: str | Path) -> list[NodeView]:
    """Every finished run under ``data_dir`` (module docstring), runs of the run journal
    first, then reports, then sessions; ``OperationalError`` when ``data_dir`` does not
    exist or holds no store, journal or report."""
    root = Path(data_dir)
    if not root.is_dir():
        raise OperationalError(
            f"no data dir at {root}; give the folder `pivotal demo` or `pivotal run` wrote to"
        )
    cache: dict[Path, MarketSource] = {}
    ids: set[str] = set()
    views: list[FinishedView] = []
    market = (
        open_market(root / STORE_FILE_NAME, cache) if (root / STORE_FILE_NAME).exists() else None
    )
    for store_path in (root / STORE_FILE_NAME, root / JOURNAL_STORE):
        if store_path.exists():
            source = open_market(store_path, cache)
            for run_id in _run_ids(source.store):
                views.append(_run_view(source.store, run_id, market, ids))
    for report in sorted((root / "reports").glob("*.json")) if (root / "reports").is_dir() else []:
        if _is_report(report):
            views.append(_report_view(report, market, ids))
    for journal in _journals(root):
        views.append(_session_view(journal, root, cache, ids))
    if not views and market is None:
        raise OperationalError(
            f"{root} holds no market store, run journal, report or session journal; "
            "give the data dir of a run (e.g. out/demo after `make demo`)"
        )
    return list(views)


def views_from_results(paths: Sequence[str | Path], data_dir: str | Path | None) -> list[NodeView]:
    """The views of each result named (``pivotal serve --run RESULT``): a report JSON, a
    session journal (``*.journal``) or a run id of ``data_dir``'s run journal. Candles come
    from ``data_dir``'s store (a journal's own ``<journal>.market.duckdb`` first).
    ``NotFound`` naming the result and listing what exists when it is none of these."""
    root = Path(data_dir) if data_dir is not None else None
    cache: dict[Path, MarketSource] = {}
    ids: set[str] = set()
    market = None
    if root is not None and (root / STORE_FILE_NAME).exists():
        market = open_market(root / STORE_FILE_NAME, cache)
    views: list[NodeView] = []
    for item in paths:
        path = Path(item)
        if path.is_file() and path.suffix == ".json":
            if not _is_report(path):
                raise DataError(
                    f"{path} is not a pivotal report (format one of {', '.join(REPORT_FORMATS)}); "
                    "give a report JSON under reports/, a session journal or a run id"
                )
            views.append(_report_view(path, market or _market_near(path, cache), ids))
        elif path.is_file() and path.name.endswith(".journal"):
            views.append(_session_view(path, root or path.parent.parent, cache, ids))
        elif path.exists():
            raise DataError(
                f"{path} is neither a report JSON nor a session journal (*.journal); "
                "give one of those or a run id"
            )
        else:
            views.append(_run_by_id(str(item), root, cache, market, ids))
    return views


# -- builders --------------------------------------------------------------------------------
def _unique(name: str, ids: set[str]) -> str:
    base = slug(name)
    node_id, n = base, 1
    while node_id in ids:
        n += 1
        node_id = f"{base}-{n}"
    ids.add(node_id)
    return node_id


def _run_ids(store: DuckDBStore) -> list[str]:
    return [r.run_id for r in RunJournalReader(store).runs()]


def _run_view(
    store: DuckDBStore, run_id: str, market: MarketSource | None, ids: set[str]
) -> RunView:
    exchange = "binance"
    if market is not None:
        exchanges = market.catalog.exchanges()
        exchange = exchanges[0] if len(exchanges) == 1 or "binance" not in exchanges else "binance"
    reader = RunJournalReader(store)
    return RunView(
        _unique(f"run-{run_id}", ids),
        lambda: records_from_run_journal(reader, run_id, exchange=exchange),
        market,
    )


def _report_view(path: Path, market: MarketSource | None, ids: set[str]) -> RunView:
    return RunView(_unique(path.stem, ids), lambda: records_from_report(path), market)


def _session_view(
    journal: Path, root: Path, cache: dict[Path, MarketSource], ids: set[str]
) -> SessionView:
    own = Path(f"{journal}.market.duckdb")
    store = own if own.exists() else root / STORE_FILE_NAME
    market = open_market(store, cache) if store.exists() else None
    node_id = _unique(journal.name.removesuffix(".journal"), ids)
    return SessionView(node_id, journal, market, run_file=find_run_file(journal, root))


def _run_by_id(
    run_id: str,
    root: Path | None,
    cache: dict[Path, MarketSource],
    market: MarketSource | None,
    ids: set[str],
) -> RunView:
    if root is None:
        raise NotFound(
            f"{run_id!r} is not a file, and without --data-dir there is no run journal to "
            "find a run id in; give a report JSON, a session journal or --data-dir"
        )
    known: list[str] = []
    for store_path in (root / STORE_FILE_NAME, root / JOURNAL_STORE):
        if store_path.exists():
            source = open_market(store_path, cache)
            run_ids = _run_ids(source.store)
            if run_id in run_ids:
                return _run_view(source.store, run_id, market, ids)
            known += run_ids
    reports = (
        [p.name for p in sorted((root / "reports").glob("*.json"))]
        if (root / "reports").is_dir()
        else []
    )
    journals = [p.name for p in _journals(root)]
    raise NotFound(
        f"no file {run_id!r} and no run {run_id!r} in the run journal of {root}; runs: "
        f"{', '.join(known) or 'none'}; reports: {', '.join(reports) or 'none'}; session "
        f"journals: {', '.join(journals) or 'none'}"
    )


def _journals(root: Path) -> Iterable[Path]:
    folder = root / "trading"
    return sorted(folder.glob("*.journal")) if folder.is_dir() else []


def _market_near(path: Path, cache: dict[Path, MarketSource]) -> MarketSource | None:
    """The store of the data dir a report sits in (``<data dir>/reports/x.json``)."""
    store = path.resolve().parent.parent / STORE_FILE_NAME
    return open_market(store, cache) if store.exists() else None


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a pivotal report JSON (its first bytes name the format)."""
    try:
        with path.open("rb") as f:
            head = f.read(200).decode("utf-8", errors="replace")
    except OSError:
        return False
    match = re.search(r'"format"\s*:\s*"([a-z-]+)"', head)
    if match is not None:
        return match.group(1) in REPORT_FORMATS
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") in REPORT_FORMATS
    except (OSError, ValueError, AttributeError):
        return False

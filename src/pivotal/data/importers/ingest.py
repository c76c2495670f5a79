"""The candle import service behind ``pivotal data import``.

A run over ``paths`` (files, and directories walked recursively) goes in three steps:

1. **Collect.** A file named explicitly is always read. A directory contributes its files
   with a candle extension (:data:`~pivotal.data.importers.naming.CANDLE_SUFFIXES`); other
   files (``README.md``, raw message dumps) and hidden ones are skipped, with the reason.
2. **Read and check every file before writing anything**: parse it, work out its series
   (flags over what the path says), check that the rows' spacing fits the timeframe, and
   validate (:func:`~pivotal.data.validation.validate_candles`). A walked file that holds no
   candles (trades, order book, metadata, freqtrade mark/index files) is skipped with the
   reason; named explicitly it is an error. If any file fails, **nothing is written**: a run
   over one file raises that file's error (:class:`~pivotal.data.validation.InvalidDataError`,
   :class:`~pivotal.data.importers.readers.ParseError` or another ``DataError``), a run over
   several raises :class:`ImportAborted` listing every bad file. With ``drop_invalid`` the
   rows that break a rule are dropped instead and counted.
3. **Write** each file as one upsert (one transaction), in the order collected. Files of one
   series (Binance's daily files) merge in the store; rows already stored identically are
   left untouched, so importing a file twice changes nothing. Where two files hold different
   values for the same candle, the one written later wins (the store's upsert rule).

All parsed candles are held in memory until step 3 (48 bytes a row: ~100 MB for 2M rows).

**Order-book depth files** (:mod:`.depth`: Parquet with the depth columns) are imported as
their 1s COB snapshots when ``depth`` (the depth → COB function) is given, as ``pivotal data
import`` does: the files of one (exchange, symbol) are replayed together in the order of
their names in step 2 (a file that cannot be replayed fails the run like a bad candle file)
and written with ``write_cob`` in step 3, labelled ``import:<file>``. Without ``depth`` a
walked depth file is skipped and a named one is an error. The snapshots are held in memory
until step 3 too (~3 KB each with the default 41 buckets: ~260 MB a symbol-day).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import COBData
from pivotal.data.importers.depth import DepthToCOB, depth_market, is_depth_file
from pivotal.data.importers.naming import (
    has_candle_suffix,
    infer_names,
    parse_exchange_flag,
    parse_symbol_flag,
    parse_timeframe_flag,
    resolve_key,
)
from pivotal.data.importers.readers import CandleFile, NotCandlesError, read_candle_file
from pivotal.data.series import SeriesKey, WriteResult
from pivotal.data.store import MarketDataStore
from pivotal.data.validation import InvalidDataError, validate_candles


@dataclass(frozen=True, slots=True)
class ImportResult:
    """One imported file.

    ``rows``: candles read from the file; ``dropped``: rows refused by validation (only with
    ``drop_invalid``, else 0); ``written``: the store's account of the ``rows - dropped``
    rows written (inserted / updated / unchanged); ``first``/``last``: open times (UTC ms)
    of those rows, ``None`` when none were left; ``format``: the detected format, e.g.
    ``parquet``, ``binance-csv+zip``, ``freqtrade-json+gzip``.

    ``kind`` is ``candles``, or ``cob`` for order-book depth files stored as COB snapshots:
    then ``key`` is the market with timeframe 1s, ``rows`` the snapshots computed, ``first``/
    ``last`` their times, ``format`` ``depth-parquet``, ``path`` the first of ``files`` (every
    depth file of that market in the run, replayed together).
    """

    path: Path
    key: SeriesKey
    rows: int
    written: WriteResult
    dropped: int
    first: int | None
    last: int | None
    format: str
    kind: str = "candles"
    files: tuple[Path, ...] = ()


Phase = Literal["start", "read", "skip", "error", "write", "done"]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """What an import run has done so far, for a progress bar.

    ``phase`` is one of ``start`` (files collected: totals known), ``read`` (a file was read
    and checked), ``skip`` (a walked file was passed over; ``detail`` says why), ``error`` (a
    file failed; ``detail`` is the first line of the error), ``write`` (a file was written;
    ``detail`` names its series) and ``done``. ``files_done`` counts files finished in the
    current phase (reading, then writing); bytes count file sizes on disk and advance while
    reading, rows advance while writing (``rows_total`` is known from the first ``write``).
    """

    phase: Phase
    path: Path | None
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    rows_done: int = 0
    rows_total: int = 0
    detail: str = ""

    @property
    def fraction(self) -> float:
        """Overall progress in [0, 1]: reading (by bytes) is the first half, writing the rest."""
        read = self.bytes_done / self.bytes_total if self.bytes_total else 1.0
        if self.phase in ("start", "read", "skip", "error"):
            return 0.5 * read
        written = self.rows_done / self.rows_total if self.rows_total else 1.0
        return 0.5 + 0.5 * written


Progress = Callable[[ProgressEvent], None]


class ImportAborted(DataError):
    """Several files were given and some cannot be imported; nothing was written.

    ``errors`` holds each file's own error (``ParseError``, ``InvalidDataError``, ...).
    """

    def __init__(self, errors: Sequence[DataError], files: int) -> None:
        listed = "\n".join(
            "- " + textwrap.indent(_without_advice(e), "  ").lstrip() for e in errors
        )
        super().__init__(
            f"{len(errors)} of {files} files cannot be imported, so nothing was written:\n"
            f"{listed}\nFix or remove those files (or pass --drop-invalid where rows were "
            "refused) and import again."
        )
        self.errors = tuple(errors)


def _without_advice(error: DataError) -> str:
    """An error's message (it names its file) less InvalidDataError's closing advice, which
    :class:`ImportAborted` gives once for all files."""
    lines = str(error).splitlines()
    return "\n".join(line for line in lines if not line.startswith("Nothing was written."))


@dataclass(frozen=True, slots=True)
class _Candidate:
    path: Path
    explicit: bool
    size: int


@dataclass(frozen=True, slots=True)
class _Checked:
    path: Path
    parsed: CandleFile
    key: SeriesKey
    keep: Candles


def collect_files(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files an import of ``paths`` would read, and the walked files it skips (with why).

    Missing paths are not checked here; :func:`import_files` reports them.
    """
    candidates, skipped, _ = _collect(paths)
    return [c.path for c in candidates], skipped


def _collect(
    paths: Iterable[Path],
) -> tuple[list[_Candidate], list[tuple[Path, str]], list[DataError]]:
    candidates: list[_Candidate] = []
    skipped: list[tuple[Path, str]] = []
    errors: list[DataError] = []
    seen: set[Path] = set()

    def add(path: Path, explicit: bool) -> None:
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            candidates.append(_Candidate(path, explicit, path.stat().st_size))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(path).parts
                if not found.is_file() or any(p.startswith(".") for p in relative):
                    continue
                if has_candle_suffix(found):
                    add(found, explicit=False)
                else:
                    skipped.append((found, "not a candle file type (by its extension)"))
        elif path.is_file():
            add(path, explicit=True)
        else:
            errors.append(DataError(f"{path}: no such file or directory"))
    return candidates, skipped, errors


def import_files(
    paths: Sequence[Path],
    store: MarketDataStore,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    drop_invalid: bool = False,
    progress: Progress | None = None,
    depth: DepthToCOB | None = None,
) -> list[ImportResult]:
    """Import candle files and directories into ``store`` (see the module docstring).

    ``exchange``/``symbol``/``timeframe`` override what each path says (they apply to every
    file; the timeframe to candle files only). ``depth`` turns order-book depth files into
    COB snapshots (else they are not imported). Returns one result per written candle file,
    in order, then one per depth market. Raises ``DataError`` (nothing written) when a flag
    is malformed, a path is missing, or any file cannot be imported.
    """
    ex = parse_exchange_flag(exchange) if exchange else None
    sym = parse_symbol_flag(symbol) if symbol else None
    tf = parse_timeframe_flag(timeframe) if timeframe else None
    candidates, skipped, errors = _collect(paths)
    given = len(candidates) + len(errors)  # missing paths count as given files
    track = _Tracker(progress, len(candidates), sum(c.size for c in candidates))
    track.emit("start")
    for path, reason in skipped:
        track.emit("skip", path, reason)

    checked: list[_Checked] = []
    depth_files: dict[tuple[str, Symbol], list[Path]] = {}
    for candidate in candidates:
        track.files_done += 1
        track.bytes_done += candidate.size
        if is_depth_file(candidate.path):
            _take_depth(candidate, ex, sym, depth, depth_files, errors, track)
            continue
        try:
            item = _check(candidate, ex, sym, tf, drop_invalid)
        except _Skip as skip:
            track.emit("skip", candidate.path, str(skip))
        except DataError as exc:
            errors.append(exc)
            track.emit("error", candidate.path, str(exc).splitlines()[0])
        else:
            checked.append(item)
            track.emit("read", candidate.path, str(item.key))
    cob = _replay_depth(depth_files, depth, errors) if depth is not None else {}
    if errors:
        raise errors[0] if given == 1 else ImportAborted(errors, given)

    track.files_done, track.files_total = 0, len(checked) + len(cob)
    track.rows_total = sum(len(c.keep) for c in checked) + sum(len(s) for s in cob.values())
    results: list[ImportResult] = []
    sources = _sources(checked)
    for item in checked:
        written = store.write_candles(item.key, item.keep, source=sources[item.key])
        ts = item.keep.timestamp
        results.append(
            ImportResult(
                path=item.path,
                key=item.key,
                rows=len(item.parsed.candles),
                written=written,
                dropped=len(item.parsed.candles) - len(item.keep),
                first=int(ts[0]) if len(ts) else None,
                last=int(ts[-1]) if len(ts) else None,
                format=item.parsed.format,
            )
        )
        track.files_done += 1
        track.rows_done += len(item.keep)
        track.emit("write", item.path, str(item.key))
    for (ex_id, symbol_of), snapshots in cob.items():
        files = tuple(depth_files[(ex_id, symbol_of)])
        names = [f.name for f in files]
        label = (
            f"import:{names[0]}"
            if len(names) == 1
            else f"import:{len(names)} files ({names[0]}, …)"
        )
        written = store.write_cob(ex_id, symbol_of, snapshots, source=label)
        key = SeriesKey(ex_id, symbol_of, Timeframe.S1)
        results.append(
            ImportResult(
                path=files[0],
                key=key,
                rows=len(snapshots),
                written=written,
                dropped=0,
                first=int(snapshots[0].timestamp),
                last=int(snapshots[-1].timestamp),
                format="depth-parquet",
                kind="cob",
                files=files,
            )
        )
        track.files_done += 1
        track.rows_done += len(snapshots)
        track.emit("write", files[0], f"{key} COB")
    track.emit("done")
    return results


def _take_depth(
    candidate: _Candidate,
    exchange: str | None,
    symbol: Symbol | None,
    depth: DepthToCOB | None,
    groups: dict[tuple[str, Symbol], list[Path]],
    errors: list[DataError],
    track: _Tracker,
) -> None:
    """File a depth file under its market (or skip it, or record why it cannot be)."""
    path = candidate.path
    if depth is None:
        reason = (
            f"{path}: an order-book depth file; `pivotal data import` stores its 1s COB "
            "snapshots (a library caller passes depth=cob_from_depth_files)"
        )
        if candidate.explicit:
            errors.append(DataError(reason))
            track.emit("error", path, reason)
        else:
            track.emit("skip", path, reason)
        return
    try:
        market = depth_market(path, exchange, symbol)
    except DataError as exc:
        errors.append(exc)
        track.emit("error", path, str(exc).splitlines()[0])
        return
    groups.setdefault(market, []).append(path)
    track.emit("read", path, f"{market[0]} {market[1]} COB")


def _replay_depth(
    groups: dict[tuple[str, Symbol], list[Path]], depth: DepthToCOB, errors: list[DataError]
) -> dict[tuple[str, Symbol], Sequence[COBData]]:
    """Each market's depth files (in name order) replayed into COB snapshots."""
    out = {}
    for market, paths in groups.items():
        paths.sort(key=lambda p: p.name)
        try:
            out[market] = depth(paths, market[1])
        except DataError as exc:
            errors.append(exc)
    return out


def _sources(checked: Sequence[_Checked]) -> dict[SeriesKey, str]:
    """Provenance per series: the file's name, or how many files fed the series in this run."""
    names: dict[SeriesKey, list[str]] = {}
    for item in checked:
        names.setdefault(item.key, []).append(item.path.name)
    return {
        key: f"import:{files[0]}"
        if len(files) == 1
        else f"import:{len(files)} files ({files[0]}, …)"
        for key, files in names.items()
    }


class _Tracker:
    """Counts for :class:`ProgressEvent`; ``emit`` sends the current state."""

    def __init__(self, progress: Progress | None, files_total: int, bytes_total: int) -> None:
        self.progress = progress
        self.files_done, self.files_total = 0, files_total
        self.bytes_done, self.bytes_total = 0, bytes_total
        self.rows_done = self.rows_total = 0

    def emit(self, phase: Phase, path: Path | None = None, detail: str = "") -> None:
        if self.progress is not None:
            self.progress(
                ProgressEvent(
                    phase,
                    path,
                    self.files_done,
                    self.files_total,
                    self.bytes_done,
                    self.bytes_total,
                    self.rows_done,
                    self.rows_total,
                    detail,
                )
            )


class _Skip(Exception):
    """A walked file that holds no trade candles; the message is the reason."""


def _check(
    candidate: _Candidate,
    exchange: str | None,
    symbol: Symbol | None,
    timeframe: Timeframe | None,
    drop_invalid: bool,
) -> _Checked:
    """Read, name, and validate one file; raise ``_Skip`` or a ``DataError``."""
    path = candidate.path
    hints = infer_names(path)
    if not hints.is_trade_candles:
        reason = (
            f"{path}: freqtrade {hints.candle_type} candles are not trade candles; "
            "pivotal data import stores exchange trade candles only"
        )
        if candidate.explicit:
            raise DataError(reason)
        raise _Skip(reason)
    try:
        parsed = read_candle_file(path)
    except NotCandlesError as exc:
        if candidate.explicit:
            raise
        raise _Skip(str(exc)) from None
    candles = parsed.candles
    steps = np.diff(candles.timestamp)
    spacing = _spacing(steps)
    key = resolve_key(
        path,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        spacing=_describe_ms(spacing) if spacing else "",
    )
    _check_spacing(parsed, steps, spacing, key.timeframe, "--timeframe" if timeframe else "")
    report = validate_candles(candles, key.timeframe)
    if report.ok:
        return _Checked(path, parsed, key, candles)
    if not drop_invalid:
        raise InvalidDataError(report, report.describe(parsed.where, parsed.first_line))
    return _Checked(path, parsed, key, _valid_rows(candles, report.bad_mask, key.timeframe))


def _valid_rows(candles: Candles, bad: np.ndarray, timeframe: Timeframe) -> Candles:
    """The rows that pass every rule: row-level failures out, then rows not later than every
    row before them (out of order or duplicate), so the rest is strictly increasing."""
    kept = candles[~bad]
    ts = kept.timestamp
    if len(ts) > 1:
        later = np.concatenate(([True], ts[1:] > np.maximum.accumulate(ts)[:-1]))
        kept = kept[later]
    report = validate_candles(kept, timeframe)
    if not report.ok:  # cannot happen: every rule is row-local or about order
        raise InvalidDataError(report, report.describe("rows left after dropping"))
    return kept


def _spacing(steps: np.ndarray) -> int | None:
    """The smallest positive step between consecutive rows (ms); None if there is none."""
    none = np.iinfo(np.int64).max
    smallest = int(np.min(steps, where=steps > 0, initial=none))
    return None if smallest == none else smallest


def _check_spacing(
    parsed: CandleFile, steps: np.ndarray, spacing: int | None, tf: Timeframe, flag: str
) -> None:
    """Refuse a file whose rows contradict its timeframe as a whole, e.g. 1h candles named
    ``-1m`` (no two rows one step apart) or 1m candles named ``-1h`` (most steps shorter).
    A few stray rows are left to validation, which reports them by line."""
    if spacing is None or len(steps) < 2 or spacing == tf.ms:
        return
    if spacing > tf.ms:
        how = "at least"
    elif np.count_nonzero((steps > 0) & (steps < tf.ms)) > len(steps) // 2:
        how = "mostly"
    else:
        return
    found = _describe_ms(spacing)
    raise DataError(
        f"{parsed.where}: consecutive rows are {how} {found} apart, but the timeframe is {tf} "
        f"(from {flag or 'the file name'}); if the file holds {found} candles, pass "
        f"--timeframe {found}"
    )


def _describe_ms(ms: int) -> str:
    """``3600000`` → ``1h`` when it is a timeframe, else ``90000 ms``."""
    for tf in Timeframe:
        if tf.ms == ms:
            return tf.value
    return f"{ms} ms"

"""Checked command-line values: timeframes, symbols, model names, resample targets.

Each helper turns a value as the user typed it into the library's type, or raises
:class:`typer.BadParameter` naming the option, the bad value and what is expected — checked
before any data is read, so a typo costs nothing. Only light modules are imported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import typer

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe

if TYPE_CHECKING:
    from pivotal.data.series import SeriesInfo
    from pivotal.data.store import MarketDataStore

#: the reinforcement-learning agent ``pivotal train`` accepts beside the registered networks
RL_MODELS = ("dqn",)


def _allowed_timeframes() -> str:
    return ", ".join(t.value for t in Timeframe)


def timeframe_arg(text: str | Timeframe, option: str = "--timeframe") -> Timeframe:
    """``"1h"`` → :class:`Timeframe`; anything else is a usage error listing the allowed ones."""
    try:
        return Timeframe.parse(text)
    except ValueError:
        raise typer.BadParameter(
            f"{str(text)!r} is not a timeframe; use one of {_allowed_timeframes()}",
            param_hint=option,
        ) from None


def timeframes_arg(text: str, option: str) -> list[Timeframe]:
    """A comma-separated list of timeframes (``1h,1d``), each checked."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise typer.BadParameter(
            f"give at least one timeframe, e.g. 1h,1d (allowed: {_allowed_timeframes()})",
            param_hint=option,
        )
    return [timeframe_arg(p, option) for p in parts]


def symbol_arg(text: str, option: str = "--symbol", known: Iterable[Symbol] = ()) -> Symbol:
    """A symbol as typed (``BTC/USDT``, ``btcusdt``, ``BTC-USDT``), resolved against ``known``
    (e.g. the store's symbols) when it has no slash; a usage error says the expected form."""
    try:
        return Symbol.resolve(text, known)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def needs_lookup(text: str) -> bool:
    """Whether a symbol typed without a slash should be resolved against the store."""
    return "/" not in text


def stored_series(store: MarketDataStore) -> list[SeriesInfo]:
    return list(store.series())


def unknown_series_message(
    infos: Iterable[SeriesInfo], exchange: str, symbol: Symbol | str, timeframe: Timeframe | str
) -> str:
    """Why ``exchange symbol timeframe`` has no candles, from what the store holds: the symbol
    on another exchange, its other timeframes, or the symbols the store has."""
    infos = list(infos)
    name = str(symbol)
    mine = [i for i in infos if str(i.key.symbol) == name]
    here = sorted({i.key.timeframe for i in mine if i.key.exchange == exchange}, key=lambda t: t.ms)
    if here:
        return (
            f"no {timeframe} candles for {name} on {exchange}; the store has {name} "
            f"{', '.join(t.value for t in here)} there: pass one with --timeframe, or resample "
            "with `pivotal data resample`"
        )
    elsewhere = sorted({i.key.exchange for i in mine})
    if elsewhere:
        return (
            f"no {name} candles on {exchange}; {name} is stored on {', '.join(elsewhere)}: "
            f"pass --exchange {elsewhere[0]}"
        )
    symbols = sorted({str(i.key.symbol) for i in infos})
    if not symbols:
        return (
            f"the store holds no candles yet, so none for {name}; import them with "
            "`pivotal data import` or `pivotal data download`"
        )
    return (
        f"symbol {name} is not in the store (it has {', '.join(symbols)}); check the spelling "
        "or import it with `pivotal data import` (see `pivotal data list`)"
    )


def model_name_arg(name: str, *, allow_rl: bool = True) -> str:
    """A registered model name (or ``dqn`` where the agent is accepted); checked without
    importing torch-heavy modules beyond the registry."""
    from pivotal.models import available

    names = list(available()) + (list(RL_MODELS) if allow_rl else [])
    if name in names:
        return name
    if name in RL_MODELS:
        raise typer.BadParameter(
            f"{name} is trained with `pivotal train {name}`, not searched here; use one of "
            f"{', '.join(names)}",
            param_hint="MODEL",
        )
    raise typer.BadParameter(
        f"unknown model {name!r}; use one of {', '.join(names)} (see `pivotal models list`)",
        param_hint="MODEL",
    )


def resample_targets(source: str | Timeframe, targets: str) -> list[Timeframe]:
    """``--to`` timeframes built from ``--from``: each must be a longer, whole multiple."""
    src = timeframe_arg(source, "--from")
    chain = timeframes_arg(targets, "--to")
    for target in chain:
        if target.ms <= src.ms:
            raise typer.BadParameter(
                f"cannot resample {src} to {target}: resampling builds longer timeframes from "
                f"shorter ones; use a target longer than {src}, e.g. "
                f"{', '.join(t.value for t in Timeframe if t.ms > src.ms and t.ms % src.ms == 0)}",
                param_hint="--to",
            )
        if target.ms % src.ms:
            fits = [t.value for t in Timeframe if t.ms > src.ms and t.ms % src.ms == 0]
            raise typer.BadParameter(
                f"cannot resample {src} to {target}: {target} is not a whole number of {src} "
                f"candles; use one of {', '.join(fits)}",
                param_hint="--to",
            )
    return chain


def validation_message(exc: Exception, what: str) -> str:
    """A pydantic ``ValidationError`` as lines ``where: the value given — what is wrong``."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return f"invalid {what}: {exc}"
    lines = []
    for error in errors():
        where = ".".join(map(str, error["loc"])) or "(top level)"
        given = error.get("input")
        shown = "" if error["type"] == "missing" or isinstance(given, dict) else f"{given!r}: "
        lines.append(f"{where}: {shown}{error['msg']}")
    return f"invalid {what}:\n  " + "\n  ".join(lines)

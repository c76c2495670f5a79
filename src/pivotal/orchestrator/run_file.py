"""The run file: what ``pivotal run RUN_FILE`` runs, its model, reading and writing.

:class:`RunConfig` names the mode, the market (exchange, symbols, base timeframe, range,
learning span), the trading settings (broker, risk, gaps) and the orchestrator (experts with
their checkpoints, gate, inference, history, learning). :func:`load_run_config` reads and
validates a file. :func:`write_run_file` writes one back: only the values that differ from
the defaults, times as ISO-8601 UTC, and the paths (expert checkpoints, the online
checkpoint folder) relative to the run file's folder, which is how :func:`load_run_config`
resolves them: reading the file back gives the same run. Written atomically.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pivotal.config.live import LiveSettings
from pivotal.config.models import StrictModel
from pivotal.core.clock import iso_utc, utc_text
from pivotal.core.errors import ConfigError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.atomic import atomic_write_text
from pivotal.orchestrator.config import OrchestratorConfig
from pivotal.trading.settings import TradingSettings

__all__ = ["RunConfig", "load_run_config", "parse_time_ms", "write_run_file"]


def parse_time_ms(value: Any, name: str) -> int | None:
    """``2024-01-01``, ``2024-01-01T12:00`` (UTC unless an offset is given), epoch ms, or a
    ``date``/``datetime`` (YAML reads unquoted dates as those)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    if not isinstance(value, str):
        raise ValueError(f"{name}: {value!r} is not a time; use YYYY-MM-DD or epoch ms")
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name}: {value!r} is not a time; use YYYY-MM-DD, YYYY-MM-DDTHH:MM or epoch ms"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class RunConfig(StrictModel):
    """One run of the orchestrator (``pivotal run RUN_FILE``)."""

    mode: Literal["backtest", "paper", "live"] = Field(
        default="backtest",
        description="backtest (the stored range), paper (live data, simulated fills) or live "
        "(orders on the venue); --mode on the command line overrides it",
    )
    exchange: str = "binance"
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT"], min_length=1)
    timeframe: str = Field(default="5m", description="base bars: the orchestrator decides on each")
    since: int | str | None = None
    until: int | str | None = None
    learn_from: int | str | None = Field(
        default=None,
        description="run the models with learning on over [learn_from, since) before trading "
        "(no orders); needs since",
    )
    warmup_bars: int = Field(
        default=600, ge=0, description="bars per timeframe read before since (indicator warm-up)"
    )
    seed: int = 0
    accelerate: bool = Field(
        default=True,
        description="evaluate the position-independent models in batches ahead of the clock "
        "(same decisions as pushing bars one at a time; false: push every bar through the "
        "market frame as paper and live trading do)",
    )
    settings: TradingSettings = Field(default_factory=TradingSettings)
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)
    live: LiveSettings = Field(
        default_factory=LiveSettings,
        description="paper and live sessions: venue, endpoints, keys, journal, reconciliation",
    )

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        return [str(Symbol.parse(s)) for s in value]

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        return str(Timeframe.parse(value))

    @field_validator("since", "until", "learn_from", mode="before")
    @classmethod
    def _times(cls, value: Any, info: Any) -> int | None:
        return parse_time_ms(value, info.field_name)

    @model_validator(mode="after")
    def _span(self) -> RunConfig:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(
                f"since {utc_text(self.since)} must be before until {utc_text(self.until)}"
            )
        if self.learn_from is not None and self.since is None:
            raise ValueError("learn_from needs since: the learning span is [learn_from, since)")
        if self.learn_from is not None and self.since is not None and self.learn_from >= self.since:
            raise ValueError(
                f"learn_from {utc_text(self.learn_from)} must be before since "
                f"{utc_text(self.since)}: the "
                "learning span precedes trading"
            )
        return self

    @property
    def base(self) -> Timeframe:
        return Timeframe.parse(self.timeframe)


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run file; ``ConfigError`` listing every problem with its key.

    Relative paths in it (expert checkpoints, ``orchestrator.learning.checkpoint_dir``) are
    resolved against the file's folder; ``~`` is expanded. ``{run}`` in ``checkpoint_dir`` is
    replaced by the run file's name without its suffix, so each run keeps its own online
    checkpoints."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the run file: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run file is a mapping (mode:, symbols:, orchestrator:, ...)")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(map(str, e['loc'])) or 'run file'}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise ConfigError(f"{path}: invalid run file:\n  " + "\n  ".join(lines)) from None

    def resolve(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else Path(os.path.normpath(path.parent / p))  # no a/../b

    experts = [
        e.model_copy(update={"checkpoint": resolve(e.checkpoint)})
        for e in config.orchestrator.experts
    ]
    learning = config.orchestrator.learning
    if learning.checkpoint_dir is not None:
        folder = Path(str(learning.checkpoint_dir).replace("{run}", path.stem))
        learning = learning.model_copy(update={"checkpoint_dir": resolve(folder)})
    orchestrator = config.orchestrator.model_copy(update={"experts": experts, "learning": learning})
    live = config.live
    paths = {
        key: resolve(getattr(live, key))
        for key in ("keys_file", "journal")
        if getattr(live, key) is not None
    }
    return config.model_copy(
        update={"orchestrator": orchestrator, "live": live.model_copy(update=paths)}
    )


def write_run_file(config: RunConfig, path: str | os.PathLike[str], *, header: str = "") -> Path:
    """Write ``config`` to ``path`` (module docstring); ``header`` lines become comments."""
    target = Path(path)
    folder = target.parent.resolve()
    data: dict[str, Any] = {"mode": config.mode}
    data.update(config.model_dump(mode="json", exclude_defaults=True))
    for key in ("since", "until", "learn_from"):
        value = getattr(config, key)
        if value is not None:
            data[key] = iso_utc(int(value))
    orchestrator = data.get("orchestrator", {})
    for expert, source in zip(
        orchestrator.get("experts", []), config.orchestrator.experts, strict=True
    ):
        expert["checkpoint"] = _relative(source.checkpoint, folder)
    live = data.get("live", {})
    for key in ("keys_file", "journal"):
        value = getattr(config.live, key)
        if value is not None:
            live[key] = _relative(value, folder)
    learning = orchestrator.get("learning", {})
    if config.orchestrator.learning.checkpoint_dir is not None:
        learning["checkpoint_dir"] = _relative(config.orchestrator.learning.checkpoint_dir, folder)
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    text = comments + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return atomic_write_text(target, text)


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), folder)).as_posix()

"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pivotal.apps.cli import app
from pivotal.core import Candles
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

README = Path(__file__).resolve().parents[1] / "README.md"
DATA = shared_data_dir()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_starts_with_the_two_commands() -> None:
    first = blocks("bash")[0].splitlines()
    assert first[0].startswith("make demo")
    assert first[1].startswith("make test")


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
def test_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DATA is not None
    real = pd.read_parquet(DATA / "ohlcv" / "binance-spot" / "1m" / "BTC_USDT-1m.parquet").tail(500)
    with open_store(tmp_path / "out" / "demo") as store:
        store.write_candles(SeriesKey("binance", "BTC/USDT", "1m"), Candles.from_frame(real))
    monkeypatch.chdir(tmp_path)
    (code,) = blocks("python")
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the README's own code
    frame = namespace["frame"]
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 500
    assert frame["close"].iloc[-1] == real["close"].iloc[-1]


def test_every_command_in_the_tour_exists() -> None:
    tour = next(b for b in blocks("bash") if "pivotal --help" in b)
    commands = set()
    for line in tour.splitlines():
        if line.startswith("pivotal ") and not line.startswith("pivotal --"):
            words = line.split()[1:3]
            # `pivotal backtest -s …` is a command; `pivotal data import …` a group + command
            commands.add(tuple(w for w in words if not w.startswith("-")))
    assert len(commands) >= 8
    runner = CliRunner()
    for words in sorted(commands):
        result = runner.invoke(app, [*words, "--help"])
        assert result.exit_code == 0, (words, result.output)


def test_the_readme_run_file_is_a_valid_run_config() -> None:
    import yaml

    from pivotal.orchestrator.run_file import RunConfig

    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(mode: backtest.*?)```", text, re.S)
    assert block is not None, "the README lost its run file example"
    config = RunConfig.model_validate(yaml.safe_load(block.group(1)))
    assert config.learn_from is not None and config.since is not None
    assert [e.kind for e in config.orchestrator.experts] == ["pivot_cnn", "dqn"]


def test_the_readme_live_section_is_a_valid_run_config() -> None:
    import yaml

    from pivotal.orchestrator.run_file import RunConfig

    block = re.search(r"```yaml\n(mode: live.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block is not None, "the README lost its live: example"
    config = RunConfig.model_validate(yaml.safe_load(block.group(1)))
    assert config.mode == "live" and config.live.venue == "binance"
    assert config.live.unknown_orders == "report" and config.live.on_stop == "keep"

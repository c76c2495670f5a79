"""Configuration: defaults, file, environment, flags; errors that name file, key and choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from pivotal.config import load_config, masked_dump
from pivotal.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pivotal.yaml"
    path.write_text(text)
    return path


def test_every_key_is_optional(tmp_path: Path) -> None:
    cfg, file = load_config(write(tmp_path, ""), environ={})
    assert file is not None
    assert cfg.download.fallback_exchanges == ["binance", "mexc"]
    assert cfg.store.backend == "duckdb"


def test_data_dir_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data_dir: /from/file\n")
    assert load_config(path, environ={})[0].data_dir == Path("/from/file")
    env = {"PIVOTAL_DATA_DIR": "/from/env"}
    assert load_config(path, environ=env)[0].data_dir == Path("/from/env")
    flag = load_config(path, environ=env, data_dir=Path("/from/flag"))[0]
    assert flag.data_dir == Path("/from/flag")


def test_nested_env_overrides_and_lists(tmp_path: Path) -> None:
    env = {
        "PIVOTAL_EXCHANGES__BINANCE__REST_URL": "http://127.0.0.1:9000/",
        "PIVOTAL_DOWNLOAD__FALLBACK_EXCHANGES": "binance, mexc, okx",
        "PIVOTAL_DOWNLOAD__MAX_RETRIES": "3",
    }
    cfg, _ = load_config(write(tmp_path, "download: {max_retries: 9}\n"), environ=env)
    assert cfg.exchange("binance").rest_url == "http://127.0.0.1:9000"
    assert cfg.download.fallback_exchanges == ["binance", "mexc", "okx"]
    assert cfg.download.max_retries == 3


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "exchanges:\n  binance:\n    rest_ur: http://x\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    message = str(err.value)
    assert str(path) in message
    assert "exchanges.binance.rest_ur" in message
    assert "allowed here: api_key, rate_limit_ms, rest_url, secret, timeout_s" in message


def test_bad_value_names_env_variable() -> None:
    with pytest.raises(ConfigError, match=r"PIVOTAL_DOWNLOAD__PAGE_LIMIT.*greater than"):
        load_config(None, environ={"PIVOTAL_DOWNLOAD__PAGE_LIMIT": "0"}, use_default_file=False)


def test_bad_symbol_and_url_explain_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BASE/QUOTE"):
        load_config(write(tmp_path, "markets: {symbols: [BTCUSDT]}\n"), environ={})
    with pytest.raises(ConfigError, match="http://"):
        load_config(write(tmp_path, "exchanges: {binance: {rest_url: ftp://x}}\n"), environ={})


def test_invalid_yaml_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 2, column"):
        load_config(write(tmp_path, "a: 1\n  b: [\n"), environ={})
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"), environ={})


def test_secrets_are_masked() -> None:
    env = {"PIVOTAL_EXCHANGES__BINANCE__API_KEY": "my-secret-key"}
    cfg, _ = load_config(None, environ=env, use_default_file=False)
    dumped = masked_dump(cfg)
    assert dumped["exchanges"]["binance"]["api_key"] == "********"
    assert "my-secret-key" not in repr(dumped) and "my-secret-key" not in repr(cfg)

"""The command line as a user meets it: help, config show, clear errors and exit codes."""

from __future__ import annotations

from pathlib import Path

from pivotal.data.duckdb_store import open_store
from pivotal.testing.cli import run_cli


def test_help_lists_every_group_with_one_line(tmp_path: Path) -> None:
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    for group in ("config", "data", "demo"):
        assert f"│ {group} " in result.stdout


def test_config_show_masks_secrets_and_reports_the_file(tmp_path: Path) -> None:
    (tmp_path / "pivotal.yaml").write_text("exchanges:\n  binance:\n    secret: topsecret\n")
    result = run_cli(
        ["config", "show", "--data-dir", str(tmp_path / "d")],
        cwd=tmp_path,
        env={"PIVOTAL_EXCHANGES__BINANCE__API_KEY": "key-123"},
    )
    assert result.returncode == 0, result.stderr
    assert "topsecret" not in result.stdout
    assert "key-123" not in result.stdout
    assert "********" in result.stdout
    assert f"data_dir: {tmp_path / 'd'}" in result.stdout
    assert "pivotal.yaml" in result.stdout


def test_bad_config_key_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "pivotal.yaml").write_text("download:\n  retries: 3\n")
    result = run_cli(["config", "show"], cwd=tmp_path)
    assert result.returncode == 2
    assert "pivotal.yaml" in result.stderr
    assert "download.retries" in result.stderr
    assert "max_retries" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(["data", "list", "--data-dir", str(tmp_path / "none")], cwd=tmp_path)
    assert result.returncode == 1
    assert "pivotal data import" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_symbol_flag_is_a_usage_error(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    result = run_cli(
        ["data", "gaps", "-e", "binance", "-s", "BTC/US/DT", "-t", "1m", "-d", str(tmp_path)],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "BASE/QUOTE" in result.stderr

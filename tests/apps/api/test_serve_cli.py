"""``pivotal serve`` and ``pivotal serve token``, and the token file: clear refusals (exit 2,
no traceback), a real server process that prints where the dashboard and the token file are
(never the token) and stops on Ctrl-C, a token file kept private and out of git trees."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pivotal.apps.api.auth import ApiTokens, TokenFileError
from pivotal.apps.cli.main import app
from pivotal.testing.cli_walk import first_option, is_flag, plain, root_command

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "PIVOTAL_CONFIG": None}
TRACEBACK = "Traceback (most recent call last)"


def _run(args: list[str], home: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``pivotal ARGS`` with ``home`` as $HOME (so the default token file is a test's)."""
    result = CliRunner().invoke(app, args, env={**ENV, "HOME": str(home), **(env or {})})
    text = result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f"\n{TRACEBACK}\n{type(result.exception).__name__}: {result.exception}"
    return result.exit_code, plain(text)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def token_file(home: Path) -> Path:
    """The default token file under the test's $HOME."""
    return home / ".config" / "pivotal" / "api-tokens.json"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--data-dir", "{tmp}/nowhere"], ["nowhere", "does not exist"]),
        (["--data-dir", "{tmp}/empty"], ["empty", "holds no market store"]),
        (["--data-dir", "{run}", "--run", "nosuchrun"], ["nosuchrun", "bt.json"]),
        (["--data-dir", "{run}", "--run", "{tmp}/x.json"], ["x.json", "not a pivotal report"]),
        (["--data-dir", "{run}", "--host", "0.0.0.0"], ["--i-understand-exposure", "0.0.0.0"]),
        (["--data-dir", "{run}", "--host", "example.com"], ["example.com", "not an IP"]),
        (["--data-dir", "{run}", "--allow-origin", "evil"], ["'evil' is not an origin"]),
        (["--data-dir", "{run}", "--port", "70000"], ["70000 is not a port", "0..65535"]),
    ],
)
def test_bad_arguments_are_refused_with_exit_2(
    tmp_path: Path, run_dir: Path, token_file: Path, args: list[str], said: list[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.json").write_text('{"format": "something-else"}')
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in args]
    code, text = _run(["serve", *argv], home)
    assert TRACEBACK not in text, text
    assert code == 2, text
    for word in said:
        assert word in text, text
    assert not token_file.exists(), "nothing started, no token file written"


def test_a_port_in_use_is_refused_with_exit_2(run_dir: Path, home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, text = _run(["serve", "--data-dir", str(run_dir), "--port", str(port)], home)
    assert code == 2 and TRACEBACK not in text, text
    assert f"port {port} on 127.0.0.1 is in use" in text


@pytest.mark.network
def test_serve_runs_until_ctrl_c_and_never_prints_the_token(
    run_dir: Path, token_file: Path
) -> None:
    env = {**os.environ, "HOME": str(token_file.parents[2]), "COLUMNS": "200"}
    env.pop("PIVOTAL_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "pivotal", "serve", "--data-dir", str(run_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while not any("serving" in line for line in lines) and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        output = "".join(lines)
        found = re.search(r"dashboard: (http://127\.0\.0\.1:(\d+))/", output)
        assert found, output
        assert str(token_file) in output
        tokens = ApiTokens.load(token_file)
        base = found.group(1)
        assert httpx.get(f"{base}/health").json()["nodes"] == 1
        nodes = httpx.get(
            f"{base}/api/v1/nodes", headers={"Authorization": f"Bearer {tokens.viewer}"}
        )
        assert [n["id"] for n in nodes.json()] == ["bt"]
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output += rest
    assert process.returncode == 0, output
    assert "stopped" in output and TRACEBACK not in output
    assert tokens.admin not in output and tokens.viewer not in output


def test_serve_token_prints_the_token_on_request(home: Path, token_file: Path) -> None:
    tokens = ApiTokens.load_or_create(token_file)
    code, text = _run(["serve", "token"], home)
    assert (code, text) == (0, tokens.admin)
    elsewhere = home / "elsewhere.json"
    other = ApiTokens.load_or_create(elsewhere)
    code, text = _run(["serve", "token", "--viewer", "--token-file", str(elsewhere)], home)
    assert (code, text) == (0, other.viewer)


def test_the_token_file_variable_names_the_file(home: Path, tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.json"
    tokens = ApiTokens.load_or_create(chosen)
    code, text = _run(["serve", "token"], home, {"PIVOTAL_API_TOKEN_FILE": str(chosen)})
    assert (code, text) == (0, tokens.admin)


def test_serve_token_without_a_token_file_says_how_to_get_one(home: Path, token_file: Path) -> None:
    code, text = _run(["serve", "token"], home)
    assert code == 2 and TRACEBACK not in text, text
    assert f"no API token file at {token_file}" in text and "pivotal serve" in text


def test_every_serve_option_has_help_and_says_its_default() -> None:
    """The checks tests/trust applies to commands, applied to ``serve`` itself (a group: its
    options live on the group's callback, which the command walk does not visit)."""
    serve = root_command(app).commands["serve"]
    problems = []
    for param in serve.params:
        name = first_option(param)
        if not (param.help or "").strip():
            problems.append(f"{name}: no help")
        if is_flag(param) or param.required:
            continue
        says = "default" in (param.help or "").lower()
        if param.default in (None, []) and not isinstance(param.show_default, str) and not says:
            problems.append(f"{name}: default None without show_default")
    assert not problems, problems


# -- the token file ---------------------------------------------------------------------------
def test_the_token_file_is_created_private_and_reused(token_file: Path) -> None:
    first = ApiTokens.load_or_create(token_file)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert len(first.admin) >= 40 and first.admin != first.viewer
    again = ApiTokens.load_or_create(token_file)
    assert (again.admin, again.viewer) == (first.admin, first.viewer)
    assert first.admin not in repr(first) and first.viewer not in repr(first)
    assert first.role_of(first.admin) == "admin" and first.role_of(first.viewer) == "viewer"
    assert first.role_of(first.admin[:-1]) is None and first.role_of(None) is None


def test_a_token_file_inside_a_git_tree_is_refused(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    inside = tmp_path / "repo" / "config" / "tokens.json"
    with pytest.raises(TokenFileError, match="inside the git working tree"):
        ApiTokens.load_or_create(inside)
    assert not inside.exists()


def test_a_token_file_others_can_read_is_refused(token_file: Path) -> None:
    ApiTokens.load_or_create(token_file)
    token_file.chmod(0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        ApiTokens.load(token_file)


def test_a_broken_token_file_says_to_delete_it(token_file: Path) -> None:
    token_file.parent.mkdir(parents=True)
    token_file.write_text(json.dumps({"admin": "short"}))
    token_file.chmod(0o600)
    with pytest.raises(TokenFileError, match="delete it"):
        ApiTokens.load(token_file)


def test_the_token_file_variable_is_not_read_as_a_setting(
    run_dir: Path, home: Path, tmp_path: Path
) -> None:
    """$PIVOTAL_API_TOKEN_FILE names the token file; the config loader must not take it for
    a ``PIVOTAL_*`` setting (it would refuse every command while the variable is set)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, text = _run(
            ["serve", "--data-dir", str(run_dir), "--port", str(port)],
            home,
            {"PIVOTAL_API_TOKEN_FILE": str(tmp_path / "chosen.json")},
        )
    assert code == 2 and "is in use" in text, text

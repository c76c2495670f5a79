"""``pivotal run ... --serve``: a session in its own process serves the API (and the
dashboard) while it trades; commands reach its loop and its journal; SIGTERM stops both."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from helpers.node_kit import NodeHome
from pivotal.data.order_journal import SqliteOrderJournal

pytestmark = pytest.mark.network


def _dashboard_url(child, limit_s: float = 120.0) -> tuple[str, list[str]]:
    """Read the child's lines until it says where the dashboard is."""
    seen: list[str] = []
    deadline = time.monotonic() + limit_s
    assert child.stdout is not None
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip())
        found = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)/dashboard/", line)
        if found:
            return found.group(1), seen
    raise AssertionError("no dashboard line:\n" + "\n".join(seen))


def test_a_session_serves_its_api_and_takes_commands_until_sigterm(tmp_path: Path) -> None:
    home = NodeHome(tmp_path, mode="paper")
    tokens_file = tmp_path / "outside" / "tokens.json"
    try:
        child = home.start(duration_s=300, serve=str(tokens_file))
        url, lines = _dashboard_url(child)
        tokens = json.loads(tokens_file.read_text(encoding="utf-8"))
        assert tokens_file.stat().st_mode & 0o077 == 0  # owner only
        assert all(tokens["admin"] not in line for line in lines)  # never printed
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/api/v1/nodes").status_code == 401
            home.wait_for_steps(child, 2)
            (node,) = http.get("/api/v1/nodes", headers=viewer).json()
            assert node["kind"] == "paper" and node["status"] == "running"
            path = f"/api/v1/nodes/{node['id']}/commands/entries"
            assert http.post(path, json={"stopped": True}, headers=viewer).status_code == 403
            done = http.post(path, json={"stopped": True}, headers=admin).json()
            assert done["accepted"], done
            controls = http.get(f"/api/v1/nodes/{node['id']}/controls", headers=viewer).json()
            assert controls["entries_stopped"] is True
            candles = http.get(
                f"/api/v1/nodes/{node['id']}/candles",
                params={"symbol": "BTC-USDT", "timeframe": "1m", "limit": 50},
                headers=viewer,
            ).json()
            assert candles["symbol"] == "BTC/USDT" and len(candles["bars"]["t"]) > 0
        out = home.kill(child, signal.SIGTERM)
        assert child.returncode == 0, out
        assert "stopped: SIGTERM" in out
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=5)
        reader = SqliteOrderJournal.open_readonly(home.journal)
        try:
            commands = [e.data for e in reader.entries(kinds=["command"])]
        finally:
            reader.close()
        assert any(c.get("command") == "entries" for c in commands), commands
    finally:
        home.close()

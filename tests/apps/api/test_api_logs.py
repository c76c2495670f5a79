"""The token never reaches a log: a real server on 127.0.0.1 with every logger at DEBUG,
used with both tokens in headers, in the WebSocket subprotocol, in a query string where a
careless client put it, and as wrong tokens that start with the right one."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
import websockets

from pivotal.apps.api import ApiServer, ApiTokens
from pivotal.services.view import Services

pytestmark = pytest.mark.network

#: the test's own clients log their requests (the tokens included) at DEBUG: not the server's
CLIENT_LOGGERS = ("httpx", "httpcore", "websockets.client")


def test_no_token_in_any_log_line(
    run_services: Services,
    tokens: ApiTokens,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("uvicorn", "uvicorn.error", "websockets", "pivotal"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        with ApiServer(run_services, tokens=tokens, port=0, ws_interval_s=0.1) as server:
            admin = {"Authorization": f"Bearer {tokens.admin}"}
            with httpx.Client(base_url=server.url) as http:
                assert http.get("/api/v1/nodes", headers=admin).status_code == 200
                assert http.get(f"/api/v1/nodes?token={tokens.admin}").status_code == 401
                wrong = {"Authorization": f"Bearer {tokens.admin}x"}
                assert http.get("/api/v1/overview", headers=wrong).status_code == 401
                viewer = {"Authorization": f"Bearer {tokens.viewer}"}
                assert http.post(
                    "/api/v1/nodes/bt/commands/entries", json={"stopped": True}, headers=viewer
                ).status_code == 403  # fmt: skip
                assert http.get("/api/v1/nodes/nope", headers=admin).status_code == 404

            async def sockets() -> None:
                url = server.url.replace("http://", "ws://") + "/api/v1/ws"
                for token in (tokens.viewer, tokens.admin + "x"):
                    async with websockets.connect(
                        f"{url}?token={token}", subprotocols=["pivotal.v1", f"bearer.{token}"]
                    ) as ws:
                        try:
                            await ws.send(json.dumps({"op": "ping"}))
                            await asyncio.wait_for(ws.recv(), 5)
                        except websockets.ConnectionClosed:
                            pass

            asyncio.run(sockets())
    finally:
        for name in ("uvicorn", "uvicorn.error", "websockets", "pivotal"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    out, err = capfd.readouterr()
    server_records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in server_records) + out + err
    assert "GET /api/v1/nodes 200" in logged, "the access log is written"
    assert "GET /api/v1/nodes 401" in logged, "without its query string"
    assert "WS /api/v1/ws 101" in logged
    for secret in (tokens.admin, tokens.viewer):
        assert secret not in logged
    assert "Sec-WebSocket-Protocol" in logged or "sec-websocket-protocol" in logged, (
        "the handshake's headers are logged at DEBUG (so the redaction is what is tested)"
    )

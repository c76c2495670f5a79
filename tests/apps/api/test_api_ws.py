"""The WebSocket hub through a real server on 127.0.0.1 and the ``websockets`` client:
subprotocol auth, Origin refusal, incremental candles, pushes only on change, command
broadcasts, bad messages answered without closing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pivotal.apps.api import ApiServer, ApiTokens
from pivotal.services.view import Services

pytestmark = pytest.mark.network

INTERVAL = 0.1  # the poll period in these tests (1 s in service)


@pytest.fixture
def server(memory_node: Any, run_services: Services, tokens: ApiTokens) -> Iterator[ApiServer]:
    services = Services([memory_node, *run_services.nodes()])
    with ApiServer(
        services, tokens=tokens, port=0, dashboard=False, ws_interval_s=INTERVAL
    ) as running:
        yield running


def _ws_url(server: ApiServer) -> str:
    return server.url.replace("http://", "ws://") + "/api/v1/ws"


def _connect(server: ApiServer, token: str, **kwargs: Any) -> Any:
    return websockets.connect(
        _ws_url(server), subprotocols=["pivotal.v1", f"bearer.{token}"], **kwargs
    )


async def _next(ws: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next message of type ``kind`` (others skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message


async def _quiet(ws: Any, kind: str, seconds: float) -> bool:
    """Whether no message of ``kind`` arrives for ``seconds``."""
    try:
        await _next(ws, kind, seconds)
    except TimeoutError:
        return True
    return False


def test_a_bad_token_is_closed_4401_and_a_forged_origin_refused(
    server: ApiServer, tokens: ApiTokens
) -> None:
    async def scenario() -> None:
        async with _connect(server, "wrong") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        with pytest.raises(InvalidStatus) as refused:
            async with _connect(server, tokens.admin, origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        own = f"http://127.0.0.1:{server.port}"
        async with _connect(server, tokens.viewer, origin=own) as ws:
            assert ws.subprotocol == "pivotal.v1"
            await ws.send(json.dumps({"op": "ping"}))
            assert (await _next(ws, "pong"))["type"] == "pong"

    asyncio.run(scenario())


def test_candles_are_pushed_incrementally_and_only_on_change(
    server: ApiServer, tokens: ApiTokens, memory_node: Any
) -> None:
    async def scenario() -> None:
        async with _connect(server, tokens.viewer) as ws:
            await ws.send(json.dumps({"op": "subscribe", "node": "paper", "channels": [
                {"kind": "candles", "symbol": "BTC-USDT", "timeframe": "1m", "limit": 20},
            ]}))  # fmt: skip
            subscribed = await _next(ws, "subscribed")
            assert subscribed["channels"][0]["symbol"] == "BTC/USDT"
            first = await _next(ws, "candles")
            assert first["reset"] is True and len(first["payload"]["bars"]["t"]) == 20
            last_t = first["payload"]["bars"]["t"][-1]
            # the next poll sends at most the last bar again; after that, nothing until a change
            await _quiet(ws, "candles", 4 * INTERVAL)
            assert await _quiet(ws, "candles", 5 * INTERVAL)
            new_t = memory_node.append_bar("BTC/USDT", 777.0, last_close=555.0)
            update = await _next(ws, "candles")
            bars = update["payload"]["bars"]
            assert update["reset"] is False
            assert bars["t"] == [last_t, new_t]  # the first replaces the chart's last bar
            assert bars["close"] == [555.0, 777.0]
            memory_node.update_last("BTC/USDT", 778.0)
            again = await _next(ws, "candles")
            assert again["payload"]["bars"]["t"] == [new_t]
            assert again["payload"]["bars"]["close"] == [778.0]

    asyncio.run(scenario())


def test_a_subscription_with_since_ms_starts_from_the_charts_last_bar(
    server: ApiServer, tokens: ApiTokens
) -> None:
    async def scenario() -> None:
        async with _connect(server, tokens.viewer) as ws:
            await ws.send(json.dumps({"op": "subscribe", "node": "bt", "channels": [
                {"kind": "candles", "symbol": "ETH/USDT", "timeframe": "1h", "limit": 1500},
                {"kind": "summary"}, {"kind": "overview"},
            ]}))  # fmt: skip
            full = await _next(ws, "candles")
            t = full["payload"]["bars"]["t"]
            assert full["reset"] and len(t) == 1500 and full["payload"]["pivots"]
            summary = await _next(ws, "summary")
            assert summary["node"] == "bt" and summary["payload"]["closed_trades"] > 0
            overview = await _next(ws, "overview")
            assert {row["node"] for row in overview["payload"]} == {"paper", "bt"}
        async with _connect(server, tokens.viewer) as ws:
            await ws.send(json.dumps({"op": "subscribe", "node": "bt", "channels": [
                {"kind": "candles", "symbol": "ETH/USDT", "timeframe": "1h", "since_ms": t[-2]},
            ]}))  # fmt: skip
            tail = await _next(ws, "candles")
            assert tail["reset"] is False and tail["payload"]["bars"]["t"] == t[-2:]

    asyncio.run(scenario())


def test_decisions_are_pushed_once_each(
    server: ApiServer, tokens: ApiTokens, memory_node: Any
) -> None:
    async def scenario() -> None:
        memory_node.decide("BTC/USDT", (1_000, "BUY"))
        async with _connect(server, tokens.viewer) as ws:
            await ws.send(json.dumps(
                {"op": "subscribe", "node": "paper", "channels": [{"kind": "decisions"}]}
            ))  # fmt: skip
            first = await _next(ws, "decisions")
            assert first["reset"] is True and [d["t"] for d in first["payload"]] == [1_000]
            memory_node.decide("BTC/USDT", (1_000, "SELL"), (2_000, "BUY"))  # one at t=1000 again
            update = await _next(ws, "decisions")
            assert update["reset"] is False
            assert [(d["t"], d["action"]) for d in update["payload"]] == [
                (1_000, "SELL"), (2_000, "BUY"),
            ]  # fmt: skip
            assert await _quiet(ws, "decisions", 5 * INTERVAL)

    asyncio.run(scenario())


def test_commands_are_broadcast_to_every_client(server: ApiServer, tokens: ApiTokens) -> None:
    import httpx

    async def scenario() -> None:
        async with _connect(server, tokens.viewer) as watcher, _connect(server, tokens.admin) as a:
            await watcher.send(json.dumps(
                {"op": "subscribe", "node": "paper", "channels": [{"kind": "controls"}]}
            ))  # fmt: skip
            before = await _next(watcher, "controls")
            assert before["payload"]["buy_threshold"] == 0.6
            async with httpx.AsyncClient(base_url=server.url) as http:
                response = await http.post(
                    "/api/v1/nodes/paper/commands/thresholds",
                    json={"buy_threshold": 0.75},
                    headers={"Authorization": f"Bearer {tokens.admin}"},
                )
            assert response.status_code == 200, response.text
            for ws in (watcher, a):
                pushed = await _next(ws, "command")
                assert pushed["node"] == "paper"
                assert pushed["payload"]["command"] == "thresholds"
                assert pushed["payload"]["controls"]["buy_threshold"] == 0.75
            after = await _next(watcher, "controls")
            assert after["payload"]["buy_threshold"] == 0.75

    asyncio.run(scenario())


def test_bad_messages_get_an_error_and_the_socket_stays_open(
    server: ApiServer, tokens: ApiTokens
) -> None:
    async def scenario() -> None:
        async with _connect(server, tokens.viewer) as ws:
            for bad, said in (
                ("not json", "not JSON"),
                (json.dumps({"op": "fly"}), "unknown op"),
                (json.dumps({"op": "subscribe", "node": "paper", "channels": []}), "channels"),
                (json.dumps({"op": "subscribe", "node": "nope", "channels": [{"kind": "summary"}]}),
                 "no node 'nope'"),
                (json.dumps({"op": "subscribe", "node": "paper",
                             "channels": [{"kind": "candles", "symbol": "BTC/USDT"}]}),
                 "timeframe"),
                (json.dumps({"op": "subscribe", "node": "paper",
                             "channels": [{"kind": "candles", "symbol": "XRP/USDT",
                                           "timeframe": "1m"}]}), "XRP/USDT"),
            ):  # fmt: skip
                await ws.send(bad)
                error = await _next(ws, "error")
                assert said in error["detail"], error
            await ws.send(json.dumps({"op": "ping"}))
            await _next(ws, "pong")

    asyncio.run(scenario())


def test_metrics_count_websocket_clients(server: ApiServer, tokens: ApiTokens) -> None:
    import httpx

    async def scenario() -> None:
        async with _connect(server, tokens.viewer) as ws:
            await ws.send(json.dumps({"op": "ping"}))
            await _next(ws, "pong")
            async with httpx.AsyncClient(base_url=server.url) as http:
                text = (
                    await http.get("/metrics", headers={"Authorization": f"Bearer {tokens.viewer}"})
                ).text
            assert "pivotal_ws_clients 1" in text

    asyncio.run(scenario())


def test_a_client_too_far_behind_is_dropped_and_closed_4408() -> None:
    from pivotal.apps.api.hub import QUEUE_LIMIT, HubClient
    from pivotal.apps.api.metrics import Metrics

    async def scenario() -> list[tuple[int, str]]:
        sent: list[str] = []
        closed: list[tuple[int, str]] = []
        gate = asyncio.Event()

        async def send(text: str) -> None:
            await gate.wait()  # the network is stuck
            sent.append(text)

        async def close(code: int, reason: str) -> None:
            closed.append((code, reason))

        client = HubClient(send, "viewer", close)
        writer = asyncio.get_running_loop().create_task(client.writer(Metrics()))
        for i in range(QUEUE_LIMIT + 5):
            client.push(f'{{"n":{i}}}')
        assert client.too_slow and client.closed
        gate.set()
        await asyncio.wait_for(writer, 5)
        assert len(sent) <= 1, "the backlog is dropped, not sent"
        return closed

    closed = asyncio.run(scenario())
    assert closed and closed[0][0] == 4408

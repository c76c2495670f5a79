"""The REST routes over a finished run read by the real views: answers in the service
schemas, symbol spellings, errors as {"detail": ...} with the right status, the refusals of
the auth and Origin checks, health, metrics and the dashboard mount."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from pivotal.apps.api import ApiTokens, create_app
from pivotal.apps.api.app import dashboard_available
from pivotal.services.schemas import (
    CandlesPayload,
    ClosedTrade,
    Controls,
    EquityPayload,
    NodeInfo,
    Summary,
)
from pivotal.services.view import Services

NODE = "bt"
CANDLES = f"/api/v1/nodes/{NODE}/candles"


@pytest.fixture
def client(run_services: Services, tokens: ApiTokens) -> TestClient:
    app = create_app(run_services, tokens, allowed_origins=["https://ops.example:8443"])
    return TestClient(app, headers={"Authorization": f"Bearer {tokens.viewer}"})


def test_nodes_and_overview_list_the_finished_run(client: TestClient) -> None:
    nodes = [NodeInfo.model_validate(n) for n in client.get("/api/v1/nodes").json()]
    assert [n.id for n in nodes] == [NODE]
    assert nodes[0].read_only and nodes[0].status == "finished"
    assert set(nodes[0].symbols) == {"BTC/USDT", "ETH/USDT"}
    overview = [Summary.model_validate(s) for s in client.get("/api/v1/overview").json()]
    trades = [
        ClosedTrade.model_validate(t) for t in client.get(f"/api/v1/nodes/{NODE}/trades").json()
    ]
    assert overview[0].closed_trades == len(trades) > 0


@pytest.mark.parametrize("spelled", ["BTC/USDT", "BTC-USDT", "BTCUSDT", "btcusdt"])
def test_candles_accept_every_symbol_spelling(client: TestClient, spelled: str) -> None:
    response = client.get(CANDLES, params={"symbol": spelled, "timeframe": "1m", "limit": 1500})
    assert response.status_code == 200, response.text
    payload = CandlesPayload.model_validate(response.json())
    assert payload.symbol == "BTC/USDT" and len(payload.bars.t) == 1500
    assert payload.pivots, "the swinging series has pivots"
    assert all(p.confirmed_t <= payload.bars.t[-1] for p in payload.pivots)


def test_candles_since_ms_returns_the_bars_from_there(client: TestClient) -> None:
    full = client.get(CANDLES, params={"symbol": "ETH/USDT", "timeframe": "1h", "limit": 10})
    t = full.json()["bars"]["t"]
    since = client.get(
        CANDLES, params={"symbol": "ETH/USDT", "timeframe": "1h", "since_ms": t[-3]}
    ).json()
    assert since["bars"]["t"] == t[-3:]


@pytest.mark.parametrize(
    ("params", "status", "said"),
    [
        ({"symbol": "DOGE/USDT", "timeframe": "1m"}, 404, "DOGE/USDT"),
        ({"symbol": "BTC/USDT", "timeframe": "7m"}, 422, "timeframe: Input should be '1s'"),
        ({"symbol": "BTC/USDT", "timeframe": "1m", "limit": 0}, 422, "limit"),
        ({"symbol": "BTC/USDT", "timeframe": "1m", "limit": 5001}, 422, "5000"),
        ({"symbol": "BTC/USDT", "timeframe": "1m", "since_ms": -1}, 422, "since_ms"),
        ({"timeframe": "1m"}, 422, "symbol"),
    ],
)
def test_bad_queries_are_4xx_with_a_detail(
    client: TestClient, params: dict, status: int, said: str
) -> None:
    response = client.get(CANDLES, params=params)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and said in detail


def test_unknown_node_is_404_naming_the_known_ones(client: TestClient) -> None:
    response = client.get("/api/v1/nodes/nope/summary")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"] and NODE in response.json()["detail"]


def test_every_query_route_answers(client: TestClient) -> None:
    for route in ("summary", "models", "decisions", "orders", "fills", "positions", "balances",
                  "trades", "equity", "risk", "alerts", "health", "controls"):  # fmt: skip
        response = client.get(f"/api/v1/nodes/{NODE}/{route}")
        assert response.status_code == 200, (route, response.text)
    cob = client.get(f"/api/v1/nodes/{NODE}/cob", params={"symbol": "BTC/USDT"})
    assert cob.status_code == 200, cob.text
    EquityPayload.model_validate(client.get(f"/api/v1/nodes/{NODE}/equity").json())
    assert Controls.model_validate(client.get(f"/api/v1/nodes/{NODE}/controls").json()).read_only


def test_a_command_to_a_finished_run_is_409(client: TestClient, tokens: ApiTokens) -> None:
    response = client.post(
        f"/api/v1/nodes/{NODE}/commands/entries",
        json={"stopped": True},
        headers={"Authorization": f"Bearer {tokens.admin}"},
    )
    assert response.status_code == 409, response.text
    assert "read-only" in response.json()["detail"] or "finished" in response.json()["detail"]


# -- refusals ------------------------------------------------------------------------------
def test_no_token_or_a_wrong_one_is_401_with_www_authenticate(client: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer not-the-token"},
                    {"Authorization": "Basic abc"}):  # fmt: skip
        response = client.get("/api/v1/nodes", headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert "token" in response.json()["detail"]
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401


def test_the_viewer_token_on_a_command_is_403(client: TestClient) -> None:
    for path, body in (("entries", {"stopped": True}), ("kill", {"confirm": True}),
                       ("thresholds", {"buy_threshold": 0.7})):  # fmt: skip
        response = client.post(f"/api/v1/nodes/{NODE}/commands/{path}", json=body)
        assert response.status_code == 403, response.text
        assert "admin token" in response.json()["detail"]


def test_a_forged_origin_is_403_and_allowed_ones_pass(client: TestClient) -> None:
    forged = client.get("/api/v1/nodes", headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403
    assert "evil.example" in forged.json()["detail"] and "--allow-origin" in forged.json()["detail"]
    # even /health and the dashboard refuse a foreign page
    assert client.get("/health", headers={"Origin": "http://evil.example"}).status_code == 403
    allowed = client.get("/api/v1/nodes", headers={"Origin": "https://ops.example:8443"})
    assert allowed.status_code == 200


def test_kill_needs_confirm_true(client: TestClient, tokens: ApiTokens) -> None:
    response = client.post(
        f"/api/v1/nodes/{NODE}/commands/kill",
        json={"confirm": False},
        headers={"Authorization": f"Bearer {tokens.admin}"},
    )
    assert response.status_code == 422
    assert "confirm" in response.json()["detail"]


# -- health, metrics, dashboard --------------------------------------------------------------
def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/health", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["nodes"] == 1


def test_metrics_count_requests_and_show_the_nodes(client: TestClient) -> None:
    client.get(CANDLES, params={"symbol": "BTC/USDT", "timeframe": "1m", "limit": 5})
    client.get("/api/v1/nodes/nope/summary")
    text = client.get("/metrics").text
    assert (
        'pivotal_http_requests_total{method="GET",route="/api/v1/nodes/{node}/candles",'
        'status="200"} 1' in text
    )
    assert 'route="/api/v1/nodes/{node}/summary",status="404"} 1' in text
    assert "pivotal_http_request_duration_seconds_bucket" in text
    assert 'pivotal_node_closed_trades{node="bt"}' in text
    assert "pivotal_ws_clients 0" in text


@pytest.mark.skipif(not dashboard_available(), reason="the dashboard package is not installed")
def test_the_dashboard_is_mounted_and_root_redirects_there(client: TestClient) -> None:
    root = client.get("/", follow_redirects=False, headers={"Authorization": ""})
    assert root.status_code == 307 and root.headers["location"] == "/dashboard/"
    page = client.get("/dashboard/", headers={"Authorization": ""})
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert client.get("/dashboard/_dash-layout", headers={"Authorization": ""}).status_code == 200
    assert client.get("/dashboard", follow_redirects=False).headers["location"] == "/dashboard/"


def test_openapi_declares_the_bearer_scheme_and_error_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "token" in spec["components"]["securitySchemes"]
    candles = spec["paths"]["/api/v1/nodes/{node}/candles"]["get"]
    assert {"200", "401", "404", "422"} <= set(candles["responses"])
    assert candles["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorBody"
    )


def test_the_session_route_says_what_the_token_may_do(
    client: TestClient, tokens: ApiTokens
) -> None:
    assert client.get("/api/v1/session").json() == {"role": "viewer"}
    admin = {"Authorization": f"Bearer {tokens.admin}"}
    assert client.get("/api/v1/session", headers=admin).json() == {"role": "admin"}
    assert client.get("/api/v1/session", headers={"Authorization": ""}).status_code == 401

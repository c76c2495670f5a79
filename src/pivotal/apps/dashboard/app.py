"""The Dash app factory: the page's static shell, served by the API server at a prefix.

The shell is a login form and empty, stably identified containers (``SHELL_IDS`` in the tests
and the report); the browser fills them. ``assets/*.js`` (served by Dash from
``assets_folder``, loaded in name order) fetch the API with ``Authorization: Bearer <token>``,
open the WebSocket (``["pivotal.v1", "bearer." + token]``) and apply its 1 Hz updates with
``Plotly.restyle`` / ``Plotly.extendTraces``, batching DOM writes in ``requestAnimationFrame``.
The only callbacks are clientside (boot and login), so the server never answers a data query:
it serves static files only and needs no token.

plotly.js comes from the installed ``plotly`` package (one route, cached by the browser), so
the page uses a single global ``Plotly`` and no ``dcc.Graph`` re-renders a figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dash
import plotly
from dash import ClientsideFunction, Input, Output, State, dcc, html
from flask import Response, send_file

__all__ = ["DEFAULT_BARS", "create_dashboard"]

DEFAULT_BARS = 200
"""Candles per chart on load (1..5000); a live update appends and drops the oldest. A grid
chart is ~400 px wide, so 200 candles are ~2 px each; more cost redraw time, not detail."""

ASSETS = Path(__file__).with_name("assets")
PLOTLY_ROUTE = "_pivotal/plotly.min.js"


def _plotly_js() -> Path:
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(
            f"plotly.min.js not found at {path}: reinstall the plotly package "
            "(pip install --force-reinstall plotly)"
        )
    return path


def _section(key: str, title: str, *children: Any) -> html.Section:
    return html.Section(
        [html.H2(title), *children], id=f"section-{key}", className="card", **{"data-testid": key}
    )


def _box(box_id: str, class_name: str = "") -> html.Div:
    """An empty container the browser fills (no callback outputs to it, so Dash never
    re-renders it)."""
    return html.Div(id=box_id, className=class_name, **{"data-testid": box_id})


def _layout(api_prefix: str, bars: int) -> html.Div:
    login = html.Div(
        [
            html.H1("pivotal"),
            html.P("Paste an API token (admin, or viewer for read-only)."),
            dcc.Input(
                id="login-token",
                type="password",
                placeholder="API token",
                autoComplete="off",
                debounce=False,
                n_submit=0,
            ),
            html.Button("Log in", id="login-submit", n_clicks=0, **{"data-testid": "login-submit"}),
            _box("login-error", "error"),
        ],
        id="login",
        className="login",
        **{"data-testid": "login"},
    )
    header = html.Header(
        [
            html.Span("pivotal", className="brand"),
            _box("node-title"),
            html.Span(
                "disconnected", id="ws-state", className="ws-state", **{"data-testid": "ws-state"}
            ),
            html.Button("Log out", id="logout", **{"data-testid": "logout"}),
        ],
        className="topbar",
    )
    markets = _section(
        "markets",
        "Markets",
        _box("charts", "charts"),
        html.Div(
            [
                html.Label("Order book of ", htmlFor="cob-symbol"),
                _box("cob-symbol-box", "inline"),
            ],
            className="row",
        ),
        html.Div(
            [_box("chart-cob", "chart wide"), _box("chart-imbalance", "chart wide")],
            className="cob",
        ),
    )
    trading = _section(
        "trading",
        "Trading",
        _box("pnl-summary", "kv"),
        html.H3("Positions"),
        _box("positions-table"),
        html.H3("Open orders"),
        _box("orders-table"),
        _box("chart-equity", "chart wide"),
        html.Div(
            [
                html.Div([html.H3("Risk"), _box("risk-table")]),
                html.Div([html.H3("Balances"), _box("balances-table")]),
                html.Div([html.H3("Alerts"), _box("alerts-list")]),
            ],
            className="cols",
        ),
        html.H3("Closed trades"),
        _box("trades-table"),
    )
    app = html.Div(
        [
            header,
            _section("overview", "Nodes", _box("overview-table")),
            _section(
                "controls",
                "Controls",
                _box("controls-note", "note"),
                _box("controls-body"),
                _box("command-result", "result"),
            ),
            markets,
            _section(
                "models",
                "Models",
                _box("models-table"),
                html.H3("Latest decisions"),
                _box("decisions-table"),
            ),
            trading,
            _section(
                "health",
                "Health",
                html.H3("Processes"),
                _box("processes-table"),
                html.H3("Streams"),
                _box("streams-table"),
                html.H3("Errors"),
                _box("errors-list"),
            ),
        ],
        id="app",
        className="app hidden",
        **{"data-testid": "app"},
    )
    return html.Div(
        [
            html.Div(
                id="pivotal-config",
                style={"display": "none"},
                **{"data-api": api_prefix, "data-bars": str(bars)},
            ),
            dcc.Store(id="pivotal-boot", data=1),
            html.Div(id="boot-out", style={"display": "none"}),
            html.Div(id="login-out", style={"display": "none"}),
            login,
            app,
            _box("kill-dialog-host"),
        ]
    )


def create_dashboard(
    requests_pathname_prefix: str = "/dashboard/",
    *,
    api_prefix: str = "/api/v1",
    bars: int = DEFAULT_BARS,
) -> dash.Dash:
    """The dashboard as a Dash app; mount its Flask ``server`` at ``requests_pathname_prefix``.

    ``requests_pathname_prefix`` is the path the browser uses (must start and end with ``/``);
    the Flask app itself answers at ``/`` (the mount strips the prefix, as a2wsgi under a
    Starlette ``Mount`` does). ``api_prefix`` is where the page finds the REST routes and the
    WebSocket (``{api_prefix}/ws``) on the same origin; ``bars`` is the candles per chart on
    load (1..5000).
    """
    if not (requests_pathname_prefix.startswith("/") and requests_pathname_prefix.endswith("/")):
        raise ValueError(
            f"requests_pathname_prefix {requests_pathname_prefix!r} must start and end with '/', "
            "e.g. '/dashboard/'"
        )
    if not 1 <= bars <= 5000:
        raise ValueError(f"bars={bars} is outside 1..5000; pass e.g. {DEFAULT_BARS}")
    app = dash.Dash(
        __name__,
        requests_pathname_prefix=requests_pathname_prefix,
        routes_pathname_prefix="/",
        assets_folder=str(ASSETS),
        serve_locally=True,
        title="pivotal",
        update_title=None,
        external_scripts=[requests_pathname_prefix + PLOTLY_ROUTE],
        suppress_callback_exceptions=False,
    )
    plotly_js = _plotly_js()

    @app.server.route("/" + PLOTLY_ROUTE)
    def _plotly() -> Response:
        return send_file(plotly_js, mimetype="text/javascript", max_age=86_400)

    app.layout = _layout(api_prefix.rstrip("/"), bars)
    app.clientside_callback(
        ClientsideFunction(namespace="pivotal", function_name="boot"),
        Output("boot-out", "children"),
        Input("pivotal-boot", "data"),
    )
    app.clientside_callback(
        ClientsideFunction(namespace="pivotal", function_name="login"),
        Output("login-out", "children"),
        Input("login-submit", "n_clicks"),
        Input("login-token", "n_submit"),
        State("login-token", "value"),
        prevent_initial_call=True,
    )
    return app

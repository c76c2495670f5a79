"""The dashboard's Dash app without a browser: the shell it serves at a prefix, plotly.js and
the assets, only clientside callbacks, and nothing of pivotal imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pivotal.apps.dashboard import DEFAULT_BARS, create_dashboard

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "pivotal" / "apps" / "dashboard"
SHELL_IDS = (
    "login-token",
    "login-submit",
    "login-error",
    "ws-state",
    "logout",
    "overview-table",
    "controls-note",
    "controls-body",
    "command-result",
    "charts",
    "chart-cob",
    "chart-imbalance",
    "models-table",
    "decisions-table",
    "pnl-summary",
    "positions-table",
    "orders-table",
    "chart-equity",
    "risk-table",
    "balances-table",
    "alerts-list",
    "trades-table",
    "processes-table",
    "streams-table",
    "errors-list",
)


def _ids(component: object) -> set[str]:
    found: set[str] = set()
    stack = [component]
    while stack:
        node = stack.pop()
        if isinstance(node, list | tuple):
            stack.extend(node)
            continue
        node_id = getattr(node, "id", None)
        if isinstance(node_id, str):
            found.add(node_id)
        children = getattr(node, "children", None)
        if children is not None and not isinstance(children, str):
            stack.append(children)
    return found


def test_the_shell_has_every_container_the_page_fills() -> None:
    app = create_dashboard("/dashboard/")
    missing = set(SHELL_IDS) - _ids(app.layout)
    assert not missing, f"the layout lacks {sorted(missing)}"


def test_it_is_served_at_root_for_the_browser_prefix() -> None:
    app = create_dashboard("/board/", api_prefix="/api/v1/", bars=300)
    client = app.server.test_client()
    index = client.get("/")
    assert index.status_code == 200
    html = index.get_data(as_text=True)
    assert '"requests_pathname_prefix":"\\u002fboard\\u002f"' in html
    assert 'src="/board/_pivotal/plotly.min.js"' in html
    scripts = re.findall(r'src="/board/assets/([0-9a-z_]+\.js)', html)
    assert scripts == sorted(scripts) and "00_core.js" in scripts and "50_main.js" in scripts
    assert client.get("/assets/00_core.js").status_code == 200
    plotly_js = client.get("/_pivotal/plotly.min.js")
    assert plotly_js.status_code == 200 and plotly_js.mimetype == "text/javascript"
    assert b"plotly.js" in plotly_js.get_data()[:400].lower() or len(plotly_js.get_data()) > 1e6
    layout = client.get("/_dash-layout").get_json()
    config = _find_props(layout, "pivotal-config")
    assert config["data-api"] == "/api/v1" and config["data-bars"] == "300"


def _find_props(tree: object, wanted: str) -> dict:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            props = node.get("props", {})
            if props.get("id") == wanted:
                return props
            stack.append(props.get("children"))
    raise AssertionError(f"no component {wanted!r} in the layout")


def test_every_callback_runs_in_the_browser() -> None:
    app = create_dashboard()
    assert len(app._callback_list) == 2, "the boot and login callbacks are missing"
    for spec in app._callback_list:
        assert spec.get("clientside_function") is not None, spec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requests_pathname_prefix": "dashboard"}, "must start and end with '/'"),
        ({"bars": 0}, "outside 1..5000"),
        ({"bars": 5001}, "outside 1..5000"),
    ],
)
def test_bad_arguments_say_what_to_pass(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        create_dashboard(**kwargs)
    assert DEFAULT_BARS == 200


def test_the_package_imports_nothing_of_pivotal_but_itself() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("pivotal.") or name.startswith(
                    "pivotal.apps.dashboard"
                ), f"{path.name} imports {name}"


def test_live_updates_never_rebuild_a_candle_chart() -> None:
    """The update path of a candle chart uses extendTraces or one Plotly.update (a restyle);
    newPlot draws it once."""
    charts = (PACKAGE / "assets" / "20_charts.js").read_text(encoding="utf-8")
    update = charts[charts.index("function liveUpdate") : charts.index("function writeAttrs")]
    assert "Plotly.extendTraces" in update and "Plotly.update" in update
    assert "newPlot" not in update and "Plotly.react" not in update
    assert charts.count("window.Plotly.newPlot(") == 1

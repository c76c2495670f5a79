"""Fixtures of the dashboard's browser tests: headless Debian Chromium driven by Playwright,
the real :class:`~pivotal.apps.api.ApiServer` on 127.0.0.1, and a folder for screenshots.

Browser tests are skipped, saying why, when ``/usr/bin/chromium`` (Debian packages
``chromium`` and ``chromium-common``) or the ``playwright`` Python package is missing.
Screenshots go to ``test-artifacts/dashboard/`` under the repository root (a ``.gitignore``
written there keeps them out of git).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pivotal.apps.api import ApiServer, ApiTokens
from pivotal.services.view import NodeView, Services

CHROMIUM = Path(os.environ.get("PIVOTAL_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"


def browser_missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return (
            f"no Chromium at {CHROMIUM}: install Debian's packages chromium and chromium-common "
            "(apt-get install chromium), or point PIVOTAL_CHROMIUM at a Chromium binary"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing: pip install -e '.[dev]'"
    return None


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ignore = ARTIFACTS.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# screenshots and figures of the browser tests\n*\n", encoding="utf-8")
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = browser_missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, artifacts: Path) -> Iterator[Any]:
    """A fresh page (1600×1000); on a failure its screenshot and console go to artifacts."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    pg.console_lines = console
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        name = request.node.name.replace("/", "_")
        with contextlib.suppress(Exception):  # the page may be gone with the failure
            pg.screenshot(path=str(artifacts / f"FAILED-{name}.png"), full_page=True)
        (artifacts / f"FAILED-{name}.console.txt").write_text("\n".join(console), "utf-8")
    context.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]


@pytest.fixture
def serve() -> Iterator[Callable[..., ApiServer]]:
    """``serve(views, tokens=None, port=0, **kw)``: the real API server (dashboard mounted)
    on 127.0.0.1, a free port unless ``port`` is given; stopped after the test."""
    servers: list[ApiServer] = []

    def start(views: list[NodeView] | Services, **kw: Any) -> ApiServer:
        services = views if isinstance(views, Services) else Services(views)
        tokens = kw.pop("tokens", None) or ApiTokens.generate()
        server = ApiServer(services, tokens=tokens, port=kw.pop("port", 0), **kw)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()

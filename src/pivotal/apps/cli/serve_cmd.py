"""``pivotal serve``: the API and the dashboard over finished runs; ``pivotal serve token``.

``pivotal serve`` shows every run and session of a data dir (or the ``--run`` results
given) as read-only nodes, at ``http://127.0.0.1:8765/dashboard/`` until Ctrl-C. Requests
need a bearer token from the token file (created at the first start, outside any git
working tree, mode 0600); the command says where that file is and never prints a token.
``pivotal serve token`` prints one, for the dashboard's login.

The options and :func:`start_api` are shared with the commands that serve a running node
(``pivotal run ... --serve``, ``pivotal demo --serve``).
"""

from __future__ import annotations

import ipaddress
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pivotal.apps.cli.common import ConfigOption, DataDirOption, console, load_context

if TYPE_CHECKING:
    from pivotal.apps.api.server import ApiServer
    from pivotal.services.view import Services

__all__ = [
    "AllowOriginOption",
    "ExposureFlag",
    "HostOption",
    "PortOption",
    "TokenFileOption",
    "app",
    "check_host",
    "serve_until_stopped",
    "start_api",
]

DEFAULT_PORT = 8765

HostOption = Annotated[
    str,
    typer.Option(
        "--host",
        help="Address to listen on; anything but loopback needs --i-understand-exposure.",
    ),
]
PortOption = Annotated[
    int,
    typer.Option("--port", help="Port to listen on, 0..65535 (0 picks a free one)."),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        dir_okay=False,
        help="The API token file (created at the first start, mode 0600, outside any git "
        "working tree).",
        show_default="$PIVOTAL_API_TOKEN_FILE, else ~/.config/pivotal/api-tokens.json",
    ),
]
AllowOriginOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-origin",
        metavar="ORIGIN",
        help="Another origin (scheme://host:port) whose pages may call the API; repeatable.",
        show_default="only the server's own origin",
    ),
]
ExposureFlag = Annotated[
    bool,
    typer.Option(
        "--i-understand-exposure",
        help="Allow a non-loopback --host: the API (commands included) is then reachable from "
        "the network over plain HTTP, guarded by its token only.",
    ),
]
RunOption = Annotated[
    list[str] | None,
    typer.Option(
        "--run",
        metavar="RESULT",
        help="A finished run to show: a report JSON (pivotal run --json, pivotal backtest "
        "--json), a session journal or a run id; repeatable.",
        show_default="every run and session of the data dir",
    ),
]

app = typer.Typer(
    help="Serve the API and the dashboard over the finished runs of a data dir (or the --run "
    "results given) until Ctrl-C. Every request needs a token from the token file; `pivotal "
    "serve token` prints one.",
    no_args_is_help=False,
    invoke_without_command=True,
)


def check_host(host: str, exposure: bool) -> None:
    """Refuse a non-loopback ``host`` without ``--i-understand-exposure``."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        raise typer.BadParameter(
            f"{host!r} is not an IP address; use 127.0.0.1 (the default), or 0.0.0.0 with "
            "--i-understand-exposure",
            param_hint="--host",
        ) from None
    if not loopback and not exposure:
        raise typer.BadParameter(
            f"--host {host} makes the API (and its commands) reachable from the network over "
            "plain HTTP; pass --i-understand-exposure to do it anyway, or keep 127.0.0.1 and "
            "tunnel (ssh -L 8765:127.0.0.1:8765 HOST)",
            param_hint="--host",
        )


def start_api(
    services: Services,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token_file: Path | None = None,
    allow_origin: Sequence[str] = (),
    exposure: bool = False,
    say: Callable[[str], None] = print,
) -> ApiServer:
    """Load (or create) the tokens, start the server and say where the dashboard and the
    token file are (never the token). ``BadParameter`` for a bad host or a port in use."""
    from pivotal.apps.api.auth import ApiTokens
    from pivotal.apps.api.server import ApiServer, PortInUse

    check_host(host, exposure)
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"{port} is not a port; give 0..65535", param_hint="--port")
    origins = [_origin(o) for o in allow_origin or ()]
    tokens = ApiTokens.load_or_create(token_file)
    server = ApiServer(services, tokens=tokens, host=host, port=port, allowed_origins=origins)
    try:
        server.start()
    except PortInUse as exc:
        raise typer.BadParameter(str(exc), param_hint="--port") from None
    where = server.dashboard_url or f"{server.url}/docs (the dashboard is not installed)"
    say(f"dashboard: {where}")
    say(f"API: {server.url}/api/v1 (OpenAPI at {server.url}/docs)")
    say(
        f"tokens: in {tokens.path} (admin and viewer); `pivotal serve token` prints the admin "
        "one, `--viewer` the read-only one"
    )
    return server


def serve_until_stopped(server: ApiServer, say: Callable[[str], None] = print) -> None:
    """Block until Ctrl-C or SIGTERM (or the server dies), then stop the server."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    say("serving; Ctrl-C stops")
    try:
        while not stop.wait(0.5):
            if not server.running:
                from pivotal.apps.api.server import ServerError

                raise ServerError("the API server stopped on its own; see the log above")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    say("stopped")


def _origin(text: str) -> str:
    value = text.strip().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
        raise typer.BadParameter(
            f"{text!r} is not an origin; write scheme://host[:port], e.g. https://example.com:8443",
            param_hint="--allow-origin",
        )
    return value


@app.callback()
def serve(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    runs: RunOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = DEFAULT_PORT,
    token_file: TokenFileOption = None,
    allow_origin: AllowOriginOption = None,
    exposure: ExposureFlag = False,
    config: ConfigOption = None,
) -> None:
    """Serve the API and the dashboard over the finished runs of a data dir (or the --run
    results given) until Ctrl-C.

    Every request needs a token from the token file; `pivotal serve token` prints one.
    """
    if ctx.invoked_subcommand is not None:
        return
    check_host(host, exposure)
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"{port} is not a port; give 0..65535", param_hint="--port")
    for origin in allow_origin or ():
        _origin(origin)
    services = _services(runs or [], config, data_dir)

    def say(line: str) -> None:
        console.print(line, highlight=False, markup=False)

    nodes = services.nodes()
    say(f"nodes: {', '.join(v.id for v in nodes)}")
    server = start_api(
        services,
        host=host,
        port=port,
        token_file=token_file,
        allow_origin=allow_origin or (),
        exposure=exposure,
        say=say,
    )
    serve_until_stopped(server, say)


def _services(runs: list[str], config: Path | None, data_dir: Path | None) -> Services:
    from pivotal.core.errors import PivotalError
    from pivotal.services.discover import views_from_data_dir, views_from_results
    from pivotal.services.view import NotFound, QueryError, Services

    if data_dir is not None and not data_dir.is_dir():
        raise typer.BadParameter(
            f"{data_dir} does not exist or is not a folder: give the data dir your runs "
            "wrote to (e.g. out/demo)",
            param_hint="--data-dir",
        )
    ctx = load_context(config, data_dir)
    if not ctx.data_dir.is_dir():
        raise typer.BadParameter(
            f"the data dir {ctx.data_dir} does not exist: give one with --data-dir",
            param_hint="--data-dir",
        )
    hint = "--run" if runs else "--data-dir"
    try:
        if runs:
            views = views_from_results(runs, ctx.data_dir)
        else:
            views = views_from_data_dir(ctx.data_dir)
        for view in views:  # read each run now: a broken one is refused here, not per request
            view.info()
        return Services(views) if views else _nothing(ctx.data_dir)
    except (PivotalError, NotFound, QueryError) as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def _nothing(data_dir: Path) -> Services:
    raise typer.BadParameter(
        f"nothing to show in {data_dir}: no finished run, backtest report or session "
        "journal there; run one first (pivotal demo, pivotal backtest --json) or give "
        "--run RESULT",
        param_hint="--data-dir",
    )


@app.command("token")
def token(
    viewer: Annotated[
        bool, typer.Option("--viewer", help="Print the read-only (viewer) token instead.")
    ] = False,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            exists=True,
            dir_okay=False,
            help="The token file `pivotal serve` created.",
            show_default="$PIVOTAL_API_TOKEN_FILE, else ~/.config/pivotal/api-tokens.json",
        ),
    ] = None,
) -> None:
    """Print the admin API token (or, with --viewer, the read-only one), to log in to the
    dashboard. Keep it private: it gives control of the nodes served."""
    from pivotal.apps.api.auth import ApiTokens, default_token_file

    tokens = ApiTokens.load(token_file or default_token_file())
    print(tokens.viewer if viewer else tokens.admin)

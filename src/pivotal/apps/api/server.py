"""The API server in a background thread: standalone (``pivotal serve``) or inside a node.

:class:`ApiServer` binds its socket itself, so a port in use is a clear error at
:meth:`ApiServer.start` (not a log line and an exit from inside uvicorn) and port 0 works
(:attr:`ApiServer.port` is the bound one). uvicorn runs with its access log off (the app logs
requests without query strings or headers) and without touching the logging configuration.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable

import uvicorn

from pivotal.apps.api.app import DASHBOARD_PREFIX, create_app, dashboard_available
from pivotal.apps.api.auth import ApiTokens
from pivotal.core.errors import PivotalError
from pivotal.services.view import Services

__all__ = ["ApiServer", "PortInUse", "ServerError"]

#: the loggers uvicorn and the websockets protocol write to (at DEBUG the latter logs the
#: handshake's headers, the Sec-WebSocket-Protocol token among them)
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets", "websockets.server")


class RedactTokens(logging.Filter):
    """Replace the server's tokens in a log record by ``<token>`` (the message is formatted
    first, so a token passed as an argument is caught too)."""

    def __init__(self, tokens: ApiTokens) -> None:
        super().__init__("pivotal-redact")
        self._secrets = (tokens.admin, tokens.viewer)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        if any(secret in text for secret in self._secrets):
            for secret in self._secrets:
                text = text.replace(secret, "<token>")
            record.msg, record.args = text, ()
        return True


class ServerError(PivotalError):
    """The server could not start or stopped on its own; the message says why."""


class PortInUse(ServerError):
    """The port is taken by another program."""


class ApiServer:
    """uvicorn serving :func:`create_app` on ``host:port`` from a daemon thread.

    ``port`` 0 picks a free port; :attr:`port` and :attr:`url` give the bound one after
    :meth:`start`. :meth:`stop` ends it (WebSockets are closed, requests in flight get up to
    ``grace_s`` seconds).
    """

    def __init__(
        self,
        services: Services,
        *,
        tokens: ApiTokens,
        host: str = "127.0.0.1",
        port: int = 8765,
        allowed_origins: Iterable[str] = (),
        dashboard: bool = True,
        ws_interval_s: float = 1.0,
        grace_s: float = 3.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ServerError(f"port {port} is outside 0..65535")
        self.services = services
        self.tokens = tokens
        self.host = host
        self.app = create_app(
            services,
            tokens,
            allowed_origins=allowed_origins,
            dashboard=dashboard,
            ws_interval_s=ws_interval_s,
        )
        self._requested_port = port
        self._grace_s = grace_s
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._redact = RedactTokens(tokens)
        self.port = port

    @property
    def url(self) -> str:
        """``http://host:port`` (the bound port once started)."""
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def dashboard_url(self) -> str | None:
        """Where the dashboard is, or None when it is not installed."""
        return self.url + DASHBOARD_PREFIX if dashboard_available() else None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
                raise PortInUse(
                    f"port {self._requested_port} on {self.host} is in use by another "
                    "program: stop it, or choose another port with --port (0 picks a free one)"
                ) from None
            raise ServerError(
                f"cannot listen on {self.host}:{self._requested_port}: {exc.strerror or exc}"
            ) from None
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    def start(self, timeout_s: float = 15.0) -> ApiServer:
        """Bind, start serving and return once requests are answered."""
        if self.running:
            return self
        self._socket = self._bind()
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            server_header=False,
            ws="websockets-sansio",
            ws_max_size=1 << 20,
            timeout_graceful_shutdown=self._grace_s,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._error = None
        for name in SERVER_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)
        self._thread = threading.Thread(target=self._serve, name="pivotal-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise ServerError(f"the API server stopped while starting: {self._error}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"the API server did not start within {timeout_s:g} s")
            time.sleep(0.02)
        return self

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # SystemExit from uvicorn's startup included
            self._error = exc

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._socket is not None:
            self._socket.close()
        self._thread = None
        self._socket = None
        for name in SERVER_LOGGERS:
            logging.getLogger(name).removeFilter(self._redact)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

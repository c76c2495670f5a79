"""The HTTP API of pivotal: REST routes and a WebSocket over the services layer, the
dashboard mounted beside them, served by uvicorn from a background thread.

- :func:`create_app`: the FastAPI application over a :class:`~pivotal.services.view.Services`;
- :class:`ApiTokens`: the admin and viewer bearer tokens and their file;
- :class:`ApiServer`: uvicorn in a thread (``pivotal serve``, or inside a node's process).
"""

from pivotal.apps.api.app import create_app
from pivotal.apps.api.auth import ApiTokens, TokenFileError, default_token_file
from pivotal.apps.api.server import ApiServer, PortInUse, ServerError

__all__ = [
    "ApiServer",
    "ApiTokens",
    "PortInUse",
    "ServerError",
    "TokenFileError",
    "create_app",
    "default_token_file",
]

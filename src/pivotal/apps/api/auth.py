"""The API's two bearer tokens, their file, and the Origin check.

Two tokens: ``admin`` may do everything (queries, the WebSocket, commands), ``viewer`` only
reads (GET routes, ``/metrics`` and the WebSocket). Both are ``secrets.token_urlsafe(32)``
(256 bits), generated at the first start into a JSON file readable by its owner only (mode
0600) at ``$PIVOTAL_API_TOKEN_FILE`` or ``~/.config/pivotal/api-tokens.json``. A file inside
a git working tree is refused: a token committed by accident is a token published.

The tokens never reach a log or a URL: :class:`ApiTokens` hides them in its ``repr``, the
server's access log has no headers and no query strings, and the WebSocket takes its token
in the ``Sec-WebSocket-Protocol`` header (``bearer.<token>``), not in the address.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Literal

from pivotal.core.errors import ConfigError

__all__ = [
    "TOKEN_FILE_VARIABLE",
    "ApiTokens",
    "Role",
    "TokenFileError",
    "default_token_file",
    "git_work_tree_of",
]

Role = Literal["admin", "viewer"]
TOKEN_FILE_VARIABLE = "PIVOTAL_API_TOKEN_FILE"
_ROLES: tuple[Role, ...] = ("admin", "viewer")


class TokenFileError(ConfigError):
    """The token file cannot be used; the message names it and says what to do."""


def default_token_file() -> Path:
    """``$PIVOTAL_API_TOKEN_FILE``, else ``~/.config/pivotal/api-tokens.json``."""
    chosen = os.environ.get(TOKEN_FILE_VARIABLE, "").strip()
    if chosen:
        return Path(chosen).expanduser()
    return Path.home() / ".config" / "pivotal" / "api-tokens.json"


def git_work_tree_of(path: Path) -> Path | None:
    """The git working tree ``path`` lies in (the folder holding ``.git``), or None."""
    here = path.resolve().parent if not path.is_dir() else path.resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


class ApiTokens:
    """The admin and viewer tokens of one server. ``repr`` never shows them."""

    __slots__ = ("_admin", "_viewer", "path")

    def __init__(self, admin: str, viewer: str, path: Path | None = None) -> None:
        if len(admin) < 16 or len(viewer) < 16 or admin == viewer:
            raise TokenFileError(
                "API tokens must be two distinct strings of at least 16 characters"
                + (f" (in {path}: delete it and a new pair is generated)" if path else "")
            )
        self._admin = admin
        self._viewer = viewer
        self.path = path

    def __repr__(self) -> str:
        return f"ApiTokens(path={str(self.path) if self.path else None!r}, tokens=<hidden>)"

    @property
    def admin(self) -> str:
        return self._admin

    @property
    def viewer(self) -> str:
        return self._viewer

    def token(self, role: Role) -> str:
        return self._admin if role == "admin" else self._viewer

    def role_of(self, token: str | None) -> Role | None:
        """The role a presented token grants, or None; constant-time comparisons."""
        if not token:
            return None
        given = token.encode("utf-8", "replace")
        found: Role | None = None
        for role in _ROLES:  # compare with both, whatever matches, so timing says nothing
            if hmac.compare_digest(given, self.token(role).encode()):
                found = role
        return found

    @classmethod
    def generate(cls, path: Path | None = None) -> ApiTokens:
        """A fresh pair (kept in memory; :meth:`load_or_create` writes one to a file)."""
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), path)

    @classmethod
    def load(cls, path: Path) -> ApiTokens:
        """Read an existing token file; refuse one others can read or one inside a git tree."""
        path = path.expanduser()
        _refuse_git_tree(path)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TokenFileError(
                f"no API token file at {path}: start `pivotal serve` once (it creates one) "
                "or give the file with --token-file"
            ) from None
        except OSError as exc:
            raise TokenFileError(f"cannot read the API token file {path}: {exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenFileError(
                f"the API token file {path} can be read by other users (mode "
                f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}` (or delete it for a new pair)"
            )
        try:
            data = json.loads(text)
            return cls(str(data["admin"]), str(data["viewer"]), path)
        except (ValueError, KeyError, TypeError):
            raise TokenFileError(
                f"{path} is not an API token file (a JSON object with 'admin' and 'viewer'); "
                "delete it and a new pair is generated at the next start"
            ) from None

    @classmethod
    def load_or_create(cls, path: Path | None = None) -> ApiTokens:
        """The tokens of ``path`` (default :func:`default_token_file`), generated and written
        (mode 0600, its folder 0700 when created) when the file does not exist yet."""
        path = (path or default_token_file()).expanduser()
        if path.exists():
            return cls.load(path)
        _refuse_git_tree(path)
        tokens = cls.generate(path)
        body = json.dumps({"admin": tokens.admin, "viewer": tokens.viewer}, indent=2) + "\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile: use theirs
            return cls.load(path)
        except OSError as exc:
            raise TokenFileError(
                f"cannot create the API token file {path}: {exc}; give another place with "
                f"--token-file or ${TOKEN_FILE_VARIABLE}"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        return tokens


def _refuse_git_tree(path: Path) -> None:
    tree = git_work_tree_of(path)
    if tree is not None:
        raise TokenFileError(
            f"the API token file {path} would lie inside the git working tree {tree}, where "
            "it could be committed and published; keep it outside (the default is "
            f"~/.config/pivotal/api-tokens.json, or set --token-file / ${TOKEN_FILE_VARIABLE})"
        )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def own_origins(host: str, port: int) -> set[str]:
    """The origins a page served by this server has: the loopback names and ``host``."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    if host and host not in ("0.0.0.0", "::", ""):
        names.add(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    return {f"http://{name}:{port}" for name in names}


def normalize_origin(origin: str) -> str:
    """An origin as browsers send it: scheme://host[:port], lower case, no trailing slash."""
    return origin.strip().rstrip("/").lower()

"""The REST routes (``/api/v1``): every query and command of :class:`NodeView`, one route each.

Queries need any token (admin or viewer), commands the admin token. Views are called in a
worker thread (they read stores and journals), and answers are the service schemas,
serialized by pydantic's Rust core straight to JSON bytes. A view's :class:`NotFound`,
:class:`QueryError` and :class:`ReadOnly` become 404, 422 and 409 (see :mod:`.app`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from pivotal.apps.api.auth import ApiTokens, Role
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.services.cob_query import MAX_SECONDS
from pivotal.services.schemas import (
    Alert,
    Balance,
    CandlesPayload,
    ClosedTrade,
    CobPayload,
    CommandResult,
    Controls,
    DecisionRow,
    EntriesCommand,
    EquityPayload,
    FillRow,
    ForceExitCommand,
    HealthPayload,
    KillCommand,
    ModelState,
    NodeInfo,
    OrderRow,
    PositionRow,
    ProcessCommand,
    RiskPayload,
    Summary,
    ThresholdsCommand,
)
from pivotal.services.view import MAX_BARS, NodeView, NotFound, QueryError, Services

__all__ = [
    "MAX_MS",
    "MAX_ROWS",
    "ErrorBody",
    "api_router",
    "auth_dependency",
    "error_responses",
    "resolve_symbol",
]

#: the most rows a list route returns (``limit``)
MAX_ROWS = 5000
#: the most points of the equity curve one answer holds
MAX_EQUITY = 100_000
#: the largest time a query accepts (2**53 - 1 ms: exact in JavaScript)
MAX_MS = 2**53 - 1


class ErrorBody(BaseModel):
    """Every refusal: what was wrong and what to do."""

    detail: str


def error_responses(*codes: int, json_ref: bool = False) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of refusals ``codes`` (body :class:`ErrorBody`);
    ``json_ref``: name the JSON schema outright (for a route whose own answers are not
    JSON, where FastAPI would give the errors that route's media type)."""
    said = {
        401: "no token or an unknown one (send Authorization: Bearer <token>)",
        403: "a viewer token on a command, or a request from a foreign Origin",
        404: "unknown node, symbol or timeframe",
        409: "the node is read-only (a finished run takes no commands)",
        422: "bad query or body",
    }
    if json_ref:
        ref = {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
        return {c: {"description": said[c], "content": {"application/json": ref}} for c in codes}
    return {code: {"model": ErrorBody, "description": said[code]} for code in codes}


QUERY_ERRORS = error_responses(401, 403, 404, 422)
COMMAND_ERRORS = error_responses(401, 403, 404, 409, 422)


def auth_dependency(tokens: ApiTokens, *, admin: bool) -> Callable[..., Awaitable[Role]]:
    """A dependency that checks the bearer token: 401 without a known one, 403 for a viewer
    token where ``admin`` is needed. The role is kept on ``request.state.role``."""
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="token",
        description="the admin token (everything) or the viewer token (reads only)",
    )

    async def check(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> Role:
        role = tokens.role_of(credentials.credentials if credentials else None)
        if role is None:
            raise HTTPException(
                401,
                "no valid API token: send Authorization: Bearer <token> (`pivotal serve token` "
                "prints one)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if admin and role != "admin":
            raise HTTPException(403, "the viewer token only reads; commands need the admin token")
        request.state.role = role
        return role

    return check


def resolve_symbol(view: NodeView, text: str) -> str:
    """``text`` as one of the node's symbols (``BTC/USDT``, ``BTC-USDT``, ``btcusdt``...);
    NotFound listing them when it is none."""
    known = view.info().symbols
    if text in known:
        return text
    parsed = []
    for name in known:
        try:
            parsed.append(Symbol.parse(name))
        except ValueError:
            continue
    try:
        found = str(Symbol.resolve(text, parsed))
    except ValueError:
        found = None
    if found in known:
        return str(found)
    raise NotFound(
        f"no symbol {text!r} on node {view.id!r} (it has {', '.join(known) or 'none'}); "
        "write it as BASE/QUOTE, e.g. BTC/USDT"
    )


def check_timeframe(text: str) -> str:
    try:
        return Timeframe.parse(text).value
    except ValueError:
        allowed = ", ".join(t.value for t in Timeframe)
        raise QueryError(f"{text!r} is not a timeframe; use one of {allowed}") from None


NodeId = Annotated[str, Path(max_length=200, description="the node's id (see /api/v1/nodes)")]
SymbolQuery = Annotated[
    str,
    Query(min_length=1, max_length=40, description="BTC/USDT (BTC-USDT, BTCUSDT also work)"),
]
OptionalSymbol = Annotated[
    str | None,
    Query(min_length=1, max_length=40, description="only this symbol (default: all)"),
]
SinceQuery = Annotated[
    int | None,
    Query(ge=0, le=MAX_MS, description="only rows at or after this time, UTC ms"),
]


def _limit(most: int = MAX_ROWS) -> Any:
    return Query(ge=1, le=most, description=f"the newest rows to return (1..{most})")


class SessionRole(BaseModel):
    """The role of the token a request carried."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    role: Literal["admin", "viewer"]


def api_router(services: Services, tokens: ApiTokens, on_command: Callable[[CommandResult], None]):
    """The ``/api/v1`` REST routes over ``services``; ``on_command`` is told every command
    a node accepted (the WebSocket hub broadcasts it)."""
    reader = Depends(auth_dependency(tokens, admin=False))
    admin = Depends(auth_dependency(tokens, admin=True))
    router = APIRouter(prefix="/api/v1", dependencies=[reader])
    node_of = services.node

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kwargs)

    @router.get("/session", response_model=SessionRole, responses=QUERY_ERRORS, tags=["auth"])
    async def session(request: Request) -> Any:
        """What the token presented may do: ``admin`` (queries and commands) or ``viewer``
        (queries and the WebSocket only). The dashboard asks it once after login."""
        return SessionRole(role=request.state.role)

    @router.get("/nodes", response_model=list[NodeInfo], responses=QUERY_ERRORS, tags=["nodes"])
    async def nodes() -> Any:
        """Every node this server shows."""
        return await call(lambda: [v.info() for v in services.nodes()])

    @router.get("/overview", response_model=list[Summary], responses=QUERY_ERRORS, tags=["nodes"])
    async def overview() -> Any:
        """Closed trades and balance of every node at a glance."""
        return await call(lambda: [v.summary() for v in services.nodes()])

    @router.get("/nodes/{node}", response_model=NodeInfo, responses=QUERY_ERRORS, tags=["nodes"])
    async def node_info(node: NodeId) -> Any:
        return await call(lambda: node_of(node).info())

    @router.get(
        "/nodes/{node}/summary", response_model=Summary, responses=QUERY_ERRORS, tags=["nodes"]
    )
    async def summary(node: NodeId) -> Any:
        return await call(lambda: node_of(node).summary())

    @router.get(
        "/nodes/{node}/candles",
        response_model=CandlesPayload,
        responses=QUERY_ERRORS,
        tags=["market"],
    )
    async def candles(
        node: NodeId,
        symbol: SymbolQuery,
        timeframe: Annotated[Timeframe, Query(description="e.g. 1m")],
        limit: Annotated[int, _limit(MAX_BARS)] = 500,
        since_ms: SinceQuery = None,
    ) -> Any:
        """Candles with the pivots confirmed by the last bar, the PivotCNN's predictions and
        the decisions and fills as markers; ``since_ms``: bars opened at or after it."""

        def read() -> CandlesPayload:
            view = node_of(node)
            return view.candles(
                resolve_symbol(view, symbol), timeframe.value, limit=limit,
                since_ms=since_ms,
            )  # fmt: skip

        return await call(read)

    @router.get(
        "/nodes/{node}/cob", response_model=CobPayload, responses=QUERY_ERRORS, tags=["market"]
    )
    async def cob(
        node: NodeId,
        symbol: SymbolQuery,
        seconds: Annotated[
            int, Query(ge=1, le=MAX_SECONDS, description="the window, seconds")
        ] = 300,
    ) -> Any:
        """The order book heatmap and the imbalance moving averages over the last ``seconds``."""

        def read() -> CobPayload:
            view = node_of(node)
            return view.cob(resolve_symbol(view, symbol), seconds=seconds)

        return await call(read)

    @router.get(
        "/nodes/{node}/models", response_model=list[ModelState], responses=QUERY_ERRORS,
        tags=["models"],
    )  # fmt: skip
    async def models(node: NodeId) -> Any:
        return await call(lambda: node_of(node).models())

    @router.get(
        "/nodes/{node}/decisions", response_model=list[DecisionRow], responses=QUERY_ERRORS,
        tags=["models"],
    )  # fmt: skip
    async def decisions(
        node: NodeId,
        symbol: OptionalSymbol = None,
        limit: Annotated[int, _limit()] = 200,
        since_ms: SinceQuery = None,
    ) -> Any:
        def read() -> list[DecisionRow]:
            view = node_of(node)
            chosen = None if symbol is None else resolve_symbol(view, symbol)
            return view.decisions(symbol=chosen, limit=limit, since_ms=since_ms)

        return await call(read)

    @router.get(
        "/nodes/{node}/orders", response_model=list[OrderRow], responses=QUERY_ERRORS,
        tags=["trading"],
    )  # fmt: skip
    async def orders(
        node: NodeId,
        open_only: Annotated[bool, Query(description="only orders still working")] = False,
        limit: Annotated[int, _limit()] = 500,
    ) -> Any:
        return await call(lambda: node_of(node).orders(open_only=open_only, limit=limit))

    @router.get(
        "/nodes/{node}/fills", response_model=list[FillRow], responses=QUERY_ERRORS,
        tags=["trading"],
    )  # fmt: skip
    async def fills(
        node: NodeId, limit: Annotated[int, _limit()] = 500, since_ms: SinceQuery = None
    ) -> Any:
        return await call(lambda: node_of(node).fills(limit=limit, since_ms=since_ms))

    @router.get(
        "/nodes/{node}/positions", response_model=list[PositionRow], responses=QUERY_ERRORS,
        tags=["trading"],
    )  # fmt: skip
    async def positions(node: NodeId) -> Any:
        return await call(lambda: node_of(node).positions())

    @router.get(
        "/nodes/{node}/balances", response_model=list[Balance], responses=QUERY_ERRORS,
        tags=["trading"],
    )  # fmt: skip
    async def balances(node: NodeId) -> Any:
        return await call(lambda: node_of(node).balances())

    @router.get(
        "/nodes/{node}/trades", response_model=list[ClosedTrade], responses=QUERY_ERRORS,
        tags=["trading"],
    )  # fmt: skip
    async def trades(node: NodeId, limit: Annotated[int, _limit()] = 500) -> Any:
        return await call(lambda: node_of(node).trades(limit=limit))

    @router.get(
        "/nodes/{node}/equity", response_model=EquityPayload, responses=QUERY_ERRORS,
        tags=["trading"],
    )  # fmt: skip
    async def equity(node: NodeId, limit: Annotated[int, _limit(MAX_EQUITY)] = 5000) -> Any:
        return await call(lambda: node_of(node).equity(limit=limit))

    @router.get(
        "/nodes/{node}/risk", response_model=RiskPayload, responses=QUERY_ERRORS, tags=["trading"]
    )
    async def risk(node: NodeId) -> Any:
        return await call(lambda: node_of(node).risk())

    @router.get(
        "/nodes/{node}/alerts", response_model=list[Alert], responses=QUERY_ERRORS,
        tags=["health"],
    )  # fmt: skip
    async def alerts(
        node: NodeId, limit: Annotated[int, _limit()] = 200, since_ms: SinceQuery = None
    ) -> Any:
        return await call(lambda: node_of(node).alerts(limit=limit, since_ms=since_ms))

    @router.get(
        "/nodes/{node}/health", response_model=HealthPayload, responses=QUERY_ERRORS,
        tags=["health"],
    )  # fmt: skip
    async def node_health(node: NodeId) -> Any:
        return await call(lambda: node_of(node).health())

    @router.get(
        "/nodes/{node}/controls", response_model=Controls, responses=QUERY_ERRORS,
        tags=["controls"],
    )  # fmt: skip
    async def controls(node: NodeId) -> Any:
        return await call(lambda: node_of(node).controls())

    async def command(node: str, method: str, body: BaseModel) -> CommandResult:
        def apply() -> CommandResult:
            view = node_of(node)
            if isinstance(body, ForceExitCommand):
                return view.force_exit(ForceExitCommand(symbol=resolve_symbol(view, body.symbol)))
            return getattr(view, method)(body)

        result: CommandResult = await call(apply)
        if result.accepted:
            on_command(result)
        return result

    commands = APIRouter(prefix="/nodes/{node}/commands", dependencies=[admin], tags=["commands"])

    @commands.post("/thresholds", response_model=CommandResult, responses=COMMAND_ERRORS)
    async def thresholds(node: NodeId, body: ThresholdsCommand) -> Any:
        """Set the orchestrator's buy/sell thresholds and minimum confidence (persisted)."""
        return await command(node, "set_thresholds", body)

    @commands.post("/entries", response_model=CommandResult, responses=COMMAND_ERRORS)
    async def entries(node: NodeId, body: EntriesCommand) -> Any:
        """Stop or allow new entries (exits still run)."""
        return await command(node, "set_entries", body)

    @commands.post("/force-exit", response_model=CommandResult, responses=COMMAND_ERRORS)
    async def force_exit(node: NodeId, body: ForceExitCommand) -> Any:
        """Cancel the symbol's open orders, then sell what is held."""
        return await command(node, "force_exit", body)

    @commands.post("/kill", response_model=CommandResult, responses=COMMAND_ERRORS)
    async def kill(node: NodeId, body: KillCommand) -> Any:
        """Fire the kill switch: stop entries, cancel every order, flatten every position."""
        return await command(node, "kill", body)

    @commands.post("/process", response_model=CommandResult, responses=COMMAND_ERRORS)
    async def process(node: NodeId, body: ProcessCommand) -> Any:
        """Start or stop a process: streams, inference, learning or trading."""
        return await command(node, "set_process", body)

    router.include_router(commands)
    return router

"""schemathesis over the OpenAPI spec: generated requests to every route, valid ones and
invalid ones, find no server error, and every answer matches the spec (status declared,
body schema, content type, valid data accepted, invalid data refused).

The routes run against the real finished-run view (``bt``) and the in-memory running node
(``paper``, which takes commands); the node id is set to one of them for most cases (a
random id only meets the 404 of the registry), and the symbol to a real one for half of
them, so generated limits, times and bodies reach the views. Bounded: a few examples per
operation, derandomized."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from pivotal.apps.api import ApiTokens, create_app
from pivotal.services.view import Services

EXAMPLES = 15


@pytest.fixture(scope="module")
def api(run_services: Services, memory_node_class: type) -> Any:
    tokens = ApiTokens.generate()
    app = create_app(
        Services([*run_services.nodes(), memory_node_class("paper", ("BTC/USDT", "ETH/USDT"))]),
        tokens,
        dashboard=False,
    )
    return app, tokens


def _call(case: Any, token: str, mode: GenerationMode) -> None:
    """Send ``case`` with the admin token; valid cases aimed at real nodes and symbols,
    invalid ones as generated (their token too, when the generated header is the flaw)."""
    headers = case.headers or {}
    if mode is GenerationMode.POSITIVE:
        seed = zlib.crc32(repr((case.path_parameters, case.query)).encode())
        if case.path_parameters and "node" in case.path_parameters and seed % 8:
            case.path_parameters["node"] = "paper" if seed % 3 == 0 else "bt"
        if case.query and "symbol" in case.query and seed % 2:
            case.query["symbol"] = ("BTC/USDT", "ETH-USDT", "btcusdt")[seed % 3]
    if "Authorization" in headers:
        case.call_and_validate()
    else:
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})


def _checker(operation: Any, mode: GenerationMode, token: str) -> Any:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        _call(case, token, mode)

    return check


def test_no_server_error_and_answers_match_the_spec(api: Any) -> None:
    """Every operation of the spec, ``EXAMPLES`` generated cases each (the pytest plugin of
    schemathesis does not load with this pytest, so the operations are walked here)."""
    app, tokens = api
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25, [op.label for op in operations]
    failures: list[str] = []
    runs = [(op, mode) for op in operations for mode in GenerationMode]
    for operation, mode in runs:
        check = _checker(operation, mode, tokens.admin)
        try:
            check()
        except Unsatisfiable:  # nothing to make invalid (GET /health has no parameters)
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # each operation's first failure, all reported together
            failures.append(f"{operation.label} ({mode.value} data): {exc}")
    assert not failures, "\n\n".join(failures)

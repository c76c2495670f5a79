"""``record_of_step`` builds an :class:`EncodedRecord` from the step's parts as they are and
encodes its header once; what it stores is what the plain copies that earlier versions built
first stored, byte for byte (issue 14)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, BaseDataInput, ModelOutput, PivotKind, PivotPoint
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_history import InferenceHistory, InferenceRecord
from pivotal.data.inference_payload import (
    EncodedRecord,
    pack_payloads,
    payload_header,
    record_arrays,
)
from pivotal.orchestrator.contracts import Contribution, Decision, Inference
from pivotal.orchestrator.records import record_of_step

SYMBOL = "BTC/USDT"
MIN = 60_000
T = 1_700_000_000_000


class _Side(IntEnum):
    LONG = 1


def _candles(n: int, step: int, end: int) -> Candles:
    times = np.arange(end - n * step, end, step, dtype=np.int64)
    prices = np.linspace(100.0, 101.0, n)
    return Candles(times, prices, prices + 1, prices - 1, prices, np.ones(n))


def _pivot(i: int, price: float) -> PivotPoint:
    t = T - (40 - i) * MIN
    kind = PivotKind.HIGH if i % 2 else PivotKind.LOW
    return PivotPoint(Symbol.parse(SYMBOL), t, t + 3 * MIN, price, kind, 1 + i % 3)


def _step(
    t: int = T,
    *,
    pivots: tuple[PivotPoint, ...] = (),
    indicators: Mapping[str, Any] | None = None,
    predictions: Mapping[Any, Any] | None = None,
) -> tuple[Decision, BaseDataInput, dict[str, Inference], dict[str, int]]:
    """A step with every kind of value a model may answer (numpy scalars and arrays, tuples,
    enums, NaN, nested mappings)."""
    rng = np.random.default_rng(t % 97)
    cnn = ModelOutput(
        model_type="cnn",
        model_name="cnn",
        symbol=Symbol.parse(SYMBOL),
        timestamp=t,
        confidence=0.4,
        predictions=predictions
        if predictions is not None
        else {
            "action": "sell",
            "action_confidence": np.float32(0.35),
            "probabilities": {"down": 0.3, "flat": np.float64(0.4), "up": float("nan")},
            "pivot_points": [{"kind": "high", "price": 101.25, "bars": np.int64(5)}],
            "vector": np.array([0.5, -0.25], dtype=np.float32),
            "names": ("a", "b"),
            "side": _Side.LONG,
            "decided": Action.SELL,
            "none": None,
        },
        hidden_states={"h": rng.normal(size=(1, 8)).astype(np.float32)},
        metadata={"feature_names": ("f0", "f1", "f2"), "reference_close": 100.5},
    )
    dqn = ModelOutput(
        model_type="rl",
        model_name="dqn",
        symbol=Symbol.parse(SYMBOL),
        timestamp=t,
        confidence=0.6,
        predictions={"action": Action.BUY, "q_values": {"BUY": 0.1, "SELL": -0.2}},
        hidden_states={"value": np.float64(0.5), "advantages": [0.1, 0.2], "skip": "text"},
    )
    inferences = {
        "cnn": Inference(cnn, {"x": rng.normal(size=(1, 2, 4, 3)).astype(np.float32)}),
        "dqn": Inference(dqn, {"obs": rng.normal(size=(1, 3, 5)).astype(">f8")}),
    }
    inp = BaseDataInput(
        symbol=Symbol.parse(SYMBOL),
        timestamp=t,
        ohlcv={"1m": _candles(32, MIN, t), "5m": _candles(8, 5 * MIN, t - t % (5 * MIN))},
        technical_indicators=indicators
        if indicators is not None
        else {"1m/rsi": 55.5, "1m/atr": np.float64(1.25), "1m/obv": 3, "5m/gap": float("nan")},
        pivot_points=pivots,
        last_predictions={"cnn": cnn},
        market_microstructure={"spread": np.float32(0.5), "levels": (1, 2)},
    )
    decision = Decision(
        symbol=SYMBOL,
        timestamp=t,
        action=Action.SELL,
        confidence=0.55,
        probabilities=(0.2, 0.55, 0.25),
        gate="vote",
        contributions=(
            Contribution("cnn", Action.SELL, 0.4, 0.5, (0.3, 0.4, 0.3), 0.2),
            Contribution("dqn", Action.BUY, 0.6, 0.5, (0.6, 0.2, 0.2), 0.1),
        ),
        reason="SELL: p=0.55 >= sell threshold 0.45",
        skipped={"lstm": "no input"},
    )
    return decision, inp, inferences, {"cnn": 2, "dqn": 0}


# -- the construction before issue 14: plain copies first, then the record -----------------
def _plain_before(value: Any) -> Any:
    kind = type(value)
    if kind is float or kind is int or kind is bool or value is None:
        return value
    if isinstance(value, Mapping):
        return {k if type(k) is str else str(k): _plain_before(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain_before(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _record_before(
    decision: Decision, inp: BaseDataInput, inferences: dict[str, Inference], versions: Any
) -> InferenceRecord:
    def output(o: ModelOutput) -> dict[str, Any]:
        return {
            "model_type": o.model_type,
            "model_name": o.model_name,
            "timestamp": int(o.timestamp),
            "confidence": float(o.confidence),
            "action": None if o.action is None else o.action.value,
            "predictions": _plain_before(o.predictions),
            "metadata": _plain_before(o.metadata),
        }

    def arrays(states: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
        out = {}
        for key, value in (states or {}).items():
            if isinstance(value, np.ndarray):
                out[str(key)] = value
            elif isinstance(value, list | tuple | int | float):
                out[str(key)] = np.asarray(value, dtype=np.float64)
        return out

    return InferenceRecord(
        symbol=decision.symbol,
        timestamp=int(decision.timestamp),
        action=decision.action.value,
        confidence=float(decision.confidence),
        decision={
            "probabilities": [float(p) for p in decision.probabilities],
            "gate": decision.gate,
            "reason": decision.reason,
            "contributions": [
                {
                    "model": c.model,
                    "action": c.action.value,
                    "confidence": float(c.confidence),
                    "weight": float(c.weight),
                    "probabilities": [float(p) for p in c.probabilities],
                    "share": float(c.share),
                }
                for c in decision.contributions
            ],
            "skipped": dict(decision.skipped),
            "versions": {k: int(v) for k, v in versions.items()},
        },
        outputs={name: output(inf.output) for name, inf in inferences.items()},
        hidden={name: arrays(inf.output.hidden_states) for name, inf in inferences.items()},
        tensors={
            name: {k: np.asarray(v) for k, v in inf.tensors.items()}
            for name, inf in inferences.items()
        },
        input={
            "symbol": str(inp.symbol),
            "timestamp": int(inp.timestamp),
            "windows": {
                str(tf): {
                    "first_open": int(c.timestamp[0]) if len(c) else None,
                    "last_open": int(c.timestamp[-1]) if len(c) else None,
                    "rows": len(c),
                }
                for tf, c in inp.ohlcv.items()
            },
            "technical_indicators": {
                k: (None if not math.isfinite(v) else float(v))
                for k, v in inp.technical_indicators.items()
            },
            "pivot_points": [
                {
                    "timestamp": p.timestamp,
                    "confirmed_at": p.confirmed_at,
                    "price": p.price,
                    "kind": str(p.kind),
                    "level": p.level,
                }
                for p in inp.pivot_points
            ],
            "last_predictions": {
                name: {
                    "timestamp": int(out.timestamp),
                    "action": None if out.action is None else out.action.value,
                    "confidence": float(out.confidence),
                }
                for name, out in inp.last_predictions.items()
            },
            "market_microstructure": _plain_before(inp.market_microstructure),
            "cob_timestamp": None if inp.cob_data is None else int(inp.cob_data.timestamp),
        },
    )


def _payloads(records: list[InferenceRecord]) -> list[bytes]:
    return pack_payloads([payload_header(r) for r in records], records, 3)


def test_a_step_record_stores_the_same_bytes_as_the_plain_copies_did() -> None:
    pivots = tuple(_pivot(i, 100.0 + i) for i in range(6))
    steps = [_step(T + k * MIN, pivots=pivots[: 4 + k]) for k in range(3)]
    new = [record_of_step(*s) for s in steps]
    before = [_record_before(*s) for s in steps]
    assert all(type(r) is EncodedRecord and r.header is not None for r in new)
    assert [r.header for r in new] == [payload_header(r) for r in before]
    assert _payloads(new) == _payloads(before)
    for r, b in zip(new, before, strict=True):
        assert [a.tobytes() for a in r.arrays] == [a.tobytes() for a in record_arrays(b)]
    # the pivots of consecutive steps are shared entries, and each step has its own
    assert [p["price"] for p in new[2].input["pivot_points"]] == [100.0 + i for i in range(6)]
    assert new[1].input["pivot_points"][:4] == new[0].input["pivot_points"]


def test_indicators_keep_nan_as_null_ints_as_floats_and_survive_an_overflowing_sum() -> None:
    for indicators in (
        {"a": 1.5, "b": 2.5},  # all finite floats: taken as they are
        {"a": 1e308, "b": 1e308},  # finite, but their sum overflows
        {"a": float("inf"), "b": 3, "c": np.float32(0.1)},
        {},
    ):
        step = _step(indicators=indicators)
        new, before = record_of_step(*step), _record_before(*step)
        assert new.header == payload_header(before)


def test_keys_that_are_not_str_and_old_style_enums_follow_plains_rules(tmp_path: Path) -> None:
    class OldStyle(str, Enum):  # noqa: UP042  # str() of a member is "OldStyle.UP"
        UP = "up"

    step = _step(predictions={7: "int key", True: "bool key", "side": OldStyle.UP})
    record = record_of_step(*step)
    with DuckDBStore(tmp_path / "h.duckdb") as store:
        history = InferenceHistory(store)
        history.append([record])
        (back,) = history.query()
    assert back.outputs["cnn"]["predictions"] == {"7": "int key", "True": "bool key", "side": "up"}


def test_a_value_json_cannot_hold_refuses_the_batch_when_written(tmp_path: Path) -> None:
    record = record_of_step(*_step(predictions={"when": {"at": object()}}))
    assert record.header is None  # building it did not raise: trading goes on
    with DuckDBStore(tmp_path / "h.duckdb") as store:
        history = InferenceHistory(store)
        good = record_of_step(*_step(T + MIN))
        with pytest.raises(ValueError, match=r"record 1 of 2 .*\['when'\]\['at'\] is a"):
            history.append([good, record])
        assert history.count() == 0


def test_an_encoded_record_is_stored_as_it_was_built(tmp_path: Path) -> None:
    record = record_of_step(*_step())
    x = record.tensors["cnn"]["x"]
    record.tensors["cnn"]["x"] = np.zeros(3)  # type: ignore[index]  # changed afterwards
    with DuckDBStore(tmp_path / "h.duckdb") as store:
        history = InferenceHistory(store)
        history.append([record])
        (back,) = history.query()
    assert back.tensors["cnn"]["x"].tobytes() == x.tobytes()
    assert back.tensors["cnn"]["x"].shape == x.shape
    assert back.tensors["dqn"]["obs"].dtype.str == ">f8"
    assert back.hidden["dqn"]["advantages"].tolist() == [0.1, 0.2]
    assert "skip" not in back.hidden["dqn"]  # not an array: left out, as before

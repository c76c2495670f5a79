"""Writing a batch of inference-history payloads (issue 14): byte planes made together,
one compression call, and still format version 2, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard

from pivotal.data import inference_payload as ip
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_history import InferenceHistory, InferenceRecord
from pivotal.data.inference_payload import (
    decode_payload,
    pack_bodies,
    pack_payloads,
    payload_bodies,
    payload_body,
    payload_header,
    record_arrays,
)
from pivotal.data.inference_record import check_record

T0 = 1_700_000_000_000


def _record(i: int, tensors: dict[str, dict[str, np.ndarray]]) -> InferenceRecord:
    return InferenceRecord(
        symbol="BTC/USDT",
        timestamp=T0 + i,
        action="HOLD",
        confidence=0.5,
        decision={"i": i, "p": [0.25, float("nan")]},
        outputs={"m": {"confidence": 0.5, "score": np.float32(0.1)}},
        hidden={"m": {"h": np.full((1, 3), i, dtype=np.float32)}},
        tensors=tensors,
    )


def _layouts(i: int) -> dict[str, dict[str, np.ndarray]]:
    """Arrays of several layouts: one dtype per element size, mixed dtypes in one size,
    big-endian only, Fortran order, strided, 0-d and empty."""
    rng = np.random.default_rng(i)
    kind = i % 4
    if kind == 0:
        return {"m": {"x": rng.normal(size=(2, 5)).astype(np.float32)}}
    if kind == 1:
        return {
            "m": {
                "x": rng.normal(size=(2, 5)).astype(np.float32),
                "n": np.arange(4, dtype=np.int32) + i,  # a second 4-byte dtype
                "f": np.asfortranarray(rng.normal(size=(3, 2))),
                "s": np.arange(12, dtype=np.int64)[::4],
            }
        }
    if kind == 2:
        return {"m": {"b": np.arange(6, dtype=">f8") + i, "c": np.array(i, dtype=">f8")}}
    return {"m": {"e": np.zeros((0, 3), dtype=np.float16), "t": np.array(["BUY", "SELL"])}}


def _reference_v2(record: InferenceRecord, level: int) -> bytes:
    """Format version 2 as its docstring describes it, written independently of the codec."""
    header = {
        "decision": record.decision,
        "outputs": record.outputs,
        "input": record.input,
        **{
            part: {
                m: [[n, a.dtype.str, list(a.shape)] for n, a in arrays.items()]
                for m, arrays in getattr(record, part).items()
            }
            for part in ("hidden", "tensors")
        },
    }

    def plain(v: Any) -> Any:
        if isinstance(v, float) and v != v:
            return None
        if isinstance(v, np.generic):
            return plain(v.item())
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    text = json.dumps(plain(header), separators=(",", ":")).encode()
    groups: dict[int, list[np.ndarray]] = {}
    for a in record_arrays(record):
        groups.setdefault(a.itemsize, []).append(a)
    planes = b"".join(
        b"".join(
            np.ascontiguousarray(a).reshape(-1).view(np.uint8)[k::size].tobytes()
            for k in range(size)
            for a in [np.concatenate([np.ascontiguousarray(m).reshape(-1) for m in members])]
        )
        if len({m.dtype for m in members}) == 1
        else np.concatenate([np.ascontiguousarray(m).reshape(-1).view(np.uint8) for m in members])
        .reshape(-1, size)
        .T.tobytes()
        for size, members in groups.items()
    )
    body = len(text).to_bytes(4, "little") + text + planes
    if level == 0:
        return b"PIH2\x00" + body
    return b"PIH2\x01" + zstandard.ZstdCompressor(level=level).compress(body)


def test_a_mixed_batch_makes_the_same_bodies_as_each_record_alone() -> None:
    records = [_record(i, _layouts(i // 3)) for i in range(24)]  # runs of 3, then a change
    headers = [payload_header(r) for r in records]
    arrays = [record_arrays(r) for r in records]
    single = [payload_body(h, a) for h, a in zip(headers, arrays, strict=True)]
    assert payload_bodies(headers, arrays) == single
    assert payload_bodies([], []) == []


@pytest.mark.parametrize("level", [0, 3])
def test_the_bytes_written_are_format_2_and_read_back(level: int) -> None:
    records = [_record(i, _layouts(i)) for i in range(8)]
    payloads = pack_payloads([payload_header(r) for r in records], records, level)
    assert payloads == [_reference_v2(r, level) for r in records]
    for record, payload in zip(records, payloads, strict=True):
        back = decode_payload(record.symbol, record.timestamp, "HOLD", 0.5, payload)
        assert back.decision == {"i": record.decision["i"], "p": [0.25, None]}
        assert back.outputs == {"m": {"confidence": 0.5, "score": float(np.float32(0.1))}}
        for a, b in zip(record_arrays(record), record_arrays(back), strict=True):
            assert (a.dtype.str, a.shape, a.tobytes()) == (b.dtype.str, b.shape, b.tobytes())


def test_a_reference_v2_payload_is_read() -> None:
    """A payload built from the format's description alone (not by the codec) decodes."""
    record = _record(5, _layouts(1))
    back = decode_payload("BTC/USDT", T0 + 5, "HOLD", 0.5, _reference_v2(record, 6))
    assert back.tensors["m"]["f"].tobytes() == np.ascontiguousarray(_layouts(1)["m"]["f"]).tobytes()
    assert list(back.tensors["m"]) == ["x", "n", "f", "s"]


def test_without_the_batch_call_each_body_is_compressed_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoBatch:
        """A compressor like zstandard's CFFI backend: no ``multi_compress_to_buffer``."""

        def __init__(self, level: int) -> None:
            self._inner = zstandard.ZstdCompressor(level=level)

        def multi_compress_to_buffer(self, data: Any, threads: int = 0) -> Any:
            raise NotImplementedError

        def compress(self, data: bytes) -> bytes:
            return self._inner.compress(data)

    bodies = [payload_body(payload_header(r), record_arrays(r)) for r in map(_one, range(5))]
    batch = pack_bodies(bodies, 3)
    monkeypatch.setattr(ip, "_compressor", lambda level: NoBatch(level))
    assert pack_bodies(bodies, 3) == batch
    joined, sizes = batch
    assert len(joined) == sum(sizes) and joined[:5] == b"PIH2\x01"
    assert pack_bodies([], 3) == (b"", [])


def _one(i: int) -> InferenceRecord:
    return _record(i, _layouts(0))


def test_payloads_are_not_compressed_again_by_duckdb(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "h.duckdb") as store:
        history = InferenceHistory(store)
        history.append([_one(i) for i in range(50)])
        with store.transaction() as con:
            con.execute("CHECKPOINT")
            rows = con.execute(
                "SELECT DISTINCT compression FROM pragma_storage_info('inference_history') "
                "WHERE column_name = 'payload' AND segment_type = 'BLOB'"
            ).fetchall()
        assert {r[0] for r in rows} == {"Uncompressed"}
        assert len(history.query()) == 50


def test_check_record_keeps_refusing_what_cannot_be_stored() -> None:
    class Sub(np.ndarray):
        pass

    ok = _one(0)
    check_record(ok)  # float32 arrays: now known good
    sub = np.zeros(3, dtype=np.float32).view(Sub)
    check_record(_record(1, {"m": {"x": sub}}))  # a subclass of ndarray is an array
    for bad, message in (
        (np.zeros(2, dtype=[("a", "f4")]), "cannot be stored"),
        (np.zeros(2, dtype=object), "cannot be stored"),
        (np.zeros(2, dtype="m8[s]").astype(object), "cannot be stored"),
        ([0.0], "is a list"),
    ):
        with pytest.raises(ValueError, match=message):
            _record(2, {"m": {"x": bad}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="keys must be non-empty str"):
        _record(3, {"m": {"": np.zeros(2, dtype=np.float32)}})

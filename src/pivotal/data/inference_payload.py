"""The payload codec of the inference history: one record's JSON parts and arrays as bytes,
and back (:func:`pack_payload` / :func:`decode_payload`).

Payload format (version 1): ``PIH1`` | n (u32, little-endian) | header (n bytes) | arrays.
The header is UTF-8 JSON deflated by zlib at ``compression_level``: ``decision``, ``outputs``,
``input`` and, for ``hidden`` and ``tensors``, model → ``[[name, dtype.str, shape], ...]`` in
insertion order. The arrays part is one zlib stream (same level, run-length strategy):
arrays are grouped by element size (groups and members in header order) and each group is
stored as byte planes (byte 0 of every element of every member in C order, then byte 1, ...;
the HDF5/Blosc "shuffle" filter), a plane of at least 1 KiB closing its own deflate block so
that it gets its own Huffman code. On float32 tensors this is ~7-9% smaller than plain zlib
(exponent bytes compress, mantissa bytes barely) and deflates ~2x faster; runs (padding,
zeros) still collapse. Decoding parses JSON and calls
``np.frombuffer``; nothing is ever unpickled. Arrays come back with the same dtype (byte
order included), shape and bytes, writable, in C order (a Fortran-ordered array comes back
equal but C-contiguous).
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pivotal.core.errors import DataError
from pivotal.data.inference_record import ArrayParts, InferenceRecord

__all__ = [
    "MAGIC",
    "decode_payload",
    "pack_payload",
    "pack_payloads",
    "payload_header",
    "record_arrays",
]

#: The first bytes of every version-1 payload.
MAGIC = b"PIH1"
_MAX_THREADS = 8  # compression threads for one append
_PER_THREAD = 16  # records per thread below which a batch is compressed inline
_PLANE_BLOCK = 1024  # byte planes at least this long get their own deflate block


def payload_header(record: InferenceRecord) -> bytes:
    """The JSON header of one record's payload; ``ValueError`` naming the field that JSON
    cannot hold."""
    return _dumps(
        {
            "decision": record.decision,
            "outputs": record.outputs,
            "input": record.input,
            "hidden": _layout(record.hidden),
            "tensors": _layout(record.tensors),
        }
    )


def record_arrays(record: InferenceRecord) -> list[np.ndarray]:
    """The arrays of ``record`` in payload order: ``hidden`` then ``tensors``, each by model
    and name in insertion order."""
    return [
        a for part in (record.hidden, record.tensors) for m in part.values() for a in m.values()
    ]


def pack_payload(header: bytes, arrays: list[np.ndarray], level: int) -> bytes:
    """One payload (module docstring: format). Cannot fail on a checked record."""
    packed_header = zlib.compress(header, level)
    deflate = zlib.compressobj(level, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    body = [MAGIC, len(packed_header).to_bytes(4, "little"), packed_header]
    for itemsize, members in _by_itemsize(arrays).items():
        flat = [np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in members]
        planes = np.concatenate(flat).reshape(-1, itemsize).T.copy()
        for plane in planes:
            body.append(deflate.compress(plane))
            if len(plane) >= _PLANE_BLOCK:
                body.append(deflate.flush(zlib.Z_BLOCK))
    body.append(deflate.flush())
    return b"".join(body)


def _by_itemsize(arrays: list[Any]) -> dict[int, list[Any]]:
    """``arrays`` (or their slots) grouped by element size, groups and members in order of
    first appearance."""
    groups: dict[int, list[Any]] = {}
    for a in arrays:
        groups.setdefault(a.itemsize, []).append(a)
    return groups


def pack_payloads(headers: list[bytes], records: list[InferenceRecord], level: int) -> list[bytes]:
    """Payloads of a batch; large batches on a few threads (zlib and numpy copies release the
    GIL). The bytes are the same either way."""
    jobs = [(h, record_arrays(r), level) for h, r in zip(headers, records, strict=True)]
    workers = min(_MAX_THREADS, os.cpu_count() or 1, len(jobs) // _PER_THREAD)
    if workers < 2:
        return [pack_payload(*job) for job in jobs]
    with ThreadPoolExecutor(workers, thread_name_prefix="inference-history") as pool:
        return list(pool.map(lambda job: pack_payload(*job), jobs))


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where a stored array goes back: ``part[model][name]``, its dtype and shape."""

    part: str
    model: str
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def count(self) -> int:
        return math.prod(self.shape)


def _unpack_arrays(
    header: dict[str, Any], data: bytes, where: str
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    parts: dict[str, dict[str, dict[str, np.ndarray]]] = {"hidden": {}, "tensors": {}}
    slots = []
    for part, models in parts.items():
        for model, layout in header[part].items():
            models[model] = dict.fromkeys(name for name, _, _ in layout)  # keeps the order
            for name, dtype, shape in layout:
                slots.append(_Slot(part, model, name, np.dtype(dtype), tuple(shape)))
    offset = 0
    for itemsize, members in _by_itemsize(slots).items():
        total = sum(m.count for m in members)
        if offset + total * itemsize > len(data):
            raise DataError(f"{where} is corrupt: the arrays are cut short")
        planes = np.frombuffer(data, np.uint8, total * itemsize, offset).reshape(itemsize, total)
        offset += total * itemsize
        start = 0
        for m in members:
            flat = planes[:, start : start + m.count].T.copy()
            parts[m.part][m.model][m.name] = flat.view(m.dtype).reshape(m.shape)
            start += m.count
    if offset != len(data):
        raise DataError(f"{where} is corrupt: {len(data) - offset} bytes after the last array")
    return parts


def _layout(part: ArrayParts) -> dict[str, list[list[Any]]]:
    return {
        model: [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()]
        for model, arrays in part.items()
    }


def _dumps(header: dict[str, Any]) -> bytes:
    """Compact JSON; the slow path replaces non-finite floats with null and names the
    offending field of anything that is not JSON-able."""
    try:
        text = json.dumps(header, allow_nan=False, separators=(",", ":"), default=_json_default)
    except (ValueError, TypeError):
        clean = {key: _finite(value, key) for key, value in header.items()}
        text = json.dumps(clean, allow_nan=False, separators=(",", ":"))
    return text.encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.bool_ | np.integer | np.floating):
        return value.item()
    raise TypeError(type(value).__name__)


def _finite(value: Any, path: str) -> Any:
    """``value`` with every non-finite float as None; ``ValueError`` naming ``path`` for
    anything JSON cannot hold."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if key is not None and not isinstance(key, str | int | float | bool):
                raise ValueError(
                    f"{path} has key {key!r} ({type(key).__name__}); JSON keys must be str"
                )
            out[key] = _finite(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_finite(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return _finite(value.tolist(), path)
    if isinstance(value, np.bool_ | np.integer | np.floating):
        return _finite(value.item(), path)
    raise ValueError(
        f"{path} is a {type(value).__name__}, which is not JSON-able; give plain numbers, "
        "str, lists and mappings (arrays belong in hidden or tensors)"
    )


def decode_payload(
    symbol: str, ts: int, action: str, confidence: float, payload: bytes
) -> InferenceRecord:
    """The record stored as ``payload`` beside its row's columns; ``DataError`` when the
    payload is of an unknown format or corrupt."""
    where = f"inference history payload of {symbol} @ {ts}"
    if payload[:4] != MAGIC:
        raise DataError(f"{where} has unknown format {payload[:4]!r}; written by a newer pivotal?")
    try:
        end = 8 + int.from_bytes(payload[4:8], "little")
        header = json.loads(zlib.decompress(payload[8:end]))
        data = zlib.decompress(payload[end:])
    except (zlib.error, ValueError) as exc:
        raise DataError(f"{where} is corrupt: {exc}") from exc
    try:
        parts = _unpack_arrays(header, data, where)
        return InferenceRecord(
            symbol=symbol,
            timestamp=int(ts),
            action=action,
            confidence=float(confidence),
            decision=header["decision"],
            outputs=header["outputs"],
            hidden=parts["hidden"],
            tensors=parts["tensors"],
            input=header["input"],
        )
    except DataError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{where} is corrupt: {exc!r}") from exc

"""The payload codec of the inference history: one record's JSON parts and arrays as bytes,
and back (:func:`pack_payload` / :func:`decode_payload`).

Payload format, version 2 (written): ``PIH2`` | codec (1 byte: 0 stored, 1 zstd) | body,
the body zstd-compressed at ``level`` (or stored as is at level 0). Inside the body:
header length n (u32, little-endian) | header (n bytes of UTF-8 JSON: ``decision``,
``outputs``, ``input`` and, for ``hidden`` and ``tensors``, model → ``[[name, dtype.str,
shape], ...]`` in insertion order) | the arrays, grouped by element size (groups and members
in header order), each group stored as byte planes (byte 0 of every element of every member
in C order, then byte 1, ...; the HDF5/Blosc "shuffle" filter: exponent bytes compress,
mantissa bytes barely). On the orchestrator's records (float32 windows) zstd level 3 is
~18 % smaller than version 1 and ~3.5x faster to write (decision 161); zstd releases the GIL
while it compresses, so the history's writer thread barely holds up the decision thread.

Version 1 (read only): ``PIH1`` | n (u32) | zlib-deflated header (n bytes) | one zlib
stream of the same byte planes.

Decoding parses JSON and calls ``np.frombuffer``; nothing is ever unpickled. Arrays come
back with the same dtype (byte order included), shape and bytes, writable, in C order (a
Fortran-ordered array comes back equal but C-contiguous). Non-finite floats of the JSON
parts are written as ``null``.

Writing a batch (issue 14; the bytes are version 2's, unchanged): an
:class:`EncodedRecord` (the orchestrator's step records) has its header encoded when it is
built, by :func:`plain`'s rules applied by orjson as it writes (no Python copy of the JSON
parts first); :func:`payload_bodies` makes the byte planes of records with the same array
layout together; :func:`pack_bodies` compresses the batch in one GIL-free call.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from itertools import chain, repeat
from types import MappingProxyType
from typing import Any

import numpy as np
import orjson
import zstandard

from pivotal.core.errors import DataError
from pivotal.data.inference_record import ArrayParts, InferenceRecord

__all__ = [
    "MAGIC",
    "MAX_LEVEL",
    "EncodedRecord",
    "decode_payload",
    "pack_bodies",
    "pack_payload",
    "pack_payloads",
    "payload_bodies",
    "payload_body",
    "payload_header",
    "plain",
    "record_arrays",
]

#: The first bytes of every payload written (version 2).
MAGIC = b"PIH2"
_MAGIC_V1 = b"PIH1"  # read only
_STORED, _ZSTD = 0, 1  # version 2's codec byte
_PREFIX = {_STORED: MAGIC + bytes([_STORED]), _ZSTD: MAGIC + bytes([_ZSTD])}
#: The highest compression level (zstd's).
MAX_LEVEL = 22
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS
# numpy values go through ``_json_default`` (``.item()``, ``.tolist()``): a float32 is written
# as the float64 it converts to, as version 1 wrote it, so both decode to the same values
_PLAIN_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS  # str keys only; subclasses to the default
_SCALARS = frozenset({float, int, bool, str, type(None)})


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: mappings → dicts with str keys (``str(key)``), sequences
    and arrays → lists, numpy scalars → Python numbers, enum members → their value (made
    plain), other str subclasses → ``str(value)``; non-finite floats stay floats (the
    history encodes them); anything else is left as it is."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict or kind is MappingProxyType or isinstance(value, Mapping):
        return {k if type(k) is str else str(k): plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        if all(type(v) in _SCALARS for v in value):  # floats, names: nothing to convert
            return list(value)
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def payload_header(record: InferenceRecord) -> bytes:
    """The JSON header of one record's payload (an :class:`EncodedRecord`'s by
    :func:`plain`'s rules); ``ValueError`` naming the field that JSON cannot hold."""
    parts = {
        "decision": record.decision,
        "outputs": record.outputs,
        "input": record.input,
        "hidden": _layout(record.hidden),
        "tensors": _layout(record.tensors),
    }
    if not isinstance(record, EncodedRecord):
        return _dumps(parts)
    try:  # plain's rules, applied by orjson as it writes (mapping keys must be str here)
        return orjson.dumps(parts, default=_plain_default, option=_PLAIN_OPTIONS)
    except TypeError:  # a non-str key, or something plain leaves as it is
        return _dumps({key: plain(value) for key, value in parts.items()})


def _plain_default(value: Any) -> Any:
    """What :func:`plain` makes of a value orjson does not write itself (or, for subclasses
    of str, int, list and dict, is told not to); ``TypeError`` for anything plain leaves as
    it is (written by the general path)."""
    if type(value) is MappingProxyType:
        value = value.copy()  # the mapping behind it (a dict, as a rule: copied in C)
        return value if type(value) is dict else dict(value)
    if isinstance(value, Mapping):
        return dict(value)  # orjson refuses keys that are not str: the general path
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise TypeError(type(value).__name__)


def record_arrays(record: InferenceRecord) -> list[np.ndarray]:
    """The arrays of ``record`` in payload order: ``hidden`` then ``tensors``, each by model
    and name in insertion order."""
    return [
        a for part in (record.hidden, record.tensors) for m in part.values() for a in m.values()
    ]


def _by_itemsize(arrays: Any) -> dict[int, list[Any]]:
    """``arrays`` (or their slots) grouped by element size, groups and members in order of
    first appearance."""
    groups: dict[int, list[Any]] = {}
    for a in arrays:
        groups.setdefault(a.itemsize, []).append(a)
    return groups


def payload_body(header: bytes, arrays: list[np.ndarray]) -> bytes:
    """A payload's body before compression: header length, header, byte planes (module
    docstring)."""
    return _same_layout_bodies([header], [arrays])[0]


def payload_bodies(headers: list[bytes], arrays: list[list[np.ndarray]]) -> list[bytes]:
    """The bodies of a batch: the same bytes as :func:`payload_body` on each header and its
    arrays. Consecutive records whose arrays have the same dtypes and shapes (a run's steps,
    as a rule) are turned into byte planes together, a few numpy calls for the lot."""
    signatures = [[(a.dtype, a.shape) for a in record] for record in arrays]
    bodies: list[bytes] = []
    start = 0
    while start < len(arrays):
        end = start + 1
        while end < len(arrays) and signatures[end] == signatures[start]:
            end += 1
        bodies += _same_layout_bodies(headers[start:end], arrays[start:end])
        start = end
    return bodies


def _same_layout_bodies(headers: list[bytes], arrays: list[list[np.ndarray]]) -> list[bytes]:
    """:func:`payload_bodies` of records whose arrays have the same dtypes and shapes."""
    n, first = len(arrays), arrays[0]
    planes = []  # per element size: (record, byte, element) uint8
    for itemsize, slots in _by_itemsize(_Index(a.itemsize, j) for j, a in enumerate(first)).items():
        members = [record[slot.j] for record in arrays for slot in slots]
        dtype = first[slots[0].j].dtype
        if dtype.isnative and all(first[slot.j].dtype == dtype for slot in slots):
            flat = np.concatenate(members, axis=None)  # one dtype: flattened in C order
        else:
            flat = np.concatenate(
                [np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in members]
            )
        each = flat.nbytes // itemsize // n  # elements per record
        by_record = flat.view(np.uint8).reshape(n, each, itemsize)
        planes.append(np.ascontiguousarray(by_record.transpose(0, 2, 1)))
    return [
        b"".join([len(header).to_bytes(4, "little"), header, *(p[i] for p in planes)])
        for i, header in enumerate(headers)
    ]


@dataclass(frozen=True, slots=True)
class _Index:
    """An array's element size and position among its record's arrays."""

    itemsize: int
    j: int


def _compressor(level: int) -> zstandard.ZstdCompressor | None:
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"compression level must be an int in 0..{MAX_LEVEL}, got {level!r}")
    return None if level == 0 else zstandard.ZstdCompressor(level=level)


def pack_payload(header: bytes, arrays: list[np.ndarray], level: int) -> bytes:
    """One payload (module docstring: format) at zstd ``level`` (0: stored). Cannot fail on
    a checked record."""
    payload, _ = pack_bodies([payload_body(header, arrays)], level)
    return payload


def pack_payloads(headers: list[bytes], records: list[InferenceRecord], level: int) -> list[bytes]:
    """The payloads of a batch (the same bytes as :func:`pack_payload` on each)."""
    if len(headers) != len(records):
        raise ValueError(f"{len(headers)} headers for {len(records)} records")
    bodies = payload_bodies(headers, [record_arrays(r) for r in records])
    joined, sizes = pack_bodies(bodies, level)
    ends = np.cumsum(sizes).tolist()
    return [joined[end - size : end] for end, size in zip(ends, sizes, strict=True)]


def pack_bodies(bodies: list[bytes], level: int) -> tuple[bytes, list[int]]:
    """The payloads of ``bodies`` (:func:`payload_body`) at zstd ``level`` (0: stored), back
    to back in one buffer, and each one's size. zstandard's C backend compresses the batch
    in one call on this thread (``multi_compress_to_buffer``), without the GIL; frames are
    the same bytes as one ``compress`` each, which the other backends call."""
    compressor = _compressor(level)
    if not bodies:
        return b"", []
    frames: list[Any]
    if compressor is None:
        prefix, frames = _PREFIX[_STORED], bodies
    else:
        prefix = _PREFIX[_ZSTD]
        try:
            frames = list(compressor.multi_compress_to_buffer(bodies, threads=0))
        except (AttributeError, NotImplementedError):  # the CFFI backend has no such call
            frames = [compressor.compress(body) for body in bodies]
    joined = b"".join(chain.from_iterable(zip(repeat(prefix), frames)))
    return joined, [len(prefix) + memoryview(f).nbytes for f in frames]


@dataclass(frozen=True, slots=True, eq=False)
class EncodedRecord(InferenceRecord):
    """An :class:`InferenceRecord` encoded once, when it is built: ``header`` is its payload
    header (:func:`payload_header`), or None when a JSON part could not be written (then
    :meth:`InferenceHistory.append <pivotal.data.inference_history.InferenceHistory.append>`
    encodes it again and refuses the batch, naming the field); ``arrays`` are its arrays in
    payload order (:func:`record_arrays`), as they were then.

    Its JSON parts are written by :func:`plain`'s rules, so they may hold what plain
    converts (read-only mappings, tuples, enum members, numpy values) as they are. The
    history stores it as it was when built: it does not check the record again, and writes
    ``header`` and the byte planes of ``arrays``. Its producer hands over the parts and
    changes none of them afterwards (an array's values included): the orchestrator's step
    records (:func:`pivotal.orchestrator.records.record_of_step`).
    """

    header: bytes | None = field(default=None, init=False, repr=False)
    arrays: tuple[np.ndarray, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        InferenceRecord.__post_init__(self)
        object.__setattr__(self, "arrays", tuple(record_arrays(self)))
        try:
            header: bytes | None = payload_header(self)
        except Exception:  # the history encodes it again when it writes, and says what failed
            header = None
        object.__setattr__(self, "header", header)


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


def _layout(part: ArrayParts) -> dict[str, list[tuple[Any, ...]]]:
    """model → ``(name, dtype.str, shape)`` per array (written as JSON lists)."""
    return {
        model: [(name, _dtype_str(a.dtype), a.shape) for name, a in arrays.items()]
        for model, arrays in part.items()
    }


#: dtype → ``dtype.str`` (a look-up costs less than the property)
_DTYPE_STR: dict[np.dtype, str] = {}


def _dtype_str(dtype: np.dtype) -> str:
    text = _DTYPE_STR.get(dtype)
    if text is None:
        text = dtype.str
        if len(_DTYPE_STR) < 256:
            _DTYPE_STR[dtype] = text
    return text


def _dumps(header: dict[str, Any]) -> bytes:
    """Compact JSON (orjson; non-finite floats become null, numpy values plain numbers); the
    slow path names the offending field of anything that is not JSON-able."""
    try:
        return orjson.dumps(header, default=_json_default, option=_JSON_OPTIONS)
    except TypeError:
        clean = {key: _finite(value, key) for key, value in header.items()}
        return json.dumps(clean, allow_nan=False, separators=(",", ":")).encode()


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
    magic = payload[:4]
    try:
        if magic == MAGIC:
            header, data = _read_v2(payload, where)
        elif magic == _MAGIC_V1:
            end = 8 + int.from_bytes(payload[4:8], "little")
            header = json.loads(zlib.decompress(payload[8:end]))
            data = zlib.decompress(payload[end:])
        else:
            raise DataError(f"{where} has unknown format {magic!r}; written by a newer pivotal?")
    except (zlib.error, zstandard.ZstdError, ValueError) as exc:
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


def _read_v2(payload: bytes, where: str) -> tuple[Any, bytes]:
    """Version 2's header (parsed) and array bytes."""
    codec = payload[4:5]
    if codec == bytes([_STORED]):
        body = payload[5:]
    elif codec == bytes([_ZSTD]):
        body = zstandard.ZstdDecompressor().decompress(payload[5:])
    else:
        raise DataError(f"{where} has unknown codec {codec!r}; written by a newer pivotal?")
    n = int.from_bytes(body[:4], "little")
    if len(body) < 4 + n:
        raise DataError(f"{where} is corrupt: the header is cut short")
    return orjson.loads(body[4 : 4 + n]), body[4 + n :]

"""``plain``: a step's outputs as JSON-able data for the inference history."""

from __future__ import annotations

import json
from enum import Enum, IntEnum, StrEnum

import numpy as np

from pivotal.core.types import Action
from pivotal.orchestrator.records import plain


class _Side(StrEnum):
    UP = "up"


def test_every_kind_becomes_plain_data_and_scalar_lists_stay_as_they_are() -> None:
    names = ("rsi", "macd", "close")
    value = {
        "names": names,
        "mixed": [1, 2.5, True, None, "x"],
        "nested": ({"a": np.float32(0.5)}, [np.int64(3)]),
        "array": np.arange(3.0),
        "side": [_Side.UP, Action.BUY],
        7: "int key",
    }
    out = plain(value)
    assert out["names"] == list(names) and type(out["names"]) is list
    assert out["mixed"] == [1, 2.5, True, None, "x"]
    assert out["nested"] == [{"a": 0.5}, [3]] and type(out["nested"][1][0]) is int
    assert out["array"] == [0.0, 1.0, 2.0]
    assert out["side"] == [str(_Side.UP), str(Action.BUY)]
    assert out["7"] == "int key"
    json.dumps(out)  # JSON-able throughout


def test_enum_members_become_their_value() -> None:
    class OldStyle(str, Enum):  # noqa: UP042  # str() of a member is "OldStyle.UP"
        UP = "up"

    class Level(IntEnum):
        ONE = 1

    class Pair(Enum):
        AB = (np.float32(0.5), "b")

    out = plain({"old": OldStyle.UP, "level": Level.ONE, "pair": Pair.AB})
    assert out == {"old": "up", "level": 1, "pair": [0.5, "b"]}
    assert type(out["level"]) is int and type(out["old"]) is str

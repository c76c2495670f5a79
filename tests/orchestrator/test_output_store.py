"""ModelOutputStore: ring capacity, strict ``latest(before)``, ``[since, until)`` queries and
thread safety."""

from __future__ import annotations

import threading
from collections import deque

import pytest

from pivotal.core.types import Action
from pivotal.orchestrator.output_store import ModelOutputStore
from pivotal.testing.experts import vote

BTC = "BTC/USDT"
ETH = "ETH/USDT"


def out(model: str, t: int, symbol: str = BTC, action: Action = Action.HOLD):
    return vote(model, symbol, t, action, 0.5)


def test_ring_keeps_the_last_capacity_outputs_per_model_and_symbol() -> None:
    store = ModelOutputStore(capacity=3)
    reference: deque[int] = deque(maxlen=3)
    for t in range(1, 20):
        store.record(out("cnn", t * 10))
        reference.append(t * 10)
        assert [o.timestamp for o in store.query(model="cnn")] == list(reference)
    store.record(out("rl", 5))
    store.record(out("cnn", 5, symbol=ETH))
    assert len(store) == 5
    assert store.latest(BTC, before=185)["cnn"].timestamp == 180
    assert "cnn" not in store.latest(BTC, before=170)  # 160 and older: dropped from the ring


def test_latest_is_strictly_before_and_per_model() -> None:
    store = ModelOutputStore()
    store.record(out("cnn", 100))
    store.record(out("cnn", 200))
    store.record(out("rl", 150))
    assert {m: o.timestamp for m, o in store.latest(BTC).items()} == {"cnn": 200, "rl": 150}
    assert {m: o.timestamp for m, o in store.latest(BTC, before=200).items()} == {
        "cnn": 100,
        "rl": 150,
    }
    assert store.latest(BTC, before=201)["cnn"].timestamp == 200
    assert store.latest(BTC, before=150) == {"cnn": store.query(model="cnn")[0]}
    assert store.latest(BTC, before=100) == {}
    assert store.latest(ETH) == {}
    assert list(store.latest(BTC)) == ["cnn", "rl"]


def test_symbols_are_normalized() -> None:
    store = ModelOutputStore()
    store.record(out("cnn", 100))
    assert store.latest("btc/usdt")["cnn"].timestamp == 100
    assert store.models("btc/usdt") == ("cnn",)


def test_record_refuses_going_back_in_time_and_replaces_same_time() -> None:
    store = ModelOutputStore()
    store.record(out("cnn", 200))
    with pytest.raises(ValueError, match=r"at 100 is older than the one already kept at 200"):
        store.record(out("cnn", 100))
    store.record(out("cnn", 100, symbol=ETH))  # another symbol: its own timeline
    store.record(out("rl", 100))  # another model: its own timeline
    store.record(out("cnn", 200, action=Action.BUY))
    kept = store.query(model="cnn", symbol=BTC)
    assert len(kept) == 1
    assert kept[0].action is Action.BUY
    with pytest.raises(TypeError, match="ModelOutput"):
        store.record("not an output")  # type: ignore[arg-type]


def test_query_ranges_are_half_open_and_time_ordered() -> None:
    store = ModelOutputStore()
    for t in (100, 200, 300, 400):
        store.record(out("cnn", t))
    for t in (150, 250, 300):
        store.record(out("rl", t))
    store.record(out("cnn", 250, symbol=ETH))
    assert [o.timestamp for o in store.query(model="cnn", symbol=BTC, since=200, until=400)] == [
        200,
        300,
    ]
    assert [o.timestamp for o in store.query(model="cnn", symbol=BTC, since=201)] == [300, 400]
    assert [o.timestamp for o in store.query(model="cnn", until=100)] == []
    rows = store.query(since=200, until=301)
    assert [(o.timestamp, o.model_name, str(o.symbol)) for o in rows] == [
        (200, "cnn", BTC),
        (250, "rl", BTC),
        (250, "cnn", ETH),
        (300, "cnn", BTC),
        (300, "rl", BTC),
    ]
    assert [o.model_name for o in store.query(symbol=ETH)] == ["cnn"]
    assert store.query(model="missing") == []
    with pytest.raises(ValueError, match="since <= until"):
        store.query(since=5, until=1)


def test_models_and_len() -> None:
    store = ModelOutputStore()
    assert store.models() == ()
    assert len(store) == 0
    store.record(out("rl", 1))
    store.record(out("cnn", 1, symbol=ETH))
    assert store.models() == ("cnn", "rl")
    assert store.models(BTC) == ("rl",)
    assert len(store) == 2


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True])
def test_capacity_must_be_a_positive_int(capacity: object) -> None:
    with pytest.raises(ValueError, match="capacity"):
        ModelOutputStore(capacity=capacity)  # type: ignore[arg-type]


def test_concurrent_writers_and_readers() -> None:
    store = ModelOutputStore(capacity=50)
    writers, per_writer = 4, 400
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(writers + 1)

    def write(i: int) -> None:
        try:
            start.wait(5)
            for t in range(per_writer):
                store.record(out(f"m{i}", t))
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            start.wait(5)
            while not done.is_set():
                for model, output in store.latest(BTC, before=per_writer // 2).items():
                    if output.timestamp >= per_writer // 2 or output.model_name != model:
                        raise AssertionError(f"latest returned {output}")
                rows = store.query(symbol=BTC)
                stamps = [o.timestamp for o in rows]
                if stamps != sorted(stamps):
                    raise AssertionError("query is not time-ordered")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    reader = threading.Thread(target=read)
    for thread in [*threads, reader]:
        thread.start()
    for thread in threads:
        thread.join(30)
    done.set()
    reader.join(30)
    assert errors == []
    assert len(store) == writers * 50
    assert store.models() == tuple(f"m{i}" for i in range(writers))
    for i in range(writers):
        stamps = [o.timestamp for o in store.query(model=f"m{i}")]
        assert stamps == list(range(per_writer - 50, per_writer))

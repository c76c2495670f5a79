"""Where the orchestrator's decisions and events go: memory, or a run journal.

A short run (a test, a small replay) keeps every :class:`~pivotal.orchestrator.contracts.
Decision` and event in lists, as results. A long run (a pushed replay, paper, live) gives a
``recorder`` (the run journal, :class:`~pivotal.data.run_journal.RunJournal`, or anything
with ``decision(record)``, ``event(record)`` and ``flush()``): every decision and event is
streamed to it as a JSON-friendly record and only the newest ``keep`` stay in memory, so the
run's memory does not grow with its length. :meth:`DecisionLog.decision_rows` reads the
whole run back from the recorder when it can (``decisions_frame()``/``events_frame()``).

Decision records: ``kind`` ``"model_decision"``, the decision's ``timestamp`` (UTC ms),
``symbol``, ``action``, ``confidence``, ``probabilities`` (BUY, SELL, HOLD), ``gate``,
``reason``, ``skipped`` and ``contributions`` (``[model, action, confidence, weight,
p_buy, p_sell, p_hold, share]`` each); :func:`decision_of_record` rebuilds the decision.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import pandas as pd

from pivotal.core.types import Action
from pivotal.orchestrator.contracts import Contribution, Decision
from pivotal.orchestrator.decisions import decisions_frame

__all__ = ["SOURCE", "DecisionLog", "decision_of_record", "decision_record", "present"]

DECISION_KIND = "model_decision"
SOURCE = "orchestrator"


class DecisionRecorder(Protocol):
    def decision(self, record: Mapping[str, Any]) -> None: ...

    def event(self, record: Mapping[str, Any]) -> None: ...

    def flush(self) -> Any: ...


def decision_record(decision: Decision) -> dict[str, Any]:
    """``decision`` as a JSON-friendly record (module docstring)."""
    return {
        "timestamp": int(decision.timestamp),
        "kind": DECISION_KIND,
        "symbol": decision.symbol,
        "action": decision.action.value,
        "confidence": float(decision.confidence),
        "probabilities": [float(p) for p in decision.probabilities],
        "gate": decision.gate,
        "reason": decision.reason,
        "skipped": dict(decision.skipped),
        "contributions": [
            [
                c.model,
                c.action.value,
                float(c.confidence),
                float(c.weight),
                *(float(p) for p in c.probabilities),
                float(c.share),
            ]
            for c in decision.contributions
        ],
    }


def decision_of_record(record: Mapping[str, Any]) -> Decision:
    """The decision :func:`decision_record` stored."""
    contributions = tuple(
        Contribution(
            model=str(c[0]),
            action=Action(c[1]),
            confidence=float(c[2]),
            weight=float(c[3]),
            probabilities=(float(c[4]), float(c[5]), float(c[6])),
            share=float(c[7]),
        )
        for c in record["contributions"]
    )
    p = record["probabilities"]
    return Decision(
        symbol=str(record["symbol"]),
        timestamp=int(record["timestamp"]),
        action=Action(record["action"]),
        confidence=float(record["confidence"]),
        probabilities=(float(p[0]), float(p[1]), float(p[2])),
        gate=str(record["gate"]),
        contributions=contributions,
        reason=str(record["reason"]),
        skipped=dict(record.get("skipped") or {}),
    )


class DecisionLog:
    """The orchestrator's decisions and events (module docstring). ``keep``: how many of
    each stay in memory when streaming to a recorder."""

    def __init__(self, recorder: DecisionRecorder | None = None, *, keep: int = 1_000) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.recorder = recorder
        bound = None if recorder is None else keep
        self.decisions: deque[Decision] = deque(maxlen=bound)
        self.events: deque[dict[str, Any]] = deque(maxlen=bound)
        self.recorded = 0  # decisions streamed to the recorder

    def decision(self, decision: Decision) -> None:
        self.decisions.append(decision)
        if self.recorder is not None:
            self.recorder.decision(decision_record(decision))
            self.recorded += 1

    def event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if self.recorder is not None:
            self.recorder.event({**event, "source": SOURCE})

    def all_decisions(self) -> list[Decision]:
        """Every decision of the run: from the recorder when it streams (and can be read
        back), else those in memory."""
        rows = self._read("decisions_frame")
        if rows is None:
            return list(self.decisions)
        return [decision_of_record(r) for r in rows if r.get("kind") == DECISION_KIND]

    def all_events(self) -> list[dict[str, Any]]:
        """Every event of the run (as :meth:`all_decisions`)."""
        rows = self._read("events_frame")
        if rows is None:
            return list(self.events)
        return [
            {k: v for k, v in present(r).items() if k != "source"}
            for r in rows
            if r.get("source") == SOURCE
        ]

    def decisions_frame(self, since: int | None = None) -> pd.DataFrame:
        chosen: Iterable[Decision] = self.all_decisions()
        if since is not None:
            chosen = [d for d in chosen if d.timestamp > since]
        return decisions_frame(list(chosen))

    def _read(self, reader: str) -> list[dict[str, Any]] | None:
        recorder = self.recorder
        if recorder is None or not hasattr(recorder, reader):
            return None
        recorder.flush()
        frame = getattr(recorder, reader)()
        return frame.to_dict(orient="records")


def present(row: Mapping[str, Any]) -> dict[str, Any]:
    """A journal row without the keys other kinds of record have (None or NaN there)."""
    return {
        k: v
        for k, v in row.items()
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    }

"""Prometheus metrics of the API server, in the text exposition format (version 0.0.4).

Counted in the server: requests by method, route template and status, their latency as a
histogram (seconds), WebSocket clients connected and messages pushed. Read from the nodes at
scrape time: each node's equity, balance, open positions and orders, closed trades, the time
of its last decision and whether it is killed or has entries stopped.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable

from pivotal.services.view import Services

__all__ = ["LATENCY_BUCKETS", "Metrics"]

#: latency histogram upper bounds, seconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """Thread-safe counters and histograms; :meth:`exposition` renders them with the nodes'."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], list[int]] = {}
        self._latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self._latency_count: dict[tuple[str, str], int] = defaultdict(int)
        self.ws_clients = 0
        self._ws_messages = 0
        self._ws_polls = 0

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route)
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            buckets = self._latency.setdefault(key, [0] * len(LATENCY_BUCKETS))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self._latency_sum[key] += seconds
            self._latency_count[key] += 1

    def ws_connected(self, delta: int) -> None:
        with self._lock:
            self.ws_clients += delta

    def ws_sent(self, messages: int) -> None:
        with self._lock:
            self._ws_messages += messages

    def ws_polled(self) -> None:
        with self._lock:
            self._ws_polls += 1

    def exposition(self, services: Services) -> str:
        """The text format; node figures are read now (a node that fails is skipped and
        counted in ``pivotal_node_scrape_errors``)."""
        lines: list[str] = []
        with self._lock:
            requests = dict(self._requests)
            latency = {k: list(v) for k, v in self._latency.items()}
            sums = dict(self._latency_sum)
            counts = dict(self._latency_count)
            ws_clients, ws_messages, ws_polls = self.ws_clients, self._ws_messages, self._ws_polls
        _family(lines, "pivotal_http_requests_total", "counter", "HTTP requests answered")
        for (method, route, status), n in sorted(requests.items()):
            lines.append(
                f'pivotal_http_requests_total{{method="{_label(method)}",route="{_label(route)}"'
                f',status="{status}"}} {n}'
            )
        name = "pivotal_http_request_duration_seconds"
        _family(lines, name, "histogram", "HTTP request latency, seconds")
        for (method, route), buckets in sorted(latency.items()):
            labels = f'method="{_label(method)}",route="{_label(route)}"'
            for bound, n in zip(LATENCY_BUCKETS, buckets, strict=True):
                lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {n}')
            lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {counts[(method, route)]}')
            lines.append(f"{name}_sum{{{labels}}} {_number(sums[(method, route)])}")
            lines.append(f"{name}_count{{{labels}}} {counts[(method, route)]}")
        _family(lines, "pivotal_ws_clients", "gauge", "WebSocket clients connected")
        lines.append(f"pivotal_ws_clients {ws_clients}")
        _family(lines, "pivotal_ws_messages_total", "counter", "WebSocket messages pushed")
        lines.append(f"pivotal_ws_messages_total {ws_messages}")
        _family(lines, "pivotal_ws_polls_total", "counter", "WebSocket hub polls of the nodes")
        lines.append(f"pivotal_ws_polls_total {ws_polls}")
        lines.extend(_node_lines(services))
        return "\n".join(lines) + "\n"


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


_NODE_GAUGES = (
    ("pivotal_node_equity", "equity in the quote currency"),
    ("pivotal_node_balance", "cash in the quote currency"),
    ("pivotal_node_pnl", "equity minus the starting equity"),
    ("pivotal_node_open_positions", "open positions"),
    ("pivotal_node_open_orders", "open orders"),
    ("pivotal_node_closed_trades", "closed trades"),
    ("pivotal_node_last_decision_ms", "time of the latest decision, UTC ms"),
    ("pivotal_node_killed", "1 when the kill switch has fired"),
    ("pivotal_node_entries_stopped", "1 when new entries are stopped"),
)


def _node_lines(services: Services) -> Iterable[str]:
    values: dict[str, list[str]] = {name: [] for name, _ in _NODE_GAUGES}
    errors = 0
    for view in services.nodes():
        try:
            summary = view.summary()
            latest = view.decisions(limit=1)
        except Exception:  # a node that cannot answer is counted, not fatal to the scrape
            errors += 1
            continue
        node = f'node="{_label(view.id)}"'
        figures: dict[str, float | None] = {
            "pivotal_node_equity": summary.equity,
            "pivotal_node_balance": summary.balance,
            "pivotal_node_pnl": summary.pnl,
            "pivotal_node_open_positions": summary.open_positions,
            "pivotal_node_open_orders": summary.open_orders,
            "pivotal_node_closed_trades": summary.closed_trades,
            "pivotal_node_last_decision_ms": max((d.t for d in latest), default=None),
            "pivotal_node_killed": float(summary.killed),
            "pivotal_node_entries_stopped": float(summary.entries_stopped),
        }
        for name, value in figures.items():
            if value is not None:
                values[name].append(f"{name}{{{node}}} {_number(float(value))}")
    out: list[str] = []
    for name, help_text in _NODE_GAUGES:
        _family(out, name, "gauge", help_text)
        out.extend(values[name])
    _family(out, "pivotal_node_scrape_errors", "gauge", "nodes that failed to answer this scrape")
    out.append(f"pivotal_node_scrape_errors {errors}")
    return out

"""The local exchange of ``bench_live_data.py``, in its own process, driven over a pipe.

``python benchmarks/live_exchange_proc.py --source auto --loops N`` serves the recorded
BTC/USDT + ETH/USDT capture of ``../shared/data`` (``flows_from_messages``; seeded synthetic
flows from planted 1s candles when the data is absent), looped ``N`` times (:func:`looped`),
on a :class:`~pivotal.localexchange.server.LocalExchange` Binance site on 127.0.0.1 (an
ephemeral port), in manual mode: the market stays still until told to move. It prints one
JSON line with the URLs, then answers each command read from stdin with one JSON line:

- ``speed X``: replay at ``X`` market ms per wall ms from the current cursor, paced by the
  server's own ``Replayer.run`` (``0`` holds the market);
- ``status``: the replay cursor (``market_ms``), how far it is behind its pace
  (``behind_ms``), the process CPU seconds, the subscribed streams, the frames offered to
  the clients (written to their sockets + still queued) and those still queued;
- ``quit``: stop.

:class:`ServerProcess` starts it and sends the commands (from any thread, one at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from pivotal.core.errors import ConfigError, DataError, OperationalError
from pivotal.localexchange.flow import DepthDiff, FlowEvent, SymbolFlow, TradePrint

SYMBOLS = ("BTC/USDT", "ETH/USDT")


# -- the flows ---------------------------------------------------------------------------------
def base_flows(source: str) -> tuple[list[SymbolFlow], str]:
    """The capture (``recorded``) or seeded synthetic flows from planted 1s candles."""
    from pivotal.localexchange.sources import default_message_files, flows_from_messages

    if source in ("auto", "recorded"):
        try:
            flows = flows_from_messages(default_message_files())
            return flows, "recorded " + "; ".join(f.source for f in flows)
        except (ConfigError, DataError):  # no shared data: synthetic flows, said so
            if source == "recorded":
                raise
    from pivotal.localexchange.synthetic import synthetic_flow
    from pivotal.testing.planted import planted_candles

    flows = []
    for i, (symbol, price) in enumerate(zip(SYMBOLS, (60_000.0, 2_500.0), strict=True)):
        candles = planted_candles(600, seed=7 + i, scale=0.0002, start_price=price, bar_ms=1000)
        flows.append(synthetic_flow(candles, "1s", symbol, seed=7 + i, trades_per_candle=30))
    why = "shared data absent" if source == "auto" else "asked for"
    return flows, f"synthetic ({why}): " + "; ".join(f.source for f in flows)


def looped(flow: SymbolFlow, loops: int) -> SymbolFlow:
    """``flow`` played ``loops`` times back to back (bookTicker events left out).

    Loop ``k`` is shifted in time by ``k`` periods (the flow's span in whole seconds plus
    two seconds, so seconds stay aligned and loops never overlap), its trade ids by ``k``
    times the flow's id span (trade ids stay contiguous) and its update ids so that they
    continue the previous loop's. Each loop after the first opens with one diff, one update
    id, that resets the book to the flow's REST snapshot (every level the previous loop
    left is removed or re-set), so the replayed book is the capture's again.
    """
    diffs = [e for e in flow.events() if isinstance(e, DepthDiff)]
    trades = [e.trade_id for e in flow.events() if isinstance(e, TradePrint)]
    if not diffs or not trades:
        return flow
    bids, asks = dict(flow.snapshot.bids), dict(flow.snapshot.asks)
    for diff in diffs:
        for side, levels in ((bids, diff.bids), (asks, diff.asks)):
            for price, qty in levels:
                if qty > 0:
                    side[price] = qty
                else:
                    side.pop(price, None)
    snap_bids, snap_asks = dict(flow.snapshot.bids), dict(flow.snapshot.asks)
    reset_bids = tuple((p, 0.0) for p in bids if p not in snap_bids) + flow.snapshot.bids
    reset_asks = tuple((p, 0.0) for p in asks if p not in snap_asks) + flow.snapshot.asks
    period = ((flow.end_ms - flow.start_ms) // 1000 + 2) * 1000
    trade_span = max(trades) - min(trades) + 1
    first_u, last_u = diffs[0].first_id, diffs[-1].last_id
    id_step = last_u - first_u + 2  # the loop's ids plus the reset diff's one

    def events() -> Iterator[FlowEvent]:
        for k in range(loops):
            dt, du = k * period, k * id_step
            if k:
                reset = first_u + du - 1
                yield DepthDiff(flow.start_ms + dt, reset, reset, reset_bids, reset_asks)
            for e in flow.events():
                if isinstance(e, TradePrint):
                    yield replace(e, time_ms=e.time_ms + dt, trade_id=e.trade_id + k * trade_span)
                elif isinstance(e, DepthDiff):
                    yield replace(
                        e, time_ms=e.time_ms + dt, first_id=e.first_id + du, last_id=e.last_id + du
                    )

    end = flow.end_ms + (loops - 1) * period
    return replace(flow, source=f"{flow.source} x{loops}", end_ms=end, factory=events)


# -- the server subprocess ---------------------------------------------------------------------
def serve(source: str, loops: int) -> None:
    """The local exchange in this process, driven over stdin/stdout.

    Commands, one per line, each answered by one JSON line: ``speed X`` (0 holds the
    market), ``status``, ``quit``. The first line out gives the URLs.
    """
    from pivotal.localexchange.config import ServeConfig
    from pivotal.localexchange.server import LocalExchangeThread

    flows, text = base_flows(source)
    thread = LocalExchangeThread(
        [looped(f, loops) for f in flows], ServeConfig(mode="manual", venues=("binance",))
    ).start()
    exchange = thread.exchange
    pace: dict[str, Any] = {"task": None, "speed": 0.0, "m0": exchange.now_ms(), "w0": 0.0}

    async def set_speed(speed: float) -> dict[str, Any]:
        task = pace["task"]
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pace.update(speed=speed, m0=exchange.now_ms(), w0=asyncio.get_running_loop().time())
        pace["task"] = asyncio.ensure_future(exchange.replayer.run(speed)) if speed else None
        return await status()

    async def status() -> dict[str, Any]:
        elapsed = asyncio.get_running_loop().time() - pace["w0"]
        target = pace["m0"] + int(elapsed * 1000 * pace["speed"])
        now = exchange.now_ms()
        hub = exchange.sites["binance"].hub
        conns = {id(c): c for s in hub.streams() for c in hub.subscribers(s)}.values()
        sent = sum(c.sent for c in conns)
        queued = sum(c._queue.qsize() for c in conns)  # frames waiting for the client
        return {
            "market_ms": now,
            "behind_ms": max(0, target - now) if pace["speed"] else 0,
            "cpu_s": time.process_time(),
            "streams": len(hub.streams()),
            "offered": sent + queued,
            "queued": queued,
        }

    url = thread.urls["binance"]
    print(json.dumps({"rest": url.rest, "ws": url.ws, "source": text}), flush=True)
    try:
        for line in sys.stdin:
            cmd, *arg = line.split() or [""]
            if cmd == "quit":
                break
            reply = thread.call(set_speed(float(arg[0])) if cmd == "speed" else status())
            print(json.dumps(reply), flush=True)
    finally:
        with contextlib.suppress(Exception):
            thread.call(set_speed(0.0))
        thread.stop()


class ServerProcess:
    """The server subprocess and its command pipe (one command at a time, any thread)."""

    def __init__(self, source: str, loops: int) -> None:
        # the server's stderr, shown when it dies; open as long as the process runs
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        args = [sys.executable, str(Path(__file__).resolve())]
        self.proc = subprocess.Popen(
            [*args, "--source", source, "--loops", str(loops)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True,
        )  # fmt: skip
        self._lock = threading.Lock()
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self._err.seek(0)
            tail = self._err.read().decode(errors="replace")[-2000:]
            raise OperationalError(f"the local exchange subprocess ended: {tail}")
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return self._read()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._err.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("auto", "recorded", "synthetic"), default="auto")
    parser.add_argument("--loops", type=int, default=2, help="times the capture is played")
    args = parser.parse_args(argv)
    serve(args.source, args.loops)


if __name__ == "__main__":
    main()

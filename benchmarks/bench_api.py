"""The API's speed: the candles-with-pivots endpoint, and the server's CPU while it streams.

Run ``python benchmarks/bench_api.py`` (``--quick`` for a short smoke run). A data dir is
made in a temporary folder: a market store with BTC/USDT and ETH/USDT candles in 1s, 1m, 1h
and 1d (``--bars`` each) and a backtest report over both symbols (``pivotal backtest
--json``), which ``pivotal serve`` shows as one finished run.

1. Latency: ``--requests`` GETs of ``/api/v1/nodes/bt/candles?symbol=BTC/USDT&timeframe=1m
   &limit=1500`` (1,500 bars, their 5 pivot levels, the decisions and fills as markers)
   through the real HTTP server (uvicorn on 127.0.0.1, one keep-alive client), after 20
   warm-up requests; beside the same query made in-process on the view (no HTTP) and the raw
   store read of the 1,500 bars (the baseline), with p50/p99 and the ratio of the p99s.
   Target (issue): p99 < 50 ms.
2. Streaming CPU: ``pivotal serve`` in its own process; one WebSocket client subscribes to
   4 timeframes x 2 symbols of candles plus the summary; the server's CPU time (user +
   system, from /proc) over ``--seconds`` of wall time, as % of one core. Target (issue):
   under 10 %. The run is finished, so its candles do not change: each second the server
   still polls, serializes and compares every channel (what a live node costs minus the
   sending of changes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from pivotal.apps.api import ApiServer, ApiTokens
from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.services.discover import views_from_data_dir
from pivotal.services.view import Services

SYMBOLS = ("BTC/USDT", "ETH/USDT")
TIMEFRAMES = (Timeframe.S1, Timeframe.M1, Timeframe.H1, Timeframe.D1)
T0 = 1_767_225_600_000
BARS = 1500


def make_data_dir(root: Path, bars: int) -> Path:
    with open_store(root) as store:
        for k, name in enumerate(SYMBOLS):
            base, quote = name.split("/")
            for tf in TIMEFRAMES:
                i = np.arange(bars)
                close = (100 + 50 * k) * np.exp(
                    0.03 * np.sin(2 * np.pi * i / 37) + 0.01 * np.sin(i / 5)
                )
                open_ = np.concatenate([[close[0]], close[:-1]])
                candles = Candles(
                    T0 + i * tf.ms, open_, np.maximum(open_, close) * 1.001,
                    np.minimum(open_, close) * 0.999, close, np.ones(bars),
                )  # fmt: skip
                store.write_candles(SeriesKey("binance", Symbol(base, quote), tf), candles)
    (root / "reports").mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pivotal", "backtest", "-s", ",".join(SYMBOLS), "-t", "1m",
         "--json", str(root / "reports" / "bt.json"), "-d", str(root)],
        check=True, capture_output=True, env=_env(root),
    )  # fmt: skip
    return root


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
    env["HOME"] = str(root.parent / "home")
    env["COLUMNS"] = "200"
    return env


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def latency(root: Path, requests: int) -> None:
    views = views_from_data_dir(root)
    view = views[0]
    market = view.market  # type: ignore[attr-defined]
    key = SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1)
    from pivotal.services.candles_query import read_newest

    raw: list[float] = []
    direct: list[float] = []
    for i in range(requests + 20):
        t = time.perf_counter()
        bars = read_newest(market.store, key, BARS)
        mid = time.perf_counter()
        payload = view.candles("BTC/USDT", "1m", limit=BARS)
        end = time.perf_counter()
        if i >= 20:
            raw.append(mid - t)
            direct.append(end - mid)
    assert len(bars) == BARS and len(payload.bars.t) == BARS
    tokens = ApiTokens.generate()
    http: list[float] = []
    size = 0
    with (
        ApiServer(Services(views), tokens=tokens, port=0, dashboard=False) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {tokens.viewer}"}
        ) as client,
    ):
        url = "/api/v1/nodes/bt/candles"
        params = {"symbol": "BTC/USDT", "timeframe": "1m", "limit": BARS}
        for i in range(requests + 20):
            t = time.perf_counter()
            response = client.get(url, params=params)
            body = response.content
            elapsed = time.perf_counter() - t
            assert response.status_code == 200, response.text
            if i >= 20:
                http.append(elapsed)
                size = len(body)
    answer = json.loads(body)
    r50, r99 = _percentiles(raw)
    d50, d99 = _percentiles(direct)
    h50, h99 = _percentiles(http)
    print(
        f"candles endpoint, {BARS:,} bars with {len(answer['pivots'])} pivots "
        f"({size / 1024:.0f} KiB JSON), {requests} requests:"
    )
    print(f"  HTTP (uvicorn, 127.0.0.1)       p50 {h50:6.2f} ms  p99 {h99:6.2f} ms")
    print(f"  view.candles in process         p50 {d50:6.2f} ms  p99 {d99:6.2f} ms")
    print(f"  baseline: raw store read        p50 {r50:6.2f} ms  p99 {r99:6.2f} ms")
    print(
        f"  ratio HTTP / raw read (p99): {h99 / r99:.1f}x; HTTP / view: {h99 / d99:.1f}x; "
        f"target p99 < 50 ms: {'met' if h99 < 50 else 'NOT met'}"
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def streaming_cpu(root: Path, seconds: float) -> None:
    token_file = root.parent / "tokens.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "pivotal", "serve", "--data-dir", str(root), "--port", "0",
         "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(root),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        output = ""
        while "serving" not in output:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"pivotal serve ended: {output}")
            output += line
        found = re.search(r"API: (http://127\.0\.0\.1:\d+)/api/v1", output)
        assert found, output
        url = found.group(1).replace("http://", "ws://") + "/api/v1/ws"
        token = ApiTokens.load(token_file).viewer
        result = asyncio.run(_subscribe_and_wait(url, token, process.pid, seconds))
    finally:
        process.terminate()
        process.wait(30)
    cpu, wall, messages = result
    print(
        f"server CPU while one client streams {len(TIMEFRAMES)} timeframes x {len(SYMBOLS)} "
        f"symbols + summary at 1 Hz: {cpu:.2f} s CPU over {wall:.1f} s = "
        f"{100 * cpu / wall:.1f} % of one core ({messages} messages pushed meanwhile: "
        "nothing changed); "
        f"target < 10 %: {'met' if cpu / wall < 0.10 else 'NOT met'}"
    )


async def _subscribe_and_wait(
    url: str, token: str, pid: int, seconds: float
) -> tuple[float, float, int]:
    import websockets

    channels = [
        {"kind": "candles", "symbol": s, "timeframe": tf.value, "limit": BARS}
        for s in SYMBOLS
        for tf in TIMEFRAMES
    ] + [{"kind": "summary"}]
    async with websockets.connect(
        url, subprotocols=["pivotal.v1", f"bearer.{token}"], max_size=1 << 24
    ) as ws:
        await ws.send(json.dumps({"op": "subscribe", "node": "bt", "channels": channels}))
        messages = 0
        while messages < len(channels) + 1:  # the subscription answer and each first push
            await ws.recv()
            messages += 1
        settle = time.monotonic() + 2.5  # the first increments (each chart's last bar again)
        while (left := settle - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.recv(), left)
        messages = 0
        cpu0, wall0 = _cpu_seconds(pid), time.monotonic()
        deadline = wall0 + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(ws.recv(), left)
                messages += 1
            except TimeoutError:
                break
        return _cpu_seconds(pid) - cpu0, time.monotonic() - wall0, messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--bars", type=int, default=5000, help="candles per series stored")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 30 requests, 3 s")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.seconds, args.bars = 30, 3.0, 2000
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = make_data_dir(Path(tmp) / "data", args.bars)
        latency(root, args.requests)
        streaming_cpu(root, args.seconds)


if __name__ == "__main__":
    main()

"""The equity path the risk manager watches: drawdown, daily loss, VaR, and the halts they trip.

:class:`EquityTracker` takes one equity value per bar (``observe``) or a span of bars at
once (``observe_many``, vectorized with NumPy); both leave the same state and raise the same
alerts for the same data. Equity is in the account currency, times are UTC milliseconds, a
*UTC day* is ``timestamp // 86_400_000``.

Definitions:

- drawdown at a bar: ``(peak - equity) / peak`` with ``peak`` the running maximum of the
  observed equity (1.0 when the peak is not above 0: the account is wiped);
- daily loss: ``(day_start - equity) / day_start`` with ``day_start`` the first equity
  observed in that UTC day (0 when ``day_start`` is not above 0);
- per-bar return: ``equity[i] / equity[i-1] - 1`` between consecutive observations (skipped
  when the previous equity is not above 0); the latest ``var_window`` are kept;
- historical VaR at confidence c: ``-quantile(returns, 1 - c) × equity`` (NumPy's linear
  quantile); expected shortfall: ``-mean(returns ≤ that quantile) × equity``. Both are
  losses in currency (positive = money lost), NaN until 30 returns are known.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from pivotal.trading.risk.alerts import (
    RiskAlert,
    format_day,
    format_money,
    format_pct,
    format_share,
    format_time,
)

DAY_MS = 86_400_000
MIN_VAR_RETURNS = 30

HaltKind = Literal["circuit_breaker", "daily_loss_limit"]


@dataclass(frozen=True, slots=True)
class Halt:
    """An active halt on new entries: what tripped it, when (UTC ms) and why."""

    kind: HaltKind
    since: int
    reason: str
    day: int | None = None


@dataclass(frozen=True, slots=True)
class TrackerState:
    """Everything an :class:`EquityTracker` remembers (compare two trackers with ``==``)."""

    observations: int
    last_timestamp: int | None
    last_equity: float
    peak_equity: float
    peak_timestamp: int | None
    breaker_peak: float
    max_drawdown: float
    day: int | None
    day_start_equity: float
    breaker: Halt | None
    daily_halt: Halt | None
    returns: tuple[float, ...]


def drawdown(peak: float, equity: float) -> float:
    """``(peak - equity) / peak``; 1.0 when ``peak`` is not above 0 (a wiped account)."""
    return (peak - equity) / peak if peak > 0 else 1.0


def _day_loss(day_start: float, equity: float) -> float:
    return (day_start - equity) / day_start if day_start > 0 else 0.0


def _drawdowns(
    peak: npt.NDArray[np.float64], equity: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    out = np.ones_like(equity)
    np.divide(peak - equity, peak, out=out, where=peak > 0)
    return out


def historical_var(returns: npt.ArrayLike, confidence: float) -> tuple[float, float]:
    """(VaR, expected shortfall) as *returns* (positive = loss) at ``confidence``.

    VaR is ``-quantile(returns, 1 - confidence)`` (linear interpolation, NumPy's default);
    the expected shortfall is minus the mean of the returns at or below that quantile.
    NaN for both when fewer than 30 returns are given.
    """
    values = np.asarray(returns, dtype=np.float64)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if values.size < MIN_VAR_RETURNS:
        return math.nan, math.nan
    cut = float(np.quantile(values, 1.0 - confidence))
    tail = values[values <= cut]
    return -cut, -float(tail.mean())


class EquityTracker:
    """Running peak, drawdown, daily loss and per-bar returns, and the halts they trip.

    ``max_drawdown`` trips the circuit breaker at the first bar whose drawdown (from the
    peak since the last reset) is at or above it; it stays tripped until :meth:`reset`.
    ``daily_loss_limit`` halts at the first bar whose daily loss is at or above it; the halt
    lifts at the first observation of a later UTC day. Observations must come with strictly
    increasing timestamps (one per bar).
    """

    def __init__(
        self, max_drawdown: float | None, daily_loss_limit: float | None, var_window: int
    ) -> None:
        if var_window < 1:
            raise ValueError(f"var_window must be at least 1, got {var_window}")
        self.max_drawdown_limit = max_drawdown
        self.daily_loss_limit = daily_loss_limit
        self._returns: deque[float] = deque(maxlen=var_window)
        self._n = 0
        self._last_ts: int | None = None
        self._last_equity = math.nan
        self._peak = -math.inf
        self._peak_ts: int | None = None
        self._breaker_peak = -math.inf
        self._max_dd = 0.0
        self._day: int | None = None
        self._day_start = math.nan
        self._breaker: Halt | None = None
        self._daily: Halt | None = None

    # ------------------------------------------------------------------ queries
    @property
    def halt(self) -> Halt | None:
        """The active halt, the circuit breaker first; None when entries are allowed."""
        return self._breaker or self._daily

    @property
    def returns(self) -> npt.NDArray[np.float64]:
        """The kept per-bar returns, oldest first."""
        return np.fromiter(self._returns, dtype=np.float64, count=len(self._returns))

    @property
    def peak_equity(self) -> float:
        return self._peak if self._n else math.nan

    @property
    def last_equity(self) -> float:
        return self._last_equity

    @property
    def max_drawdown(self) -> float:
        return self._max_dd

    @property
    def day_start_equity(self) -> float:
        return self._day_start

    def state(self) -> TrackerState:
        return TrackerState(
            observations=self._n,
            last_timestamp=self._last_ts,
            last_equity=self._last_equity,
            peak_equity=self._peak,
            peak_timestamp=self._peak_ts,
            breaker_peak=self._breaker_peak,
            max_drawdown=self._max_dd,
            day=self._day,
            day_start_equity=self._day_start,
            breaker=self._breaker,
            daily_halt=self._daily,
            returns=tuple(self._returns),
        )

    # ------------------------------------------------------------------ alerts
    def _breaker_alert(self, ts: int, equity: float, peak: float, dd: float) -> RiskAlert:
        limit = float(self.max_drawdown_limit or 0.0)
        reason = (
            f"circuit breaker: drawdown {format_pct(dd)} ≥ {format_share(limit)} "
            f"since {format_time(ts)}"
        )
        self._breaker = Halt("circuit_breaker", ts, reason)
        return RiskAlert(
            ts,
            "circuit_breaker",
            None,
            f"{reason} (equity {format_money(equity)}, peak {format_money(peak)}); "
            "new entries halted until reset_halt()",
            {"drawdown": dd, "limit": limit, "equity": equity, "peak": peak},
        )

    def _daily_alert(self, ts: int, equity: float, start: float, loss: float) -> RiskAlert:
        limit = float(self.daily_loss_limit or 0.0)
        day = ts // DAY_MS
        reason = (
            f"daily loss limit: down {format_pct(loss)} ≥ {format_share(limit)} from the day's "
            f"first equity {format_money(start)} since {format_time(ts)}"
        )
        self._daily = Halt("daily_loss_limit", ts, reason, day)
        return RiskAlert(
            ts,
            "daily_loss_limit",
            None,
            f"{reason}; new entries halted for the rest of {format_day(day)} (UTC)",
            {"loss": loss, "limit": limit, "equity": equity, "day_start_equity": start},
        )

    def _lift_alert(self, ts: int) -> RiskAlert:
        halt = self._daily
        self._daily = None
        return RiskAlert(
            ts,
            "halt_reset",
            None,
            f"daily loss halt lifted: new UTC day {format_day(ts // DAY_MS)}"
            + (f" (was: {halt.reason})" if halt is not None else ""),
            {},
        )

    # ------------------------------------------------------------------ updates
    def _check_time(self, first: int) -> None:
        if self._last_ts is not None and first <= self._last_ts:
            raise ValueError(
                f"equity observed at {first} is not after the previous observation at "
                f"{self._last_ts}; observe once per bar with increasing UTC-ms timestamps"
            )

    def observe(self, timestamp: int, equity: float) -> list[RiskAlert]:
        """Take the equity at one bar; returns the alerts it raised (in bar order)."""
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | np.integer):
            raise TypeError(f"timestamp must be UTC milliseconds as int, got {timestamp!r}")
        ts = int(timestamp)
        if ts < 0:
            raise ValueError(f"timestamp must not be negative, got {ts}")
        e = float(equity)
        if not math.isfinite(e):
            raise ValueError(f"equity must be a finite number, got {equity!r} at {ts}")
        self._check_time(ts)
        alerts: list[RiskAlert] = []
        day = ts // DAY_MS
        if day != self._day:
            if self._daily is not None:
                alerts.append(self._lift_alert(ts))
            self._day = day
            self._day_start = e
        if self._n and self._last_equity > 0:
            self._returns.append(e / self._last_equity - 1.0)
        if e > self._peak:
            self._peak = e
            self._peak_ts = ts
        self._breaker_peak = max(self._breaker_peak, e)
        self._max_dd = max(self._max_dd, drawdown(self._peak, e))
        if self.max_drawdown_limit is not None and self._breaker is None:
            dd = drawdown(self._breaker_peak, e)
            if dd >= self.max_drawdown_limit:
                alerts.append(self._breaker_alert(ts, e, self._breaker_peak, dd))
        if self.daily_loss_limit is not None and self._daily is None:
            loss = _day_loss(self._day_start, e)
            if loss >= self.daily_loss_limit:
                alerts.append(self._daily_alert(ts, e, self._day_start, loss))
        self._last_equity = e
        self._last_ts = ts
        self._n += 1
        return alerts

    def observe_many(self, timestamps: npt.ArrayLike, equity: npt.ArrayLike) -> list[RiskAlert]:
        """Take a span of bars at once (vectorized); same state and alerts as ``observe``."""
        ts = np.asarray(timestamps)
        eq = np.asarray(equity, dtype=np.float64)
        if ts.ndim != 1 or eq.shape != ts.shape:
            raise ValueError(
                f"timestamps and equity must be 1-D arrays of one length, got shapes "
                f"{ts.shape} and {eq.shape}"
            )
        if ts.size == 0:
            return []
        if not np.issubdtype(ts.dtype, np.integer):
            raise TypeError(f"timestamps must be integer UTC milliseconds, got dtype {ts.dtype}")
        ts = ts.astype(np.int64)
        if ts[0] < 0:
            raise ValueError(f"timestamps must not be negative, got {int(ts[0])}")
        if not np.all(np.isfinite(eq)):
            bad = int(np.flatnonzero(~np.isfinite(eq))[0])
            raise ValueError(f"equity must be finite, got {eq[bad]!r} at {int(ts[bad])}")
        self._check_time(int(ts[0]))
        steps = np.diff(ts)
        if np.any(steps <= 0):
            bad = int(np.flatnonzero(steps <= 0)[0])
            raise ValueError(
                f"timestamps must increase strictly (one observation per bar); "
                f"{int(ts[bad + 1])} follows {int(ts[bad])}"
            )
        if self.daily_loss_limit is None and self._daily is None:
            return self._observe_many_no_daily(ts, eq)
        n = eq.size
        events: list[tuple[int, int, RiskAlert | None]] = []

        # per-bar returns, chained to the previous observation
        prev = np.concatenate(([self._last_equity if self._n else math.nan], eq[:-1]))
        valid = prev > 0
        rets = eq[valid] / prev[valid] - 1.0
        self._returns.extend(rets[-self._returns.maxlen :].tolist() if rets.size else [])

        # running peaks and drawdowns
        run_peak = np.maximum.accumulate(np.concatenate(([self._peak], eq)))[1:]
        prev_peak = np.concatenate(([self._peak], run_peak[:-1]))
        new_peak = np.flatnonzero(eq > prev_peak)
        if new_peak.size:
            self._peak_ts = int(ts[new_peak[-1]])
        self._peak = float(run_peak[-1])
        self._max_dd = max(self._max_dd, float(_drawdowns(run_peak, eq).max()))
        breaker_run = np.maximum.accumulate(np.concatenate(([self._breaker_peak], eq)))[1:]
        self._breaker_peak = float(breaker_run[-1])
        if self.max_drawdown_limit is not None and self._breaker is None:
            bdd = _drawdowns(breaker_run, eq)
            hits = np.flatnonzero(bdd >= self.max_drawdown_limit)
            if hits.size:
                i = int(hits[0])
                alert = self._breaker_alert(
                    int(ts[i]), float(eq[i]), float(breaker_run[i]), float(bdd[i])
                )
                events.append((i, 1, alert))

        # UTC days: groups of bars; group 0 continues the day observed before this span
        days = ts // DAY_MS
        prev_day = np.concatenate(([-1 if self._day is None else self._day], days[:-1]))
        is_new = days != prev_day
        group = np.cumsum(is_new)
        starts = np.maximum.accumulate(np.where(is_new, np.arange(n), 0))
        started = np.logical_or.accumulate(is_new)
        day_start = np.where(started, eq[starts], self._day_start)
        daily_before = self._daily
        trips: dict[int, int] = {}  # day group -> first bar at or above the limit
        if self.daily_loss_limit is not None:
            loss = np.zeros_like(eq)
            np.divide(day_start - eq, day_start, out=loss, where=day_start > 0)
            hit_idx = np.flatnonzero(loss >= self.daily_loss_limit)
            if hit_idx.size:
                hit_groups, first = np.unique(group[hit_idx], return_index=True)
                for g, j in zip(hit_groups.tolist(), first.tolist(), strict=True):
                    if g == 0 and daily_before is not None:
                        continue  # that day is halted already
                    trips[g] = int(hit_idx[j])
        halted_at_end = {g: True for g in trips}
        halted_at_end[0] = halted_at_end.get(0, False) or daily_before is not None
        for i in np.flatnonzero(is_new).tolist():
            if halted_at_end.get(int(group[i]) - 1, False):
                events.append((i, 0, None))
        for i in trips.values():
            events.append((i, 2, None))
        events.sort(key=lambda item: (item[0], item[1]))
        alerts: list[RiskAlert] = []
        for i, order, ready in events:  # in bar order, so each alert sees the state before it
            if ready is not None:
                alerts.append(ready)
            elif order == 0:
                alerts.append(self._lift_alert(int(ts[i])))
            else:
                start = float(day_start[i])
                e = float(eq[i])
                alerts.append(self._daily_alert(int(ts[i]), e, start, _day_loss(start, e)))
        self._day = int(days[-1])
        self._day_start = float(day_start[-1])
        self._last_equity = float(eq[-1])
        self._last_ts = int(ts[-1])
        self._n += n
        return alerts

    def _observe_many_no_daily(
        self, ts: npt.NDArray[np.int64], eq: npt.NDArray[np.float64]
    ) -> list[RiskAlert]:
        """``observe_many`` without a daily limit or daily halt: the same state, fewer
        array passes (the backtest engine calls this once per decision)."""
        alerts: list[RiskAlert] = []
        if self._n:
            prev = np.empty_like(eq)
            prev[0] = self._last_equity
            prev[1:] = eq[:-1]
            cur = eq
        else:
            prev, cur = eq[:-1], eq[1:]
        valid = prev > 0
        rets = cur / prev - 1.0 if valid.all() else cur[valid] / prev[valid] - 1.0
        if rets.size:
            self._returns.extend(rets[-self._returns.maxlen :].tolist())
        top = int(np.argmax(eq))  # first bar at the span's maximum: the last one to raise it
        if eq[top] > self._peak:
            self._peak_ts = int(ts[top])
        run_peak = np.maximum.accumulate(eq)
        np.maximum(run_peak, self._peak, out=run_peak)
        self._peak = float(run_peak[-1])
        self._max_dd = max(self._max_dd, float(_drawdowns(run_peak, eq).max()))
        if self.max_drawdown_limit is not None and self._breaker is None:
            breaker_run = np.maximum.accumulate(eq)
            np.maximum(breaker_run, self._breaker_peak, out=breaker_run)
            bdd = _drawdowns(breaker_run, eq)
            hits = np.flatnonzero(bdd >= self.max_drawdown_limit)
            if hits.size:
                i = int(hits[0])
                alerts.append(
                    self._breaker_alert(
                        int(ts[i]), float(eq[i]), float(breaker_run[i]), float(bdd[i])
                    )
                )
            self._breaker_peak = float(breaker_run[-1])
        else:
            self._breaker_peak = max(self._breaker_peak, float(eq[top]))
        last_day = int(ts[-1]) // DAY_MS
        if last_day != self._day:
            self._day = last_day
            self._day_start = float(eq[int(np.searchsorted(ts, last_day * DAY_MS))])
        self._last_equity = float(eq[-1])
        self._last_ts = int(ts[-1])
        self._n += eq.size
        return alerts

    def reset(self, timestamp: int) -> RiskAlert | None:
        """Lift every halt and re-measure drawdown and daily loss from the last equity.

        Returns the ``halt_reset`` alert, or None when nothing was halted.
        """
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | np.integer):
            raise TypeError(f"timestamp must be UTC milliseconds as int, got {timestamp!r}")
        lifted = [h for h in (self._breaker, self._daily) if h is not None]
        if not lifted:
            return None
        self._breaker = None
        self._daily = None
        if self._n:
            self._breaker_peak = self._last_equity
            self._day_start = self._last_equity
        what = "; ".join(h.reason for h in lifted)
        return RiskAlert(
            int(timestamp),
            "halt_reset",
            None,
            f"halt reset at {format_time(int(timestamp))}: lifted {what}; drawdown and daily "
            f"loss now measured from equity {format_money(self._last_equity)}",
            {"equity": self._last_equity},
        )


@dataclass(frozen=True, slots=True)
class RiskMetrics:
    """A snapshot of the account's risk (money in the account currency, shares as fractions).

    Exposure shares and leverage divide by equity; they are NaN when equity is not above 0.
    ``drawdown`` is the current equity's distance below ``peak_equity`` (the highest of the
    observed equities and the current one); ``max_drawdown`` the worst seen so far.
    ``var``/``expected_shortfall`` are one-bar historical VaR and ES at ``var_confidence``
    applied to the current equity (positive = loss); NaN until 30 returns are observed.
    ``daily_pnl`` is equity minus the first equity observed in the current UTC day.
    """

    timestamp: int
    equity: float
    gross_exposure: float
    net_exposure: float
    gross_exposure_pct: float
    net_exposure_pct: float
    leverage: float
    peak_equity: float
    drawdown: float
    max_drawdown: float
    var: float
    expected_shortfall: float
    var_confidence: float
    n_returns: int
    halted: bool
    halt_reason: str
    daily_pnl: float
    positions: int

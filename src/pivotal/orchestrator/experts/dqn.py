"""A trained DQN checkpoint (``pivotal train dqn``) as an orchestrator expert.

:class:`DQNExpert` reads the agent, the job saved beside it (``dqn.job.json``) and the
observation scaler fitted on the job's training part (``dqn.scaler.json``, with the names of
the observation's features). At each step it builds exactly the observation the training
environment (:class:`~pivotal.rl.env.TradingEnv`) and the backtest policy
(:class:`~pivotal.rl.source.PolicySource`) build, ``(frames, features)`` float32:

1. the standardised market window of the step, built once per symbol in ``prepare`` exactly
   as :class:`~pivotal.rl.observations.MarketObservations` builds it (the same bulk
   :class:`~pivotal.features.inputs.EncodedInputDataset`, default per-candle columns,
   float32 ``(x - mean) / std`` with the saved scaler, never refitted on new data, streams
   flattened per frame), but with steps up to **and including** the newest candle's close:
   ``MarketObservations`` stops one bar earlier (the environment needs a next bar to step
   to), while the orchestrator decides at the close of the bar that just closed;
2. the position state (:data:`~pivotal.rl.observations.STATE_FEATURES`) read from the
   request's account as ``PolicySource`` reads it: side ±1/0, ``|quantity| × close /
   equity``, unrealized PnL / equity (equity ≤ 0 replaced by the job's initial cash), bars in
   the trade / ``episode_length``, the entry step tracked per symbol across calls;
3. when the job was trained with PivotCNN features, the CNN expert's output **of the same
   step** (``request.upstream[cnn].hidden_states["features"]``, named by its
   ``metadata["feature_names"]``, which must equal the job's CNN feature names).

The output is :meth:`~pivotal.rl.dqn.DQNAgent.output` (greedy action, Q-values, their
softmax as ``probabilities``) under the expert's name; ``tensors = {"obs": (1, frames,
features)}``.

The DQN is **not** a trainable expert: the learning loop's online updates are supervised
(cross-entropy against outcome labels), which would turn the Q-values into class scores and
break their meaning as discounted returns (and the greedy policy trained on them). It is
retrained offline with ``pivotal train dqn``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.errors import DataError, ModelError
from pivotal.core.orders import AccountSnapshot
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import ModelOutput
from pivotal.features.inputs.columns import ColumnsConfig, candle_columns
from pivotal.features.inputs.dataset import EncodedInputDataset
from pivotal.features.inputs.observation import ObservationBuilder
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.inputs.validation import format_time
from pivotal.features.scalers import StandardScaler
from pivotal.orchestrator.contracts import Inference, InferenceRequest
from pivotal.orchestrator.experts.dqn_vote import vote_probabilities
from pivotal.orchestrator.experts.steps_ahead import StepsAhead, held_states
from pivotal.orchestrator.experts.tensor_lists import weights_key
from pivotal.rl.dqn import DQNAgent
from pivotal.rl.observations import STATE_FEATURES
from pivotal.rl.run import DQNJob, read_feature_names, read_job, read_scaler

__all__ = ["DQNExpert", "vote_probabilities"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Track:
    """Position tracking of one symbol between calls (as ``PolicySource`` keeps it), by close
    time (UTC ms) so that a rebuilt history (``prepare`` again) does not disturb it."""

    previous: float = 0.0  # signed quantity at the last call
    entry: int = -1  # close time of the step the position was first seen at; -1 when flat
    time: int = -1  # close time of the last call


@dataclass(frozen=True, slots=True, eq=False)
class _Market:
    """One symbol's standardised market windows, one step per anchor close (UTC ms
    ``times``) up to and including the newest candle's; ``closes``: the anchor close of
    each step; ``names``: the window's features (``"{stream}:{channel}"``)."""

    dataset: EncodedInputDataset
    times: npt.NDArray[np.int64]
    closes: npt.NDArray[np.float64]
    names: tuple[str, ...]
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]

    @classmethod
    def build(
        cls,
        candles: Mapping[Timeframe, Candles],
        spec: InputSpec,
        scaler: StandardScaler,
        where: str,
    ) -> _Market:
        given = {Timeframe.parse(tf): c for tf, c in candles.items()}
        missing = [str(tf) for tf in spec.timeframes if tf not in given]
        if missing:
            raise ValueError(
                f"{where}: no {', '.join(missing)} candles were given; pass every timeframe of "
                f"the DQN's job ({', '.join(map(str, spec.timeframes))})"
            )
        streams = {tf: given[tf] for tf in spec.timeframes}
        anchor_tf = spec.timeframes[0]
        anchor = streams[anchor_tf]
        if not len(anchor):
            raise ValueError(f"{where}: no {anchor_tf} candles were given")
        columns = ColumnsConfig()  # what MarketObservations (and so the DQN job) uses
        per_candle = {tf: candle_columns(c, tf, columns) for tf, c in streams.items()}
        start = int(anchor.timestamp[0])
        end = int(anchor.timestamp[-1]) + anchor_tf.ms + 1  # the newest close included
        dataset = EncodedInputDataset(spec, streams, start, end, anchor=anchor_tf, extra=per_candle)
        layout = dataset.layout
        if scaler.layout is None:
            raise ValueError(f"{where}: the DQN's scaler is not fitted")
        scaler.layout.check(layout.channels, f"{where} scaler")
        times = dataset.times(np.arange(len(dataset), dtype=np.int64))
        bars = np.searchsorted(anchor.timestamp, times - anchor_tf.ms)
        names = tuple(f"{st}:{ch}" for st in layout.streams for ch in layout.channels.names)
        return cls(
            dataset,
            times.astype(np.int64, copy=False),
            anchor.close[bars],
            names,
            np.asarray(scaler.mean, dtype=np.float32),
            np.asarray(scaler.std, dtype=np.float32),
        )

    def window(self, step: int) -> npt.NDArray[np.float32]:
        """``(1, frames, streams × channels)`` float32, as ``MarketObservations.market``."""
        x = self.dataset.get_batch(np.array([step], dtype=np.int64)).numpy()
        return standardized_window(x, self.mean, self.std, self.names, int(self.times[step]))


def standardized_window(
    x: npt.NDArray[np.float32],
    mean: npt.NDArray[np.float32],
    std: npt.NDArray[np.float32],
    names: tuple[str, ...],
    t: int,
) -> npt.NDArray[np.float32]:
    """``x`` ``(batch, streams, frames, channels)`` standardised in place and laid out as
    ``(batch, frames, streams × channels)`` (``MarketObservations.market``'s layout);
    ``DataError`` naming the feature when a value is NaN or infinite."""
    np.subtract(x, mean, out=x)
    np.divide(x, std, out=x)
    out = np.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(x.shape[0], x.shape[2], -1)
    if not np.isfinite(out).all():
        bad = names[int(np.argwhere(~np.isfinite(out))[0][-1])]
        raise DataError(
            f"the market window at {format_time(t)} has NaN or infinity in {bad!r}; an agent "
            "must never see NaN: repair the candles"
        )
    return out


def _list_differences(got: tuple[str, ...], want: tuple[str, ...]) -> str:
    missing = [n for n in want if n not in got]
    extra = [n for n in got if n not in want]
    parts = []
    if missing:
        parts.append(f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if extra:
        parts.append(f"unexpected {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    return "; ".join(parts) or "same names in another order"


class DQNExpert:
    """A DQN checkpoint behind the orchestrator (module docstring).

    ``checkpoint``: a ``pivotal train dqn`` checkpoint in its folder (job and scaler beside
    it); ``name``: the expert's unique name; ``cnn``: the name of the PivotCNN expert whose
    same-step output the agent reads, required exactly when the job was trained with CNN
    features (``depends_on == (cnn,)``); ``device``: where the network runs.
    """

    model_type = "rl"

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        name: str = "dqn",
        cnn: str | None = None,
        device: str = "cpu",
    ) -> None:
        if not name:
            raise ValueError("an expert needs a non-empty name")
        path = Path(checkpoint)
        job = read_job(path)
        if job.cnn_checkpoint is not None and not cnn:
            raise ValueError(
                f"the DQN {path} was trained with the PivotCNN features of "
                f"{job.cnn_checkpoint}: give cnn= the name of the PivotCNN expert it reads"
            )
        if job.cnn_checkpoint is None and cnn:
            raise ValueError(
                f"the DQN {path} was trained without CNN features, so it reads no expert; "
                f"drop cnn={cnn!r}"
            )
        self._scaler = read_scaler(path)
        names = read_feature_names(path)
        self._agent = DQNAgent.load(path, device=device)
        frames, width = self._agent.observation_shape
        s = len(STATE_FEATURES)
        at = next((i for i in range(len(names)) if names[i : i + s] == STATE_FEATURES), -1)
        if at < 0 or len(names) != width or frames != job.env.frames:
            raise ValueError(
                f"the DQN {path} observes ({frames}, {width}) but its scaler file names "
                f"{len(names)} features for {job.env.frames} frames; retrain it"
            )
        self.name = name
        self.device = device
        self.cnn = cnn or None
        self.depends_on: tuple[str, ...] = (cnn,) if cnn else ()
        self.spec = InputSpec.candles(
            list(job.timeframes), frames=job.env.frames, min_frames=job.env.frames
        )
        self._path = path
        self._job = job
        self._market_names = names[:at]
        self._cnn_names = names[at + s :]
        self._market = at
        self._width = width
        self._frames = frames
        self._initial = float(job.env.settings.broker.initial_cash)
        self._markets: dict[str, _Market] = {}
        self._tracks: dict[str, _Track] = {}
        self._observation: ObservationBuilder | None = None
        self._ahead = StepsAhead()
        self._parsed: dict[str, Symbol] = {}
        self.upstream_ahead: (
            Callable[[str, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None]
            | None
        ) = None
        """Set by the orchestrator in a replay: the CNN expert's feature rows it already
        evaluated ahead (``PivotCNNExpert.features_ahead``), for batches of the coming steps."""

    @property
    def checkpoint(self) -> Path:
        return self._path

    @property
    def trained_until_ms(self) -> int | None:
        """The end (UTC ms) of the range its training job read (``until``; validation and
        test included); None when the job read to the end of the store then."""
        return self._job.until

    @property
    def job(self) -> DQNJob:
        return self._job

    @property
    def agent(self) -> DQNAgent:
        return self._agent

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        """The job's timeframes: anchor first, then its streams."""
        return self._job.timeframes

    @property
    def cnn_feature_names(self) -> tuple[str, ...]:
        """The CNN features the agent reads, in order (empty without a CNN)."""
        return self._cnn_names

    # -- inference ---------------------------------------------------------------------------
    def prepare(self, symbol: str, candles: Mapping[Timeframe, Candles]) -> None:
        """Build ``symbol``'s market windows (every job timeframe) with the saved scaler.
        The position tracking of the symbol is kept (history only grew)."""
        market = _Market.build(candles, self.spec, self._scaler, f"expert {self.name!r}")
        if market.names != self._market_names:
            diff = _list_differences(market.names, self._market_names)
            raise ValueError(
                f"expert {self.name!r}: the market features built now differ from those the "
                f"DQN was trained on ({diff}); retrain it"
            )
        self._markets[symbol] = market

    def infer(self, request: InferenceRequest) -> Inference:
        """The agent's output at ``request.timestamp`` (module docstring): the market window
        from the prepared history when ``prepare`` gave one (replay), else from the market
        frame through ``request.observe`` (the pushed path)."""
        t = int(request.timestamp)
        market = self._markets.get(request.symbol)
        if market is not None:
            i = int(market.times.searchsorted(t))
            if i >= len(market.times) or int(market.times[i]) != t:
                raise ValueError(
                    f"expert {self.name!r} has no {request.symbol} step closing at "
                    f"{format_time(t)}: its prepared steps close from "
                    f"{format_time(int(market.times[0]))} to "
                    f"{format_time(int(market.times[-1]))}; call prepare() with candles up to "
                    "that time"
                )
            extra = self._cnn_features(request)
            state = self._state(request.symbol, t, float(market.closes[i]), request.account)
            kept = self._kept(request.symbol, market, i, t, extra, state, request.account)
            if kept is not None:
                return Inference(kept[0], {"obs": kept[1]})
            window = market.window(i)
        else:
            window, close = self._observed(request)
            extra = self._cnn_features(request)
            state = self._state(request.symbol, t, close, request.account)
        obs = np.empty((1, self._frames, self._width), dtype=np.float32)
        m, s = self._market, len(STATE_FEATURES)
        obs[:, :, :m] = window
        obs[:, :, m : m + s] = np.asarray(state, dtype=np.float32)
        obs[:, :, m + s :] = extra
        return Inference(self._output(request.symbol, t, obs), {"obs": obs})

    @property
    def observation(self) -> ObservationBuilder:
        """How the agent's market window is read from the market frame (the job's
        timeframes and frames, the default per-candle columns, as its environment)."""
        if self._observation is None:
            self._observation = ObservationBuilder(
                self.spec, anchor=self.spec.timeframes[0], columns=ColumnsConfig()
            )
        return self._observation

    def _observed(self, request: InferenceRequest) -> tuple[npt.NDArray[np.float32], float]:
        """The standardised window and the anchor close at the request's time, from the
        market frame."""
        t = int(request.timestamp)
        raw = None if request.observe is None else request.observe(self.observation)
        anchor = request.input.ohlcv.get(self.spec.timeframes[0])
        if raw is None or anchor is None or not len(anchor):
            raise ValueError(
                f"expert {self.name!r} has no complete {request.symbol} market window at "
                f"{format_time(t)} (no market frame, too few bars, or a gap; prepared: "
                f"{sorted(self._markets)})"
            )
        x = np.array(raw, dtype=np.float32)[None]
        mean = np.asarray(self._scaler.mean, dtype=np.float32)
        std = np.asarray(self._scaler.std, dtype=np.float32)
        window = standardized_window(x, mean, std, self._market_names, t)
        return window, float(anchor.close[-1])

    def replay(self, symbol: str, timestamp: int, tensors: Mapping[str, Any]) -> ModelOutput:
        """The agent's output on a stored ``tensors["obs"]`` ``(1, frames, features)``."""
        if "obs" not in tensors:
            raise ValueError(
                f"expert {self.name!r} replay: tensors hold {sorted(tensors)}, not 'obs' (the "
                "observation its inference stored)"
            )
        obs = np.asarray(tensors["obs"], dtype=np.float32)
        if obs.shape != (1, self._frames, self._width):
            raise ValueError(
                f"expert {self.name!r} replay: obs must be (1, {self._frames}, {self._width}), "
                f"got {obs.shape}; it was stored by another model"
            )
        return self._output(symbol, int(timestamp), obs)

    def _kept(
        self,
        symbol: str,
        market: _Market,
        i: int,
        t: int,
        upstream: npt.NDArray[np.float32],
        state: tuple[float, float, float, float],
        account: AccountSnapshot,
    ) -> tuple[ModelOutput, npt.NDArray[np.float32]] | None:
        """The output at step ``i`` from a batch of the coming steps evaluated ahead
        (:mod:`~pivotal.orchestrator.experts.steps_ahead`); None when it cannot be batched
        (no CNN rows ahead, or a position state that cannot be known ahead), so the step
        runs on its own."""
        key = weights_key(self._agent.network)
        kept = self._ahead.get(symbol, i, key, upstream, state)
        if kept is not None:
            return self._vote(kept[0]), kept[1]
        n = min(self._ahead.size(symbol, i, key), len(market.times) - i)
        if self.cnn is not None:
            ahead = None if self.upstream_ahead is None else self.upstream_ahead(symbol, t)
            if ahead is None:
                return None
            times, rows = ahead
            n = min(n, len(times))
            same = times[:n] == market.times[i : i + n]
            n = int(np.argmin(same)) if not same.all() else n
            if n < 2 or not np.array_equal(rows[0], upstream):
                return None
            rows = np.asarray(rows[:n], dtype=np.float32)
        else:
            rows = np.empty((n, 0), dtype=np.float32)
        states = self._states_ahead(symbol, market, i, n, state, account)
        if states is None:
            return None
        steps = np.arange(i, i + n, dtype=np.int64)
        x = market.dataset.get_batch(steps).numpy()
        names = self._market_names
        window = standardized_window(x, market.mean, market.std, names, t)
        obs = np.empty((n, self._frames, self._width), dtype=np.float32)
        m, s = self._market, len(STATE_FEATURES)
        obs[:, :, :m] = window
        obs[:, :, m : m + s] = states[:, None, :]
        obs[:, :, m + s :] = rows[:, None, :]
        # the agent's outputs are kept as they are and voted on (_vote) only at the steps
        # that use them: a batch a trade cuts short costs no vote for its unused steps
        outs = self._agent.outputs(obs, symbol=symbol, timestamps=market.times[steps].tolist())
        self._ahead.put(symbol, key, i, outs, obs, rows, states)
        kept = self._ahead.get(symbol, i, key, upstream, state)
        return None if kept is None else (self._vote(kept[0]), kept[1])

    def _states_ahead(
        self,
        symbol: str,
        market: _Market,
        i: int,
        n: int,
        state: tuple[float, float, float, float],
        account: AccountSnapshot,
    ) -> npt.NDArray[np.float64] | None:
        """The position states of steps ``i .. i+n-1`` if nothing trades: zeros while flat,
        :func:`held_states` while this symbol's position is the account's only one; None
        otherwise (another position moves the equity with prices the market window does
        not hold)."""
        if not any(state):
            return np.zeros((n, len(STATE_FEATURES)), dtype=np.float64)
        open_ = [p for p in account.positions.values() if p.quantity != 0.0]
        if len(open_) != 1 or str(open_[0].symbol) != str(symbol):
            return None
        position = open_[0]
        return held_states(
            quantity=float(position.quantity),
            average=float(position.average_entry_price),
            cash=float(account.cash),
            closes=market.closes[i : i + n],
            times=market.times[i : i + n],
            entry=self._tracks[symbol].entry,
            bar_ms=self.spec.timeframes[0].ms,
            episode_length=self._job.env.episode_length,
            initial=self._initial,
        )

    def _output(self, symbol: str, timestamp: int, obs: npt.NDArray[np.float32]) -> ModelOutput:
        return self._vote(self._agent.output(obs[0], symbol=symbol, timestamp=timestamp))

    def _vote(self, out: ModelOutput) -> ModelOutput:
        """The agent's output under this expert's name, its vote from the Q-values."""
        q = np.asarray(list(out.predictions["q_values"].values()), dtype=np.float64)
        vote = vote_probabilities(q)
        names = self._agent.action_names
        return ModelOutput(  # dataclasses.replace(out, ...) without its per-field walk
            model_type=out.model_type,
            model_name=self.name,
            symbol=out.symbol,
            timestamp=out.timestamp,
            confidence=float(vote.max()),
            predictions={
                **out.predictions,
                "action_probabilities": dict(zip(names, vote.tolist(), strict=True)),
            },
            hidden_states=out.hidden_states,
            metadata=out.metadata,
        )

    def _market_of(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            raise ValueError(
                f"expert {self.name!r} has no market windows for {symbol}: call "
                f"prepare({symbol!r}, candles) first (prepared: {sorted(self._markets)})"
            )
        return market

    def _cnn_features(self, request: InferenceRequest) -> npt.NDArray[np.float32]:
        """The CNN expert's feature row of this step, checked against the job's names."""
        if self.cnn is None:
            return np.empty(0, dtype=np.float32)
        output = request.upstream.get(self.cnn)
        if output is None:
            raise ValueError(
                f"expert {self.name!r} reads the output of {self.cnn!r} of the same step, but "
                f"the request holds none (upstream: {sorted(request.upstream)}); run "
                f"{self.cnn!r} first and pass its output"
            )
        if int(output.timestamp) != int(request.timestamp):
            raise ValueError(
                f"DQN would read a CNN output of another step: {self.cnn!r}'s output is at "
                f"{format_time(int(output.timestamp))}, this step at "
                f"{format_time(int(request.timestamp))}"
            )
        if output.symbol != self._symbol(request.symbol):
            raise ValueError(
                f"expert {self.name!r} got a {self.cnn!r} output of {output.symbol} for a "
                f"{request.symbol} step"
            )
        names = tuple(output.metadata.get("feature_names", ()))
        if names != self._cnn_names:
            raise ValueError(
                f"expert {self.name!r}: {self.cnn!r}'s features are not the ones the DQN was "
                f"trained on ({_list_differences(names, self._cnn_names)}); use the CNN "
                "checkpoint (architecture and targets) of the DQN's job"
            )
        hidden = output.hidden_states or {}
        if "features" not in hidden:
            raise ValueError(
                f"expert {self.name!r}: {self.cnn!r}'s output has no hidden_states['features']"
            )
        row = np.asarray(hidden["features"], dtype=np.float32).reshape(-1)
        if len(row) != len(names):
            raise ValueError(
                f"expert {self.name!r}: {self.cnn!r} gives {len(row)} feature values for "
                f"{len(names)} names"
            )
        if not np.isfinite(row).all():
            bad = names[int(np.argmax(~np.isfinite(row)))]
            raise ValueError(
                f"expert {self.name!r}: {self.cnn!r}'s feature {bad!r} at "
                f"{format_time(int(request.timestamp))} is NaN or infinite"
            )
        return row

    def _symbol(self, symbol: str) -> Symbol:
        """``Symbol.parse(symbol)``, parsed once per spelling."""
        parsed = self._parsed.get(symbol)
        if parsed is None:
            parsed = self._parsed[symbol] = Symbol.parse(symbol)
        return parsed

    def _state(
        self, symbol: str, t: int, close: float, account: AccountSnapshot
    ) -> tuple[float, float, float, float]:
        """The position state at the step closing at ``t`` (module docstring), updating the
        entry tracking. Bars in the trade count the anchor bars from the entry's step to this
        one, both included."""
        track = self._tracks.get(symbol)
        if track is None or t < track.time:  # first call, or time went back: start afresh
            track = self._tracks[symbol] = _Track()
        position = account.positions.get(symbol)
        q = 0.0 if position is None else float(position.quantity)
        if q == 0.0:
            track.entry = -1
        elif track.previous == 0.0 or (track.previous > 0.0) != (q > 0.0):
            track.entry = t
        track.previous = q
        track.time = t
        if q == 0.0 or position is None:
            return (0.0, 0.0, 0.0, 0.0)
        equity = account.equity if account.equity > 0.0 else self._initial
        held = (t - track.entry) // self.spec.timeframes[0].ms + 1
        state = (
            1.0 if q > 0.0 else -1.0,
            abs(q) * close / equity,
            position.unrealized_pnl / equity,
            held / self._job.env.episode_length,
        )
        if not np.isfinite(state).all():
            raise ValueError(
                f"expert {self.name!r}: the {symbol} position state {state} is not finite "
                "(check the account's equity and unrealized PnL)"
            )
        return state

    def fallback(self) -> DQNExpert | None:
        """A fresh expert from the same checkpoint, sharing the prepared market windows and
        the position tracking; None when it cannot be loaded any more (logged)."""
        try:
            fresh = DQNExpert(self._path, name=self.name, cnn=self.cnn, device=self.device)
        except (OSError, ModelError, ValueError, KeyError) as exc:
            logger.warning("expert %r: no fallback from %s: %s", self.name, self._path, exc)
            return None
        fresh._markets = dict(self._markets)
        fresh._tracks = {k: replace(v) for k, v in self._tracks.items()}
        return fresh

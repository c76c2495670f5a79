"""The per-sample context vector: what a model reads besides candle streams.

Models take ``x`` (candle streams, :class:`~pivotal.features.inputs.InputEncoder`) and a
``context`` vector (:class:`~pivotal.models.base.InputShape`'s ``context``) built here from a
``BaseDataInput``, with a fixed layout (:meth:`ContextEncoder.layout`):

1. for each model named in ``prediction_sources``, in that order, six values:
   ``<name>_present`` (1/0), ``<name>_confidence``, ``<name>_log_age_s`` (log1p of seconds
   since the output was made), ``<name>_p_buy``, ``<name>_p_sell``, ``<name>_p_hold``
   (the output's ``predictions["action_probabilities"]`` mapping of action to probability,
   0 when it has none); all 0 when the model's prediction is absent;
2. market microstructure from the input's order-flow metrics (:data:`MICROSTRUCTURE_KEYS`):
   ``flow_buy_ratio`` (0.5 when no trades), ``flow_log_buy_volume``,
   ``flow_log_sell_volume``, ``flow_log_trades``, ``flow_log_large_buys``,
   ``flow_log_large_sells`` (log1p of the sums);
3. the latest COB snapshot summary, when ``cob=True``: the columns of
   :func:`~pivotal.features.inputs.columns.cob_layout` (imbalances, MAs, log volumes, age,
   presence), 0 when absent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pivotal.core.types import BaseDataInput
from pivotal.features.inputs.columns import cob_layout, cob_summary
from pivotal.features.scalers import FeatureLayout

__all__ = ["MICROSTRUCTURE_KEYS", "ContextEncoder"]

MICROSTRUCTURE_KEYS: tuple[str, ...] = (
    "buy_volume",
    "sell_volume",
    "trade_count",
    "large_buy_count",
    "large_sell_count",
)
_PREDICTION_FIELDS = ("present", "confidence", "log_age_s", "p_buy", "p_sell", "p_hold")
_FLOW_FIELDS = (
    "flow_buy_ratio",
    "flow_log_buy_volume",
    "flow_log_sell_volume",
    "flow_log_trades",
    "flow_log_large_buys",
    "flow_log_large_sells",
)


class ContextEncoder:
    """Turns the non-candle parts of a ``BaseDataInput`` into one float32 vector."""

    def __init__(
        self,
        prediction_sources: Sequence[str] = (),
        *,
        microstructure: bool = True,
        cob: bool = False,
        cob_central: int = 5,
        cob_ma_windows_s: Sequence[int] = (1, 5, 15, 60),
    ) -> None:
        self.prediction_sources = tuple(prediction_sources)
        self.microstructure = microstructure
        self.cob = cob
        self.cob_central = cob_central
        self.cob_ma_windows_s = tuple(cob_ma_windows_s)
        names: list[str] = []
        for source in self.prediction_sources:
            names += [f"{source}_{f}" for f in _PREDICTION_FIELDS]
        if microstructure:
            names += _FLOW_FIELDS
        if cob:
            names += cob_layout(self.cob_ma_windows_s).names
        self._layout = FeatureLayout(tuple(names)) if names else None

    @property
    def size(self) -> int:
        return 0 if self._layout is None else len(self._layout)

    def layout(self) -> FeatureLayout | None:
        """Names of the vector's entries in order; None when the vector is empty."""
        return self._layout

    def encode(self, inp: BaseDataInput) -> torch.Tensor:
        """The context vector of ``inp`` (float32, shape ``(size,)``)."""
        values: list[float] = []
        for source in self.prediction_sources:
            out = inp.last_predictions.get(source)
            if out is None:
                values += [0.0] * len(_PREDICTION_FIELDS)
                continue
            probs = out.predictions.get("action_probabilities") or {}
            values += [
                1.0,
                float(out.confidence),
                float(np.log1p(max(0, inp.timestamp - out.timestamp) / 1000.0)),
                float(probs.get("BUY", 0.0)),
                float(probs.get("SELL", 0.0)),
                float(probs.get("HOLD", 0.0)),
            ]
        if self.microstructure:
            flow = inp.market_microstructure
            buys = float(flow.get("buy_volume", 0.0))
            sells = float(flow.get("sell_volume", 0.0))
            values += [
                buys / (buys + sells) if buys + sells > 0 else 0.5,
                float(np.log1p(buys)),
                float(np.log1p(sells)),
                float(np.log1p(flow.get("trade_count", 0.0))),
                float(np.log1p(flow.get("large_buy_count", 0.0))),
                float(np.log1p(flow.get("large_sell_count", 0.0))),
            ]
        if self.cob:
            width = len(cob_layout(self.cob_ma_windows_s))
            if inp.cob_data is None:
                values += [0.0] * width
            else:
                row = cob_summary(
                    [inp.cob_data], central=self.cob_central, ma_windows_s=self.cob_ma_windows_s
                )[0]
                age = np.log1p(max(0, inp.timestamp - inp.cob_data.timestamp) / 1000.0)
                summary = np.nan_to_num(row[: width - 2], nan=0.0).tolist()
                values += [*summary, float(age), 1.0]
        return torch.tensor(values, dtype=torch.float32)

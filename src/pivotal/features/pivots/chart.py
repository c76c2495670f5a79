"""A plotly chart of candles with their Williams pivots (for ``pivotal pivots show``).

Markers sit at each pivot's extreme bar (triangles up for highs above the bar, down for lows),
larger and darker for higher levels; a line per level joins that level's pivots in bar order
(the zig-zag of the market structure). Hover shows the bar at which each pivot was confirmed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pivotal.core.candles import Candles

if TYPE_CHECKING:
    import plotly.graph_objects as go

LEVEL_COLOURS: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def pivot_chart(
    candles: Candles, pivots: pd.DataFrame, title: str = "Williams pivots"
) -> go.Figure:
    """Candlesticks of ``candles`` with ``pivots`` (a :func:`williams_pivots` frame of them).

    Pivot ``index``/``confirm_index`` refer to positions in ``candles``. Returns a
    ``plotly.graph_objects.Figure``; write it with ``fig.write_html(path)``.
    """
    import plotly.graph_objects as go

    if len(pivots) and int(pivots["confirm_index"].max()) >= len(candles):
        raise ValueError(
            f"pivots refer to bar {int(pivots['confirm_index'].max())} but candles has "
            f"{len(candles)} bars; pass the candles the pivots were computed on"
        )
    times = pd.to_datetime(candles.timestamp, unit="ms", utc=True)
    fig = go.Figure()
    fig.add_trace(
        go.Candlestick(
            x=times,
            open=candles.open,
            high=candles.high,
            low=candles.low,
            close=candles.close,
            name="candles",
            increasing_line_color="#26a69a",
            decreasing_line_color="#ef5350",
        )
    )
    for level in sorted(set(pivots["level"].tolist())):
        rows = pivots[pivots["level"].to_numpy() == level]
        rows = rows.iloc[np.argsort(rows["index"].to_numpy(), kind="stable")]
        colour = LEVEL_COLOURS[(int(level) - 1) % len(LEVEL_COLOURS)]
        idx = rows["index"].to_numpy()
        fig.add_trace(
            go.Scatter(
                x=times[idx],
                y=rows["price"].to_numpy(),
                mode="lines",
                line={"color": colour, "width": 0.8 + 0.4 * int(level)},
                name=f"L{level} structure",
                legendgroup=f"L{level}",
                hoverinfo="skip",
            )
        )
        for kind, symbol in (("high", "triangle-down"), ("low", "triangle-up")):
            sub = rows[(rows["kind"].astype(str) == kind).to_numpy()]
            sub_idx = sub["index"].to_numpy()
            confirmed = times[sub["confirm_index"].to_numpy()].strftime("%Y-%m-%d %H:%M:%S")
            fig.add_trace(
                go.Scatter(
                    x=times[sub_idx],
                    y=sub["price"].to_numpy(),
                    mode="markers",
                    marker={"symbol": symbol, "size": 5 + 3 * int(level), "color": colour},
                    name=f"L{level} {kind}s",
                    legendgroup=f"L{level}",
                    customdata=np.asarray(confirmed),
                    hovertemplate=(
                        f"L{level} {kind} %{{y}}<br>bar %{{x}}<br>"
                        "confirmed %{customdata}<extra></extra>"
                    ),
                )
            )
    fig.update_layout(
        title=title,
        xaxis_title="time (UTC)",
        yaxis_title="price",
        xaxis_rangeslider_visible=False,
        template="plotly_white",
    )
    return fig

"""The report pieces both HTML reports share: the page shell (:mod:`pivotal.backtest.report_page`)
and the chart helpers (:mod:`pivotal.backtest.report_chart`)."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from pivotal.backtest.report_chart import (
    numeric_column,
    resample_series,
    span_text,
    time_text,
)
from pivotal.backtest.report_page import (
    PAGE_STYLE,
    TRADE_HEADERS,
    html_page,
    html_table,
    trade_text_columns,
)
from pivotal.backtest.result import TRADE_COLUMNS

T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC
VOID = {"meta", "br"}


class _Tags(HTMLParser):
    """Checks that every opened element is closed in order (void elements aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


def _balanced(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors
    assert not parser.open, f"left open: {parser.open}"
    return parser


def test_page_escapes_the_title_and_places_head_and_body_parts() -> None:
    page = html_page("A <b> & c", ["<h1>x</h1>", "<p>y</p>"], head=["<script>1</script>"])
    assert page.startswith("<!DOCTYPE html>\n")
    assert "<title>A &lt;b&gt; &amp; c</title>" in page
    assert f"<style>{PAGE_STYLE}</style>" in page
    head, body = page.split("</head>")
    assert "<script>1</script>" in head and "<h1>" not in head
    assert body.index("<h1>x</h1>") < body.index("<p>y</p>")
    assert _balanced(page).seen[:4] == ["html", "head", "meta", "title"]


def test_table_escapes_aligns_text_columns_and_spans_one_cell_rows() -> None:
    table = html_table(["Name", "Value", "More"], [["<a>", "1", "2"], ["… note …"]], text_cols=1)
    _balanced(table)
    assert '<th class="text">Name</th><th>Value</th>' in table
    assert '<td class="text">&lt;a&gt;</td><td>1</td><td>2</td>' in table
    assert '<tr class="gap"><td colspan="3">… note …</td></tr>' in table


def test_trade_text_columns_give_one_column_per_header() -> None:
    trades = pd.DataFrame(
        {
            "symbol": ["BTC/USDT", "ETH/USDT"],
            "side": ["long", "short"],
            "entry_time": [T0, T0 + 90_000],
            "exit_time": [T0 + 60_000, -1],
            "entry_bar": [0, 1],
            "exit_bar": [1, -1],
            "entry_price": [100.123456789, 2.5],
            "exit_price": [101.0, np.nan],
            "size": [0.5, 2.0],
            "pnl": [1234.5, -3.0],
            "fees": [0.1, 0.2],
            "return_pct": [1.23456, -0.5],
            "exit_reason": ["stop", None],
        },
        columns=[*TRADE_COLUMNS, "exit_reason"],
    )
    columns = trade_text_columns(trades)
    assert len(columns) == len(TRADE_HEADERS)
    by_header = dict(zip(TRADE_HEADERS, columns, strict=True))
    assert by_header["Entry (UTC)"] == ["2025-01-01 00:00:00", "2025-01-01 00:01:30"]
    assert by_header["Entry price"] == ["100.12346", "2.5"]
    assert by_header["Exit price"] == ["101", ""]
    assert by_header["PnL"] == ["1,234.50", "-3.00"]
    assert by_header["Return [%]"] == ["+1.235", "-0.500"]
    assert by_header["Exit reason"] == ["stop", ""]
    assert trade_text_columns(trades.drop(columns=["exit_reason"]))[-1] == ["", ""]


def test_resample_series_keeps_each_buckets_last_or_lowest_value() -> None:
    ts = T0 + 60_000 * np.arange(6, dtype=np.int64)
    values = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 6.0])
    x, y = resample_series(ts, values, None, "last")
    assert list(y) == list(values) and list(x) == list(time_text(ts))
    x, y = resample_series(ts, values, 180_000, "last")
    assert list(x) == ["2025-01-01T00:00", "2025-01-01T00:03"] and list(y) == [2.0, 6.0]
    assert list(resample_series(ts, values, 180_000, "min")[1]) == [1.0, 4.0]
    with pytest.raises(ValueError, match="how must be"):
        resample_series(ts, values, 180_000, "mean")


def test_span_and_number_helpers() -> None:
    assert [span_text(v) for v in (300_000, 3_600_000, 86_400_000, 1_500, None)] == [
        "5m",
        "1h",
        "1d",
        "1500ms",
        "?",
    ]
    table = pd.DataFrame({"a": ["1.5", "x", None]})
    np.testing.assert_array_equal(numeric_column(table, "a"), [1.5, np.nan, np.nan])
    assert np.isnan(numeric_column(table, "missing")).all() and len(numeric_column(table, "b")) == 3

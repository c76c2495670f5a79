"""The evaluation report: a model's test metrics against its baselines, and a plain verdict.

:class:`EvaluationReport` holds, per target, the model's metrics and each baseline's
(computed on the same test rows by :mod:`~pivotal.training.metrics` and
:mod:`~pivotal.training.baselines`), says per metric whether the model beats **every**
baseline (strictly better, in the direction of :data:`~pivotal.training.metrics.
HIGHER_IS_BETTER`; a tie does not beat) and writes a verdict a person can act on, such as
"return_5: the model does not beat the persistence baseline on MSE (0.0012 vs 0.0011)."

:func:`render_console` turns it into a ``rich`` table; :func:`write_html` into one
self-contained offline HTML file (plotly.js inlined once) with predictions vs truth,
residual histograms and reliability diagrams, written atomically.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from rich.markup import escape
from rich.table import Table

from pivotal.data.atomic import atomic_write_text
from pivotal.training.metrics import (
    HIGHER_IS_BETTER,
    calibration_curve,
    known_classes,
    known_regression,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "METRIC_NAMES",
    "EvaluationReport",
    "TargetEvaluation",
    "render_console",
    "write_html",
]

METRIC_NAMES: dict[str, str] = {
    "mse": "MSE",
    "mae": "MAE",
    "r2": "R²",
    "directional_accuracy": "directional accuracy",
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "brier": "Brier score",
    "log_loss": "log loss",
    "ece": "calibration error (ECE)",
}
"""How each metric is named in verdicts and tables."""

Kind = Literal["regression", "classification"]


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4g}"


def _join(items: list[str], word: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _frozen_metrics(values: Mapping[str, Any], where: str) -> Mapping[str, float]:
    out: dict[str, float] = {}
    for name, value in values.items():
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{where}: metric {name!r} must be a number, got {value!r}") from None
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class TargetEvaluation:
    """One target's test metrics: the model's and each baseline's (name → metric → value).

    Metrics compared are those of :data:`~pivotal.training.metrics.HIGHER_IS_BETTER` that
    the model reports; a baseline missing a metric, or a NaN on either side, makes that
    comparison undefined (``None``), which counts neither for nor against the model.
    """

    target: str
    kind: Kind
    model: Mapping[str, float]
    baselines: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("TargetEvaluation.target must name the target")
        if self.kind not in ("regression", "classification"):
            raise ValueError(f"kind must be 'regression' or 'classification', got {self.kind!r}")
        model = _frozen_metrics(self.model, f"{self.target} model")
        if not any(m in HIGHER_IS_BETTER for m in model):
            raise ValueError(
                f"{self.target}: the model reports no comparable metric; known metrics: "
                f"{', '.join(HIGHER_IS_BETTER)}"
            )
        object.__setattr__(self, "model", model)
        baselines = {
            str(name): _frozen_metrics(values, f"{self.target} baseline {name!r}")
            for name, values in self.baselines.items()
        }
        if not baselines:
            raise ValueError(f"{self.target}: give at least one baseline to compare against")
        object.__setattr__(self, "baselines", MappingProxyType(baselines))

    @property
    def metrics(self) -> tuple[str, ...]:
        """Compared metrics, in :data:`HIGHER_IS_BETTER` order."""
        return tuple(m for m in HIGHER_IS_BETTER if m in self.model)

    def compare(self) -> dict[str, dict[str, bool | None]]:
        """metric → baseline → whether the model is strictly better (``None``: undefined)."""
        out: dict[str, dict[str, bool | None]] = {}
        for metric in self.metrics:
            mine = self.model[metric]
            row: dict[str, bool | None] = {}
            for name, values in self.baselines.items():
                theirs = values.get(metric, math.nan)
                if not (math.isfinite(mine) and math.isfinite(theirs)):
                    row[name] = None
                elif HIGHER_IS_BETTER[metric]:
                    row[name] = mine > theirs
                else:
                    row[name] = mine < theirs
            out[metric] = row
        return out

    @property
    def beats_baselines(self) -> dict[str, bool]:
        """metric → the model beats every baseline it can be compared with (and at least one)."""
        return {
            metric: any(v is not None for v in row.values())
            and all(v is not False for v in row.values())
            for metric, row in self.compare().items()
        }

    @property
    def beats_all(self) -> bool:
        return all(self.beats_baselines.values())

    def verdict(self) -> str:
        """One plain sentence (two when some comparisons are undefined)."""
        comparison = self.compare()
        losses: dict[str, list[str]] = {}
        undefined = [m for m, row in comparison.items() if all(v is None for v in row.values())]
        for metric, row in comparison.items():
            for name, beats in row.items():
                if beats is False:
                    theirs = self.baselines[name][metric]
                    losses.setdefault(name, []).append(
                        f"{METRIC_NAMES[metric]} ({_fmt(self.model[metric])} vs {_fmt(theirs)})"
                    )
        if losses:
            parts = [
                f"the {name} baseline on {_join(items, 'or')}" for name, items in losses.items()
            ]
            sentence = f"{self.target}: the model does not beat {'; nor '.join(parts)}."
        else:
            compared = [METRIC_NAMES[m] for m in self.metrics if m not in undefined]
            names = ", ".join(self.baselines)
            sentence = (
                f"{self.target}: the model beats every baseline ({names}) on {_join(compared)}."
            )
        if undefined:
            sentence += (
                f" {_join([METRIC_NAMES[m] for m in undefined])} could not be compared "
                "(undefined for the model or every baseline)."
            )
        return sentence

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "model": dict(self.model),
            "baselines": {k: dict(v) for k, v in self.baselines.items()},
            "beats_baselines": self.beats_baselines,
            "verdict": self.verdict(),
        }


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """A model's evaluation on one test range: per-target metrics vs baselines, and a verdict.

    ``test_span`` is the first and last test sample time (UTC ms), e.g. ``Split.span("test")``.
    """

    model_name: str
    test_span: tuple[int, int] | None
    targets: tuple[TargetEvaluation, ...]

    def __post_init__(self) -> None:
        if not self.model_name:
            raise ValueError("EvaluationReport.model_name must name the model")
        targets = tuple(self.targets)
        if not targets:
            raise ValueError("EvaluationReport needs at least one TargetEvaluation")
        names = [t.target for t in targets]
        if len(set(names)) != len(names):
            raise ValueError(f"EvaluationReport repeats a target: {names}")
        object.__setattr__(self, "targets", targets)
        if self.test_span is not None:
            first, last = (int(v) for v in self.test_span)
            if last < first:
                raise ValueError(f"test_span ends before it starts: {self.test_span}")
            object.__setattr__(self, "test_span", (first, last))

    def target(self, name: str) -> TargetEvaluation:
        for t in self.targets:
            if t.target == name:
                return t
        raise ValueError(f"no target {name!r}; targets: {[t.target for t in self.targets]}")

    @property
    def beats_baselines(self) -> dict[str, dict[str, bool]]:
        """target → metric → the model beats every baseline on it."""
        return {t.target: t.beats_baselines for t in self.targets}

    @property
    def beats_all(self) -> bool:
        """True only when the model beats every baseline on every metric of every target."""
        return all(t.beats_all for t in self.targets)

    @property
    def span_text(self) -> str:
        if self.test_span is None:
            return "test span unknown"
        return f"{_utc(self.test_span[0])} → {_utc(self.test_span[1])}"

    @property
    def verdict(self) -> str:
        """The plain verdict: an overall sentence, then one per target."""
        failing = [t for t in self.targets if not t.beats_all]
        if failing:
            head = (
                f"{self.model_name} does not beat its baselines on {len(failing)} of "
                f"{len(self.targets)} target(s)."
            )
        else:
            head = f"{self.model_name} beats every baseline on every compared metric."
        return " ".join([head, *(t.verdict() for t in self.targets)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "test_span": list(self.test_span) if self.test_span else None,
            "targets": [t.to_dict() for t in self.targets],
            "beats_all": self.beats_all,
            "verdict": self.verdict,
        }


# -- console -----------------------------------------------------------------------------------
def _baseline_names(report: EvaluationReport) -> list[str]:
    names: list[str] = []
    for t in report.targets:
        names += [n for n in t.baselines if n not in names]
    return names


def _table_rows(report: EvaluationReport) -> list[tuple[str, str, str, bool, list[str]]]:
    """(target, metric name, model value, beats all, baseline values) per target and metric."""
    baselines = _baseline_names(report)
    rows = []
    for t in report.targets:
        beats = t.beats_baselines
        for metric in t.metrics:
            others = [  # "" where the baseline is not one of this target's
                _fmt(t.baselines[n].get(metric, math.nan)) if n in t.baselines else ""
                for n in baselines
            ]
            rows.append(
                (t.target, METRIC_NAMES[metric], _fmt(t.model[metric]), beats[metric], others)
            )
    return rows


def render_console(report: EvaluationReport) -> Table:
    """A ``rich`` table: one row per target and metric, the model beside each baseline.

    The model's value is green where it beats every baseline, red where it does not; the
    verdict is the caption.
    """
    baselines = _baseline_names(report)
    table = Table(
        title=escape(f"{report.model_name} · {report.span_text}"),
        caption=escape(report.verdict),
        caption_justify="left",
    )
    table.add_column("target")
    table.add_column("metric")
    table.add_column("model", justify="right")
    for name in baselines:
        table.add_column(name, justify="right")
    table.add_column("beats all", justify="center")
    for target, metric, model, beats, others in _table_rows(report):
        style = "green" if beats else "red"
        table.add_row(
            escape(target), metric, f"[{style}]{model}[/{style}]", *others, "yes" if beats else "no"
        )
    return table


# -- HTML --------------------------------------------------------------------------------------
FloatArray = npt.NDArray[np.float64]


def _named(values: Any, default: str) -> dict[str, Any]:
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return {str(k): v for k, v in values.items()}
    return {default: values}


def _subsample(n: int, limit: int) -> npt.NDArray[np.int64]:
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _regression_figures(name: str, pred: Any, truth: Any, limit: int) -> list[go.Figure]:
    import plotly.graph_objects as go

    p, t = known_regression(pred, truth)
    keep = _subsample(len(t), limit)
    lo, hi = float(min(p.min(), t.min())), float(max(p.max(), t.max()))
    shown = "" if len(keep) == len(t) else f" ({len(keep)} of {len(t)} points, evenly spaced)"
    scatter = go.Figure(
        [
            go.Scattergl(x=t[keep], y=p[keep], mode="markers", marker={"size": 3}, name="rows"),
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="prediction = truth"),
        ]
    )
    scatter.update_layout(
        title=f"{name}: prediction vs truth{shown}",
        xaxis_title="truth",
        yaxis_title="prediction",
    )
    counts, edges = np.histogram(p - t, bins=min(60, max(10, len(t) // 20)))
    histogram = go.Figure(
        go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name="rows")
    )
    histogram.update_layout(
        title=f"{name}: residuals (prediction − truth), {len(t)} rows",
        xaxis_title="residual",
        yaxis_title="rows",
        bargap=0,
    )
    return [scatter, histogram]


def _calibration_figure(name: str, probs: Any, labels: Any) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    p, y = known_classes(probs, labels)
    curve = calibration_curve(p, y)
    filled = curve.counts > 0
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    centres = (curve.bin_lower + curve.bin_upper) / 2
    figure.add_trace(
        go.Bar(x=centres, y=curve.counts, name="rows per bin", opacity=0.3), secondary_y=True
    )
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated"),
        secondary_y=False,
    )
    figure.add_trace(
        go.Scatter(
            x=curve.mean_predicted[filled],
            y=curve.observed_frequency[filled],
            mode="lines+markers",
            name="model",
        ),
        secondary_y=False,
    )
    figure.update_layout(title=f"{name}: reliability (top-label confidence), {len(y)} rows")
    figure.update_xaxes(title_text="mean predicted probability", range=[0, 1])
    figure.update_yaxes(title_text="observed frequency", range=[0, 1], secondary_y=False)
    figure.update_yaxes(title_text="rows", secondary_y=True)
    return figure


def _metrics_table(report: EvaluationReport) -> str:
    header = ["target", "metric", "model", *_baseline_names(report), "beats all"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = []
    for target, metric, model, beats, others in _table_rows(report):
        cls = "win" if beats else "loss"
        cells = [html.escape(target), html.escape(metric)]
        rows.append(
            "<tr>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + f'<td class="{cls}">{model}</td>'
            + "".join(f"<td>{c}</td>" for c in others)
            + f"<td>{'yes' if beats else 'no'}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}td:first-child,td:nth-child(2),th{text-align:left}"
    ".win{color:#080;font-weight:bold}.loss{color:#b00;font-weight:bold}"
    ".verdict{font-size:1.1em;padding:0.5em;background:#f6f6f6}"
)


def write_html(
    report: EvaluationReport,
    path: str | os.PathLike[str],
    *,
    predictions: Any = None,
    truth: Any = None,
    probabilities: Any = None,
    labels: Any = None,
    max_points: int = 5000,
) -> Path:
    """Write the report as one self-contained offline HTML file; return its path.

    ``predictions``/``truth``: regression predictions and truths of the test rows, either one
    array each (named after the report's first regression target) or mappings target →
    array with the same keys; they give a prediction-vs-truth scatter (at most
    ``max_points`` evenly spaced rows) and a residual histogram per target.
    ``probabilities``/``labels``: ``(rows, classes)`` probabilities and class labels, one
    each or mappings target → array; they give a reliability diagram per target. Each pair
    is given together or not at all. Unknown truths (NaN, ``-1``) are left out as in the
    metrics. Everything is rendered in memory first, then written to a temporary file in
    the target's folder and renamed over ``path``: a failure leaves no partial file.
    """
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
        raise ValueError(f"max_points must be an int >= 2, got {max_points!r}")
    regression = [t.target for t in report.targets if t.kind == "regression"]
    classification = [t.target for t in report.targets if t.kind == "classification"]
    preds = _named(predictions, (regression or ["prediction"])[0])
    truths = _named(truth, (regression or ["prediction"])[0])
    probs = _named(probabilities, (classification or ["classes"])[0])
    label_map = _named(labels, (classification or ["classes"])[0])
    if set(preds) != set(truths):
        raise ValueError(
            f"predictions and truth must name the same targets, got {sorted(preds)} and "
            f"{sorted(truths)}"
        )
    if set(probs) != set(label_map):
        raise ValueError(
            f"probabilities and labels must name the same targets, got {sorted(probs)} and "
            f"{sorted(label_map)}"
        )
    figures: list[go.Figure] = []
    for name in preds:
        if np.isnan(np.asarray(truths[name], dtype=float)).all():
            continue  # no known outcome in the test range (e.g. no pivot confirmed): no plot
        figures += _regression_figures(name, preds[name], truths[name], max_points)
    for name in probs:
        figures.append(_calibration_figure(name, probs[name], label_map[name]))
    divs = [
        figure.to_html(
            full_html=False,
            include_plotlyjs=(k == 0),
            div_id=f"pivotal-figure-{k}",
            default_height="480px",
        )
        for k, figure in enumerate(figures)
    ]
    title = html.escape(f"{report.model_name} — evaluation")
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title}</h1><p>Test range: {html.escape(report.span_text)}</p>"
        f'<p class="verdict">{html.escape(report.verdict)}</p>'
        f"<h2>Metrics</h2>{_metrics_table(report)}"
        + ("<h2>Charts</h2>" if divs else "")
        + "".join(f"<div>{d}</div>" for d in divs)
        + "</body></html>\n"
    )
    target = Path(path).expanduser()
    atomic_write_text(target, document)
    return target

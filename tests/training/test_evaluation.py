"""Metrics against scikit-learn, baselines on a random walk and on planted relations, and the
report: a plain verdict when the model loses, a console table, and one atomic HTML file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table
from sklearn import calibration as skcal
from sklearn import metrics as skm

from pivotal.training import report as report_module
from pivotal.training.baselines import (
    classification_baseline_probabilities,
    classification_baselines,
    regression_baseline_predictions,
    regression_baselines,
)
from pivotal.training.metrics import (
    accuracy,
    brier_score,
    calibration_curve,
    directional_accuracy,
    evaluate_classification,
    evaluate_regression,
    expected_calibration_error,
    log_loss,
    macro_f1,
    mae,
    mse,
    r2,
)
from pivotal.training.report import (
    EvaluationReport,
    TargetEvaluation,
    render_console,
    write_html,
)


def random_probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    logits = rng.normal(0, 1.5, (n, k))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- metrics -----------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 400))
def test_regression_metrics_equal_sklearn(seed, n):
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 1, n)
    pred = truth * rng.uniform(-1, 2) + rng.normal(0, 1, n)
    assert mse(pred, truth) == pytest.approx(skm.mean_squared_error(truth, pred), rel=1e-12)
    assert mae(pred, truth) == pytest.approx(skm.mean_absolute_error(truth, pred), rel=1e-12)
    assert r2(pred, truth) == pytest.approx(skm.r2_score(truth, pred), rel=1e-9, abs=1e-12)
    expected = np.mean(np.sign(pred) == np.sign(truth))
    assert directional_accuracy(pred, truth) == pytest.approx(expected)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 400), k=st.integers(2, 4))
def test_classification_metrics_equal_sklearn(seed, n, k):
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, n, k)
    labels = rng.integers(0, k, n)
    pred = probs.argmax(axis=1)
    assert accuracy(pred, labels) == pytest.approx(skm.accuracy_score(labels, pred))
    assert macro_f1(pred, labels) == pytest.approx(
        skm.f1_score(labels, pred, average="macro", zero_division=0)
    )
    assert brier_score(probs, labels) == pytest.approx(
        skm.brier_score_loss(labels, probs, labels=list(range(k)), scale_by_half=False)
    )
    assert log_loss(probs, labels) == pytest.approx(
        skm.log_loss(labels, probs, labels=list(range(k)))
    )
    if k == 2:
        curve = calibration_curve(probs, labels, 5, positive_class=1)
        true_freq, mean_pred = skcal.calibration_curve(labels, probs[:, 1], n_bins=5)
        filled = curve.counts > 0
        np.testing.assert_allclose(curve.observed_frequency[filled], true_freq)
        np.testing.assert_allclose(curve.mean_predicted[filled], mean_pred)
        one_d = calibration_curve(probs[:, 1], labels, 5, positive_class=1)  # 1-D binary probs
        np.testing.assert_array_equal(one_d.counts, curve.counts)


def test_calibration_curve_top_label_and_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.35, 0.65], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 0])
    curve = calibration_curve(probs, labels, n_bins=2)
    # confidences 0.9, 0.8 (hits 1, 0) fall in (0.5, 1]; 0.65, 0.6 (hits 1, 0) too
    assert list(curve.counts) == [0, 4]
    assert curve.mean_predicted[1] == pytest.approx((0.9 + 0.8 + 0.65 + 0.6) / 4)
    assert curve.observed_frequency[1] == pytest.approx(0.5)
    assert np.isnan(curve.mean_predicted[0])
    assert expected_calibration_error(probs, labels, 2) == pytest.approx(0.7375 - 0.5)
    perfect = calibration_curve(np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 2, 2]))
    assert perfect.observed_frequency[-1] == 1.0 and perfect.counts[-1] == 4


def test_calibration_bins_are_right_closed_like_sklearn():
    p1 = np.array([0.0, 0.25, 0.5, 0.5, 0.75, 1.0])
    labels = np.array([0, 1, 1, 0, 1, 1])
    curve = calibration_curve(p1, labels, n_bins=4, positive_class=1)
    assert list(curve.counts) == [2, 2, 1, 1]  # [0, .25], (.25, .5], (.5, .75], (.75, 1]
    true_freq, mean_pred = skcal.calibration_curve(labels, p1, n_bins=4)
    np.testing.assert_allclose(curve.observed_frequency, true_freq)
    np.testing.assert_allclose(curve.mean_predicted, mean_pred)


def test_directional_accuracy_ignores_zero_truths_and_counts_zero_predictions_wrong():
    truth = np.array([0.1, -0.2, 0.0, 0.3, np.nan])
    pred = np.array([0.5, 0.1, -1.0, 0.0, 1.0])
    # counted rows 0, 1, 3: right, wrong, wrong (no direction predicted)
    assert directional_accuracy(pred, truth) == pytest.approx(1 / 3)
    assert np.isnan(directional_accuracy([1.0, 2.0], [0.0, 0.0]))


def test_unknown_targets_are_ignored_consistently():
    rng = np.random.default_rng(5)
    truth = rng.normal(0, 1, 200)
    pred = truth + rng.normal(0, 0.5, 200)
    holed = truth.copy()
    holed[::7] = np.nan
    keep = ~np.isnan(holed)
    assert evaluate_regression(pred, holed) == evaluate_regression(pred[keep], truth[keep])
    pred_with_nan = pred.copy()
    pred_with_nan[::7] = np.nan  # predictions on unknown rows do not matter
    assert evaluate_regression(pred_with_nan, holed) == evaluate_regression(pred, holed)
    probs = random_probs(rng, 200, 3)
    labels = rng.integers(0, 3, 200)
    unknown = labels.copy()
    unknown[::5] = -1
    known = unknown != -1
    expected = evaluate_classification(probs[known], labels[known])
    assert evaluate_classification(probs, unknown) == expected
    as_float = unknown.astype(float)
    as_float[::5] = np.nan
    assert evaluate_classification(probs, as_float) == expected
    assert expected["n"] == known.sum()
    assert set(expected) == {"n", "accuracy", "macro_f1", "brier", "log_loss", "ece"}


def test_metric_errors():
    with pytest.raises(ValueError, match="equal lengths"):
        mse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="pred holds"):
        mse([np.nan, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no known targets"):
        mae([1.0], [np.nan])
    with pytest.raises(ValueError, match="infinite"):
        mse([1.0], [np.inf])
    with pytest.raises(ValueError, match="sum to 1"):
        brier_score([[0.5, 0.6]], [0])
    with pytest.raises(ValueError, match="has 2 classes"):
        log_loss([[0.5, 0.5]], [2])
    with pytest.raises(ValueError, match="no known labels"):
        accuracy([0, 1], [-1, -1])
    with pytest.raises(ValueError, match="negative classes"):
        accuracy([0, 1], [-2, 1])
    with pytest.raises(ValueError, match="whole class"):
        accuracy([0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="n_bins"):
        calibration_curve([[0.5, 0.5]], [0], n_bins=0)


# -- baselines ---------------------------------------------------------------------------------
def lagged(returns: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features: the last ``lags`` returns known at t; target: the next return; last return."""
    x = np.column_stack([returns[lags - 1 - j : len(returns) - 1 - j] for j in range(lags)])
    y = returns[lags:]
    return x, y, x[:, 0]


def test_nothing_beats_persistence_on_a_random_walk():
    rng = np.random.default_rng(11)
    returns = rng.normal(0, 0.01, 40_000)  # log returns of a random walk
    x, y, last = lagged(returns, 5)
    cut = 28_000
    result = regression_baselines(x[:cut], y[:cut], x[cut:], y[cut:], last[cut:])
    assert set(result) == {"persistence", "last_return_sign", "train_mean", "linear"}
    persistence = result["persistence"]
    assert -0.01 < persistence["r2"] <= 0.0
    for name, metrics in result.items():
        # no baseline has real skill: none beats zero-return persistence by more than noise
        assert metrics["mse"] >= 0.995 * persistence["mse"], name
        assert metrics["r2"] < 0.005, name
    for name in ("last_return_sign", "linear"):
        assert abs(result[name]["directional_accuracy"] - 0.5) < 0.03, name
    assert persistence["directional_accuracy"] == 0.0  # it never states a direction


def test_linear_baseline_recovers_a_planted_relation():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (3000, 6))
    weights = np.array([0.5, -1.0, 0.0, 2.0, 0.3, 0.0])
    y = x @ weights + rng.normal(0, 0.1, 3000)
    y[::50] = np.nan  # unknown training targets are skipped
    last = rng.normal(0, 1, 1000)
    result = regression_baselines(x[:2000], y[:2000], x[2000:], y[2000:], last)
    assert result["linear"]["r2"] > 0.99
    assert result["linear"]["mse"] < 0.1 * result["persistence"]["mse"]
    assert abs(result["train_mean"]["r2"]) < 0.02
    level = regression_baseline_predictions(
        x[:2000], y[:2000], x[2000:], last, persistence_test=np.full(1000, 7.0)
    )
    assert np.all(level["persistence"] == 7.0)
    known = ~np.isnan(y[:2000])
    np.testing.assert_allclose(np.abs(level["last_return_sign"]), np.mean(np.abs(y[:2000][known])))


def test_classification_baselines_planted_and_majority():
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, (4000, 4))
    score = x @ np.array([2.0, -1.0, 0.5, 0.0])
    labels = np.digitize(score + rng.normal(0, 0.2, 4000), [-0.6, 0.9])  # 0, 1, 2
    last = rng.normal(0, 0.01, 1000)
    result = classification_baselines(x[:3000], labels[:3000], x[3000:], labels[3000:], last)
    assert set(result) == {"majority", "last_return_sign", "linear"}
    assert result["linear"]["accuracy"] > 0.85
    assert result["linear"]["brier"] < result["majority"]["brier"]
    counts = np.bincount(labels[:3000], minlength=3)
    majority = int(counts.argmax())
    assert result["majority"]["accuracy"] == pytest.approx(np.mean(labels[3000:] == majority))
    probs = classification_baseline_probabilities(
        x[:3000], labels[:3000], x[3000:], last_returns_test=last, dead_band=0.005
    )
    np.testing.assert_allclose(probs["majority"][0], counts / counts.sum())
    expected = np.where(last > 0.005, 2, np.where(last < -0.005, 0, 1))
    np.testing.assert_array_equal(probs["last_return_sign"].argmax(axis=1), expected)


def test_logistic_baseline_keeps_columns_of_classes_missing_in_training():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (300, 2))
    y = np.where(x[:, 0] > 0, 2, 0)  # class 1 never occurs
    probs = classification_baseline_probabilities(x[:200], y[:200], x[200:], n_classes=3)
    assert probs["linear"].shape == (100, 3)
    assert np.all(probs["linear"][:, 1] == 0.0)
    np.testing.assert_allclose(probs["linear"].sum(axis=1), 1.0)


def test_baseline_errors():
    x = np.ones((10, 2))
    y = np.arange(10.0)
    with pytest.raises(ValueError, match="NaN"):
        regression_baselines(np.full((10, 2), np.nan), y, x, y, np.zeros(10))
    with pytest.raises(ValueError, match="same feature"):
        regression_baselines(x, y, np.ones((10, 3)), y, np.zeros(10))
    with pytest.raises(ValueError, match="last_returns_test"):
        regression_baselines(x, y, x, y, np.zeros(9))
    with pytest.raises(ValueError, match="only class"):
        classification_baselines(x, np.zeros(10, dtype=int), x, np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="n_classes=3"):
        classification_baselines(x, y % 2, x, y % 2, np.zeros(10), n_classes=2)
    with pytest.raises(ValueError, match=r"classes 0\.\.2"):
        classification_baselines(x, y, x, y)


# -- report ------------------------------------------------------------------------------------
def random_walk_case(seed: int = 4):
    """Train/test of a random walk's next return, and a model worse than predicting zero."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0, 0.01, 6000)
    x, y, last = lagged(returns, 3)
    cut = 4000
    baselines = regression_baselines(x[:cut], y[:cut], x[cut:], y[cut:], last[cut:])
    bad_prediction = rng.normal(0, 0.02, len(y) - cut)  # pure noise, larger than the moves
    return y[cut:], bad_prediction, baselines


def test_report_says_plainly_when_the_model_loses():
    truth, pred, baselines = random_walk_case()
    target = TargetEvaluation("return_1", "regression", evaluate_regression(pred, truth), baselines)
    report = EvaluationReport("noise-model", (1_700_000_000_000, 1_700_360_000_000), (target,))
    assert report.beats_baselines["return_1"]["mse"] is False
    assert target.compare()["mse"]["persistence"] is False
    assert not report.beats_all
    assert "noise-model does not beat its baselines on 1 of 1 target(s)." in report.verdict
    assert "return_1: the model does not beat the persistence baseline on MSE (" in report.verdict
    assert report.to_dict()["beats_all"] is False


def test_report_says_when_the_model_wins_and_what_could_not_be_compared():
    model = {"n": 10, "mse": 0.5, "mae": 0.4, "r2": float("nan"), "directional_accuracy": 0.7}
    baselines = {
        "persistence": {"mse": 1.0, "mae": 0.8, "r2": 0.0, "directional_accuracy": 0.0},
        "linear": {"mse": 0.9, "mae": 0.7, "r2": 0.1, "directional_accuracy": 0.6},
    }
    target = TargetEvaluation("return_5", "regression", model, baselines)
    assert target.beats_baselines == {
        "mse": True,
        "mae": True,
        "r2": False,
        "directional_accuracy": True,
    }
    assert target.compare()["r2"] == {"persistence": None, "linear": None}
    text = target.verdict()
    assert text.startswith("return_5: the model beats every baseline (persistence, linear) on")
    assert "R² could not be compared" in text
    tie = TargetEvaluation("t", "regression", {"mse": 1.0}, {"persistence": {"mse": 1.0}})
    assert tie.beats_baselines == {"mse": False}  # a tie does not beat
    assert "does not beat the persistence baseline on MSE (1 vs 1)" in tie.verdict()


def test_report_refuses_bad_input():
    with pytest.raises(ValueError, match="at least one baseline"):
        TargetEvaluation("t", "regression", {"mse": 1.0}, {})
    with pytest.raises(ValueError, match="no comparable metric"):
        TargetEvaluation("t", "regression", {"n": 1.0}, {"b": {"mse": 1.0}})
    with pytest.raises(ValueError, match="kind"):
        TargetEvaluation("t", "ranking", {"mse": 1.0}, {"b": {"mse": 1.0}})  # type: ignore[arg-type]
    target = TargetEvaluation("t", "regression", {"mse": 1.0}, {"b": {"mse": 2.0}})
    with pytest.raises(ValueError, match="repeats"):
        EvaluationReport("m", None, (target, target))
    with pytest.raises(ValueError, match="ends before"):
        EvaluationReport("m", (5, 1), (target,))


def test_render_console_table():
    truth, pred, baselines = random_walk_case()
    target = TargetEvaluation("return_1", "regression", evaluate_regression(pred, truth), baselines)
    report = EvaluationReport("noise-model", None, (target,))
    table = render_console(report)
    assert isinstance(table, Table)
    console = Console(file=io.StringIO(), width=220, record=True)
    console.print(table)
    text = console.export_text()
    for word in ("return_1", "MSE", "persistence", "linear", "noise-model", "does not beat"):
        assert word in text
    assert len(table.rows) == 4


def html_case():
    truth, pred, baselines = random_walk_case()
    rng = np.random.default_rng(1)
    probs = random_probs(rng, 500, 3)
    labels = rng.integers(0, 3, 500)
    labels[:10] = -1
    cls_baselines = {"majority": evaluate_classification(np.full((500, 3), 1 / 3), labels)}
    report = EvaluationReport(
        "noise <model>",
        (1_700_000_000_000, 1_700_360_000_000),
        (
            TargetEvaluation("return_1", "regression", evaluate_regression(pred, truth), baselines),
            TargetEvaluation(
                "direction_1",
                "classification",
                evaluate_classification(probs, labels),
                cls_baselines,
            ),
        ),
    )
    return report, pred, truth, probs, labels


def test_write_html_is_one_self_contained_file(tmp_path):
    report, pred, truth, probs, labels = html_case()
    out = write_html(
        report,
        tmp_path / "sub" / "report.html",
        predictions=pred,
        truth=truth,
        probabilities={"direction_1": probs},
        labels={"direction_1": labels},
        max_points=300,
    )
    assert out == tmp_path / "sub" / "report.html"
    text = out.read_text(encoding="utf-8")
    assert text.count('class="plotly-graph-div"') == 3  # scatter, residuals, reliability
    assert text.count("* plotly.js v") == 1  # the library inlined exactly once
    assert "<script src=" not in text  # nothing to fetch: works offline
    assert "noise &lt;model&gt;" in text  # escaped
    assert "does not beat the persistence baseline on MSE" in text
    assert "300 of 1997 points" in text
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary left


def test_write_html_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    report, pred, truth, probs, labels = html_case()
    target = tmp_path / "report.html"
    with pytest.raises(ValueError, match="equal lengths"):
        write_html(report, target, predictions=pred[:-1], truth=truth)
    with pytest.raises(ValueError, match="same targets"):
        write_html(report, target, predictions={"a": pred}, truth={"b": truth})
    with pytest.raises(ValueError, match="same targets"):
        write_html(report, target, predictions=pred, truth=truth, probabilities=probs)
    with pytest.raises(ValueError, match="has 3 classes"):
        write_html(report, target, probabilities=probs, labels=labels + 1)
    assert list(tmp_path.iterdir()) == []
    target.write_text("previous report")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_html(report, target, predictions=pred, truth=truth)
    assert target.read_text() == "previous report"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # temporary removed

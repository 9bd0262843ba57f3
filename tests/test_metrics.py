"""Metrics against hand-computed examples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from fervid.model.metrics import (
    ClassificationReport,
    classification_report,
    confusion_matrix,
    cross_validation_report,
    paired_comparison,
)

CLASSES = ["happy", "sad", "anger"]
# Worked by hand. Truth: 3 happy, 2 sad, 2 anger; "anger" is never predicted.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 1, 1, 0, 1, 0]
# Confusion (rows truth, cols prediction):
#            happy sad anger
#   happy      2    1    0
#   sad        1    1    0
#   anger      1    1    0
CONFUSION = [[2, 1, 0], [1, 1, 0], [1, 1, 0]]
# accuracy = trace / total = (2 + 1 + 0) / 7 = 3/7
# happy: recall 2/3, precision 2/(2+1+1) = 1/2, f1 = 2 * 1/2 * 2/3 / (1/2 + 2/3) = 4/7, support 3
# sad:   recall 1/2, precision 1/(1+1+1) = 1/3, f1 = 2 * 1/3 * 1/2 / (1/3 + 1/2) = 2/5, support 2
# anger: recall 0/2 = 0, precision 0/0 undefined -> None, f1 undefined -> None, support 2
EXPECTED = {
    "happy": {"recall": 2 / 3, "precision": 1 / 2, "f1": 4 / 7, "support": 3},
    "sad": {"recall": 1 / 2, "precision": 1 / 3, "f1": 2 / 5, "support": 2},
    "anger": {"recall": 0.0, "precision": None, "f1": None, "support": 2},
}


def _assert_per_class(report: ClassificationReport) -> None:
    assert list(report.per_class) == CLASSES
    for name, expected in EXPECTED.items():
        got = report.per_class[name]
        assert got.keys() == expected.keys(), name
        for key, value in expected.items():
            assert got[key] == (None if value is None else pytest.approx(value)), (name, key)


def test_confusion_matrix_by_hand() -> None:
    matrix = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert matrix.dtype == np.int64
    assert matrix.tolist() == CONFUSION


def test_confusion_matrix_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="y_pred has 1"):
        confusion_matrix([0, 1], [0], 3)


def test_report_by_hand() -> None:
    report = classification_report(Y_TRUE, Y_PRED, CLASSES)
    assert report.accuracy == pytest.approx(3 / 7)
    assert report.confusion == CONFUSION
    _assert_per_class(report)


def test_string_labels_match_indices() -> None:
    report = classification_report([CLASSES[i] for i in Y_TRUE], np.array([CLASSES[i] for i in Y_PRED]), CLASSES)
    assert report == classification_report(np.array(Y_TRUE), Y_PRED, CLASSES)


def test_unknown_names_and_mixed_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="contempt"):
        classification_report(["happy", "contempt"], ["happy", "sad"], CLASSES)
    with pytest.raises(ValueError, match="all class indices"):
        classification_report([0, 1], [0.0, 1.0], CLASSES)
    with pytest.raises(ValueError, match="no samples"):
        classification_report([], [], CLASSES)


def test_class_absent_from_truth_has_undefined_recall() -> None:
    # "anger" predicted once but never true: recall 0/0 undefined, precision 0/1 = 0.0, support 0.
    report = classification_report([0, 1], [0, 2], CLASSES)
    assert report.per_class["anger"] == {"recall": None, "precision": 0.0, "f1": None, "support": 0}
    assert report.per_class["sad"] == {"recall": 0.0, "precision": None, "f1": None, "support": 1}
    assert "| anger | 0.0000 | n/a | n/a | 0 |" in report.to_markdown()


def test_report_serialises() -> None:
    report = classification_report(Y_TRUE, Y_PRED, CLASSES)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["confusion"] == CONFUSION
    assert data["per_class"]["sad"]["support"] == 2
    markdown = report.to_markdown()
    assert "0.4286" in markdown  # 3/7
    assert "| truth \\ pred | happy | sad | anger |" in markdown
    assert "| happy | 2 | 1 | 0 |" in markdown
    assert "| sad | 0.3333 | 0.5000 | 0.4000 | 2 |" in markdown


def test_cross_validation_report() -> None:
    # Fold 0: all 2 right (accuracy 1.0). Fold 1: the hand-worked example (3/7).
    report = cross_validation_report([([0, 1], ["happy", "sad"]), (Y_TRUE, Y_PRED)], CLASSES)
    mean = (1 + 3 / 7) / 2
    assert report.mean_accuracy == pytest.approx(mean)
    # Sample std (ddof=1) of two values a, b is |a - b| / sqrt(2).
    assert report.std_accuracy == pytest.approx((1 - 3 / 7) / math.sqrt(2))
    assert [fold.accuracy for fold in report.folds] == pytest.approx([1.0, 3 / 7])
    assert report.pooled.confusion == [[3, 1, 0], [1, 2, 0], [1, 1, 0]]
    assert report.pooled.accuracy == pytest.approx(5 / 9)
    assert report.pooled.per_class["sad"]["support"] == 3
    assert json.loads(json.dumps(report.to_dict()))["pooled"]["confusion"] == report.pooled.confusion
    markdown = report.to_markdown()
    assert f"{mean:.4f} ± {report.std_accuracy:.4f} over 2 folds" in markdown
    assert "| 2 | 0.4286 | 7 |" in markdown
    assert "| happy | 3 | 1 | 0 |" in markdown


def test_cross_validation_single_fold_and_empty() -> None:
    assert cross_validation_report([(Y_TRUE, Y_PRED)], CLASSES).std_accuracy == 0.0
    with pytest.raises(ValueError, match="no fold results"):
        cross_validation_report([], CLASSES)


def test_paired_comparison_by_hand() -> None:
    # Differences a - b: +0.1 on 9 folds, -0.1 on one; one fold tied more would leave the tests unchanged.
    a, b = [0.9] * 9 + [0.8, 0.7], [0.8] * 9 + [0.9, 0.7]
    result = paired_comparison(a, b)
    assert (result.wins, result.losses, result.ties) == (9, 1, 1)
    assert result.sign_p == pytest.approx(2 * (1 + 10) / 2**10)  # P(at most 1 of 10 fair coins) twice
    d = np.array(a) - np.array(b)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(11))
    assert result.mean_difference == pytest.approx(d.mean()) and result.std_difference == pytest.approx(d.std(ddof=1))
    assert result.t_p == pytest.approx(2 * stats.t.sf(t, 10)) and result.t_p < 0.05
    assert result.verdict() == "a better" and paired_comparison(b, a).verdict() == "b better"


def test_paired_comparison_noise_and_ties() -> None:
    noisy = paired_comparison([0.9, 0.8, 0.95, 0.85], [0.85, 0.9, 0.9, 0.8])
    assert noisy.verdict() == "within noise" and noisy.sign_p == pytest.approx(2 * (1 + 4) / 16)
    steady = paired_comparison([0.9, 0.95, 0.9], [0.85, 0.88, 0.86])  # t-test p < 0.05, but 3 folds: sign test p 0.25
    assert steady.t_p < 0.05 and steady.sign_p == pytest.approx(0.25) and steady.verdict() == "within noise"
    same = paired_comparison([1.0, 0.9], [1.0, 0.9])
    assert (same.ties, same.sign_p, same.t_p, same.verdict()) == (2, 1.0, 1.0, "within noise")
    with pytest.raises(ValueError, match="same folds"):
        paired_comparison([0.9, 0.8], [0.9])

"""Classification metrics: confusion matrix, per-class precision / recall / F1, and k-fold summaries.

Conventions follow scikit-learn's ``confusion_matrix`` (rows are the truth, columns the prediction); a precision
or recall whose denominator is zero (a class never predicted, or absent from the truth) is undefined: ``None``
(NULL in the database, "n/a" in tables), and so is the F1 built on it, so averages over classes are never
silently wrong (scikit-learn's ``zero_division=np.nan``). Cross-validation reports mean ± sample standard
deviation (``ddof=1``) of the per-fold accuracies, as the paper reports over its 10 folds, plus metrics pooled
over every fold's test predictions; two models on the same folds are compared fold by fold
(:func:`paired_comparison`: a sign test and a paired t-test on the accuracy differences).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Labels given either as class indices or as class names.
Labels = Sequence[int] | Sequence[str] | np.ndarray


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """The ``(num_classes, num_classes)`` int64 count matrix: ``[i, j]`` = samples of class ``i`` predicted ``j``."""
    true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} labels but y_pred has {pred.size}")
    for name, values in (("y_true", true), ("y_pred", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside [0, {num_classes})")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def _indices(labels: Labels, classes: Sequence[str], name: str) -> np.ndarray:
    """Labels as class indices: ints pass through (range-checked later), strings are looked up in ``classes``."""
    values = np.asarray(labels).reshape(-1)
    if values.dtype.kind in "iu" or values.size == 0:
        return values.astype(np.int64)
    if values.dtype.kind == "U" or all(isinstance(v, str) for v in values):
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in values if v not in index})
        if unknown:
            raise ValueError(f"{name} holds names not in classes {list(classes)}: {unknown}")
        return np.array([index[v] for v in values], dtype=np.int64)
    raise ValueError(f"{name} must be all class indices (int) or all class names (str), not {values.dtype}")


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


@dataclass
class ClassificationReport:
    """Accuracy, confusion matrix and per-class ``recall`` / ``precision`` / ``f1`` / ``support``.

    Undefined precision or recall (zero denominator) is ``None``; ``support`` is the number of true samples.
    """

    classes: list[str]
    accuracy: float
    confusion: list[list[int]]
    per_class: dict[str, dict[str, float | None]]

    @classmethod
    def from_confusion(cls, confusion: np.ndarray, classes: Sequence[str]) -> ClassificationReport:
        """The report that a confusion matrix (rows truth, columns prediction) implies."""
        confusion = np.asarray(confusion, dtype=np.int64)
        if confusion.shape != (len(classes), len(classes)):
            raise ValueError(f"confusion matrix of shape {confusion.shape} does not match {len(classes)} classes")
        total = int(confusion.sum())
        if total == 0:
            raise ValueError("no samples to report on")
        per_class: dict[str, dict[str, float | None]] = {}
        for i, name in enumerate(classes):
            hits, support, predicted = confusion[i, i], confusion[i].sum(), confusion[:, i].sum()
            recall, precision = _ratio(hits, support), _ratio(hits, predicted)
            per_class[name] = {
                "recall": recall,
                "precision": precision,
                "f1": _f1(precision, recall),
                "support": int(support),
            }
        return cls(
            classes=list(classes),
            accuracy=float(np.trace(confusion) / total),
            confusion=confusion.tolist(),
            per_class=per_class,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)

    def to_markdown(self) -> str:
        """Accuracy line, per-class table and confusion matrix (rows truth, columns prediction)."""
        lines = [f"**Accuracy:** {self.accuracy:.4f} ({sum(map(sum, self.confusion))} samples)", ""]
        lines += self._tables()
        return "\n".join(lines)

    def _tables(self) -> list[str]:
        metrics = [
            [c, _cell(m["precision"]), _cell(m["recall"]), _cell(m["f1"]), m["support"]]
            for c, m in self.per_class.items()
        ]
        lines = _markdown_table(["class", "precision", "recall", "f1", "support"], metrics)
        lines += ["", "Confusion matrix (rows: truth, columns: prediction)", ""]
        rows = [[c, *row] for c, row in zip(self.classes, self.confusion)]
        lines += _markdown_table(["truth \\ pred", *self.classes], rows)
        return lines


def classification_report(y_true: Labels, y_pred: Labels, classes: Sequence[str]) -> ClassificationReport:
    """Metrics of predictions against the truth; labels are indices into ``classes`` or class names."""
    true, pred = _indices(y_true, classes, "y_true"), _indices(y_pred, classes, "y_pred")
    return ClassificationReport.from_confusion(confusion_matrix(true, pred, len(classes)), classes)


@dataclass
class CrossValidationReport:
    """Per-fold reports, mean ± sample std (``ddof=1``; ``0.0`` for one fold) of their accuracies, and the
    report pooled over every fold's test predictions (confusion matrices summed)."""

    classes: list[str]
    folds: list[ClassificationReport]
    mean_accuracy: float
    std_accuracy: float
    pooled: ClassificationReport

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)

    def to_markdown(self) -> str:
        """Mean ± std, per-fold accuracies, then the pooled per-class and confusion tables."""
        lines = [
            f"**Accuracy:** {self.mean_accuracy:.4f} ± {self.std_accuracy:.4f} over {len(self.folds)} folds "
            f"(pooled {self.pooled.accuracy:.4f})",
            "",
        ]
        lines += _markdown_table(["fold", "accuracy", "samples"], [
            [i, f"{fold.accuracy:.4f}", sum(map(sum, fold.confusion))] for i, fold in enumerate(self.folds, start=1)
        ])
        lines += ["", "Pooled over all folds", ""]
        lines += self.pooled._tables()
        return "\n".join(lines)


def cross_validation_report(
    fold_results: Sequence[tuple[Labels, Labels]], classes: Sequence[str]
) -> CrossValidationReport:
    """Summarise k-fold results, one ``(y_true, y_pred)`` pair of test labels per fold."""
    if not fold_results:
        raise ValueError("no fold results to report on")
    folds = [classification_report(true, pred, classes) for true, pred in fold_results]
    accuracies = np.array([fold.accuracy for fold in folds])
    pooled = np.sum([fold.confusion for fold in folds], axis=0)
    return CrossValidationReport(
        classes=list(classes),
        folds=folds,
        mean_accuracy=float(accuracies.mean()),
        std_accuracy=float(accuracies.std(ddof=1)) if len(folds) > 1 else 0.0,
        pooled=ClassificationReport.from_confusion(pooled, classes),
    )


@dataclass(frozen=True)
class PairedComparison:
    """Model ``a`` against model ``b`` on the same folds: the mean and sample std of the per-fold accuracy
    differences ``a - b``, the folds ``a`` wins, loses and ties, the exact two-sided sign test's p (ties left
    out) and the two-sided paired t-test's p."""

    mean_difference: float
    std_difference: float
    wins: int
    losses: int
    ties: int
    sign_p: float
    t_p: float

    def verdict(self, alpha: float = 0.05) -> str:
        """``"a better"`` or ``"b better"`` where both tests' p are below ``alpha``, else ``"within noise"`` (folds
        share training images, which makes the t-test alone too ready to rank)."""
        if max(self.sign_p, self.t_p) >= alpha:
            return "within noise"
        return "a better" if self.mean_difference > 0 else "b better"


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> PairedComparison:
    """Compare two models by their accuracies on the same folds (``a[k]`` and ``b[k]`` tested on fold ``k``)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"need the same folds, at least two, for both models (got {len(a)} and {len(b)})")
    from scipy import stats

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    untied = wins + losses
    sign_p = min(1.0, 2 * sum(math.comb(untied, i) for i in range(min(wins, losses) + 1)) / 2**untied) if untied else 1.0
    mean, std = float(d.mean()), float(d.std(ddof=1))
    if std == 0:
        t_p = 1.0 if mean == 0 else 0.0  # every fold differs by the same amount: no noise to weigh it against
    else:
        t_p = float(2 * stats.t.sf(abs(mean) / (std / math.sqrt(len(d))), len(d) - 1))
    return PairedComparison(mean, std, wins, losses, len(d) - untied, sign_p, t_p)

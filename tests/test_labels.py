"""fervid.worker.labels: reading ground-truth ranges and rejecting bad files with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fervid.worker.labels import LabelRange, LabelsError, load_labels


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, "start,end,label\n2.5, 4, Happiness\n0,1.5,NE\n\n4,6,angry\n")
    labels = load_labels(path)
    assert labels.ranges == (
        LabelRange(0.0, 1.5, "neutral"),
        LabelRange(2.5, 4.0, "happy"),
        LabelRange(4.0, 6.0, "anger"),
    )
    assert labels.at(0.0) == "neutral" and labels.at(1.49) == "neutral"
    assert labels.at(1.5) is None and labels.at(2.0) is None
    assert labels.at(2.5) == "happy" and labels.at(4.0) == "anger"
    assert labels.at(6.0) is None and labels.at(100.0) is None


def test_column_order_and_extra_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffLabel,Start,note,End\nsad,1,blink,2\n")
    assert load_labels(path).ranges == (LabelRange(1.0, 2.0, "sad"),)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("start,end,label\n0,1,happy\n3,2,sad\n", 3, "not after start"),
        ("start,end,label\n0,1,happy\n2,2,sad\n", 3, "not after start"),
        ("start,end,label\n-1,1,happy\n", 2, "non-negative"),
        ("start,end,label\n0,1,happy\n1,2,bored\n", 3, "unknown label 'bored'"),
        ("start,end,label\n0,2,happy\n5,6,sad\n1,3,fear\n", 4, "overlaps line 2"),
        ("start,end,label\n0,one,happy\n", 2, "end 'one' is not a number"),
        ("start,end,label\n0,nan,happy\n", 2, "finite"),
        ("start,end,label\n0,1\n", 2, "missing value for label"),
        ("start,end,label\n0,,happy\n", 2, "missing value for end"),
        ("start,stop,label\n0,1,happy\n", 1, "header lacks column"),
    ],
)
def test_bad_rows(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(LabelsError, match=problem) as caught:
        load_labels(path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(("text", "problem"), [("", "empty file"), ("start,end,label\n", "no label rows")])
def test_empty_files(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(LabelsError, match=problem) as caught:
        load_labels(write(tmp_path, text))
    assert str(tmp_path) in str(caught.value) and isinstance(caught.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="cannot read"):
        load_labels(tmp_path / "absent.csv")

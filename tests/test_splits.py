"""The evaluation protocols' splits: partitions, stratification, subject-disjointness, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, needs_shared

from fervid.model.splits import (
    PROTOCOLS,
    holdout_split,
    kfold_splits,
    make_splits,
    subject_kfold_splits,
    subject_of,
    validation_split,
)

CK48 = SHARED / "datasets" / "ck48"

# 7 imbalanced classes, 203 samples (as names, like dataset folders).
LABELS = np.repeat(["anger", "contempt", "disgust", "fear", "happy", "sad", "surprise"], [27, 11, 35, 15, 41, 17, 57])


def _ck_like(subjects: int = 40, seed: int = 1) -> tuple[list[str], list[str]]:
    """CK+-like files: each subject has 1-4 sequences of 3 frames, each sequence one expression."""
    rng = np.random.default_rng(seed)
    names, labels = [], []
    for s in range(subjects):
        for seq in range(rng.integers(1, 5)):
            label = str(rng.choice(LABELS))
            for frame in range(3):
                names.append(f"{label}/S{s * 7 + 10:03d}_{seq + 1:03d}_{frame + 17:08d}.png")
                labels.append(label)
    return names, labels


def _assert_disjoint(train: np.ndarray, test: np.ndarray, n: int) -> None:
    assert train.dtype == test.dtype == np.int64
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))  # disjoint and complete


def _assert_partition(splits: list[tuple[np.ndarray, np.ndarray]], n: int) -> None:
    tests = np.concatenate([test for _, test in splits])
    assert np.array_equal(np.sort(tests), np.arange(n))  # every index exactly once in a test set
    for train, test in splits:
        _assert_disjoint(train, test, n)


def _same(a: list[tuple[np.ndarray, np.ndarray]], b: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for sa, sb in zip(a, b) for x, y in zip(sa, sb))


@pytest.mark.parametrize("stratify", [True, False])
def test_kfold_partitions(stratify: bool) -> None:
    splits = kfold_splits(LABELS, folds=10, seed=3, stratify=stratify)
    assert len(splits) == 10
    _assert_partition(splits, LABELS.size)
    sizes = [test.size for _, test in splits]
    assert max(sizes) - min(sizes) <= 1


def test_kfold_stratifies_each_class() -> None:
    splits = kfold_splits(LABELS, folds=10, seed=0)
    for name in np.unique(LABELS):
        counts = [int((LABELS[test] == name).sum()) for _, test in splits]
        assert max(counts) - min(counts) <= 1, (name, counts)


def test_unstratified_kfold_ignores_classes() -> None:
    # Sorted labels dealt without shuffling by class: some class must be spread unevenly over 10 folds at some seed.
    spreads = []
    for seed in range(5):
        splits = kfold_splits(LABELS, folds=10, seed=seed, stratify=False)
        spreads += [np.ptp([(LABELS[test] == "surprise").sum() for _, test in splits])]
    assert max(spreads) > 1


def test_splits_are_deterministic() -> None:
    names, labels = _ck_like()
    groups = [subject_of(n) for n in names]
    for protocol in PROTOCOLS:
        first = make_splits(protocol, labels, groups=groups, seed=5)
        assert _same(first, make_splits(protocol, labels, groups=groups, seed=5)), protocol
        assert not _same(first, make_splits(protocol, labels, groups=groups, seed=6)), protocol


def test_holdout_sizes_and_stratification() -> None:
    (train, test), = holdout_split(LABELS, test_fraction=0.1, seed=0)
    assert test.size == round(0.1 * LABELS.size) == 20
    _assert_disjoint(train, test, LABELS.size)
    for name, count in zip(*np.unique(LABELS, return_counts=True)):
        share = (LABELS[test] == name).sum()
        assert np.floor(0.1 * count) <= share <= np.ceil(0.1 * count), name
    (train, test), = holdout_split(LABELS, test_fraction=0.25, seed=0, stratify=False)
    assert (train.size, test.size) == (152, 51)


def test_holdout_keeps_both_sides_nonempty() -> None:
    (train, test), = holdout_split([0, 1, 1], test_fraction=0.01)
    assert (train.size, test.size) == (2, 1)
    with pytest.raises(ValueError, match="test_fraction"):
        holdout_split(LABELS, test_fraction=1.0)


def test_validation_split_inside_training_set() -> None:
    (train, _), = holdout_split(LABELS, seed=0)
    fit, val = validation_split(train, LABELS, fraction=0.1, seed=0)
    assert np.array_equal(np.sort(np.concatenate([fit, val])), train)
    assert np.intersect1d(fit, val).size == 0
    assert val.size == round(0.1 * train.size)
    for name, count in zip(*np.unique(LABELS[train], return_counts=True)):
        assert np.floor(0.1 * count) <= (LABELS[val] == name).sum() <= np.ceil(0.1 * count), name


def test_subject_of() -> None:
    assert subject_of("S010_004_00000017.png") == "S010"
    assert subject_of(Path("/data/ck48/S010/anger/S052_001_00000012.png")) == "S052"  # the file name, not the folder
    assert subject_of("subj-07_a.jpg", pattern=r"subj-\d+") == "subj-07"
    with pytest.raises(ValueError, match="img_001.png"):
        subject_of("ck/img_001.png")


def test_subject_folds_never_share_a_subject() -> None:
    names, labels = _ck_like()
    groups = [subject_of(n) for n in names]
    splits = subject_kfold_splits(labels, groups, folds=10, seed=0)
    _assert_partition(splits, len(names))
    subjects = np.array(groups)
    for train, test in splits:
        assert test.size > 0
        assert not set(subjects[train]) & set(subjects[test])
    largest = max(np.unique(subjects, return_counts=True)[1])
    sizes = [test.size for _, test in splits]
    assert max(sizes) - min(sizes) <= largest


@needs_shared
def test_subject_folds_on_ck48() -> None:
    files = sorted(CK48.glob("*/*.png"))
    labels = np.array([f.parent.name for f in files])
    subjects = np.array([subject_of(f) for f in files])
    splits = make_splits("subject-kfold", labels, groups=subjects)
    _assert_partition(splits, len(files))
    assert all(not set(subjects[train]) & set(subjects[test]) for train, test in splits)
    for name, count in zip(*np.unique(labels, return_counts=True)):
        shares = [(labels[test] == name).sum() for _, test in splits]
        assert max(abs(s - count / 10) for s in shares) <= 0.5 * count / 10 + 1, name  # approximately balanced


def test_errors() -> None:
    with pytest.raises(ValueError, match="cannot make 5 folds from 4 samples"):
        kfold_splits([0, 1, 0, 1], folds=5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        kfold_splits(LABELS, folds=1)
    with pytest.raises(ValueError, match="at least 2 groups"):
        subject_kfold_splits([0, 1, 0], ["S010"] * 3, folds=2)
    with pytest.raises(ValueError, match="cannot make 3 folds from 2 groups"):
        subject_kfold_splits([0, 1, 0], ["S010", "S011", "S011"], folds=3)
    with pytest.raises(ValueError, match="3 labels but 2 groups"):
        subject_kfold_splits([0, 1, 0], ["S010", "S011"], folds=2)
    with pytest.raises(ValueError, match="needs groups"):
        make_splits("subject-kfold", LABELS)
    with pytest.raises(ValueError, match="choose from holdout, kfold, subject-kfold"):
        make_splits("loso", LABELS)
    with pytest.raises(ValueError, match="at least 2 samples"):
        holdout_split([0])

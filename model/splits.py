"""Train/test splits for the paper's evaluation protocols.

``holdout``: one random (stratified) 90/10 split, as the paper uses on FER2013's pooled images.
``kfold``: stratified k-fold (10 folds in the paper, CK+48). ``subject-kfold``: k-fold with no subject in both
the training and the test set of a fold, the stricter person-independent protocol for CK+, whose file names
start with the subject (``S010_004_00000017.png``).

Every function returns ``(train_idx, test_idx)`` pairs of sorted int64 index arrays and is deterministic given
``seed``. Labels may be any hashable class values (indices or names).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

#: One ``(train_idx, test_idx)`` pair.
Split = tuple[np.ndarray, np.ndarray]

PROTOCOLS: tuple[str, ...] = ("holdout", "kfold", "subject-kfold")


def _codes(labels: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Labels as class codes ``0..C-1`` (in sorted class order)."""
    values = np.asarray(labels).reshape(-1)
    if values.size < 2:
        raise ValueError(f"need at least 2 samples to split, got {values.size}")
    return np.unique(values, return_inverse=True)[1].reshape(-1)


def _complement(test: np.ndarray, n: int) -> Split:
    mask = np.zeros(n, dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _check_folds(folds: int, units: int, what: str) -> None:
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    if folds > units:
        raise ValueError(f"cannot make {folds} folds from {units} {what}")


def holdout_split(
    labels: Sequence[Hashable] | np.ndarray, test_fraction: float = 0.1, seed: int = 0, stratify: bool = True
) -> list[Split]:
    """One random split with ``round(test_fraction * n)`` test samples (at least 1, at most ``n - 1``).

    Stratified, each class contributes its share of the test set, rounded by largest remainder so every class
    gets the floor or the ceiling of ``test_fraction * class_count``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    codes = _codes(labels)
    n = codes.size
    n_test = min(max(round(test_fraction * n), 1), n - 1)
    rng = np.random.default_rng(seed)
    if not stratify:
        return [_complement(rng.permutation(n)[:n_test], n)]
    counts = np.bincount(codes)
    quota = counts * n_test / n
    take = np.floor(quota).astype(np.int64)
    order = rng.permutation(counts.size)  # random order among equal remainders
    extra = order[np.argsort(-(quota - take)[order], kind="stable")][: n_test - take.sum()]
    take[extra] += 1
    test = [rng.permutation(np.flatnonzero(codes == c))[:k] for c, k in enumerate(take)]
    return [_complement(np.concatenate(test), n)]


def validation_split(
    train_idx: np.ndarray, labels: Sequence[Hashable] | np.ndarray, fraction: float = 0.1, seed: int = 0
) -> Split:
    """A stratified ``(train_idx, val_idx)`` split of a training set (``labels`` cover the whole data set)."""
    train_idx = np.asarray(train_idx, dtype=np.int64)
    (train, val), = holdout_split(np.asarray(labels)[train_idx], fraction, seed, stratify=True)
    return train_idx[train], train_idx[val]


def kfold_splits(
    labels: Sequence[Hashable] | np.ndarray, folds: int = 10, seed: int = 0, stratify: bool = True
) -> list[Split]:
    """k folds whose test sets partition the data, fold sizes differing by at most one.

    Stratified, the samples are shuffled within each class, laid out class after class and dealt to the folds
    in turn, so each class's count per fold also differs by at most one.
    """
    codes = _codes(labels)
    _check_folds(folds, codes.size, "samples")
    rng = np.random.default_rng(seed)
    order = rng.permutation(codes.size)
    if stratify:
        order = order[np.argsort(codes[order], kind="stable")]
    fold_of = np.empty(codes.size, dtype=np.int64)
    fold_of[order] = np.arange(codes.size) % folds
    return [_complement(np.flatnonzero(fold_of == f), codes.size) for f in range(folds)]


def subject_kfold_splits(
    labels: Sequence[Hashable] | np.ndarray, groups: Sequence[Hashable], folds: int = 10, seed: int = 0
) -> list[Split]:
    """k folds whose test sets partition the data and never share a group (subject) with their training set.

    Greedy: groups go largest first (a seeded shuffle orders groups of equal size). Each goes to the fold holding
    fewest samples of the group's classes among the folds it can join without fold sizes spreading by more than
    the largest group (the smallest fold always qualifies); ties go to the smaller fold, then at random.
    Guaranteed: the test sets partition the data, no group is in both sets of a fold, and fold sizes differ by at
    most the largest group's size. Class proportions are balanced only approximately.
    """
    codes = _codes(labels)
    group_values = np.asarray(groups).reshape(-1)
    if group_values.size != codes.size:
        raise ValueError(f"{codes.size} labels but {group_values.size} groups")
    names, group_of = np.unique(group_values, return_inverse=True)
    group_of = group_of.reshape(-1)
    if names.size < 2:
        raise ValueError(f"need at least 2 groups for subject folds, got {names.size}")
    _check_folds(folds, names.size, "groups")
    rng = np.random.default_rng(seed)
    group_classes = np.zeros((names.size, codes.max() + 1), dtype=np.int64)
    np.add.at(group_classes, (group_of, codes), 1)
    sizes = group_classes.sum(axis=1)
    shuffled = rng.permutation(names.size)
    fold_classes = np.zeros((folds, group_classes.shape[1]), dtype=np.int64)
    fold_of_group = np.empty(names.size, dtype=np.int64)
    for g in shuffled[np.argsort(-sizes[shuffled], kind="stable")]:
        fold_sizes = fold_classes.sum(axis=1)
        too_big = fold_sizes + sizes[g] > fold_sizes.min() + sizes.max()
        overlap = fold_classes @ group_classes[g]
        fold = np.lexsort((rng.random(folds), fold_sizes, overlap, too_big))[0]
        fold_classes[fold] += group_classes[g]
        fold_of_group[g] = fold
    fold_of = fold_of_group[group_of]
    return [_complement(np.flatnonzero(fold_of == f), codes.size) for f in range(folds)]


def subject_of(path: str | Path, pattern: str = r"S\d+") -> str:
    """The subject in a file name: the first match of ``pattern`` (CK+: ``S010_004_00000017.png`` → ``S010``)."""
    name = Path(path).name
    match = re.search(pattern, name)
    if match is None:
        raise ValueError(f"no subject matching {pattern!r} in file name {name!r}")
    return match.group(0)


def make_splits(
    protocol: str,
    labels: Sequence[Hashable] | np.ndarray,
    *,
    folds: int = 10,
    test_fraction: float = 0.1,
    groups: Sequence[Hashable] | None = None,
    seed: int = 0,
) -> list[Split]:
    """The stratified splits of one of :data:`PROTOCOLS`; ``subject-kfold`` needs ``groups``."""
    if protocol == "holdout":
        return holdout_split(labels, test_fraction, seed)
    if protocol == "kfold":
        return kfold_splits(labels, folds, seed)
    if protocol == "subject-kfold":
        if groups is None:
            raise ValueError("the subject-kfold protocol needs groups (one subject per sample)")
        return subject_kfold_splits(labels, groups, folds, seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")

"""Persons: a job's tracks linked by face identity, across gaps, occlusions, cuts and segment borders.

Average-linkage agglomerative clustering (UPGMA) of the tracks by the mean distance between their face
descriptors: the closest two clusters merge while that distance is below the threshold, except that two
clusters merge never when one of their tracks is on screen at the same time as one of the other's (a
cannot-link constraint: one person shows one face at a time). A track without descriptors is a person of its own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np


def track_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The mean Euclidean distance between the descriptors (rows) of two tracks."""
    return float(np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1).mean())


def link_persons(
    tracks: Sequence[int],
    descriptors: Mapping[int, np.ndarray],
    together: Collection[tuple[int, int]],
    threshold: float,
) -> dict[int, int]:
    """``{track: person}`` for ``tracks`` (in order of first appearance; persons are numbered in that order).

    ``descriptors`` holds each track's ``(m, D)`` descriptors (tracks without are left alone); ``together`` the
    pairs of tracks seen in one frame.
    """
    index = {track: i for i, track in enumerate(tracks)}
    n = len(tracks)
    distance = np.full((n, n), np.inf)
    for i, a in enumerate(tracks):
        for j in range(i + 1, n):
            b = tracks[j]
            if a in descriptors and b in descriptors and len(descriptors[a]) and len(descriptors[b]):
                distance[i, j] = distance[j, i] = track_distance(descriptors[a], descriptors[b])
    apart = np.zeros((n, n), dtype=bool)
    for a, b in together:
        if a in index and b in index:
            apart[index[a], index[b]] = apart[index[b], index[a]] = True
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    alive = np.ones(n, dtype=bool)
    while True:
        allowed = np.where(apart | ~alive[:, None] | ~alive[None, :], np.inf, distance)
        np.fill_diagonal(allowed, np.inf)
        if not np.isfinite(allowed).any():
            break
        i, j = divmod(int(np.argmin(allowed)), n)
        if allowed[i, j] >= threshold:
            break
        i, j = min(i, j), max(i, j)
        ni, nj = len(members[i]), len(members[j])
        distance[i] = distance[:, i] = (ni * distance[i] + nj * distance[j]) / (ni + nj)  # Lance–Williams, average
        apart[i] = apart[:, i] = apart[i] | apart[j]
        members[i] += members.pop(j)
        alive[j] = False
    clusters = sorted(members.values(), key=min)
    return {tracks[i]: person for person, cluster in enumerate(clusters) for i in cluster}

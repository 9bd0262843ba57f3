"""Where a track must not continue, and the few good faces per track kept for identity.

A track ends at a hard cut (:class:`~fervid.worker.cuts.CutDetector`) and where its face changes abruptly (the
box's normalised thumbnail differs by more than :data:`FACE_CHANGE` from each of the track's last :data:`RECENT`
samples': a face that turns away and back, or moves its head, resembles one of them). Away from a cut, a change
must last: it is suspected when the next sample's face differs from the old ones too, and the track ends there, one
sample after the change (on the crowded scene of benchmarks/throughput.py 34 of 57 changes were gone by the next
sample: a blink, a blur, a box that jumped). With identity on, a suspected change is verified: the track goes on
only when the face descriptors before and after lie within the identity threshold, so a cut that keeps the person
(a new camera angle) keeps the track and a cut to another person framed at the same place ends it. The last
descriptor made of a track's face is its reference for the next check, so a check usually describes one face, the
new one. Without identity, every suspected change ends the track. A cut threshold of 1 turns both checks off (jobs
with ``--detector none``, whose "face" is the whole image).

Per track the :data:`KEEP` best faces by :func:`~fervid.model.identity.face_quality` are kept as small regions and
described when the segment ends (:meth:`TrackFaces.descriptors`).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from fervid.model.align import Located as Face
from fervid.model.identity import Embedder, FaceRegion, face_quality, face_region
from fervid.worker.cuts import CutDetector
from fervid.worker.track import IoUTracker

#: Faces described per track and segment.
KEEP = 2
#: Mean absolute difference of two normalised 16×16 face thumbnails above which a face changed (same person at
#: 5 samples/s on the shared clip: at most 0.44; different persons: 0.4-1.3).
FACE_CHANGE = 0.6
#: A track's recent thumbnails a new face is compared with: on the first 10 s of the crowded scene of
#: benchmarks/throughput.py (20 copies of the shared clip's face, 62-109 px, 5 samples/s) 1 face in 15 differed from
#: the track's last one by more than FACE_CHANGE, 1 in 35 from each of its last 4.
RECENT = 4


def face_thumbnail(image: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
    """The box's content as a 16×16 gray thumbnail with zero mean and unit variance (``None``: empty box)."""
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), image.shape[1]), min(int(np.ceil(box[3])), image.shape[0])
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    patch = image[y1:y2, x1:x2]
    gray = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY) if patch.ndim == 3 else patch
    small = cv2.resize(gray, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (small - small.mean()) / (small.std() + 1e-3)


@dataclass(order=True)
class _Candidate:
    quality: float
    t: float = field(compare=False)
    region: FaceRegion = field(compare=False)


class TrackFaces:
    """Follows one segment's tracks: splits them at cuts and identity changes, keeps their best faces."""

    def __init__(
        self, tracker: IoUTracker, cut_threshold: float, embedder: Embedder | None, identity_threshold: float
    ) -> None:
        self.tracker, self.embedder, self.identity_threshold = tracker, embedder, identity_threshold
        self.cuts = CutDetector(cut_threshold)
        self._recent: dict[int, deque[np.ndarray]] = {}  # track -> its last RECENT thumbnails
        self._last: dict[int, FaceRegion] = {}  # track -> its last face
        self._reference: dict[int, np.ndarray] = {}  # track -> the last descriptor made of its face
        self._changing: set[int] = set()  # tracks whose last face differed from their recent ones, away from a cut
        self._best: dict[int, list[_Candidate]] = {}  # track -> min-heap of its best faces
        self.verified = 0  # descriptor comparisons made at suspected changes

    def update(self, image: np.ndarray, time: float, faces: Sequence[Face]) -> list[int]:
        """Track the faces of the sample at ``time``: their track ids."""
        cut = self.cuts(image)
        ids = self.tracker.update(time, [f.box for f in faces])
        for j, (face, track) in enumerate(zip(faces, ids)):
            thumb = face_thumbnail(image, face.box)
            region = face_region(image, face.box)
            if track in self._last:
                moved = self._moved(thumb, self._recent[track])
                if moved and not cut and track not in self._changing:  # a change must last: look again next sample
                    self._changing.add(track)
                    continue  # the face stays out of the track's recent looks and last face until then
                self._changing.discard(track)
                changed, descriptor = self._changed(cut or moved, region, self._last[track], self._reference.get(track))
                if changed:
                    track = ids[j] = self.tracker.split(track)
                if descriptor is not None:
                    self._reference[track] = descriptor
            recent = self._recent.setdefault(track, deque(maxlen=RECENT))
            if thumb is not None:
                recent.append(thumb)
            self._last[track] = region
            if self.embedder is not None:
                self._offer(track, _Candidate(face_quality(face.face, face.box), time, region))
        return ids

    def _moved(self, thumb: np.ndarray | None, recent: Sequence[np.ndarray]) -> bool:
        """Whether a face differs from each of its track's recent looks (never with the checks off)."""
        if self.cuts.threshold >= 1:  # checks off (--detector none: the image is the face)
            return False
        return thumb is None or all(float(np.abs(thumb - old).mean()) > FACE_CHANGE for old in recent)

    def _changed(
        self, suspected: bool, region: FaceRegion, last: FaceRegion, reference: np.ndarray | None
    ) -> tuple[bool, np.ndarray | None]:
        """Whether the track's face changed to another (a new track starts), and the new face's descriptor if
        one was made; ``reference``: the last descriptor of the track's face (else its last face is described)."""
        if not suspected:
            return False, None
        if self.embedder is None:
            return True, None
        self.verified += 1
        descriptor = self.embedder(region)
        before = reference if reference is not None else self.embedder(last)
        return float(np.linalg.norm(descriptor - before)) >= self.identity_threshold, descriptor

    def _offer(self, track: int, candidate: _Candidate) -> None:
        best = self._best.setdefault(track, [])
        if len(best) < KEEP:
            heapq.heappush(best, candidate)
        elif candidate.quality > best[0].quality:
            heapq.heapreplace(best, candidate)

    def descriptors(self) -> list[dict[str, Any]]:
        """A row per kept face: ``track_id``, ``t``, ``quality`` and the ``descriptor`` (float32 bytes)."""
        if self.embedder is None:
            return []
        kept = [(track, c) for track, best in sorted(self._best.items()) for c in sorted(best, reverse=True)]
        described = self.embedder.many([c.region for _, c in kept])
        return [
            {"track_id": track, "t": c.t, "quality": c.quality, "descriptor": d.astype("<f4").tobytes()}
            for (track, c), d in zip(kept, described)
        ]

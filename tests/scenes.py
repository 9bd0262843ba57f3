"""Generated videos of real faces for identity and smoothing checks: shots of the shared clip and of CK+ subjects
(whose identities are known from their file names), cut together.

A :class:`Shot` paints the frame at a time within it; :func:`write_shots` writes shots back to back, so every shot
boundary is a hard cut. CK+ faces (48×48) are upscaled and set into a heavily blurred copy of their own
surroundings, so that the frame holds one sharp face and no mirrored copies of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from conftest import SHARED
from videos import make_video

from fervid.expressions import canonical

CLIP = SHARED / "videos" / "face_clip.mp4"
CK48 = SHARED / "datasets" / "ck48"
SIZE = (640, 360)


@dataclass(frozen=True)
class Shot:
    """``seconds`` of video; ``paint(t)`` draws the uint8 BGR frame of :data:`SIZE` at ``t`` seconds into it."""

    seconds: float
    paint: Callable[[float], np.ndarray]


def clip_frames(path: Path = CLIP) -> tuple[list[np.ndarray], float]:
    """Every frame of the shared clip (BGR) and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)], rate


def clip_shot(
    frames: Sequence[np.ndarray], rate: float, seconds: float, *, scale: float = 1.0, shift: tuple[int, int] = (0, 0),
    mirror: bool = False, region: tuple[int, int, int, int] | None = None,
) -> Shot:  # fmt: skip
    """The clip, looped, zoomed by ``scale`` about its centre, shifted by ``shift`` pixels and optionally mirrored;
    drawn into ``region`` (x, y, width, height) of a black frame, or over the whole frame."""
    x, y, width, height = region or (0, 0, *SIZE)

    def paint(t: float) -> np.ndarray:
        image = frames[int(t * rate) % len(frames)]
        image = cv2.flip(image, 1) if mirror else image
        h, w = image.shape[:2]
        matrix = np.array([[scale, 0, (1 - scale) * w / 2 + shift[0]], [0, scale, (1 - scale) * h / 2 + shift[1]]])
        warped = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_CONSTANT)
        frame = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        frame[y : y + height, x : x + width] = cv2.resize(warped, (width, height), interpolation=cv2.INTER_AREA)
        return frame

    return Shot(seconds, paint)


def ck_face(path: Path, side: int = 150) -> np.ndarray:
    """A CK+ crop upscaled to ``side`` pixels, BGR."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(cv2.resize(gray, (side, side), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)


def face_scene(face: np.ndarray, centre: tuple[int, int], seed: int = 0) -> Callable[[float], np.ndarray]:
    """A painter of ``face`` centred at ``centre`` in a blurred copy of its surroundings, with a little sensor
    noise and drift per frame."""
    side = face.shape[0]
    pad_x, pad_y = SIZE[0], SIZE[1]
    context = cv2.copyMakeBorder(face, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REFLECT_101)
    cx, cy = pad_x + side // 2, pad_y + side // 2
    background = cv2.GaussianBlur(context, (0, 0), 25)[cy - centre[1] : cy - centre[1] + SIZE[1], cx - centre[0] : cx - centre[0] + SIZE[0]]
    rng = np.random.default_rng(seed)

    def paint(t: float) -> np.ndarray:
        frame = background.copy()
        dx, dy = int(round(3 * np.sin(t * 1.3))), int(round(2 * np.cos(t * 0.9)))
        x, y = centre[0] - side // 2 + dx, centre[1] - side // 2 + dy
        frame[y : y + side, x : x + side] = face
        noise = rng.normal(0, 3, frame.shape)
        return np.clip(frame + noise, 0, 255).astype(np.uint8)

    return paint


def still_shot(face: np.ndarray, seconds: float, centre: tuple[int, int] = (320, 180), seed: int = 0) -> Shot:
    """``face`` held for ``seconds`` (see :func:`face_scene`)."""
    return Shot(seconds, face_scene(face, centre, seed))


def empty_shot(frames: Sequence[np.ndarray], seconds: float) -> Shot:
    """The clip's first frame blurred beyond recognition: its scene with nobody in it."""
    image = cv2.resize(cv2.GaussianBlur(frames[0], (0, 0), 30), SIZE, interpolation=cv2.INTER_AREA)
    return Shot(seconds, lambda t: image)


def beside(left: Shot, right: Shot) -> Shot:
    """Two shots side by side, each its half of the frame (the left one's halves, the right one's)."""
    half = SIZE[0] // 2

    def paint(t: float) -> np.ndarray:
        frame = left.paint(t).copy()
        frame[:, half:] = right.paint(t)[:, half:]
        return frame

    return Shot(min(left.seconds, right.seconds), paint)


def write_shots(path: Path, shots: Sequence[Shot], fps: int = 25) -> Path:
    """The shots cut together into one video at ``fps``."""
    starts = np.cumsum([0.0, *(shot.seconds for shot in shots)])

    def paint(index: int, time: float) -> np.ndarray:
        k = min(int(np.searchsorted(starts, time, side="right")) - 1, len(shots) - 1)
        return shots[k].paint(time - starts[k])

    return make_video(path, seconds=float(starts[-1]), fps=fps, size=SIZE, pattern=paint)


def ck_subjects(count: int, labels: Sequence[str] = ("happy", "surprise", "sadness", "anger")) -> list[dict[str, Path]]:
    """``count`` CK+ subjects that show every one of ``labels``: per subject, one peak image per label."""
    found: dict[str, dict[str, Path]] = {}
    for label in labels:
        for path in sorted((CK48 / label).glob("*.png")):
            found.setdefault(path.name[:4], {}).setdefault(label, path)
    complete = [faces for _, faces in sorted(found.items()) if len(faces) == len(labels)]
    return complete[:count]


#: The expressions of :func:`posed_sequence`, and how long each is held.
POSED = ("happy", "surprise", "sadness", "anger")
HOLD = 3.0


def posed_sequence(folder: Path, subjects: int) -> tuple[Path, Path]:
    """A video of ``subjects`` CK+ subjects, each posing the :data:`POSED` expressions for :data:`HOLD` seconds
    (hard cuts between subjects), and its labels file (``start,end,label``)."""
    shots, ranges, t = [], [], 0.0
    for n, faces in enumerate(ck_subjects(subjects, POSED)):
        for label in POSED:
            shots.append(still_shot(ck_face(faces[label], 160), HOLD, seed=n))
            ranges.append(f"{t:.2f},{t + HOLD:.2f},{canonical(label)}")
            t += HOLD
    video = write_shots(folder / "posed.mp4", shots)
    labels = folder / "posed.csv"
    labels.write_text("start,end,label\n" + "\n".join(ranges) + "\n")
    return video, labels

"""The face crop: detector output → the network's gray ``size``×``size`` input, one definition for training,
evaluation and jobs.

A :class:`CropSpec` says how a face is cut out of a frame, and is stored in every checkpoint's ``preprocessing``
(``"crop"``), so the network always sees faces framed as it was trained:

* with landmarks (CenterFace's five points), a least-squares similarity transform (rotation, uniform scale,
  translation; Umeyama, IEEE TPAMI 13(4), 1991) maps the eye centres and the mouth centre onto the spec's
  ``template`` — the head's roll is levelled and the face's scale and position fixed;
* without landmarks (Haar, or a landmark-less detection), the crop is the square that the spec's ``boxes`` entry
  for that detector places relative to the box (centre offset and side, as fractions of the box's longer side);
  ``"none"`` — the whole image taken as the face — uses the ``"none"`` entry relative to the whole image.

Out-of-frame pixels repeat the frame's edge. The template and the box entries are calibrated on the training
images (:func:`calibrate`): faces placed into a larger frame as :func:`training_frame` makes them are detected
with the production detector and the median landmark positions in the original crop become the template, so a
detector crop of a training-style face reproduces the framing the training faces have. The spec's ``context``
says what surrounds a face crop in that frame where the aligned crop reaches beyond it: ``"black"`` (version 1),
or ``"reflect"`` — the crop's border reflection, as a face's surroundings continue in a real frame; the face is
detected in the black frame either way (CenterFace finds more faces there). Checkpoints without a ``"crop"``
entry keep their exact old behaviour: the box's square enlarged by ``margin`` on each side
(:func:`fervid.model.preprocess.crop_face`), and the whole image for ``"none"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from fervid.model.config import check_context
from fervid.model.detect import Detection, FaceDetector
from fervid.model.preprocess import MARGIN, crop_face, to_gray

#: Version of the crop definition written into checkpoints: 1 has no ``context`` (black), 2 names it.
CROP_VERSION = 2
#: How :func:`training_frame` places a training crop into a frame: upscaled by ``FRAME_SCALE``, then a border
#: of ``FRAME_PAD`` times the upscaled side on each side (so that the detector sees a face of a size it finds).
FRAME_SCALE = 3
FRAME_PAD = 0.5
#: Images up to this side are taken as face crops (folders such as FER2013 or CK+): see :func:`locate_faces`.
CROP_SIDE = 256
#: A box entry: centre offset ``(dx, dy)`` and ``side``, as fractions of the box's longer side.
BoxRule = tuple[float, float, float]


@dataclass(frozen=True)
class CropSpec:
    """How a face is cut out: the landmark template (left eye, right eye, mouth centre, as fractions of the crop's
    side, in image left-to-right order), one box rule per detector name (and ``"none"``), and what surrounds a
    face crop in its :func:`training_frame` (one of :data:`~fervid.settings.CROP_CONTEXTS`)."""

    template: tuple[tuple[float, float], ...]
    boxes: Mapping[str, BoxRule] = field(default_factory=dict)
    context: str = "black"

    def __post_init__(self) -> None:
        check_context(self.context)

    def box_rule(self, detector: str) -> BoxRule:
        """The box rule for ``detector``; a detector without a calibrated rule uses the template's own square."""
        return tuple(self.boxes.get(detector, self.boxes.get("none", (0.0, 0.0, 1.0))))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's record; a black context is written as version 1, which every fervid since reads."""
        record: dict[str, Any] = {
            "version": 1 if self.context == "black" else CROP_VERSION,
            "template": [list(p) for p in self.template],
            "boxes": {k: list(v) for k, v in self.boxes.items()},
        }
        if self.context != "black":
            record["context"] = self.context
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CropSpec:
        version = int(data.get("version", 0))
        if not 1 <= version <= CROP_VERSION:
            raise ValueError(f"unknown crop definition version {version} (this fervid reads 1 to {CROP_VERSION})")
        template = tuple((float(x), float(y)) for x, y in data["template"])
        if len(template) != 3:
            raise ValueError(f"a crop template has 3 points (eyes, mouth centre), not {len(template)}")
        boxes = {str(k): (float(v[0]), float(v[1]), float(v[2])) for k, v in data.get("boxes", {}).items()}
        return cls(template, boxes, str(data.get("context", "black")))


@dataclass(frozen=True)
class FaceCropper:
    """Cuts faces out of frames for one checkpoint's ``preprocessing`` and one detector name.

    ``spec`` ``None`` is the old definition: the box's square enlarged by ``margin``, the whole image for
    ``"none"``.
    """

    size: int
    detector: str
    spec: CropSpec | None = None
    margin: float = MARGIN

    @classmethod
    def for_checkpoint(cls, preprocessing: Mapping[str, Any], size: int, detector: str) -> FaceCropper:
        crop = preprocessing.get("crop")
        spec = CropSpec.from_dict(crop) if crop else None
        return cls(size, detector, spec, float(preprocessing.get("margin", MARGIN)))

    @property
    def context(self) -> str:
        """What surrounds a face crop in its :func:`training_frame` (black for the old definition)."""
        return self.spec.context if self.spec else "black"

    def __call__(self, image: np.ndarray, face: Detection | None) -> np.ndarray:
        """The gray uint8 crop of ``face`` in ``image`` (``None``: the whole image is the face), ``size``×``size``
        (the old definition: at the image's resolution, for :func:`~fervid.model.preprocess.preprocess` to resize
        after equalising, as it always did)."""
        if self.spec is None:
            return to_gray(image if face is None else crop_face(image, face.box, self.margin))
        if face is not None and face.landmarks is not None:
            matrix = similarity(key_points(np.asarray(face.landmarks)), np.asarray(self.spec.template) * self.size)
            return warp(image, matrix, self.size)
        height, width = image.shape[:2]
        box = (0.0, 0.0, float(width), float(height)) if face is None else face.box
        rule = self.spec.box_rule("none" if face is None else self.detector)
        return warp(image, square_matrix(box, rule, self.size), self.size)


def key_points(landmarks: np.ndarray) -> np.ndarray:
    """CenterFace's five points (left eye, right eye, nose, left and right mouth corners) → eyes and mouth centre."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    return np.stack([landmarks[0], landmarks[1], (landmarks[3] + landmarks[4]) / 2])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 similarity transform (no reflection) that maps the points ``src`` onto ``dst`` in least squares."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    a, b = src - src_mean, dst - dst_mean
    cov = b.T @ a / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    variance = (a**2).sum() / len(src)
    scale = float((s * np.diag(d)).sum() / variance) if variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def square_matrix(box: Sequence[float], rule: BoxRule, size: int) -> np.ndarray:
    """The 2×3 transform that maps the square a box rule places on ``box`` onto the ``size``×``size`` output."""
    x1, y1, x2, y2 = box
    longest = max(x2 - x1, y2 - y1, 1e-6)
    dx, dy, side = rule
    cx, cy, side = (x1 + x2) / 2 + dx * longest, (y1 + y2) / 2 + dy * longest, side * longest
    scale = size / side
    return np.array([[scale, 0.0, size / 2 - scale * cx], [0.0, scale, size / 2 - scale * cy]])


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The gray ``size``×``size`` output of the 2×3 ``matrix`` (frame → output pixels, pixel centres at
    integers) applied to ``image``; edge pixels repeat beyond the frame.

    When the face shrinks, the region it comes from is first reduced with pixel-area averaging to about the output's
    scale, so the result is not aliased; the remaining warp is bilinear.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    # Only the region the output comes from (and two pixels around it, for the interpolation) is converted and
    # warped: the same pixels as warping the whole frame, at a fraction of the cost in a large frame.
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64) @ inverse.T
    height, width = image.shape[:2]
    x0, y0 = (min(max(int(np.floor(v)) - 2, 0), limit - 1) for v, limit in zip(corners.min(0), (width, height)))
    x1 = max(min(int(np.ceil(corners[:, 0].max())) + 2, width), x0 + 1)
    y1 = max(min(int(np.ceil(corners[:, 1].max())) + 2, height), y0 + 1)
    gray = to_gray(image[y0:y1, x0:x1])
    fx = fy = 1.0
    if scale < 0.75:
        out_w, out_h = max(round(gray.shape[1] * scale), 1), max(round(gray.shape[0] * scale), 1)
        fx, fy = gray.shape[1] / out_w, gray.shape[0] / out_h
        gray = cv2.resize(gray, (out_w, out_h), interpolation=cv2.INTER_AREA)
    # region pixel (u, v) has its centre at frame ((u + 0.5) fx - 0.5 + x0, (v + 0.5) fy - 0.5 + y0)
    to_frame = np.array([[fx, 0.0, 0.5 * fx - 0.5 + x0], [0.0, fy, 0.5 * fy - 0.5 + y0], [0.0, 0.0, 1.0]])
    return cv2.warpAffine(gray, matrix @ to_frame, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def training_frame(crop: np.ndarray) -> tuple[np.ndarray, float, int]:
    """A face crop placed into a larger frame for the detector: gray, upscaled ``FRAME_SCALE``× (bicubic) and
    surrounded by a black border; returns the frame, the scale and the border in frame pixels.

    CenterFace finds 88 % of FER+ training faces in such frames (3×, border 0.5), against 75 % with a reflected
    or repeated border, whose mirrored part-faces it finds instead, and under 60 % at 2×.
    """
    gray = to_gray(crop)
    up = cv2.resize(gray, (gray.shape[1] * FRAME_SCALE, gray.shape[0] * FRAME_SCALE), interpolation=cv2.INTER_CUBIC)
    pad = int(round(FRAME_PAD * max(up.shape)))
    return cv2.copyMakeBorder(up, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0), float(FRAME_SCALE), pad


def central_face(faces: Sequence[Detection], shape: tuple[int, ...]) -> Detection | None:
    """Of the faces found in a :func:`training_frame`, the one whose centre is nearest the frame's centre."""
    if not faces:
        return None
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2)


@dataclass(frozen=True)
class Located:
    """A face to crop: the image to cut it from (a crop's :func:`training_frame`, or the image itself), the
    detection in that image (``None``: the whole image is the face) and its box in the original image."""

    image: np.ndarray
    face: Detection | None
    box: tuple[float, float, float, float]


def locate_faces(
    image: np.ndarray, detector: FaceDetector | None, fallback: FaceDetector | None = None, context: str = "black"
) -> list[Located]:
    """The faces of an image, for training, evaluation and image jobs alike.

    An image up to :data:`CROP_SIDE` pixels is a face crop: it is placed into a black :func:`training_frame` and
    its central face is taken, to be cut from the crop's ``context`` frame (the crop definition's); when none is
    found (or without a detector) the whole image is the face. A larger image
    is a frame: every face found in it; where there is none, the most confident face ``fallback`` (the detector at
    a lower threshold) finds, if any: a photo is taken to show a face.
    """
    height, width = image.shape[:2]
    whole = [Located(image, None, (0.0, 0.0, float(width), float(height)))]
    if detector is None:
        return whole
    if max(height, width) > CROP_SIDE:
        faces = detector.detect(image)
        if not faces and fallback is not None:
            faces = sorted(fallback.detect(image), key=lambda f: f.score)[-1:]  # the likeliest one, if any
        return [Located(image, face, face.box) for face in faces]
    frame, scale, pad = training_frame(image)
    face = central_face(detector.detect(frame), frame.shape)
    if face is None:
        return whole
    x1, y1, x2, y2 = ((v - pad) / scale for v in face.box)
    if context == "reflect":  # the same upscaled crop, bordered by its reflection instead of black
        inner = frame[pad : frame.shape[0] - pad, pad : frame.shape[1] - pad]
        frame = cv2.copyMakeBorder(inner, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    return [Located(frame, face, (x1, y1, x2, y2))]


def calibrate(crops: Iterable[np.ndarray], detectors: Mapping[str, FaceDetector]) -> tuple[CropSpec, dict[str, Any]]:
    """A :class:`CropSpec` under which detector crops of training-style faces reproduce the training crops'
    framing: the median landmark positions in the original crops (from the detectors that find landmarks), made
    mirror-symmetric, become the template; each detector's median box, seen from the crop, its box rule. Returns the spec and
    what was measured (faces found per detector, the spread of the positions)."""
    points: list[np.ndarray] = []
    rules: dict[str, list[tuple[float, float, float]]] = {name: [] for name in detectors}
    seen = 0
    for crop in crops:
        seen += 1
        frame, scale, pad = training_frame(crop)
        side = max(crop.shape[:2])
        for name, detector in detectors.items():
            face = central_face(detector.detect(frame), frame.shape)
            if face is None:
                continue
            x1, y1, x2, y2 = ((v - pad) / (scale * side) for v in face.box)
            longest = max(x2 - x1, y2 - y1)
            rules[name].append(((0.5 - (x1 + x2) / 2) / longest, (0.5 - (y1 + y2) / 2) / longest, 1.0 / longest))
            if face.landmarks is not None:
                points.append((key_points(np.asarray(face.landmarks)) - pad) / (scale * side))
    if not points:
        raise ValueError("no detector found a face with landmarks in the calibration images: are they faces? (--crop legacy trains without a crop definition)")
    stacked = np.stack(points)
    (lx, ly), (rx, ry), (_, my) = np.median(stacked, axis=0)
    # made mirror-symmetric, so that a face and its mirror image (flip augmentation and averaging) align alike
    half, centre, eyes = (rx - lx) / 2, (lx + rx) / 2, (ly + ry) / 2
    template = ((float(centre - half), float(eyes)), (float(centre + half), float(eyes)), (float(centre), float(my)))
    boxes: dict[str, BoxRule] = {
        name: tuple(float(v) for v in np.median(np.array(found), axis=0))  # type: ignore[misc]
        for name, found in rules.items()
        if found
    }
    boxes["none"] = (0.0, 0.0, 1.0)
    report = {
        "images": seen,
        "found": {name: len(found) for name, found in rules.items()},
        "landmark_iqr": [[float(v) for v in q] for q in np.subtract(*np.percentile(stacked, [75, 25], axis=0))],
    }
    return CropSpec(template, boxes), report

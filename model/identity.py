"""Face identity: 128-d descriptors from dlib's face-recognition ResNet, to link tracks into persons.

The network (``dlib_face_recognition_resnet_model_v1``, 99.38 % on LFW) and the 5-point landmark model that aligns
its input are Davis King's dlib models, in the public domain / CC0, installed from PyPI by the
``face-recognition-models`` package (MIT) and run by the ``dlib-bin`` wheels (Boost licence): nothing is downloaded
at run time. dlib documents two faces of one person as lying within 0.6 of each other (Euclidean); fervid's
calibration on CK+ subjects is in ``docs/identity.md``.

Descriptors are computed on a few good samples per track (:func:`face_quality`), not on every face: a job keeps
a small :func:`face_region` around each candidate face until its segment ends.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fervid.model.detect import Box, Detection

DESCRIPTOR_SIZE = 128
#: Context kept around a candidate face, as a fraction of the box's size on each side (the landmark model looks
#: at the box; the descriptor's 150×150 chip adds 25 % padding).
REGION_MARGIN = 0.35
#: Faces at least this many pixels wide count as fully sharp in :func:`face_quality`.
SHARP_SIDE = 80.0


@dataclass(frozen=True)
class FaceRegion:
    """A small copy of the frame around a face (uint8 BGR or gray) and the face's box within it."""

    image: np.ndarray
    box: Box


def face_region(frame: np.ndarray, box: Box, margin: float = REGION_MARGIN) -> FaceRegion:
    """The part of ``frame`` around ``box`` (widened by ``margin`` of its size per side), copied."""
    x1, y1, x2, y2 = box
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    left, top = max(int(x1 - dx), 0), max(int(y1 - dy), 0)
    right, bottom = min(int(np.ceil(x2 + dx)), frame.shape[1]), min(int(np.ceil(y2 + dy)), frame.shape[0])
    return FaceRegion(frame[top:bottom, left:right].copy(), (x1 - left, y1 - top, x2 - left, y2 - top))


def face_quality(detection: Detection | None, box: Box) -> float:
    """How good a face is for identity, in ``[0, 1]``: detector confidence × size (up to :data:`SHARP_SIDE`
    pixels) × frontality (the nose between the eyes, from the landmarks where the detector gives them)."""
    side = min(box[2] - box[0], box[3] - box[1])
    score = detection.score if detection is not None else 1.0
    frontal = 1.0
    if detection is not None and detection.landmarks is not None:
        (lx, _), (rx, _), (nx, _) = detection.landmarks[:3]
        span = abs(rx - lx)
        frontal = max(0.0, 1.0 - 2.0 * abs(nx - (lx + rx) / 2) / span) if span > 0 else 0.0
    return float(score * min(side / SHARP_SIDE, 1.0) * frontal)


def _model_file(name: str) -> str:
    """A model file of the ``face-recognition-models`` package, found without importing it (it needs
    ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face identity needs the face-recognition-models package: pip install face-recognition-models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ImportError(f"{path}: missing from the face-recognition-models package; reinstall it")
    return str(path)


class FaceEmbedder:
    """dlib's 5-point alignment and face-recognition ResNet: a unit-free 128-d descriptor per face.

    One instance may be called from several threads (calls are serialised).
    """

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._landmarks = dlib.shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat"))
        self._network = dlib.face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat"))
        self._lock = threading.Lock()

    def __call__(self, region: FaceRegion) -> np.ndarray:
        """The descriptor (float32, :data:`DESCRIPTOR_SIZE`) of the face at ``region.box``."""
        image = region.image
        rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, 2::-1]
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        x1, y1, x2, y2 = (int(round(v)) for v in region.box)
        with self._lock:
            shape = self._landmarks(rgb, self._dlib.rectangle(x1, y1, x2, y2))
            descriptor = self._network.compute_face_descriptor(rgb, shape)
        return np.asarray(descriptor, dtype=np.float32)

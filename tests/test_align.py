"""The face crop (fervid.model.align): the similarity transform, box rules, calibration, and one definition shared
by training and jobs — a training sample and a job frame of the same face give the identical network input."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, needs_shared
from sqlalchemy import text

from fervid.model.align import (
    CropSpec,
    FaceCropper,
    calibrate,
    locate_faces,
    similarity,
    square_matrix,
    training_frame,
    warp,
)
from fervid.model.detect import Detection

FERPLUS_VAL = SHARED / "datasets" / "ferplus" / "val"


def test_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (3, 2))
    angle, scale, shift = math.radians(17), 0.42, np.array([5.0, -3.0])
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    matrix = similarity(src, src @ rotation.T + shift)
    assert np.allclose(matrix[:, :2], rotation) and np.allclose(matrix[:, 2], shift)


def test_similarity_never_reflects() -> None:
    src = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 10.0]])
    mirrored = src * [-1, 1]
    matrix = similarity(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_landmark_crop_levels_a_rolled_face() -> None:
    """Two dots (eyes) and a bar (mouth) rotated by 30°: the aligned crop puts them on the template, eyes level."""
    spec = CropSpec(((0.3, 0.4), (0.7, 0.4), (0.5, 0.75)))
    image = np.zeros((300, 300), np.uint8)
    centre, angle = np.array([150.0, 150.0]), math.radians(30)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = {name: centre + rot @ np.array(offset) for name, offset in
              {"le": (-40, -20), "re": (40, -20), "nose": (0, 10), "lm": (-20, 50), "rm": (20, 50)}.items()}  # fmt: skip
    for name in ("le", "re"):
        cv2.circle(image, tuple(int(round(v)) for v in points[name]), 6, 255, -1)
    face = Detection((60.0, 60.0, 240.0, 240.0), 0.9, tuple(tuple(points[n]) for n in ("le", "re", "nose", "lm", "rm")))
    crop = FaceCropper(48, "centerface", spec)(image, face)
    assert crop.shape == (48, 48)
    ys, xs = np.nonzero(crop > 128)
    left, right = xs < 24, xs >= 24
    assert abs(ys[left].mean() - ys[right].mean()) < 0.6  # eyes level
    assert xs[left].mean() == pytest.approx(0.3 * 48, abs=1.0) and ys.mean() == pytest.approx(0.4 * 48, abs=1.0)


def test_box_rule_places_the_square() -> None:
    matrix = square_matrix((10, 20, 110, 70), (0.1, -0.2, 1.5), 50)
    # the square: centre (60 + 10, 45 - 20), side 150 → maps to the output's centre with scale 1/3
    assert np.allclose(matrix @ [70, 25, 1], [25, 25]) and matrix[0, 0] == pytest.approx(50 / 150)


def test_shrinking_warp_is_area_averaged() -> None:
    """A fine checkerboard shrunk 8×: pixel-area averaging gives flat grey, plain bilinear sampling would alias."""
    board = (np.indices((400, 400)).sum(0) % 2 * 255).astype(np.uint8)
    crop = warp(board, square_matrix((0, 0, 384, 384), (0.0, 0.0, 1.0), 48), 48)
    assert abs(float(crop[4:-4, 4:-4].mean()) - 127.5) < 3 and crop[4:-4, 4:-4].std() < 3


@pytest.mark.parametrize("centre", [(640, 360), (20, 30), (1270, 700), (-10, 400)])
@pytest.mark.parametrize("roll", [0.0, 0.4])
def test_warp_of_a_face_is_the_warp_of_the_whole_frame(centre: tuple[int, int], roll: float) -> None:
    """Only the face's region is converted to gray and warped: the same pixels as the whole frame's warp (edge
    pixels repeated where the face leaves the frame), for a colour frame of a crowd's size."""
    rng = np.random.default_rng(1)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (5, 5), 1.5)
    scale, (cx, cy) = 48 / 40, centre  # a 40 px face upscaled to 48 px
    rotation = scale * np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    matrix = np.hstack([rotation, (np.array([24.0, 24.0]) - rotation @ [cx, cy])[:, None]])
    whole = cv2.warpAffine(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), matrix, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(warp(frame, matrix, 48), whole)


def test_legacy_definition_is_the_old_margin_crop() -> None:
    from fervid.model.preprocess import PREPROCESSING, crop_face, to_gray

    image = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    cropper = FaceCropper.for_checkpoint(PREPROCESSING, 48, "centerface")
    face = Detection((30.0, 20.0, 90.0, 100.0), 0.9, ((40.0, 50.0),) * 5)
    assert cropper.spec is None
    assert np.array_equal(cropper(image, face), to_gray(crop_face(image, face.box, PREPROCESSING["margin"])))
    assert np.array_equal(cropper(image, None), to_gray(image))


def test_spec_round_trip_and_version_check() -> None:
    spec = CropSpec(((0.3, 0.4), (0.7, 0.4), (0.5, 0.8)), {"haar": (0.0, 0.05, 1.1), "none": (0.0, 0.0, 1.0)})
    assert CropSpec.from_dict(spec.to_dict()) == spec
    # a black context is written as version 1 was, so that the records of older checkpoints stay what they were
    assert spec.to_dict()["version"] == 1 and "context" not in spec.to_dict() and spec.context == "black"
    reflect = CropSpec(spec.template, spec.boxes, "reflect")
    assert reflect.to_dict()["version"] == 2 and CropSpec.from_dict(reflect.to_dict()) == reflect
    with pytest.raises(ValueError, match="version"):
        CropSpec.from_dict({**spec.to_dict(), "version": 99})
    with pytest.raises(ValueError, match="context"):
        CropSpec(spec.template, context="zeros")


def test_model_card_states_the_crop_context() -> None:
    from fervid.model.package import crop_description

    spec = CropSpec(((0.3, 0.4), (0.7, 0.4), (0.5, 0.8)), {"none": (0.0, 0.0, 1.0)})
    for context, words in (("black", "with black around them"), ("reflect", "with their reflection around them")):
        preprocessing = {"crop": CropSpec(spec.template, spec.boxes, context).to_dict()}
        assert words in crop_description(preprocessing, {"crop_mode": "aligned"})


class _FixedDetector:
    """Finds one face, with landmarks, in the middle of any frame, and keeps the frames it was shown."""

    name, concurrent = "centerface", True

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def detect(self, frame: np.ndarray) -> list[Detection]:
        self.frames.append(frame.copy())
        h, w = frame.shape[:2]
        points = ((0.42, 0.45), (0.58, 0.45), (0.5, 0.52), (0.45, 0.6), (0.55, 0.6))
        return [Detection((0.3 * w, 0.3 * h, 0.7 * w, 0.7 * h), 0.9, tuple((x * w, y * h) for x, y in points))]


def test_reflect_context_cuts_the_black_frames_detection_from_the_reflected_frame() -> None:
    """A face crop is detected in the black training frame whatever the context; a reflect definition cuts the
    face from the frame whose border is the crop's reflection, so the aligned crop's part beyond the face crop is
    surroundings, not black."""
    crop = np.random.default_rng(0).integers(60, 200, (48, 48), dtype=np.uint8)  # no 0 after the bicubic upscale
    detector = _FixedDetector()
    (black,) = locate_faces(crop, detector)
    (reflect,) = locate_faces(crop, detector, context="reflect")
    frame, _, pad = training_frame(crop)
    assert len(detector.frames) == 2 and all(np.array_equal(f, frame) for f in detector.frames)
    assert black.face == reflect.face and black.box == reflect.box
    inner = slice(pad, frame.shape[0] - pad)
    assert np.array_equal(reflect.image[inner, inner], black.image[inner, inner])
    assert not black.image[:pad].any() and reflect.image[:pad].all()
    spec = CropSpec(((0.45, 0.45), (0.55, 0.45), (0.5, 0.55)))  # a small face: the crop reaches beyond the face crop
    cut_black = FaceCropper(48, "centerface", spec)(black.image, black.face)
    cut_reflect = FaceCropper(48, "centerface", CropSpec(spec.template, context="reflect"))(reflect.image, reflect.face)
    assert (cut_black == 0).any() and not (cut_reflect == 0).any()


def test_small_image_without_detector_is_the_face() -> None:
    image = np.zeros((48, 48), np.uint8)
    (located,) = locate_faces(image, None)
    assert located.face is None and located.box == (0.0, 0.0, 48.0, 48.0)


@needs_shared
def test_calibration_on_training_faces_reproduces_their_framing() -> None:
    from fervid.model.experiment import production_detector

    paths = sorted(FERPLUS_VAL.glob("happy/*.png"))[:40]
    detector = production_detector("centerface")
    spec, report = calibrate((cv2.imread(str(p), 0) for p in paths), {"centerface": detector})
    assert report["found"]["centerface"] >= 30
    (left_x, left_y), (right_x, right_y), (mouth_x, mouth_y) = spec.template
    assert 0.2 < left_x < 0.45 < 0.55 < right_x < 0.8 and abs(left_y - right_y) < 0.05 and 0.65 < mouth_y < 0.9
    # a face's crop under its own calibration is close to the face as it was (the median framing)
    image = cv2.imread(str(paths[0]), 0)
    frame, _, _ = training_frame(image)
    (located,) = locate_faces(image, detector)
    crop = FaceCropper(48, "centerface", spec)(located.image, located.face)
    assert located.image.shape == frame.shape
    assert np.abs(crop.astype(int) - image.astype(int)).mean() < 40


@needs_shared
@pytest.mark.parametrize("context", ["black", "reflect"])
def test_training_sample_and_job_frame_give_the_identical_input(tmp_path: Path, embedded_settings, context: str) -> None:
    """Faces loaded for training (aligned crop mode) and the same faces in a job — as the crops themselves and, in
    the black context, as larger frames that hold them — reach the network as the same pixels: the job's
    probabilities equal the network's on the training tensors, and another crop definition would not give them.
    (A reflect definition's training frame is not one a job detects in: its faces are found in the black frame.)"""
    import torch

    from fervid.db import database
    from fervid.model.checkpoint import load_checkpoint, save_checkpoint
    from fervid.model.experiment import DataOptions, calibrated
    from fervid.model.infer import Classifier
    from fervid.model.network import ModelConfig, build_model
    from fervid.worker.jobs import Submission, submit

    crops, frames = tmp_path / "crops", tmp_path / "frames"
    for folder in ("happy", "surprise"):
        (crops / folder).mkdir(parents=True)
        (frames / folder).mkdir(parents=True)
        for path in sorted((FERPLUS_VAL / folder).glob("*.png"))[:6]:
            shutil.copy(path, crops / folder / path.name)
            frame, _, _ = training_frame(cv2.imread(str(path), 0))
            cv2.imwrite(str(frames / folder / path.name), frame)  # 432 px: a frame, not a crop
    data, _ = calibrated(DataOptions(48, context=context), crops, "aligned")
    train = data.load(crops)
    assert data.detector == "centerface" and train.undetected < len(train)

    torch.manual_seed(0)
    config = ModelConfig(num_classes=2, width=0.25)
    model = build_model(config).eval()
    with torch.no_grad():  # random BatchNorm statistics so that the output depends strongly on the input
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    checkpoint = save_checkpoint(tmp_path / "m.pt", model, config, ["happy", "surprise"], 48, data.preprocessing())
    expected = Classifier(load_checkpoint(checkpoint), device="cpu").predict(train.x)
    by_name = {Path(p).name: row for p, row in zip(train.paths, expected)}
    settings = embedded_settings.replace(model=str(checkpoint), detector="centerface", flip=False)
    for folder in (crops, frames) if context == "black" else (crops,):
        job_id = submit(Submission(str(folder)), settings)
        query = text("SELECT source_path, p_happy, p_surprise FROM detections WHERE job_id = :j")
        rows = database(settings).connect().execute(query, {"j": job_id}).all()
        found = {Path(r[0]).name: np.array([r[1], r[2]]) for r in rows}
        assert found.keys() <= by_name.keys() and len(found) >= len(by_name) - train.undetected
        for name, probs in found.items():
            assert np.allclose(probs, by_name[name], atol=1e-6), name
    legacy = Classifier(load_checkpoint(checkpoint), device="cpu").predict(DataOptions(48).load(crops).x)
    assert np.abs(legacy - expected).max() > 1e-3  # the test can tell one crop from another


class _ScoredDetector:
    """Finds the given detections, those scoring at least ``threshold``."""

    name, concurrent = "centerface", True

    def __init__(self, found: list[Detection], threshold: float) -> None:
        self.found, self.threshold = found, threshold

    def detect(self, frame: np.ndarray) -> list[Detection]:
        return [d for d in self.found if d.score >= self.threshold]


def test_a_photo_without_a_face_at_the_threshold_is_read_at_its_likeliest_face() -> None:
    photo = np.zeros((400, 600, 3), np.uint8)
    weak = [Detection((10, 10, 90, 90), 0.12), Detection((200, 100, 320, 220), 0.25), Detection((400, 50, 450, 100), 0.05)]
    detector, floor = _ScoredDetector(weak, 0.3), _ScoredDetector(weak, 0.1)
    assert locate_faces(photo, detector) == []
    (located,) = locate_faces(photo, detector, floor)
    assert located.face == weak[1] and located.box == weak[1].box
    # a face at the threshold is read as before, with nothing from the floor
    strong = Detection((0, 0, 50, 50), 0.9)
    assert [f.face for f in locate_faces(photo, _ScoredDetector([strong, *weak], 0.3), floor)] == [strong]
    # nothing above the floor either: no face
    assert locate_faces(photo, detector, _ScoredDetector(weak, 0.5)) == []

"""Tests for fervid.model.detect: NMS, box mapping, CenterFace decoding, and both detectors on drawn faces.

The drawn face (skin ellipse framed by hair, shaded eye sockets, dark eyes and brows, nostril shadow, mouth) is
found by both backends; the tests that need ../shared run them on the real clip.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import SHARED, needs_shared

from fervid.model.detect import (
    DETECTORS,
    CenterFaceDetector,
    Detection,
    HaarDetector,
    cheaper_around,
    create_detector,
    decode_centerface,
    detect_around,
    downscale,
    mirror_boxes,
    nms,
)

CLIP = SHARED / "videos" / "face_clip.mp4"


def draw_face(height: int, width: int, cx: int, cy: int, s: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """A BGR frame with a cartoon face of half-height ``s`` centred at (cx, cy), and the face ellipse's box."""
    skin = (140, 170, 220)
    socket = tuple(int(c * 0.7) for c in skin)
    image = np.full((height, width, 3), (90, 120, 90), np.uint8)
    cv2.ellipse(image, (cx, cy - int(s * 0.1)), (int(s * 0.9), int(s * 1.05)), 0, 0, 360, (30, 40, 60), -1)
    cv2.ellipse(image, (cx, cy), (int(s * 0.75), s), 0, 0, 360, skin, -1)
    for side in (-1, 1):
        ex, ey = cx + side * int(s * 0.32), cy - int(s * 0.15)
        cv2.ellipse(image, (ex, ey), (int(s * 0.22), int(s * 0.13)), 0, 0, 360, socket, -1)
        cv2.ellipse(image, (ex, ey), (int(s * 0.15), int(s * 0.07)), 0, 0, 360, (50, 50, 60), -1)
        cv2.ellipse(image, (ex, ey - int(s * 0.17)), (int(s * 0.2), int(s * 0.05)), 0, 0, 360, (40, 50, 70), -1)
    nostrils = tuple(int(c * 0.6) for c in skin)
    cv2.ellipse(image, (cx, cy + int(s * 0.25)), (int(s * 0.12), int(s * 0.05)), 0, 0, 360, nostrils, -1)
    cv2.ellipse(image, (cx, cy + int(s * 0.5)), (int(s * 0.3), int(s * 0.08)), 0, 0, 360, (60, 60, 130), -1)
    image = cv2.GaussianBlur(image, (0, 0), s * 0.03)
    return image, (cx - 0.75 * s, cy - s, cx + 0.75 * s, cy + s)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_inside(detections: list[Detection], shape: tuple[int, ...]) -> None:
    for d in detections:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= shape[1] and 0 <= y1 < y2 <= shape[0]
        assert 0.0 <= d.score <= 1.0


@pytest.fixture(scope="module")
def centerface() -> CenterFaceDetector:
    return CenterFaceDetector()


@pytest.fixture(scope="module")
def haar() -> HaarDetector:
    return HaarDetector()


# --- helpers -------------------------------------------------------------------------------------------------


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 5, 10, 15]], dtype=np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.8])
    # IoU(0, 1) = 90/110 ≈ 0.82; IoU(1, 3) = 45/155 ≈ 0.29; IoU(0, 3) = 50/150 ≈ 0.33
    assert nms(boxes, scores, 0.5) == [1, 3, 2]
    assert nms(boxes, scores, 0.3) == [1, 3, 2]
    assert nms(boxes, scores, 0.25) == [1, 2]
    assert nms(boxes, scores, 0.9) == [1, 3, 0, 2]


def test_nms_empty() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3) == []


def test_mirror_boxes_maps_back() -> None:
    box = np.array([[10.0, 20.0, 30.0, 45.0]])
    np.testing.assert_array_equal(mirror_boxes(box, 100), [[70.0, 20.0, 90.0, 45.0]])
    np.testing.assert_array_equal(mirror_boxes(mirror_boxes(box, 100), 100), box)
    # a box found in the flipped image covers the mirrored pixels of the original
    image = np.zeros((60, 100), np.uint8)
    image[20:45, 10:30] = 255
    flipped = cv2.flip(image, 1)
    ys, xs = np.nonzero(flipped)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float64)
    np.testing.assert_array_equal(mirror_boxes(found, 100), box)


def test_downscale_caps_longest_side() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    small, scale = downscale(image, 640)
    assert small.shape == (360, 640, 3) and scale == 0.5
    same, scale = downscale(image, None)
    assert same is image and scale == 1.0
    same, scale = downscale(image, 2000)
    assert same is image and scale == 1.0


@pytest.mark.parametrize(("height", "width", "channels"), [(720, 1280, 3), (1081, 1921, 1), (479, 853, 3), (300, 1000, 1)])
def test_downscale_matches_area_averaging(height: int, width: int, channels: int) -> None:
    """Block averaging plus bilinear stays close to INTER_AREA, and pixels map back through the scale."""
    rows, cols = np.mgrid[:height, :width]
    image = (127 + 100 * np.sin(rows / 37.0) * np.cos(cols / 53.0)).astype(np.uint8)
    if channels == 3:
        image = np.dstack([image, image, image])
    small, scale = downscale(image, 480)
    assert max(small.shape[:2]) == 480 and small.shape[2:] == image.shape[2:]
    reference = cv2.resize(image, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - reference).mean() < 1.0
    y, x = small.shape[0] // 2, small.shape[1] // 3
    original = image[round((y + 0.5) / scale - 0.5), round((x + 0.5) / scale - 0.5)]
    assert np.abs(small[y, x].astype(int) - original).max() <= 3


def test_decode_centerface_one_peak() -> None:
    heatmap = np.zeros((10, 12), np.float32)
    heatmap[5, 7] = 0.9
    heatmap[1, 1] = 0.4  # below the threshold
    scale = np.zeros((2, 10, 12), np.float32)
    scale[0, 5, 7], scale[1, 5, 7] = math.log(20 / 4), math.log(12 / 4)  # height 20, width 12
    offset = np.zeros((2, 10, 12), np.float32)
    offset[0, 5, 7], offset[1, 5, 7] = 0.25, 0.5  # centre y = (5.25 + 0.5)·4 = 23, x = (7.5 + 0.5)·4 = 32
    landmarks = np.zeros((10, 10, 12), np.float32)
    landmarks[0::2, 5, 7] = [0.25, 0.25, 0.5, 0.75, 0.75]  # y as a fraction of the height, from the top
    landmarks[1::2, 5, 7] = [0.25, 0.75, 0.5, 0.25, 0.75]  # x as a fraction of the width, from the left
    boxes, scores, points = decode_centerface(heatmap, scale, offset, threshold=0.5, landmarks=landmarks)
    np.testing.assert_allclose(boxes, [[26.0, 13.0, 38.0, 33.0]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.9])
    expected = [[29.0, 18.0], [35.0, 18.0], [32.0, 23.0], [29.0, 28.0], [35.0, 28.0]]  # (x, y): eyes, nose, mouth
    np.testing.assert_allclose(points, [expected], atol=1e-4)


def test_centerface_landmarks_lie_on_the_face(centerface: CenterFaceDetector) -> None:
    """Eyes above the mouth, left eye left of the right one, all inside the box."""
    frame, _ = draw_face(480, 640, cx=230, cy=250, s=100)
    (face,) = centerface.detect(frame)
    assert face.landmarks is not None and len(face.landmarks) == 5
    (lx, ly), (rx, ry), _, (mlx, mly), (mrx, mry) = face.landmarks
    x1, y1, x2, y2 = face.box
    assert lx < rx and max(ly, ry) < min(mly, mry) and mlx < mrx
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face.landmarks)


def test_create_detector_by_name() -> None:
    assert DETECTORS == ("centerface", "haar")
    haar = create_detector("haar", max_side=320, threshold=0.6)
    assert isinstance(haar, HaarDetector) and haar.name == "haar" and haar.max_side == 320
    center = create_detector("centerface", max_side=320, threshold=0.4)
    assert isinstance(center, CenterFaceDetector) and center.name == "centerface" and center.threshold == 0.4
    with pytest.raises(ValueError, match="centerface, haar"):
        create_detector("mtcnn")


# --- drawn faces ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("detector", ["centerface", "haar"])
def test_finds_drawn_face(detector: str, request: pytest.FixtureRequest) -> None:
    det = request.getfixturevalue(detector)
    frame, drawn = draw_face(480, 640, cx=230, cy=250, s=100)
    found = det.detect(frame)
    assert len(found) == 1
    assert iou(found[0].box, drawn) > 0.5
    assert_inside(found, frame.shape)
    gray = det.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    assert len(gray) == 1 and iou(gray[0].box, drawn) > 0.5


@pytest.mark.parametrize("detector", ["centerface", "haar"])
def test_blank_frame_has_no_faces(detector: str, request: pytest.FixtureRequest) -> None:
    det = request.getfixturevalue(detector)
    assert det.detect(np.full((360, 480, 3), 128, np.uint8)) == []
    assert det.detect(np.zeros((100, 100), np.uint8)) == []


@pytest.mark.parametrize("detector", ["centerface", "haar"])
def test_boxes_scale_back_from_downscaled_copy(detector: str, request: pytest.FixtureRequest) -> None:
    det = request.getfixturevalue(detector)
    frame, drawn = draw_face(1080, 1920, cx=1300, cy=600, s=300)  # detected at 640×360
    found = det.detect(frame)
    assert len(found) == 1 and iou(found[0].box, drawn) > 0.5
    assert_inside(found, frame.shape)


def test_haar_mirrored_frame_gives_mirrored_box(haar: HaarDetector) -> None:
    frame, _ = draw_face(480, 640, cx=200, cy=240, s=100)
    (box,) = [d.box for d in haar.detect(frame)]
    (flipped,) = [d.box for d in haar.detect(cv2.flip(frame, 1))]
    assert iou(tuple(mirror_boxes(np.array([flipped]), 640)[0]), box) > 0.8


def test_centerface_non_square_frame(centerface: CenterFaceDetector) -> None:
    frame, drawn = draw_face(333, 517, cx=420, cy=240, s=70)  # 333×517 pads to 352×544
    found = centerface.detect(frame)
    assert len(found) == 1 and iou(found[0].box, drawn) > 0.5
    assert_inside(found, frame.shape)


def test_centerface_clips_faces_at_the_border(centerface: CenterFaceDetector) -> None:
    frame, _ = draw_face(333, 517, cx=470, cy=300, s=80)  # the chin and right cheek leave the frame
    found = centerface.detect(frame)
    assert found
    assert_inside(found, frame.shape)


# --- the real clip -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    av = pytest.importorskip("av")
    frames = []
    with av.open(str(CLIP)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 5 == 0:
                frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == 20:
                break
    return frames


@needs_shared
def test_clip_one_face_per_frame(
    clip_frames: list[np.ndarray], centerface: CenterFaceDetector, haar: HaarDetector
) -> None:
    assert len(clip_frames) == 20
    center = [centerface.detect(f) for f in clip_frames]
    assert sum(len(d) == 1 for d in center) >= 0.95 * len(clip_frames)
    for found, frame in zip(center, clip_frames):
        assert_inside(found, frame.shape)
    # Haar (frontal + mirrored profile) agrees with CenterFace on most frames of this partly non-frontal clip
    agree = sum(
        any(iou(h.box, c[0].box) > 0.3 for h in haar.detect(f)) for f, c in zip(clip_frames[::2], center[::2]) if c
    )
    assert agree >= 5


@pytest.mark.parametrize("detector", ["centerface", "haar"])
def test_detect_around_finds_the_moved_face_near_its_last_box(detector: str, request: pytest.FixtureRequest) -> None:
    """Searching around where two faces were finds them where they are now (moved by a fifth of their size), in
    frame coordinates, with the landmarks, and nothing around an empty place."""
    det = request.getfixturevalue(detector)
    frame, drawn = draw_face(720, 1280, cx=900, cy=360, s=60)
    second, other = draw_face(720, 1280, cx=300, cy=400, s=40)
    frame[250:550, 180:420] = second[250:550, 180:420]
    moved = [(x - 12.0, y + 10.0, x2 - 12.0, y2 + 10.0) for x, y, x2, y2 in (drawn, other)]
    found = sorted(detect_around(det, frame, [*moved, (20.0, 20.0, 60.0, 60.0)]), key=lambda d: d.box[0])
    assert len(found) == 2
    assert iou(found[0].box, other) > 0.5 and iou(found[1].box, drawn) > 0.5
    assert_inside(found, frame.shape)
    if detector == "centerface":
        full = det.detect(frame)
        for d in found:
            assert d.landmarks is not None
            x1, y1, x2, y2 = d.box
            assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in d.landmarks)
            assert max(iou(d.box, f.box) for f in full) > 0.7  # the whole-frame search's box


def test_a_crowd_is_searched_whole(centerface: CenterFaceDetector) -> None:
    """Around a few faces of a 720p frame (searched whole at 640 px) the search is smaller; around twenty, not."""
    assert centerface.max_side == 640
    assert cheaper_around(centerface, (720, 1280, 3), 0) and cheaper_around(centerface, (720, 1280, 3), 5)
    assert not cheaper_around(centerface, (720, 1280, 3), 20)
    assert not cheaper_around(centerface, (120, 160, 3), 1)  # a small frame: the whole of it is less

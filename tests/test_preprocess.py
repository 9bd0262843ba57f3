"""Tests for fervid.model.preprocess: gray conversion, square face crops and the network's input batch."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fervid.model.preprocess import MARGIN, MEAN, PREPROCESSING, STD, crop_face, preprocess, to_gray


@pytest.fixture
def bgr() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)


def test_to_gray_bgr_matches_opencv(bgr: np.ndarray) -> None:
    gray = to_gray(bgr)
    assert gray.dtype == np.uint8 and gray.shape == (40, 60)
    np.testing.assert_array_equal(gray, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))


def test_to_gray_bgra_ignores_alpha(bgr: np.ndarray) -> None:
    bgra = np.dstack([bgr, np.zeros(bgr.shape[:2], np.uint8)])
    np.testing.assert_array_equal(to_gray(bgra), to_gray(bgr))


def test_to_gray_keeps_gray(bgr: np.ndarray) -> None:
    gray = bgr[:, :, 0]
    np.testing.assert_array_equal(to_gray(gray), gray)
    np.testing.assert_array_equal(to_gray(gray[:, :, None]), gray)


def test_to_gray_scales_16_bit() -> None:
    image = np.array([[0, 257, 257 * 128, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(to_gray(image), [[0, 1, 128, 255]])
    color = np.repeat(image[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(to_gray(color), [[0, 1, 128, 255]])


def test_to_gray_rejects_other_inputs() -> None:
    with pytest.raises(TypeError, match="uint8"):
        to_gray(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((4, 4, 2), np.uint8))


def test_crop_face_inside_frame_is_square_and_exact() -> None:
    frame = np.arange(200 * 300, dtype=np.int64).reshape(200, 300)
    crop = crop_face(frame, (100, 50, 150, 110), margin=0.25)  # 50×60 box → side 60 × 1.5 = 90
    assert crop.shape == (90, 90)
    np.testing.assert_array_equal(crop, frame[35:125, 80:170])


def test_crop_face_pads_with_edge_pixels_and_keeps_face_centred() -> None:
    frame = np.zeros((100, 120, 3), np.uint8)
    frame[:, :, 0] = np.arange(120)[None, :]  # column index
    frame[:, :, 1] = np.arange(100)[:, None]  # row index
    crop = crop_face(frame, (0, 0, 40, 40))  # default margin: side 40 × 1.4 = 56, from (-8, -8)
    assert crop.shape == (56, 56, 3)
    assert MARGIN == 0.2
    np.testing.assert_array_equal(crop[:, :9, 0], 0)  # columns left of the frame repeat column 0
    np.testing.assert_array_equal(crop[:9, :, 1], 0)  # rows above the frame repeat row 0
    np.testing.assert_array_equal(crop[28, 28, :2], [20, 20])  # the box centre is the crop centre
    np.testing.assert_array_equal(crop[-1, -1, :2], [47, 47])


def test_crop_face_outside_frame_still_square() -> None:
    frame = np.full((50, 50), 7, np.uint8)
    frame[-1, -1] = 9
    crop = crop_face(frame, (80, 80, 100, 90), margin=0.0)
    assert crop.shape == (20, 20)
    assert (crop == 9).all()


def test_preprocess_shape_dtype_and_range(bgr: np.ndarray) -> None:
    batch = preprocess([bgr, bgr[:20, :20], bgr[:, :, 0]], size=48)
    assert batch.shape == (3, 1, 48, 48)
    assert batch.dtype == np.float32 and batch.flags["C_CONTIGUOUS"]
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    assert batch.min() < -0.9 and batch.max() > 0.9


def test_preprocess_normalisation_constants() -> None:
    assert (MEAN, STD) == (0.5, 0.5)
    assert PREPROCESSING == {"gray": True, "equalize": True, "mean": MEAN, "std": STD, "margin": MARGIN}
    levels = np.array([[0, 51, 255, 255]], dtype=np.uint8).repeat(4, axis=0)
    batch = preprocess([levels], size=4, equalize=False)
    np.testing.assert_allclose(batch[0, 0, 0], [-1.0, -0.6, 1.0, 1.0], atol=1e-6)


def test_preprocess_equalisation_stretches_low_contrast() -> None:
    rng = np.random.default_rng(1)
    dull = rng.integers(100, 121, size=(64, 64), dtype=np.uint8)
    flat = preprocess([dull], size=64, equalize=False)
    stretched = preprocess([dull], size=64)
    assert flat.max() - flat.min() < 0.2
    assert stretched.max() - stretched.min() > 1.8
    np.testing.assert_allclose(stretched[0, 0], (cv2.equalizeHist(dull) / 255.0 - MEAN) / STD, atol=1e-6)


def test_preprocess_interpolation_follows_direction() -> None:
    rng = np.random.default_rng(2)
    big = rng.integers(0, 256, size=(96, 96), dtype=np.uint8)
    small = big[:24, :24]
    area = cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA)
    linear = cv2.resize(small, (48, 48), interpolation=cv2.INTER_LINEAR)
    batch = preprocess([big, small], size=48, equalize=False)
    np.testing.assert_allclose(batch[0, 0], area / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(batch[1, 0], linear / 127.5 - 1.0, atol=1e-6)


def test_preprocess_empty() -> None:
    assert preprocess([], size=48).shape == (0, 1, 48, 48)

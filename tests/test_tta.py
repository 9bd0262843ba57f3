"""Test-time augmentation (fervid.model.tta): the views, their average, and the same reading on every path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sqlalchemy import text

from fervid.db import database, get_job
from fervid.model.checkpoint import load_checkpoint
from fervid.model.infer import Classifier
from fervid.model.train import predict_probabilities
from fervid.model.tta import average, views
from fervid.settings import SettingsError, get_settings
from fervid.worker.jobs import Submission, submit


def _faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, size, size), dtype=np.float32)


def test_views_are_the_face_its_shifted_copies_and_their_mirrors() -> None:
    faces = _faces(2, 8)
    stacked = views(faces, flip=True, shift=0.25).reshape(10, 2, 1, 8, 8)  # 2 px
    index = np.arange(8)
    for k, (dy, dx) in enumerate([(0, 0), (-2, 0), (2, 0), (0, -2), (0, 2)]):
        rows, cols = np.clip(index + dy, 0, 7), np.clip(index + dx, 0, 7)  # edges repeated
        np.testing.assert_array_equal(stacked[k], faces[:, :, rows][..., cols])
        np.testing.assert_array_equal(stacked[5 + k], stacked[k][..., ::-1])


def test_without_views_the_face_is_read_as_it_is_and_a_shift_moves_at_least_a_pixel() -> None:
    faces = _faces(3, 8)
    np.testing.assert_array_equal(views(faces), faces)
    assert views(faces, flip=True).shape == (6, 1, 8, 8)
    small = views(faces, shift=0.05).reshape(5, 3, 1, 8, 8)  # 0.4 px: one pixel, not none
    np.testing.assert_array_equal(small[1][..., 1:, :], faces[..., :-1, :])  # the face moved one pixel down


def test_average_is_each_faces_mean_over_its_views() -> None:
    probs = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3 * 2, 4)  # 3 views of 2 faces
    np.testing.assert_allclose(average(probs, 2), [probs[[0, 2, 4]].mean(0), probs[[1, 3, 5]].mean(0)])


def test_jobs_and_evaluation_average_the_same_views(tiny_checkpoint: Path) -> None:
    faces = _faces(5, 48, seed=1)
    classifier = Classifier(tiny_checkpoint, backend="onnx", device="cpu", batch_size=4, threads=1)
    read = classifier.predict(faces, flip=True, shift=0.06)
    by_view = classifier.predict(views(faces, flip=True, shift=0.06)).reshape(10, 5, -1).mean(0)
    np.testing.assert_allclose(read, by_view, atol=1e-6)
    assert not np.allclose(read, classifier.predict(faces, flip=True), atol=1e-4)  # the shifts change the reading
    network = load_checkpoint(tiny_checkpoint).build()
    evaluated = predict_probabilities(network, faces, torch.device("cpu"), batch_size=3, flip=True, shift=0.06)
    np.testing.assert_allclose(evaluated, read, atol=1e-4)


@pytest.mark.parametrize("value", [-0.01, 0.3])
def test_a_shift_out_of_range_is_refused(value: float) -> None:
    with pytest.raises(SettingsError, match="tta_shift"):
        get_settings(tta_shift=value)


def test_a_job_reads_its_faces_with_the_shift_it_records(tmp_path: Path, embedded_settings) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "faces" / "happy").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "faces" / "happy" / f"{i}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    readings = {}
    for shift in (0.0, 0.06):
        settings = embedded_settings.replace(detector="none", tta_shift=shift)
        job_id = submit(Submission(str(tmp_path / "faces")), settings)
        with database(settings).connect() as conn:
            rows = conn.execute(
                text("SELECT p_happy, p_sad FROM detections WHERE job_id = :j ORDER BY source_path"), {"j": job_id}
            ).all()
        assert get_job(database(settings), job_id)["params"]["tta_shift"] == shift
        readings[shift] = np.array(rows)
    assert readings[0.0].shape == (3, 2) and not np.allclose(readings[0.0], readings[0.06], atol=1e-4)

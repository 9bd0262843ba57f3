"""Temporal smoothing, hard cuts, face identity and persons (fervid.worker.smoothing, cuts, continuity, persons,
finalize), on synthetic readings and on generated videos of real faces (tests/scenes.py: the shared clip and CK+
subjects, whose identities are known)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs_shared
from sqlalchemy import text

from fervid.db import database
from fervid.db.reports import job_report
from fervid.model.align import Located
from fervid.model.identity import FaceEmbedder, FaceRegion, ProcessEmbedder, face_quality
from fervid.report.figures import timeline_figure
from fervid.settings import Settings
from fervid.worker.continuity import FACE_CHANGE, TrackFaces, face_thumbnail
from fervid.worker.cuts import CutDetector
from fervid.worker.jobs import Submission, submit
from fervid.worker.persons import link_persons
from fervid.worker.smoothing import label_changes, smooth_probabilities
from fervid.worker.track import IoUTracker, stitch


def one_hot(labels: list[int], classes: int = 3, sure: float = 0.7) -> np.ndarray:
    probs = np.full((len(labels), classes), (1 - sure) / (classes - 1))
    probs[np.arange(len(labels)), labels] = sure
    return probs


def test_smoothing_removes_a_flicker_and_keeps_a_change() -> None:
    labels = [0] * 10 + [1] + [0] * 10 + [2] * 10  # one flickering sample, then a real change
    t = np.arange(len(labels)) * 0.2
    smoothed = smooth_probabilities(t, one_hot(labels), 0.4).argmax(axis=1)
    assert list(smoothed) == [0] * 21 + [2] * 10
    assert label_changes(list(smoothed)) == 1 < label_changes(labels)
    assert smooth_probabilities(t, one_hot(labels), 0.0).argmax(axis=1).tolist() == labels  # 0: off


@pytest.mark.parametrize("rate", [5.0, 10.0, 25.0])
def test_smoothing_works_alike_at_every_sample_rate(rate: float) -> None:
    """2 s of one expression, 1 s of another, 2 s of the first, with a one-sample flicker in each run: at every
    sample rate the flickers go and the 1 s change stays, at its place."""
    t = np.arange(0, 5, 1 / rate)
    truth = [int(2 <= x < 3) for x in t + 1e-9]
    labels = list(truth)
    for at in (1.0, 4.0):
        labels[int(at * rate)] = 2
    smoothed = smooth_probabilities(t, one_hot(labels), 0.4).argmax(axis=1).tolist()
    assert smoothed == truth


def test_a_long_gap_forgets_the_past() -> None:
    t = np.array([0.0, 0.2, 0.4, 100.0])
    probs = one_hot([0, 0, 0, 1], sure=0.5)
    assert smooth_probabilities(t, probs, 2.0).argmax(axis=1).tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="must not decrease"):
        smooth_probabilities(t[::-1], probs, 1.0)


def test_cut_detector() -> None:
    ramp = np.broadcast_to(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (90, 160, 3))
    scene, other = ramp.copy(), ramp[:, ::-1].copy()  # the shot, and another one lit from the other side
    cuts = CutDetector(0.15)
    assert [cuts(scene), cuts(scene), cuts(np.clip(scene.astype(int) + 5, 0, 255).astype(np.uint8)), cuts(other)] == [
        False, False, False, True,
    ]  # fmt: skip
    never = CutDetector(1.0)
    assert not never(scene) and not never(other)


def test_face_thumbnail_tells_faces_apart() -> None:
    rng = np.random.default_rng(1)
    face = rng.integers(0, 255, (100, 100), dtype=np.uint8)
    brighter = np.clip(face.astype(int) * 1.2 + 10, 0, 255).astype(np.uint8)
    box = (10.0, 10.0, 90.0, 90.0)
    same = np.abs(face_thumbnail(face, box) - face_thumbnail(brighter, box)).mean()
    other = np.abs(face_thumbnail(face, box) - face_thumbnail(face[::-1].copy(), box)).mean()
    assert same < FACE_CHANGE < other
    assert face_thumbnail(face, (50, 50, 51, 51)) is None


def test_face_quality_prefers_large_frontal_faces() -> None:
    from fervid.model.detect import Detection

    frontal = Detection((0, 0, 100, 100), 0.9, ((30, 40), (70, 40), (50, 60), (35, 80), (65, 80)))
    turned = Detection((0, 0, 100, 100), 0.9, ((30, 40), (70, 40), (68, 60), (35, 80), (65, 80)))
    small = Detection((0, 0, 20, 20), 0.9, ((6, 8), (14, 8), (10, 12), (7, 16), (13, 16)))
    assert face_quality(frontal, frontal.box) == pytest.approx(0.9)
    assert face_quality(frontal, frontal.box) > face_quality(turned, turned.box) > 0
    assert face_quality(small, small.box) == pytest.approx(0.9 * 20 / 80)
    assert isinstance(FaceRegion(np.zeros((4, 4), np.uint8), (0, 0, 4, 4)).image, np.ndarray)


def test_tracker_split_starts_a_new_track() -> None:
    tracker = IoUTracker()
    assert tracker.update(0.0, [(0, 0, 40, 40)]) == [0]
    assert tracker.update(0.2, [(2, 0, 42, 40)]) == [0]
    assert tracker.split(0) == 1
    assert tracker.update(0.4, [(4, 0, 44, 40)]) == [1]  # the new track goes on; the old one has ended


def test_a_face_change_is_checked_when_it_lasts_and_once_per_change() -> None:
    """A look new to the track that is gone by the next sample is not checked; one that lasts is checked once (the
    first check also describes the track's last face, later ones only the new face); another person ends the
    track at the second sample of the change."""
    rng = np.random.default_rng(0)
    looks = [rng.integers(0, 256, (60, 60, 3), dtype=np.uint8) for _ in range(4)]
    for look in looks[:3]:
        look[..., 2] = 40  # the fake descriptor below reads the person from the red channel
    looks[3][..., 2] = 220
    described: list[float] = []

    def embedder(region: FaceRegion) -> np.ndarray:
        described.append(float(region.image[..., 2].mean()))
        return np.full(128, region.image[..., 2].mean() / 255, np.float32)

    tracks = TrackFaces(IoUTracker(max_gap=1.0), 0.99, embedder, identity_threshold=0.6)  # type: ignore[arg-type]
    box = (170.0, 170.0, 230.0, 230.0)
    ids = []
    for k, look in enumerate([0, 1, 0, 1, 1, 2, 0, 1, 3, 3]):
        image = np.full((400, 400, 3), 128, np.uint8)
        image[170:230, 170:230] = looks[look]
        ids.append(tracks.update(image, 0.2 * k, [Located(image, None, box)])[0])
    # look 1 lasts at samples 3-4 (checked: the same person, and one of the track's looks from then on); looks 2
    # and 3 alone pass; look 3 lasts at 8-9: checked, another person
    assert tracks.verified == 2 and len(described) == 3
    assert ids[:9] == [ids[0]] * 9 and ids[9] != ids[0]


def test_the_identity_process_describes_as_dlib_does_and_survives_its_child() -> None:
    """Descriptors from the child processes are dlib's own, many faces shared among two children in order; a child
    that dies is replaced at the next call; a region dlib cannot read raises here, in this process."""
    rng = np.random.default_rng(3)
    regions = [FaceRegion(rng.integers(0, 256, (120, 100, 3), dtype=np.uint8), (15.0, 20.0, 85.0, 100.0)) for _ in range(21)]
    region, expected = regions[0], FaceEmbedder().many(regions)
    remote = ProcessEmbedder(children=2)
    try:
        assert np.array_equal(remote(region), expected[0])
        assert all(np.array_equal(a, b) for a, b in zip(remote.many(regions[:3]), expected, strict=False))
        assert len(remote._children) == 1  # a few faces: not worth a second child
        assert all(np.array_equal(a, b) for a, b in zip(remote.many(regions), expected, strict=True))  # shared, in order
        assert len(remote._children) == 2
        first = remote._children[0]._process
        first.kill()
        first.wait()
        assert np.array_equal(remote(region), expected[0])
        with pytest.raises(Exception):  # noqa: B017 - whatever dlib raises, raised here
            remote(FaceRegion(np.zeros((4, 4, 2), np.uint8), (0.0, 0.0, 4.0, 4.0)))
        assert np.array_equal(remote(region), expected[0])  # and the child goes on
    finally:
        remote.close()


def test_stitch_refuses_another_face() -> None:
    ends = {0: (1.9, (0.0, 0.0, 40.0, 40.0))}
    starts = {0: (2.0, (1.0, 0.0, 41.0, 40.0))}
    assert stitch(ends, starts) == {0: 0}
    assert stitch(ends, starts, same_face=lambda old, new: False) == {}


def test_link_persons() -> None:
    a, b = np.zeros((2, 4)), np.full((1, 4), 1.0)  # b is 2 away from a
    near_a = a + 0.1
    descriptors = {0: a, 1: b, 2: near_a, 3: near_a}
    # 0 and 2 are one face; 3 is that face too but on screen with 2 (a mirror, a poster): another person.
    assert link_persons([0, 1, 2, 3, 4], descriptors, {(2, 3)}, 0.6) == {0: 0, 2: 0, 1: 1, 3: 2, 4: 3}
    assert link_persons([0, 2], descriptors, set(), 0.1) == {0: 0, 2: 1}  # 0.2 apart: over the threshold


# --- generated videos of real faces ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip() -> tuple[list[np.ndarray], float]:
    from scenes import clip_frames

    return clip_frames()


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """Two CK+ subjects' faces (happy), at the shared clip's face size."""
    from scenes import ck_face, ck_subjects

    return [ck_face(subject["happy"], 130) for subject in ck_subjects(2)]


def run(settings: Settings, video: Path, **values: Any) -> tuple[int, list[dict[str, Any]]]:
    """Submit the video; the job id and its tracks (id, person, first and last time, faces, mean centre x)."""
    settings = settings.replace(detector="centerface", **values)
    job_id = submit(Submission(str(video)), settings)
    with database(settings).connect() as conn:
        tracks = conn.execute(
            text("SELECT track_id, person_id, min(t) AS first_t, max(t) AS last_t, count(*) AS faces, "
                 "avg((x1 + x2) / 2) AS x FROM detections WHERE job_id = :j GROUP BY track_id, person_id ORDER BY track_id"),
            {"j": job_id},
        ).mappings().all()  # fmt: skip
    assert len({t["track_id"] for t in tracks}) == len(tracks), "a track with two person ids"
    return job_id, [dict(t) for t in tracks]


def persons_of(tracks: list[dict[str, Any]]) -> set[int]:
    return {t["person_id"] for t in tracks}


@needs_shared
def test_one_person_in_three_shots_is_one_person(embedded_settings, clip, tmp_path: Path) -> None:
    from scenes import clip_shot, write_shots

    frames, rate = clip
    shots = [clip_shot(frames, rate, 2.5), clip_shot(frames, rate, 2.5, scale=0.7, shift=(-90, 40)),
             clip_shot(frames, rate, 2.5, mirror=True)]  # fmt: skip
    job_id, tracks = run(embedded_settings, write_shots(tmp_path / "shots.mp4", shots))
    assert len(tracks) >= 2 and persons_of(tracks) == {0}  # the first cut ends a track; one person throughout
    report = job_report(database(embedded_settings), job_id)
    [person] = report["persons"]
    assert person["tracks"] == [t["track_id"] for t in tracks] and person["faces"] == sum(t["faces"] for t in tracks)
    assert person["first_t"] < 0.5 and person["last_t"] > 7.0
    assert person["seconds"] == pytest.approx(person["faces"] / embedded_settings.sample_fps)  # one face per sample


@needs_shared
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_cut_to_another_person_at_the_same_place_ends_the_track(embedded_settings, clip, faces, tmp_path, backend, request) -> None:
    """The man–woman–man cut: the tracker alone would bridge it (the faces overlap); identity ends the tracks, and
    the man's two shots are one person."""
    from scenes import clip_shot, still_shot, write_shots

    frames, rate = clip
    man = still_shot(faces[0], 2.0, centre=(361, 87))  # where the clip's face is
    video = write_shots(tmp_path / "cut.mp4", [man, clip_shot(frames, rate, 2.0), man])
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    job_id, tracks = run(embedded_settings, video, database_url=url)
    assert len(tracks) == 3
    assert [t["person_id"] for t in tracks] == [0, 1, 0]
    for track in tracks:  # no track spans a cut
        assert int(track["first_t"] // 2) == int(track["last_t"] // 2)
    engine = database(embedded_settings.replace(database_url=url))
    with engine.connect() as conn:
        summary = conn.execute(text("SELECT person_id, tracks, faces FROM fervid_person_summary WHERE job_id = :j ORDER BY person_id"), {"j": job_id}).all()
    assert [tuple(row) for row in summary] == [(0, 2, tracks[0]["faces"] + tracks[2]["faces"]), (1, 1, tracks[1]["faces"])]
    figure = timeline_figure(engine, job_id)
    assert [ax.get_ylabel().split("\n")[0] for ax in figure.axes[::2]] == ["person 0", "person 1"]


@needs_shared
def test_without_identity_a_face_change_still_ends_the_track(embedded_settings, clip, faces, tmp_path: Path) -> None:
    """Without identity every track is a person of its own, and a suspected change of face ends the track (within
    a segment; at segment borders only a cut of the whole frame does)."""
    from scenes import clip_shot, still_shot, write_shots

    frames, rate = clip
    man = still_shot(faces[0], 2.0, centre=(361, 87))
    video = write_shots(tmp_path / "cut.mp4", [man, clip_shot(frames, rate, 2.0), man])
    _, tracks = run(embedded_settings, video, identity=False, segment_seconds=60.0)
    assert len(tracks) == 3 and [t["person_id"] for t in tracks] == [0, 1, 2]


@needs_shared
def test_two_faces_at_once_are_two_persons(embedded_settings, clip, faces, tmp_path: Path) -> None:
    from scenes import beside, clip_shot, still_shot, write_shots

    frames, rate = clip
    shot = beside(clip_shot(frames, rate, 3.0, region=(0, 60, 320, 180)), still_shot(faces[1], 3.0, centre=(480, 180)))
    _, tracks = run(embedded_settings, write_shots(tmp_path / "two.mp4", [shot]))
    assert len(tracks) == 2 and persons_of(tracks) == {0, 1}


@needs_shared
def test_a_person_who_leaves_for_five_seconds_is_one_person(embedded_settings, clip, tmp_path: Path) -> None:
    from scenes import clip_shot, empty_shot, write_shots

    frames, rate = clip
    video = write_shots(tmp_path / "away.mp4", [clip_shot(frames, rate, 2.0), empty_shot(frames, 5.0), clip_shot(frames, rate, 2.0)])
    _, tracks = run(embedded_settings, video, segment_seconds=3.0)  # and the person spans segment borders
    assert len(tracks) == 2 and tracks[1]["first_t"] >= 7.0 and persons_of(tracks) == {0}


@needs_shared
def test_smoothing_reduces_label_changes_on_the_shared_clip(embedded_settings) -> None:
    from scenes import CLIP

    report = job_report(database(embedded_settings), run(embedded_settings, CLIP, model="fer2013-csa")[0])
    [track] = report["tracks"]
    assert track["label_changes_per_minute"] < track["label_changes_per_minute_raw"]
    assert len(track["timeline"]) == len(track["timeline_raw"])
    [person] = report["persons"]
    assert person["label_changes_per_minute"] == pytest.approx(track["label_changes_per_minute"], rel=0.05)


@needs_shared
def test_smoothing_keeps_frame_accuracy_on_a_posed_sequence(embedded_settings, tmp_path: Path) -> None:
    """CK+ subjects posing four expressions for 3 s each: the smoothed labels are right at least as often as the
    raw ones and change no more often (a model that reads every still shot right leaves nothing to smooth; the shared
    clip's test asks for strictly fewer changes)."""
    from scenes import posed_sequence

    video, labels = posed_sequence(tmp_path, 3)
    settings = embedded_settings.replace(detector="centerface", model="fer2013-csa")
    job_id = submit(Submission(str(video), labels=str(labels)), settings)
    with database(settings).connect() as conn:
        rows = conn.execute(
            text("SELECT label, label_smoothed, truth FROM detections WHERE job_id = :j AND truth IS NOT NULL ORDER BY track_id, t"),
            {"j": job_id},
        ).all()  # fmt: skip
    assert len(rows) > 100
    raw = sum(r[0] == r[2] for r in rows)
    smooth = sum(r[1] == r[2] for r in rows)
    assert smooth >= raw
    assert label_changes([r[1] for r in rows]) <= label_changes([r[0] for r in rows])

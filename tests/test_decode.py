"""fervid.worker.decode on generated videos (and the shared face clip when present)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, needs_shared
from videos import frame_times, make_audio_only, make_video, read_index

from fervid.worker.decode import DecodeError, Frame, iter_frames, probe

FACE_CLIP = SHARED / "videos" / "face_clip.mp4"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {
        "cfr": make_video(root / "cfr.mp4"),
        "vfr": make_video(root / "vfr.mp4", vfr=True),
        "mpeg4": make_video(root / "mpeg4.mp4", codec="mpeg4"),
    }


def sampled(times: list[Fraction], sample_fps: Fraction) -> list[Fraction]:
    """The first time at or after each instant k / sample_fps, without repeats."""
    chosen: list[Fraction] = []
    for k in range(math.ceil(times[-1] * sample_fps) + 1):
        later = [t for t in times if t >= k / sample_fps]
        if later and later[0] not in chosen:
            chosen.append(later[0])
    return chosen


def summary(frames: list[Frame]) -> list[tuple[int, float]]:
    return [(f.index, f.time) for f in frames]


def test_probe(videos: dict[str, Path]) -> None:
    info = probe(videos["cfr"])
    assert (info.width, info.height, info.fps, info.frames, info.rotation) == (160, 120, 25.0, 50, 0)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.codec in {"h264", "mpeg4"}


def test_every_frame(videos: dict[str, Path]) -> None:
    frames = list(iter_frames(videos["cfr"]))
    assert [f.index for f in frames] == list(range(50))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(50)])
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [read_index(f.image) for f in frames] == list(range(50))


def test_sampled_constant_rate(videos: dict[str, Path]) -> None:
    frames = list(iter_frames(videos["cfr"], sample_fps=5))
    assert [f.index for f in frames] == list(range(0, 50, 5))
    assert [f.time for f in frames] == pytest.approx([k / 5 for k in range(10)])
    assert [read_index(f.image) for f in frames] == list(range(0, 50, 5))


@pytest.mark.parametrize("sample_fps", [5, 3, 7.3])
def test_sampled_variable_rate(videos: dict[str, Path], sample_fps: float) -> None:
    times = frame_times(vfr=True)
    assert [f.time for f in iter_frames(videos["vfr"])] == pytest.approx([float(t) for t in times])
    frames = list(iter_frames(videos["vfr"], sample_fps=sample_fps))
    expected = sampled(times, Fraction(str(sample_fps)))
    assert [f.time for f in frames] == pytest.approx([float(t) for t in expected])
    assert [read_index(f.image) for f in frames] == [times.index(t) for t in expected]


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_rotation(tmp_path: Path, rotation: int) -> None:
    path = make_video(tmp_path / "phone.mp4", seconds=0.4, rotation=rotation)
    info = probe(path)
    shape = (160, 120) if rotation % 180 else (120, 160)
    assert (info.height, info.width) == shape and info.rotation % 360 == rotation % 360
    undo = {-90: cv2.ROTATE_90_COUNTERCLOCKWISE, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180}[rotation]
    frames = list(iter_frames(path))
    assert len(frames) == 10
    for frame in frames:
        assert frame.image.shape == (*shape, 3)
        assert read_index(cv2.rotate(frame.image, undo)) == frame.index


@pytest.mark.parametrize("kind", ["cfr", "vfr", "mpeg4"])
@pytest.mark.parametrize("sample_fps", [None, 5, 7.3])
@pytest.mark.parametrize(
    "cuts",
    [
        (0, 0.7, 1.4, None),
        (0, 0.47, 0.48, 0.5, 0.96, 1.0, 1.44, None),  # on and just before keyframes (every 12 frames)
        (0, 0.3, 0.33, 1.2, 2.5, None),  # an empty segment and one past the end
    ],
)
def test_segments_concatenate_to_whole(
    videos: dict[str, Path], kind: str, sample_fps: float | None, cuts: tuple[float | None, ...]
) -> None:
    whole = list(iter_frames(videos[kind], sample_fps))
    parts = [f for a, b in zip(cuts, cuts[1:]) for f in iter_frames(videos[kind], sample_fps, a, b)]
    assert summary(parts) == summary(whole)
    assert [read_index(f.image) for f in parts] == [read_index(f.image) for f in whole]


def test_segment_bounds(videos: dict[str, Path]) -> None:
    frames = list(iter_frames(videos["cfr"], start=0.5, end=1.0))
    assert [f.index for f in frames] == list(range(13, 25))
    assert [read_index(f.image) for f in frames] == list(range(13, 25))
    assert list(iter_frames(videos["cfr"], start=0.5, end=0.5)) == []
    assert list(iter_frames(videos["cfr"], start=9.0)) == []


def test_damaged_packets_are_skipped(videos: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(videos["mpeg4"].read_bytes())
    middle = len(data) // 2
    data[middle : middle + 500] = np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    errors: list[Exception] = []
    frames = list(iter_frames(damaged, on_error=errors.append))
    assert errors
    assert 40 <= len(frames) < 50
    assert frames[-1].index == 49
    assert [f.index for f in frames] == sorted({f.index for f in frames})


def test_bad_input_raises_decode_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    audio = make_audio_only(tmp_path / "audio.m4a")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    for path, reason in [(missing, "no such file"), (audio, "no video stream"), (text, "not a video")]:
        for call in (probe, iter_frames):
            with pytest.raises(DecodeError, match=reason) as caught:
                call(path)
            assert str(path) in str(caught.value) and isinstance(caught.value, ValueError)


def test_url_error_hides_query() -> None:
    with pytest.raises(DecodeError, match="cannot open") as caught:
        iter_frames("http://127.0.0.1:9/clip.mp4?X-Amz-Signature=secret")
    assert "http://127.0.0.1:9/clip.mp4" in str(caught.value) and "secret" not in str(caught.value)


def test_bad_arguments(videos: dict[str, Path]) -> None:
    for kwargs in ({"sample_fps": 0}, {"start": -1.0}, {"start": 1.0, "end": 0.5}):
        with pytest.raises(ValueError):
            iter_frames(videos["cfr"], **kwargs)


@needs_shared
@pytest.mark.parametrize("sample_fps", [None, 5])
def test_face_clip_segments(sample_fps: float | None) -> None:
    info = probe(FACE_CLIP)
    assert info.width > 0 and info.height > 0 and info.duration and info.duration > 2
    whole = list(iter_frames(FACE_CLIP, sample_fps))
    assert all(f.image.shape == (info.height, info.width, 3) for f in whole)
    cuts = [(0, 1.3), (1.3, 2.6), (2.6, None)]
    parts = [f for a, b in cuts for f in iter_frames(FACE_CLIP, sample_fps, a, b)]
    assert summary(parts) == summary(whole)


@needs_shared
@pytest.mark.parametrize("sample_fps", [None, 1000.0])
def test_frame_indices_are_unique_where_the_average_rate_is_not_the_frame_rate(sample_fps: float | None) -> None:
    """face_clip.mp4's frames are 512 ticks (1/25 s) apart but it averages ≈ 24.70 fps: indices come from the base
    rate, one per frame, and segments agree with a whole pass."""
    whole = [(f.index, f.time) for f in iter_frames(FACE_CLIP, sample_fps)]
    indices = [i for i, _ in whole]
    assert indices == list(range(len(whole)))
    parts = [(f.index, f.time) for a, b in ((0.0, 1.7), (1.7, None)) for f in iter_frames(FACE_CLIP, sample_fps, a, b)]
    assert parts == whole


def test_sampling_decodes_only_the_frames_samples_need(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampled decoding skips non-reference frames that no sample needs and yields exactly the frames the
    sampling rule picks from every frame (same indices, times and pixels), whole and per segment."""
    from fervid.worker import decode

    video = make_video(tmp_path / "bframes.mp4", seconds=4.0, gop=25)  # libx264's default: B-frames
    every = {f.time: f for f in iter_frames(video)}
    times = frame_times(4.0, 25, False)
    decoded: list[Fraction] = []
    real = decode._decoded

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        for item in real(*args, **kwargs):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(decode, "_decoded", counting)
    for sample_fps, start, end in ((5, 0.0, None), (2.5, 1.3, 3.7)):
        decoded.clear()
        frames = list(iter_frames(video, sample_fps=sample_fps, start=start, end=end))
        expected = [every[float(t)] for t in sampled(times, Fraction(str(sample_fps))) if start <= t < (end or math.inf)]
        assert summary(frames) == summary(expected)
        assert all(np.array_equal(f.image, e.image) for f, e in zip(frames, expected))
        span = [t for t in decoded if start <= t < (end or math.inf)]
        assert len(span) < 0.8 * sum(start <= t < (end or math.inf) for t in times), "no frame was skipped"

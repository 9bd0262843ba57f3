"""Tiny test videos generated with PyAV: known timestamps, rotation metadata, a readable frame number.

Every frame of the ``"moving"`` pattern shows a bright square moving with time over a gradient
that changes with the frame number, and a strip of black/white blocks along the bottom edge
encoding the frame number in binary (:func:`read_index` reads it back).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.codec.codec import UnknownCodecError

#: Draws frame ``index`` shown at ``time`` seconds: uint8 BGR (height, width, 3).
Painter = Callable[[int, float], np.ndarray]

BITS = 10  # blocks in the frame-number strip
STRIP = 16  # its height in pixels
VFR_STEPS = (Fraction(1, 25), Fraction(1, 10))  # alternating frame durations of a variable-rate video


def frame_times(seconds: float = 2.0, fps: int = 25, vfr: bool = False) -> list[Fraction]:
    """Presentation times of :func:`make_video`'s frames: ``i / fps``, or alternating :data:`VFR_STEPS`."""
    end = Fraction(str(seconds))
    if not vfr:
        return [Fraction(i, fps) for i in range(round(end * fps))]
    times, t = [], Fraction(0)
    while t < end:
        times.append(t)
        t += VFR_STEPS[(len(times) - 1) % 2]
    return times


def moving(size: tuple[int, int]) -> Painter:
    """The default pattern for frames of ``size`` (width, height)."""
    width, height = size
    if width < BITS * 4 or height < STRIP * 3:
        raise ValueError(f"frame size {size} too small for the pattern")
    ramp = np.linspace(0, 120, width, dtype=np.float32)
    side = height // 4

    def paint(index: int, time: float) -> np.ndarray:
        image = np.empty((height, width, 3), np.uint8)
        image[:] = ((ramp + 7 * index) % 150).astype(np.uint8)[None, :, None]
        x = int(time * 60) % (width - side)
        y = (height - STRIP - side) // 2
        image[y : y + side, x : x + side] = 255
        block = width // BITS
        image[height - STRIP :] = 0
        for bit in range(BITS):
            if index >> bit & 1:
                image[height - STRIP :, bit * block : (bit + 1) * block] = 255
        return image

    return paint


def read_index(image: np.ndarray) -> int:
    """The frame number encoded by the ``"moving"`` pattern (``image`` as drawn, i.e. un-rotated)."""
    height, width = image.shape[:2]
    block = width // BITS
    strip = image[height - STRIP + 4 : height - 4].mean(axis=(0, 2))
    return sum(1 << bit for bit in range(BITS) if strip[bit * block + 4 : (bit + 1) * block - 4].mean() > 128)


def _encoder(codec: str) -> str:
    try:
        av.Codec(codec, "w")
    except UnknownCodecError:
        return "mpeg4"
    return codec


def make_video(
    path: str | Path,
    *,
    seconds: float = 2.0,
    fps: int = 25,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    vfr: bool = False,
    rotation: int = 0,
    gop: int = 12,
    pattern: str | Painter = "moving",
) -> Path:
    """Write a video of ``size`` (width, height) with frames at :func:`frame_times`.

    ``rotation`` is written as the display matrix, in degrees counter-clockwise (as PyAV reads
    it back in ``VideoFrame.rotation``; a phone held upright writes -90). ``pattern`` is
    ``"moving"`` or a :data:`Painter`. A keyframe every ``gop`` frames gives seeks somewhere
    to land in short videos. ``codec`` falls back to mpeg4 when it is not built in.
    """
    path = Path(path)
    paint = moving(size) if pattern == "moving" else pattern
    if not callable(paint):
        raise ValueError(f"unknown pattern {pattern!r}")
    time_base = Fraction(1, 1000) if vfr else Fraction(1, fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(_encoder(codec), rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for index, time in enumerate(frame_times(seconds, fps, vfr)):
            frame = av.VideoFrame.from_ndarray(paint(index, float(time)), format="bgr24")
            frame.pts = int(time / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """Write an AAC file with a 440 Hz tone and no video stream (use an .m4a or .mp4 name)."""
    path = Path(path)
    rate = 44100
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate).astype(np.float32)
        for chunk in np.array_split(samples, max(1, len(samples) // 1024)):
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate = rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path

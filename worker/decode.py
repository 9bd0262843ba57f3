"""Video decoding with PyAV: probing, streaming frames, sampling by timestamp, segments.

The timeline of a video starts at 0 at its video stream's ``start_time``; a frame's time is
``(pts - start_time) * time_base``, computed exactly with fractions.

Sampling is by timestamp, not by frame counter, so it is right for variable frame rate: the
sampling instants are the global grid ``k / sample_fps`` (k = 0, 1, ...) anchored at t = 0, and
a frame is yielded when it is the first frame at or after one or more instants (the first
frame of the stream always is). A segment ``[start, end)`` holds exactly the frames with
``start <= time < end``; decoding starts at a keyframe strictly before ``start`` so the
sampling rule sees the same preceding frame as a pass over the whole video. Cutting a video
into consecutive segments therefore yields exactly the frames of one pass: none twice, none
skipped.

:attr:`Frame.index` is ``round(time * rate)`` with the stream's base rate (FFmpeg's ``r_frame_rate``, the
rate at which every timestamp is a whole frame; the average rate when unknown), both after a seek and in a
pass from the start, so segments and whole passes agree. For constant frame rate it is the frame's position
in the stream, even where the average rate differs (a clip of 25 fps frames with a shorter last frame averages
24.70 fps, and rounding at that rate gave two frames one index); for variable frame rate it is the position the
frame would have at the base rate (increasing, but not necessarily consecutive). Within a pass indices strictly
increase: a frame that would round onto its predecessor's index takes the next one.

When sampling, the decoder skips the non-reference frames (FFmpeg's ``skip_frame``) that no sample needs: a
packet is decoded in full when a sampling instant lies between its presentation predecessor (known from the
packets read so far and :data:`LOOKAHEAD` packets ahead) and its own time, so exactly the frames a full pass
would yield are yielded, and nothing that a reference frame needs is skipped. On libx264 video at 25 fps this
decodes about half the frames (benchmarks/results/throughput.md).
"""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from pathlib import Path
from urllib.parse import urlsplit

import av
import cv2
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from fervid.settings import get_settings

logger = logging.getLogger(__name__)

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")
_ROTATE = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}

ErrorHandler = Callable[[Exception], None]
#: Packets read ahead of the decoder to know each frame's presentation predecessor (B-frame reordering is shorter).
LOOKAHEAD = 16


class DecodeError(ValueError):
    """A video that cannot be opened or read; names the file (URLs without their query)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds. ``width``/``height`` are as displayed, i.e. after ``rotation``
    (degrees counter-clockwise, as in the display matrix), like :attr:`Frame.image`."""

    width: int
    height: int
    fps: float | None
    duration: float | None
    frames: int | None
    rotation: int
    codec: str


@dataclass(frozen=True)
class Frame:
    """A decoded frame: global index, seconds from the stream's start, BGR image with rotation applied."""

    index: int
    time: float
    image: np.ndarray


def _display_name(source: str | Path) -> str:
    text = str(source)
    if _URL.match(text):  # drop the query: presigned URLs carry credentials there
        return urlsplit(text)._replace(query="", fragment="").geturl()
    return text


def _mp4_damage(path: Path) -> str | None:
    """Why an MP4/MOV file (``ftyp`` first) cannot be read whole, from its top-level boxes alone; else ``None``.

    Finds the two common faults of an interrupted recording or copy: the frames (``mdat``) or the index
    (``moov``) cut short, and no ``moov`` at all (cameras write it last, when the recording is finalised).
    """
    size = path.stat().st_size
    found: set[bytes] = set()
    with open(path, "rb") as file:
        offset = 0
        while offset + 8 <= size:
            file.seek(offset)
            header = file.read(16)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if offset == 0 and kind != b"ftyp":
                return None
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")
            elif length == 0:  # the last box runs to the end of the file
                length = size - offset
            if length < 8:
                return f"damaged MP4 structure: box {kind.decode('latin-1')!r} at byte {offset} has size {length}"
            if offset + length > size and kind in (b"mdat", b"moov"):
                part = "the frames" if kind == b"mdat" else "the index"
                end = offset + length
                return f"truncated: its {kind.decode()} box ({part}) ends at byte {end} but the file has {size} bytes"
            found.add(kind)
            offset += length
    if b"ftyp" not in found:  # too short for a box: not an MP4 file at all
        return None
    if b"moov" not in found:
        return "no moov box (the index of the frames): the recording was not finalised or the file is incomplete"
    return None


def _open(source: str | Path) -> tuple[InputContainer, VideoStream, str]:
    name = _display_name(source)
    text = str(source)
    if not _URL.match(text):
        path = Path(text)
        if not path.exists():
            raise DecodeError(name, "no such file")
        if not path.is_file():
            raise DecodeError(name, "not a file")
        if path.stat().st_size == 0:
            raise DecodeError(name, "empty file")
        if damage := _mp4_damage(path):
            raise DecodeError(name, damage)
    try:
        if _URL.match(text):  # a server that accepts and then sends nothing must not hang the job
            limit = get_settings().url_timeout
            container = av.open(text, "r", timeout=(limit, limit))
        else:
            container = av.open(text, "r")
    except av.InvalidDataError:
        raise DecodeError(name, "not a video (unrecognised format)") from None
    except av.ExitError:  # FFmpeg's interrupt callback: the timeout passed
        raise DecodeError(name, f"no answer within {get_settings().url_timeout:g} s (FERVID_URL_TIMEOUT)") from None
    except (av.FFmpegError, OSError) as error:
        raise DecodeError(name, f"cannot open: {getattr(error, 'strerror', None) or error}") from None
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams})
        container.close()
        raise DecodeError(name, "no video stream" + (f" ({' and '.join(kinds)} only)" if kinds else ""))
    return container, container.streams.video[0], name


def _exact(value: float) -> Fraction:
    """A decimal number as the fraction it reads as (0.7 -> 7/10, not the nearest binary float)."""
    return Fraction(str(value))


def _packets(container: InputContainer, stream: VideoStream, name: str) -> Iterator[av.Packet]:
    """The stream's packets; a container that cannot be read any further raises :class:`DecodeError`."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as error:
            raise DecodeError(name, f"cannot read further: {error.strerror or error}") from None
        yield packet


def _needed(packets: Iterable[av.Packet], stream: VideoStream, sample_fps: Fraction) -> Iterator[tuple[av.Packet, bool]]:
    """Each packet and whether a sample may need its frame: a sampling instant ``k / sample_fps`` lies in
    (its presentation predecessor's time, its time]; packets without a timestamp are always needed.

    The predecessor is found among the packets read so far, :data:`LOOKAHEAD` of them ahead of this one (an error
    reading ahead is raised once the packets before it are handed on)."""
    origin, time_base = stream.start_time or 0, stream.time_base
    ahead: deque[av.Packet] = deque()
    seen: list[int] = []  # sorted pts of the packets read, the oldest dropped as they fall behind
    source, failure = iter(packets), None
    while True:
        while failure is None and len(ahead) <= LOOKAHEAD:
            try:
                packet = next(source)
            except StopIteration:
                break
            except DecodeError as error:
                failure = error
                break
            ahead.append(packet)
            if packet.pts is not None:
                bisect.insort(seen, packet.pts)
        if not ahead:
            if failure is not None:
                raise failure
            return
        packet = ahead.popleft()
        if packet.pts is None:
            yield packet, True
            continue
        at = bisect.bisect_left(seen, packet.pts)
        if at == 0:
            yield packet, True
        else:
            before, now = (seen[at - 1] - origin) * time_base, (packet.pts - origin) * time_base
            yield packet, math.floor(now * sample_fps) > math.floor(before * sample_fps)
        del seen[: max(0, at - 4 * LOOKAHEAD)]


def _decoded(
    container: InputContainer, stream: VideoStream, name: str, report: ErrorHandler, sample_fps: Fraction | None = None
) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """(time, frame) from the container's position on; damaged packets and frames are reported and skipped.

    With ``sample_fps`` the non-reference frames no sample needs are not decoded (see the module docstring).
    A container that cannot be read any further (an I/O error, a demuxer that cannot resynchronise) raises
    :class:`DecodeError`.
    """
    origin = stream.start_time or 0
    time_base = stream.time_base

    def at(pts: int | None) -> str:
        return f"at {float((pts - origin) * time_base):.3f}s" if pts is not None else "without timestamp"

    packets = _packets(container, stream, name)
    context = stream.codec_context
    marked = _needed(packets, stream, sample_fps) if sample_fps is not None else ((p, True) for p in packets)
    for packet, needed in marked:
        if sample_fps is not None:
            context.skip_frame = "DEFAULT" if needed else "NONREF"
        try:
            frames = packet.decode()
        except av.FFmpegError as error:
            report(DecodeError(name, f"damaged packet {at(packet.pts)} skipped: {error.strerror or error}"))
            continue
        for frame in frames:
            pts = frame.pts if frame.pts is not None else frame.dts
            if frame.is_corrupt or pts is None:
                report(DecodeError(name, f"{'corrupt' if frame.is_corrupt else 'unusable'} frame {at(pts)} skipped"))
                continue
            yield (pts - origin) * time_base, frame


def _decoded_from(
    container: InputContainer, stream: VideoStream, name: str, start: Fraction, report: ErrorHandler,
    sample_fps: Fraction | None = None,
) -> Iterator[tuple[Fraction, av.VideoFrame]]:  # fmt: skip
    """Decoded frames from a keyframe strictly before ``start``, or from the stream's first frame.

    Seeking goes back further (1 s, 2 s, 4 s, ...) while the first frame after a seek is not
    before ``start`` (containers index keyframes by decode time, so a seek can land late).
    """
    if start <= 0:
        return _decoded(container, stream, name, report, sample_fps)
    step, target = Fraction(1), start
    while target > 0:
        _seek(container, stream, name, target)
        frames = _decoded(container, stream, name, report, sample_fps)
        first = next(frames, None)
        if first is None or first[0] < start:  # None: start is past the end
            return chain([first] if first else [], frames)
        frames.close()
        target, step = start - step, step * 2
    _seek(container, stream, name, Fraction(0))
    return _decoded(container, stream, name, report, sample_fps)


def _seek(container: InputContainer, stream: VideoStream, name: str, time: Fraction) -> None:
    """Seek to the keyframe at or before ``time`` seconds."""
    offset = (stream.start_time or 0) + math.floor(time / stream.time_base)
    try:
        container.seek(offset, stream=stream, backward=True)
    except av.FFmpegError as error:
        raise DecodeError(name, f"cannot seek to {float(time):.3f}s: {error}") from None


def _image(frame: av.VideoFrame) -> np.ndarray:
    image = frame.to_ndarray(format="bgr24")
    turns = round(frame.rotation / 90) % 4  # display matrix: degrees counter-clockwise
    return cv2.rotate(image, _ROTATE[turns]) if turns else image


def probe(source: str | Path, check: Callable[[VideoInfo], None] | None = None) -> VideoInfo:
    """Size, rate, duration, frame count (an estimate when the container lacks it), rotation and codec.

    ``check`` sees what the headers declare (size as stored, ``rotation`` 0) before any frame is decoded and
    raises to refuse the video, so limits are enforced without decoding (a header may declare a huge frame).
    Raises :class:`DecodeError` when the file cannot be opened, declares no frame size, or has no frame that
    decodes.
    """
    container, stream, name = _open(source)
    with container:
        fps = float(stream.average_rate) if stream.average_rate else None
        if stream.duration:
            duration: float | None = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = None
        frames = stream.frames or (round(duration * fps) if duration and fps else None)
        context = stream.codec_context
        width, height, codec = context.width, context.height, context.name
        if not width or not height:
            raise DecodeError(name, "unknown frame size: the stream header is damaged or declares an impossible size")
        if check:
            check(VideoInfo(width, height, fps, duration, frames or None, 0, codec))
        first = next(_decoded(container, stream, name, lambda error: None), None)
    if first is None:
        raise DecodeError(name, "no frame decodes: the video stream is empty or every frame is damaged")
    rotation = round(first[1].rotation)
    if round(rotation / 90) % 2:
        width, height = height, width
    return VideoInfo(width, height, fps, duration, frames or None, rotation, codec)


def iter_frames(
    source: str | Path,
    sample_fps: float | None = None,
    start: float = 0.0,
    end: float | None = None,
    *,
    threads: int = 0,
    on_error: ErrorHandler | None = None,
) -> Iterator[Frame]:
    """Stream the frames of ``[start, end)`` seconds, every frame or sampled at ``sample_fps`` by timestamp.

    Memory does not grow with the video's length. ``threads=0`` lets FFmpeg choose the decoder's
    thread count. Damaged packets and frames are skipped and passed to ``on_error`` (logged as
    warnings when it is ``None``). The input is opened here, so :class:`DecodeError` is raised by
    this call, before iterating. See the module docstring for the sampling and segment rules.
    """
    if sample_fps is not None and sample_fps <= 0:
        raise ValueError(f"sample_fps must be positive, got {sample_fps}")
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad segment [{start}, {end})")
    container, stream, name = _open(source)
    rate = stream.guessed_rate or stream.average_rate
    if rate is None:
        container.close()
        raise DecodeError(name, "unknown frame rate")
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    report = on_error or (lambda error: logger.warning("%s: skipped damaged data: %s", name, error))
    sample = _exact(sample_fps) if sample_fps is not None else None
    stop = _exact(end) if end is not None else None
    return _frames(container, stream, name, rate, sample, _exact(start), stop, report)


def _frames(
    container: InputContainer,
    stream: VideoStream,
    name: str,
    rate: Fraction,
    sample_fps: Fraction | None,
    start: Fraction,
    end: Fraction | None,
    report: ErrorHandler,
) -> Iterator[Frame]:
    with container:
        previous: Fraction | None = None
        last_index = -1
        skipping = sample_fps if sample_fps is not None and sample_fps < rate else None
        for time, frame in _decoded_from(container, stream, name, start, report, skipping):
            if end is not None and time >= end:
                break
            # Due when an instant k / sample_fps lies in (previous, time]: the first frame at or after it.
            due = sample_fps is None or previous is None or math.floor(time * sample_fps) > math.floor(previous * sample_fps)
            previous = time
            index = max(round(time * rate), last_index + 1)
            last_index = index
            if due and time >= start:
                yield Frame(index, float(time), _image(frame))

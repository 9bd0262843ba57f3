"""Generators of bad inputs: damaged videos, awkward images, hostile checkpoints. Everything is written here.

Videos start from :func:`videos.make_video`; the damage is done at the byte or packet level so that each file
is broken in one known way.
"""

from __future__ import annotations

import builtins
import pickle  # the hostile checkpoint below is a pickle on purpose; fervid's package never imports pickle
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image

#: EXIF tag 0x0112: orientation 6 means "rotate 90° clockwise to display".
ORIENTATION = 0x0112
ROTATE_90_CW = 6


def boxes(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """The top-level boxes of an MP4 file as ``(type, offset, size)``."""
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        elif size == 0:
            size = len(data) - offset
        yield kind, offset, size
        offset += size


def truncated(src: Path, dest: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``src``'s bytes."""
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def without_moov(src: Path, dest: Path) -> Path:
    """``src`` with its ``moov`` box (the index of every sample) renamed to ``free``, i.e. ignored by readers."""
    data = bytearray(src.read_bytes())
    offset = next(offset for kind, offset, _ in boxes(bytes(data)) if kind == b"moov")
    data[offset + 4 : offset + 8] = b"free"
    dest.write_bytes(bytes(data))
    return dest


def remux(src: Path, dest: Path, options: dict[str, str] | None = None) -> Path:
    """Copy ``src``'s video packets into ``dest`` (container from its suffix) without re-encoding."""
    with av.open(str(src)) as source, av.open(str(dest), "w", options=options or {}) as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    return dest


def garbled_packets(src: Path, dest: Path, damaged: Iterable[int], seed: int = 0) -> Path:
    """``src`` re-muxed with the payload of the packets numbered ``damaged`` replaced by random bytes.

    Timestamps are kept, so the container is sound and only those frames are undecodable.
    """
    damaged = set(damaged)
    rng = np.random.default_rng(seed)
    with av.open(str(src)) as source, av.open(str(dest), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        number = 0
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is None:
                continue
            if number in damaged:
                noise = av.Packet(rng.integers(0, 256, max(packet.size, 64), dtype=np.uint8).tobytes())
                noise.pts, noise.dts, noise.time_base = packet.pts, packet.dts, packet.time_base
                packet = noise
            packet.stream = stream
            target.mux(packet)
            number += 1
    return dest


def zero_frame_video(path: Path) -> Path:
    """An AVI whose video stream holds no frame at all (MP4 drops an empty track; AVI keeps it)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
        container.mux(stream.encode())
    return path


class _Bits:
    """A big-endian bit cursor over a bytearray."""

    def __init__(self, data: bytearray, position: int) -> None:
        self.data, self.position = data, position * 8

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte, bit = divmod(self.position, 8)
            value = value << 1 | (self.data[byte] >> (7 - bit) & 1)
            self.position += 1
        return value

    def write(self, count: int, value: int) -> None:
        for shift in range(count - 1, -1, -1):
            byte, bit = divmod(self.position, 8)
            mask = 1 << (7 - bit)
            self.data[byte] = self.data[byte] | mask if value >> shift & 1 else self.data[byte] & ~mask
            self.position += 1


def _patch_vol(data: bytearray, start: int, width: int, height: int) -> None:
    """Rewrite the 13-bit width and height of the MPEG-4 Part 2 video object layer header at ``start``
    (ISO/IEC 14496-2 §6.2.3, the fields up to ``video_object_layer_height``)."""
    bits = _Bits(data, start)
    bits.read(1 + 8)  # random_accessible_vol, video_object_type_indication
    if bits.read(1):  # is_object_layer_identifier
        bits.read(4 + 3)
    if bits.read(4) == 15:  # aspect_ratio_info: extended PAR
        bits.read(8 + 8)
    if bits.read(1):  # vol_control_parameters
        bits.read(2 + 1)
        if bits.read(1):  # vbv_parameters
            bits.read(79)
    if bits.read(2) != 0:  # video_object_layer_shape
        raise ValueError("only rectangular video object layers are handled")
    bits.read(1)
    resolution = bits.read(16)  # vop_time_increment_resolution
    bits.read(1)
    if bits.read(1):  # fixed_vop_rate
        bits.read(max(1, (resolution - 1).bit_length()))
    bits.read(1)
    bits.write(13, width)
    bits.read(1)
    bits.write(13, height)


def declared_size(src: Path, dest: Path, width: int, height: int) -> Path:
    """An MPEG-4 Part 2 video (``make_video(codec="mpeg4")``) whose headers declare ``width``×``height``
    (at most 8191 each, the field's 13 bits) while its frames stay small: a "decompression bomb" header."""
    if not (0 < width < 8192 and 0 < height < 8192):
        raise ValueError("MPEG-4 Part 2 sizes have 13 bits")
    data = bytearray(src.read_bytes())
    found = 0
    start = data.find(b"\x00\x00\x01\x20")
    while start >= 0:  # the header is in the sample description and repeated in the stream
        _patch_vol(data, start + 4, width, height)
        found += 1
        start = data.find(b"\x00\x00\x01\x20", start + 4)
    if not found:
        raise ValueError(f"{src}: no MPEG-4 Part 2 video object layer header")
    dest.write_bytes(bytes(data))
    return dest


def declared_raw_video(path: Path, width: int, height: int) -> Path:
    """A YUV4MPEG2 file whose header declares ``width``×``height`` raw frames, holding 1 kB of the first frame:
    decoding it would allocate the declared size, then fail."""
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + bytes(1024))
    return path


def gradient(size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """An RGB uint8 image (height, width, 3) whose left and right halves differ, so rotations are visible."""
    width, height = size
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (255, 32, 32)
    image[:, width // 2 :] = (32, 32, 255)
    return image


def save_png16(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    """A 16-bit grayscale PNG whose values span the full 16-bit range."""
    width, height = size
    values = np.linspace(0, 65535, width * height).reshape(height, width).astype(np.uint16)
    Image.fromarray(values).save(path)
    return path


def save_cmyk_jpeg(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    """A CMYK JPEG (as print workflows write them)."""
    Image.fromarray(gradient(size)).convert("CMYK").save(path, "JPEG", quality=95)
    return path


def save_exif_rotated(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A JPEG stored ``size`` (landscape) with EXIF orientation 6: viewers show it rotated 90° clockwise."""
    exif = Image.Exif()
    exif[ORIENTATION] = ROTATE_90_CW
    Image.fromarray(gradient(size)).save(path, "JPEG", quality=95, exif=exif)
    return path


def save_image(path: Path, size: tuple[int, int] = (48, 48)) -> Path:
    """A smooth RGB image (no face-like texture), in the format of ``path``'s suffix."""
    Image.fromarray(gradient(size)).save(path)
    return path


def corrupt_copy(src: Path, dest: Path, keep: float = 0.3) -> Path:
    """An image file cut after ``keep`` of its bytes, the tail replaced by zeros (a damaged download)."""
    data = src.read_bytes()
    cut = int(len(data) * keep)
    dest.write_bytes(data[:cut] + bytes(len(data) - cut))
    return dest


class _Exploit:
    """Creates ``marker`` when unpickled (``open(marker, "w")``): what a hostile "checkpoint" would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (builtins.open, (str(self.marker), "w"))


def hostile_checkpoint(path: Path, marker: Path) -> Path:
    """A plain pickle (no torch zip) whose loading would create ``marker`` through ``__reduce__``."""
    path.write_bytes(pickle.dumps({"format": "fervid-checkpoint", "payload": _Exploit(marker)}, protocol=2))
    return path


def hostile_zip_checkpoint(path: Path, marker: Path, template: Path) -> Path:
    """A torch zip checkpoint (copied from ``template``) whose ``data.pkl`` is replaced by the hostile pickle."""
    with zipfile.ZipFile(template) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps({"format": "fervid-checkpoint", "payload": _Exploit(marker)}, protocol=2)
            target.writestr(item, data)
    return path

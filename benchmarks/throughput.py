"""Throughput of the job pipeline on 720p video, stage by stage, against limits measured in the same run.

    python benchmarks/throughput.py [--quick] [--sample-fps 5] [--detect-every 1] [--device cpu|cuda]
                                    [--only SECTION ...] [--fer-python PYTHON] [--model CHECKPOINT]

The script makes its own test video: frames of ``../shared/videos/face_clip.mp4`` (a real, changing face) scaled
×1.4 and moving over a textured 1280×720 canvas, looped for 60 s at 25 fps and encoded with libx264 — or a drawn
face when ``../shared`` is absent (the output says so) — plus a 10-minute copy (the 60 s stream looped) for the
memory check; both are cached under ``$TMPDIR/fervid-bench``. It then measures, each figure against a baseline
from the same run:

* ``decode``: PyAV decode-only frames/s (threaded, and one thread) — the limit every stage is compared with;
* ``job``: the whole sampled job (decode, detect, track, classify, write to SQLite), cold and warm, against real
  time and against decode-only; ``stages``: each stage's busy time per frame in the pipeline, and the overlap;
* ``every-frame``: every frame (``fervid submit --every-frame``) at 720p, frames/s;
* ``classify``: classifier crops/s in batches with ONNX Runtime (graph optimisation levels, BatchNorm folded or
  not) and PyTorch eager, as a fraction of a large fp32 matmul's GFLOP/s at the same thread count;
* ``detect``: detection every k-th frame and at smaller sizes, against every-frame detection at 640 px;
* ``memory``: peak RSS of the 10-minute job against the 60 s one (separate processes);
* ``ingest``: timeline rows/s into PostgreSQL (``COPY``) and SQLite (:mod:`ingest`);
* ``scale-out``: two one-core worker processes on the two halves of the video against one such worker;
* ``fer``: the ``fer`` package's video analysis at the same sampling, when an interpreter with it is given;
* ``gpu``: with ``--device cuda``, classification (float16 autocast, channels-last) and end-to-end frames/s.

Results are printed and written to ``benchmarks/results/throughput.md``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import multiprocessing
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crowd  # noqa: E402 - benchmarks/ is not a package
import ingest  # noqa: E402

from fervid.db import database
from fervid.db.jobs import get_job  # noqa: E402
from fervid.model.checkpoint import load_checkpoint  # noqa: E402
from fervid.model.export import INPUT_NAME, OUTPUT_NAME, onnx_bytes  # noqa: E402
from fervid.model.infer import CPU_BATCH, Classifier  # noqa: E402
from fervid.model.summary import count_flops  # noqa: E402
from fervid.model.weights import resolve_model  # noqa: E402
from fervid.settings import Settings, get_settings  # noqa: E402
from fervid.worker import runtime  # noqa: E402
from fervid.worker.decode import iter_frames, probe  # noqa: E402
from fervid.worker.jobs import Submission, create, submit  # noqa: E402
from fervid.worker.pipeline import SESSION_THREADS, STAGES, SegmentCounts, detect_threads, process_segment, run_segment  # noqa: E402
from fervid.worker.track import iou  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CLIP = SHARED / "videos" / "face_clip.mp4"
RESULTS = ROOT / "benchmarks" / "results" / "throughput.md"
CACHE = Path(tempfile.gettempdir()) / "fervid-bench"
SECTIONS = ("decode", "job", "stages", "every-frame", "crowd", "classify", "detect", "memory", "ingest", "scale-out", "fer", "gpu")

SIZE = (1280, 720)
FPS = 25
CLIP_SCALE = 1.4
VIDEO_VERSION = 1  # bump when the generated video changes, so cached copies are remade


#: Warm jobs timed for the sampled-job target; the median is reported.
WARM_RUNS = 3


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs: the full run, or ``--quick``."""

    seconds: int  # the test video
    long_seconds: int  # the memory check's long video
    every_frame_seconds: float
    batch_sizes: tuple[int, ...]
    detect_every: tuple[int, ...]
    detect_sizes: tuple[int, ...]
    ingest_rows: int
    timing_seconds: float  # per classification measurement


FULL = Plan(60, 600, 20.0, (1, 8, 16, 32, 64, 128, 256), (2, 3, 5), (640, 320), 200_000, 1.0)
QUICK = Plan(20, 120, 4.0, (1, 16, 64), (3,), (320,), 50_000, 0.4)


# --- reporting --------------------------------------------------------------------------------------------------


class Report:
    """Prints each section as it is measured and collects the same content as markdown."""

    def __init__(self) -> None:
        self.console = Console(width=max(Console().width, 150))
        self.parts: list[str] = []
        self.targets: list[tuple[str, str, str]] = []

    def section(self, title: str) -> None:
        self.console.rule(f"[bold]{title}")
        self.parts.append(f"## {title}\n")

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False)
        self.parts.append(text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        cells = [[_cell(v) for v in row] for row in rows]
        table = Table()
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in cells:
            table.add_row(*row)
        self.console.print(table)
        lines = ["| " + " | ".join(headers) + " |", "| --- |" + " ---: |" * (len(headers) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        self.parts.append("\n".join(lines) + "\n")

    def target(self, what: str, met: bool, detail: str) -> None:
        self.targets.append((what, "met" if met else "NOT met", detail))
        self.note(f"**Target — {what}: {'met' if met else 'NOT met'}** ({detail})")

    def markdown(self) -> str:
        return "\n".join(self.parts)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def rate(fn: Callable[[], object], items: int, seconds: float) -> float:
    """Items per second of ``fn`` (which handles ``items`` per call), called for about ``seconds`` after a warm-up
    call. Total throughput, not the best call: every measurement bears the same share of a busy machine's load."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return calls * items / elapsed


# --- hardware ---------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name, family/model numbers and widest vector extension, from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = fields.get("flags", "").split()
    vector = next((f for f in ("avx512f", "avx2", "avx") if f in flags), "no AVX")
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}, {vector})"


def hardware(report: Report) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    info = {
        "cpu": cpu_model(),
        "cores": cores,
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "PyAV / FFmpeg": f"{av.__version__} / libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}",
        "OpenCV": cv2.__version__,
        "numpy": np.__version__,
        "load average (1 min) at start": f"{load[0]:.1f}",
    }
    report.section("Hardware")
    report.table(("", "value"), list(info.items()))
    if load[0] > 0.5 * cores:
        report.note(
            f"The machine is busy (load average {load[0]:.1f} on {cores} cores) with other work: absolute figures "
            "are pessimistic; the ratios compare measurements taken under the same load."
        )
    return info


# --- test videos ------------------------------------------------------------------------------------------------


def drawn_face(count: int = 100) -> list[np.ndarray]:
    """A cartoon face whose mouth goes from a smile to a frown and whose eyes blink: the stand-in for the clip."""
    frames = []
    for i in range(count):
        image = np.full((470, 400, 3), (70, 95, 125), np.uint8)
        cv2.ellipse(image, (200, 235), (120, 160), 0, 0, 360, (150, 180, 225), -1)
        mood = math.sin(2 * math.pi * i / count)  # 1: smile, -1: frown
        for x in (150, 250):
            if i % 40 < 3:
                cv2.line(image, (x - 18, 200), (x + 18, 200), (40, 40, 40), 3)
            else:
                cv2.circle(image, (x, 200), 16, (255, 255, 255), -1)
                cv2.circle(image, (x, 200), 7, (40, 30, 20), -1)
            tilt = int(10 * mood)
            cv2.line(image, (x - 22, 165 + tilt), (x + 22, 165 - tilt), (30, 40, 60), 4)
        cv2.ellipse(image, (200, 320), (50, max(3, int(25 * abs(mood)))), 0, 0 if mood >= 0 else 180, 180 if mood >= 0 else 360, (40, 40, 140), 5)
        frames.append(image)
    return frames


def face_source() -> tuple[list[np.ndarray], str, str]:
    """The face frames to move over the canvas, a tag for the cache, and what they are."""
    if CLIP.is_file():
        frames = [cv2.resize(f.image, None, fx=CLIP_SCALE, fy=CLIP_SCALE, interpolation=cv2.INTER_LINEAR) for f in iter_frames(CLIP)]
        height, width = frames[0].shape[:2]
        info = probe(CLIP)
        what = (
            f"frames of ../shared/videos/face_clip.mp4 ({info.width}×{info.height}, {len(frames)} frames) scaled ×{CLIP_SCALE} "
            f"to {width}×{height}, played forwards and backwards and moving over a textured {SIZE[0]}×{SIZE[1]} canvas"
        )
        return frames, "clip", what
    frames = drawn_face()
    return frames, "drawn", f"a DRAWN synthetic face (../shared is absent, so face_clip.mp4 could not be used) moving over a {SIZE[0]}×{SIZE[1]} canvas"


def _paint(faces: list[np.ndarray], index: int, background: np.ndarray) -> np.ndarray:
    """Frame ``index``: the face (ping-pong through its frames) on a Lissajous path over the background."""
    t = index / FPS
    period = 2 * len(faces) - 2
    k = index % period
    face = faces[k if k < len(faces) else period - k]
    height, width = face.shape[:2]
    x = round((SIZE[0] - width) / 2 * (1 + math.sin(2 * math.pi * t / 7)))
    y = round((SIZE[1] - height) / 2 * (1 + math.sin(2 * math.pi * t / 5)))
    image = background.copy()
    image[y : y + height, x : x + width] = face
    return image


def make_video(path: Path, seconds: int, paint: Callable[[int, np.ndarray], np.ndarray]) -> Path:
    """Encode ``seconds`` of ``paint(index, background)`` frames at :data:`FPS` with libx264 (veryfast, CRF 23, a
    keyframe every 2 s) over a textured background."""
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8), (0, 0), 6)
    background = cv2.normalize(background, None, 30, 210, cv2.NORM_MINMAX)
    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.gop_size = 2 * FPS
        for index in range(seconds * FPS):
            frame = av.VideoFrame.from_ndarray(paint(index, background), format="bgr24")
            frame.pts = index
            frame.time_base = Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def remux(source: Path, path: Path, times: int = 1, until: float | None = None) -> Path:
    """``source``'s video stream repeated ``times`` times, or cut at its first keyframe at or after ``until``
    seconds, remuxed without re-encoding (timestamps shifted)."""
    partial = path.with_suffix(".part.mp4")
    seconds = probe(source).duration
    with av.open(str(partial), "w") as output:
        stream = None
        for k in range(times):
            with av.open(str(source)) as container:
                video = container.streams.video[0]
                if stream is None:
                    stream = output.add_stream_from_template(video)
                span = round(seconds / video.time_base)
                for packet in container.demux(video):
                    if packet.dts is None:
                        continue
                    if until is not None and packet.is_keyframe and packet.pts * video.time_base >= until:
                        break
                    packet.pts += k * span
                    packet.dts += k * span
                    packet.stream = stream
                    output.mux(packet)
    partial.rename(path)
    return path


def crowd_video(cache: Path, plan: Plan) -> Path:
    """The crowded-scene video (:mod:`crowd`), made once, then cached."""
    faces, tag, _ = face_source()
    path = cache / f"crowd720p-{tag}-{plan.seconds}s-v{VIDEO_VERSION}.{crowd.VERSION}.mp4"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        make_video(path, plan.seconds, crowd.painter(crowd.face_patches(faces), SIZE, FPS))
    return path


def test_videos(cache: Path, plan: Plan) -> tuple[Path, Path, str]:
    """The test video and its long version (made once, then cached), and what they show."""
    cache.mkdir(parents=True, exist_ok=True)
    faces, tag, what = face_source()
    short = cache / f"face720p-{tag}-{plan.seconds}s-v{VIDEO_VERSION}.mp4"
    if not short.exists():
        make_video(short, plan.seconds, functools.partial(_paint, faces))
    long = cache / f"face720p-{tag}-{plan.long_seconds}s-v{VIDEO_VERSION}.mp4"
    if not long.exists():
        remux(short, long, times=plan.long_seconds // plan.seconds)
    return short, long, what


def model_checkpoint(name_or_path: str) -> tuple[Path, str]:
    """The checkpoint to run (a shipped model's name, checksum verified, or a path) and what it is."""
    path = resolve_model(name_or_path)
    config = load_checkpoint(path).config
    return path, f"{name_or_path} ({config.arch}, width {config.width})"


# --- decode, the job, the stages ---------------------------------------------------------------------------------


def decode_only(video: Path, threads: int) -> float:
    """Frames/s of PyAV decoding every frame (no conversion); ``threads=0``: FFmpeg's choice (frame threads)."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        start = time.perf_counter()
        frames = sum(1 for _ in container.decode(stream))
        return frames / (time.perf_counter() - start)


def run_job(video: Path, settings: Settings, every_frame: bool = False) -> tuple[float, dict[str, Any]]:
    """Seconds for the whole job (submit → rows in the database → finalised) and the job's record."""
    engine = database(settings)
    start = time.perf_counter()
    job_id = submit(Submission(str(video), every_frame=every_frame), settings)
    seconds = time.perf_counter() - start
    return seconds, get_job(engine, job_id)


def segment_run(
    video: Path, settings: Settings, end: float | None = None, every_frame: bool = False
) -> tuple[float, list[dict[str, Any]], SegmentCounts]:
    """The pipeline alone (no database write) on ``[0, end)`` of the video: seconds, rows and counts.

    A run on the first second loads the models first, so that the figures are a warm worker's."""
    engine = database(settings)
    job = get_job(engine, create(engine, Submission(str(video), every_frame=every_frame), settings))
    run_segment(job, 0, 0.0, 1.0, settings, "warm-up")
    start = time.perf_counter()
    rows, counts = run_segment(job, 0, 0.0, end, settings, "bench")
    return time.perf_counter() - start, rows, counts


def stage_rows(counts: SegmentCounts, wall: float, reference_ms: float) -> list[tuple[object, ...]]:
    """Each stage's busy ms per frame and its ratio to ``reference_ms``; then their sum and the wall time."""
    per_frame = {stage: 1000 * counts.seconds[stage] / counts.frames for stage in STAGES}
    rows: list[tuple[object, ...]] = [(stage, ms, ms / reference_ms) for stage, ms in per_frame.items()]
    serial = sum(per_frame.values())
    elapsed = 1000 * wall / counts.frames
    rows.append(("sum of the stages' busy times", serial, serial / reference_ms))
    rows.append(("pipeline wall time (stages overlapped)", elapsed, elapsed / reference_ms))
    return rows


def decode_section(report: Report, video: Path, duration: float) -> float:
    report.section("Decode limit (PyAV, decode only)")
    threaded = decode_only(video, 0)
    single = decode_only(video, 1)
    report.table(
        ("decoder", "frames/s", "× real time", "× one thread"),
        [("FFmpeg threads (thread_count=0: its choice)", threaded, threaded / FPS, threaded / single), ("one thread", single, single / FPS, 1.0)],
    )
    report.note(f"Decoding the whole {duration:.0f} s video alone takes {FPS * duration / threaded:.2f} s: the floor of any sampled job.")
    return threaded


def job_section(report: Report, video: Path, settings: Settings, decode_fps: float, duration: float) -> float:
    report.section(f"Whole job, sampled at {settings.sample_fps:g} fps")
    for loaded in (runtime.classifier, runtime.detector, runtime.embedder):
        loaded.cache_clear()
    cold, job = run_job(video, settings)
    warm = statistics.median(run_job(video, settings)[0] for _ in range(WARM_RUNS))
    decode_seconds = FPS * duration / decode_fps
    report.table(
        ("job (decode, detect, track, classify, write to SQLite)", "wall s", "× real time", "÷ decode-only time", "frames", "faces"),
        [
            ("cold: classifier, detector and face descriptor models loaded in the job", cold, duration / cold, cold / decode_seconds, job["frames_done"], job["faces"]),
            (f"warm: a worker with its models loaded (median of {WARM_RUNS} jobs)", warm, duration / warm, warm / decode_seconds, job["frames_done"], job["faces"]),
        ],
    )
    report.target("the sampled job ≥ 10× real time (wall ≤ 6 s for 60 s)", duration / warm >= 10, f"warm {duration / warm:.1f}× real time, {warm:.2f} s")
    report.target("the sampled job ≥ 15× real time (wall ≤ 4 s for 60 s)", duration / warm >= 15, f"warm {duration / warm:.1f}× real time")
    report.target("a cold job ≤ 1.1× a warm one", cold / warm <= 1.1, f"×{cold / warm:.2f}")
    return warm


def pipeline_detect_threads(settings: Settings) -> int:
    """How many frames the pipeline detects at once with these settings' detector."""
    return detect_threads(runtime.detector(settings.detector, settings.detect_size, settings.detector_threshold))


def stages_section(report: Report, video: Path, settings: Settings, decode_fps: float) -> tuple[float, list[dict[str, Any]]]:
    report.section(f"Pipeline stages, sampled at {settings.sample_fps:g} fps")
    wall, rows, counts = segment_run(video, settings)
    decode_ms = 1000 * (FPS / settings.sample_fps) / decode_fps
    threads = dict.fromkeys(STAGES, 1) | {"detect": pipeline_detect_threads(settings)}
    report.note(
        f"{counts.frames} sampled frames, {counts.faces} faces; busy time per sampled frame of each stage (decode: "
        f"decoding and sampling; detect: the detector, summed over its {threads['detect']} thread(s); track: tracking, "
        f"crops and preprocessing; classify: batched inference), against decoding alone ({decode_ms:.2f} ms per "
        f"sampled frame: {FPS / settings.sample_fps:g} frames decoded each)."
    )
    report.table(("stage", "ms per frame", "× decode-only"), stage_rows(counts, wall, decode_ms))
    serial = sum(counts.seconds.values())
    slowest = max(STAGES, key=lambda stage: counts.seconds[stage] / threads[stage])
    report.note(
        f"Overlap: the stages' busy times add up to {serial:.2f} s, the pipeline took {wall:.2f} s (×{serial / wall:.2f}); "
        f"the slowest stage, {slowest}, is busy {counts.seconds[slowest] / threads[slowest] / wall:.0%} of the wall time"
        f"{f' on each of its {threads[slowest]} threads' if threads[slowest] > 1 else ''}."
    )
    return wall, rows


def every_frame_section(report: Report, video: Path, settings: Settings, decode_fps: float, seconds: float) -> float:
    """The pipeline's frames/s on every frame of the first ``seconds``."""
    report.section("Every frame at 720p")
    wall, _, counts = segment_run(video, settings, end=seconds, every_frame=True)
    fps = counts.frames / wall
    report.table(
        (f"every frame (first {seconds:g} s)", "frames/s", "× real time", "÷ decode-only frames/s"),
        [("pipeline (no database write)", fps, fps / FPS, fps / decode_fps)],
    )
    report.table(("stage", "ms per frame", "× decode-only"), stage_rows(counts, wall, 1000 / decode_fps))
    return fps


def crowd_section(report: Report, video: Path, settings: Settings, fer_python: str, work: Path) -> None:
    """The crowded scene (:mod:`crowd`): the warm job, its stages per frame and per face, and fer at the same sampling."""
    report.section(f"Crowded scene: {crowd.PEOPLE} faces, sampled at {settings.sample_fps:g} fps")
    duration = probe(video).duration
    run_job(video, settings)  # loads the models
    warm, job = min((run_job(video, settings) for _ in range(2)), key=lambda run: run[0])
    wall, _, counts = segment_run(video, settings)
    report.note(
        f"{video.name}: {duration:.0f} s, {SIZE[0]}×{SIZE[1]}: {crowd.PEOPLE} copies of the one-face video's face at "
        f"sides of {crowd.SIZES[0] / crowd.PATCH_MARGIN:.0f}–{crowd.SIZES[1] / crowd.PATCH_MARGIN:.0f} px, mirrored, "
        f"brightened and drifting (benchmarks/crowd.py). The job found {job['faces']} faces in {job['frames_done']} "
        f"sampled frames ({job['faces'] / max(job['frames_done'], 1):.1f} per frame) with every option on "
        f"(flip averaging {settings.flip}, smoothing {settings.smooth_seconds:g} s, identity {settings.identity})."
    )
    every = round(FPS / settings.sample_fps)
    rows: list[tuple[object, ...]] = [("fervid warm job (best of 2), rows written to SQLite", warm, duration / warm, job["faces"], "")]
    version = fer_version(fer_python)
    if version is None:
        report.note(f"fer was not measured: it does not import with {fer_python}. {FER_REQUIREMENTS}.")
    else:
        try:
            fer = run_fer(fer_python, video, every, work)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            report.note(f"fer {version} failed on the crowded video: {error}")
        else:
            rows[0] = (*rows[0][:-1], fer["analyze"] / warm)
            rows.append((f"fer {version} Video.analyze(frequency={every}), FER() defaults", fer["analyze"], duration / fer["analyze"], fer["faces"], 1.0))
            report.target("crowded scene ≥ 5× faster than fer at the same sampling", fer["analyze"] / warm >= 5, f"×{fer['analyze'] / warm:.1f}")
    report.table(("crowded job", "wall s", "× real time", "faces", "× fer"), rows)
    report.target(f"crowded scene ({crowd.PEOPLE} faces) ≥ 4× real time", duration / warm >= 4, f"{duration / warm:.1f}× real time, {warm:.2f} s")
    report.table(
        ("stage (pipeline alone, no write)", "ms per frame", "ms per face"),
        [(stage, 1000 * counts.seconds[stage] / counts.frames, 1000 * counts.seconds[stage] / max(counts.faces, 1)) for stage in STAGES]
        + [("pipeline wall time (stages overlapped)", 1000 * wall / counts.frames, 1000 * wall / max(counts.faces, 1))],
    )


# --- classification ---------------------------------------------------------------------------------------------


def matmul_peaks(threads: int, seconds: float, n: int = 2048) -> dict[str, float]:
    """GFLOP/s of an ``n``×``n`` fp32 matmul on ``threads`` threads with PyTorch (MKL) and with ONNX Runtime (MLAS,
    the kernels the classifier's convolutions run on); the larger is the machine's practical peak."""
    torch.set_num_threads(threads)
    a, c = torch.randn(n, n), torch.empty(n, n)
    spec = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [n, n]) for name in "abc"]
    graph = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", spec[:2], spec[2:])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    session = ort_session(model.SerializeToString(), threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    x = a.numpy()
    return {
        "PyTorch (MKL)": rate(lambda: torch.mm(a, a, out=c), 2 * n**3, seconds) / 1e9,
        "ONNX Runtime (MLAS)": rate(lambda: session.run(None, {"a": x, "b": x}), 2 * n**3, seconds) / 1e9,
    }


def unfolded_onnx(model: torch.nn.Module, size: int, chans: int) -> bytes:
    """The network exported without constant folding, so that its BatchNorms stay separate nodes."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, chans, size, size),), buffer, dynamo=False, do_constant_folding=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}}, opset_version=17,
        )  # fmt: skip
    return buffer.getvalue()


def ort_session(model: bytes, threads: int, level: ort.GraphOptimizationLevel) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = level
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def classify_section(report: Report, checkpoint: Path, settings: Settings, plan: Plan) -> None:
    report.section("Classification throughput (CPU)")
    ck = load_checkpoint(checkpoint)
    size, chans = ck.input_size, ck.config.in_chans
    model = ck.build()
    flops = count_flops(model, size, chans)
    cores = len(os.sched_getaffinity(0))
    rng = np.random.default_rng(0)
    faces = rng.uniform(-1, 1, (max(plan.batch_sizes + (256,)), chans, size, size)).astype(np.float32)
    seconds = plan.timing_seconds
    thread_counts = sorted({1, cores})
    matmuls = {t: matmul_peaks(t, seconds) for t in thread_counts}
    folded = onnx_bytes(ck)
    unfolded = unfolded_onnx(model, size, chans)

    def bn_nodes(graph: bytes) -> int:
        return sum(node.op_type == "BatchNormalization" for node in onnx.load_from_string(graph).graph.node)

    rows: list[tuple[object, ...]] = []

    def add(name: str, threads: int, batch: int, crops_per_s: float) -> None:
        rows.append((name, threads, batch, crops_per_s, crops_per_s * flops / 1e9))

    all_ = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for threads in sorted({1, cores}):
        session = ort_session(folded, threads, all_)
        for batch in plan.batch_sizes if threads == 1 else (CPU_BATCH, 64, 256):
            x = faces[:batch]
            add("onnxruntime, BN folded, all optimisations", threads, batch, rate(lambda: session.run(None, {INPUT_NAME: x}), batch, seconds))
    batch = min(settings.batch_size, CPU_BATCH)
    x = faces[:batch]
    for graph, name in ((folded, f"BN folded by the exporter ({bn_nodes(folded)} BN nodes)"), (unfolded, f"no constant folding ({bn_nodes(unfolded)} BN nodes)")):
        for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, all_):
            session = ort_session(graph, 1, level)
            add(f"onnxruntime, {name}, {level.name}", 1, batch, rate(lambda: session.run(None, {INPUT_NAME: x}), batch, seconds))
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            tensor = torch.from_numpy(x)
            add("PyTorch eager", threads, batch, rate(lambda: model(tensor), batch, seconds))
            last = model.to(memory_format=torch.channels_last)
            tensor_cl = tensor.contiguous(memory_format=torch.channels_last)
            add("PyTorch eager, channels-last", threads, batch, rate(lambda: last(tensor_cl), batch, seconds))
            model = model.to(memory_format=torch.contiguous_format)
    classifier = Classifier(ck, device="cpu", batch_size=settings.batch_size, threads=SESSION_THREADS)
    x = faces[:256]
    add(
        f"the pipeline's Classifier.predict (256 crops, runs of {min(settings.batch_size, CPU_BATCH)})", SESSION_THREADS,
        settings.batch_size, rate(lambda: classifier.predict(x), len(x), seconds),
    )  # fmt: skip
    for t, after in {t: matmul_peaks(t, seconds) for t in thread_counts}.items():  # the peak again, after the model
        matmuls[t] = {name: max(g, after[name]) for name, g in matmuls[t].items()}
    torch.set_num_threads(cores)
    peaks = {t: max(m.values()) for t, m in matmuls.items()}
    rows = [(*row, row[4] / peaks[row[1]]) for row in rows]
    measured = "; ".join(f"{t} thread(s): " + ", ".join(f"{name} {g:.0f}" for name, g in m.items()) for t, m in matmuls.items())
    report.note(
        f"Model: {ck.config.arch}, width {ck.config.width}, {size} px, {len(ck.classes)} classes: {flops / 1e6:.1f} MFLOPs per crop "
        f"(fervid.model.summary.count_flops; the attention's element-wise work is not counted). Matmul peak, GFLOP/s of a "
        f"2048×2048 fp32 matmul measured before and after the model in this run (the better of the two) — {measured}; "
        f"the larger at each thread count is the peak. Fraction = crops/s × FLOPs per crop ÷ that peak. On CPU the "
        f"Classifier runs at most fervid.model.infer.CPU_BATCH = {CPU_BATCH} crops at a time, whatever batch_size."
    )
    report.table(("backend", "threads", "batch", "crops/s", "GFLOP/s", "fraction of peak"), rows)
    best = max(rows, key=lambda r: r[5])
    pipeline = rows[-1]
    report.target(
        "classification ≥ 0.5 of the matmul peak",
        pipeline[5] >= 0.5,
        f"the pipeline's classifier {pipeline[5]:.2f}; best configuration {best[5]:.2f} ({best[0]}, {best[1]} thread(s), batch {best[2]})",
    )


# --- detection --------------------------------------------------------------------------------------------------


def agreement(reference: list[dict[str, Any]], rows: list[dict[str, Any]]) -> tuple[float, float, float, int]:
    """How well ``rows`` reproduce ``reference`` frame by frame: mean IoU of each reference face's best match
    (0 when none), the share matched at IoU ≥ 0.5, label agreement among those, and unmatched extra faces."""
    by_frame: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_frame[row["frame_index"]].append(row)
    box = lambda r: (r["x1"], r["y1"], r["x2"], r["y2"])  # noqa: E731
    ious, same = [], []
    for ref in reference:
        best = max(by_frame[ref["frame_index"]], key=lambda r: iou(box(ref), box(r)), default=None)
        overlap = iou(box(ref), box(best)) if best else 0.0
        ious.append(overlap)
        if overlap >= 0.5:
            same.append(best["label"] == ref["label"])
    matched = sum(v >= 0.5 for v in ious)
    return (
        float(np.mean(ious)) if ious else 1.0,
        matched / len(reference) if reference else 1.0,
        float(np.mean(same)) if same else 1.0,
        len(rows) - matched,
    )


def detect_section(report: Report, video: Path, settings: Settings, plan: Plan, reference: tuple[float, list[dict[str, Any]]]) -> None:
    report.section("Detection: every k-th frame, smaller frames")
    if settings.detect_every != 1:
        reference = segment_run(video, settings.replace(detect_every=1))[:2]
    ref_wall, ref_rows = reference
    variants = [(f"detect_every={k}", settings.replace(detect_every=k)) for k in plan.detect_every]
    variants += [(f"detect_size={s}", settings.replace(detect_size=s)) for s in plan.detect_sizes if s != settings.detect_size]
    rows: list[tuple[object, ...]] = [(f"detect_every=1, detect_size={settings.detect_size} (reference)", ref_wall, 1.0, 1.0, 1.0, 1.0, 0)]
    for name, variant in variants:
        wall, found, _ = segment_run(video, variant)
        rows.append((name, wall, ref_wall / wall, *agreement(ref_rows, found)))
    report.note(
        f"CenterFace finds faces on a copy of the frame downscaled so its longer side is settings.detect_size "
        f"(FERVID_DETECT_SIZE, default {Settings.detect_size}; boxes are mapped back to the full frame, where the crops are cut). With "
        f"detect_every=k the detector runs on every k-th sampled frame and the frames between keep its boxes "
        f"(tracked, cropped and classified anew). Each variant ran the pipeline on the same {len(ref_rows)} reference faces."
    )
    report.table(("variant", "wall s", "speed-up", "mean IoU", "faces matched (IoU ≥ 0.5)", "same label", "extra faces"), rows)


# --- memory -----------------------------------------------------------------------------------------------------


def _job_in_child(video: str, settings: Settings) -> tuple[float, int, int]:
    """In a fresh process: run the job; its wall seconds, peak RSS in KiB and frames."""
    seconds, job = run_job(Path(video), settings)
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, job["frames_done"]


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a fresh (spawned) Python process."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def memory_section(report: Report, short: Path, long: Path, settings: Settings, work: Path) -> None:
    report.section("Memory: peak RSS, long video against short")
    rows = []
    for name, video in (("short", short), ("long", long)):
        data_dir = work / f"memory-{name}"
        child = settings.replace(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'fervid.db'}")
        seconds, rss, frames = in_child(_job_in_child, str(video), child)
        rows.append([f"{probe(video).duration:.0f} s video", seconds, frames, rss / 1024])
    for row in rows:
        row.append(row[3] / rows[0][3])
    report.note("Each job ran alone in a new process (imports, models, SQLite); peak RSS from resource.getrusage(RUSAGE_SELF).ru_maxrss.")
    report.table(("job", "wall s", "frames", "peak RSS MiB", "× short"), rows)
    report.target("peak RSS of the long job within 10% of the short one", rows[1][4] <= 1.10, f"×{rows[1][4]:.3f}")


# --- database ingest --------------------------------------------------------------------------------------------


def ingest_section(report: Report, rows: int, postgres: str) -> None:
    report.section("Database ingest (timeline rows)")
    results, skipped = ingest.measure_all(rows, postgres)
    report.table(
        ("database", "rows", "write_segment rows/s", "target rows/s", "× target", "baseline", "baseline rows/s", "× baseline"),
        [
            (r.database, r.rows, r.write_segment, ingest.TARGETS[r.database], r.write_segment / ingest.TARGETS[r.database], r.baseline_name, r.baseline, r.write_segment / r.baseline)
            for r in results
        ],
    )
    for r in results:
        report.target(f"{r.database} ingest ≥ {ingest.TARGETS[r.database]:,} rows/s", r.write_segment >= ingest.TARGETS[r.database], f"{r.write_segment:,.0f} rows/s")
    if skipped:
        report.note(skipped)


# --- scale-out --------------------------------------------------------------------------------------------------


def _worker(settings: Settings, job_id: int, idxs: list[int], cpu: int, ready: Any, go: Any, done: Any) -> None:
    """A worker process pinned to one core: warms up on the video's first second, then runs its segments."""
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    engine = database(settings)
    job = get_job(engine, job_id)
    run_segment(job, 0, 0.0, 1.0, settings, "warm-up")  # loads the models; writes nothing
    ready.put(cpu)
    go.wait()
    start = time.time()
    for idx in idxs:
        process_segment(engine, job_id, idx, settings)
    done.put((start, time.time()))


def workers(settings: Settings, video: Path, assignment: list[list[int]]) -> float:
    """Wall seconds for one job whose segments are split among worker processes (``assignment[i]``: the
    segments of the worker on core ``i``), from the moment all are ready to the last one done."""
    engine = database(settings)
    job_id = create(engine, Submission(str(video)), settings)
    ctx = multiprocessing.get_context("spawn")
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    processes = [ctx.Process(target=_worker, args=(settings, job_id, idxs, cpu, ready, go, done)) for cpu, idxs in enumerate(assignment)]
    for p in processes:
        p.start()
    for _ in processes:
        ready.get(timeout=300)
    go.set()
    spans = [done.get(timeout=900) for _ in processes]
    for p in processes:
        p.join()
    status = get_job(engine, job_id)["status"]
    if status != "done":
        raise RuntimeError(f"scale-out job {job_id} ended {status}")
    return max(end for _, end in spans) - min(start for start, _ in spans)


def scale_out_section(report: Report, video: Path, settings: Settings, postgres: str, duration: float, work: Path) -> None:
    report.section("Scale-out: two one-core workers against one")
    if len(os.sched_getaffinity(0)) < 2:
        report.note("Skipped: fewer than two cores.")
        return
    split = settings.replace(segment_seconds=duration / 2)
    with ExitStack() as stack:
        try:
            url, where = stack.enter_context(ingest.throwaway_postgres(postgres)), "PostgreSQL (a throwaway database)"
        except OperationalError:
            url, where = f"sqlite:///{work / 'scale-out.db'}", "SQLite (PostgreSQL is unreachable)"
        one = workers(split.replace(database_url=url), video, [[0, 1]])
        two = workers(split.replace(database_url=url), video, [[0], [1]])
    report.note(
        f"One job, two {duration / 2:g} s segments, written to {where}. Each worker is a process pinned to one core "
        "(os.sched_setaffinity), its models loaded before the clock starts, running process_segment."
    )
    report.table(("workers", "wall s", "× one worker"), [("one worker, both segments", one, 1.0), ("two workers, one segment each", two, two / one)])
    report.target("two workers ≤ 0.6× one worker's wall time", two / one <= 0.6, f"×{two / one:.2f}")


# --- the fer package --------------------------------------------------------------------------------------------

FER_REQUIREMENTS = (
    "fer 25.10.3 imports TensorFlow (its Keras/TFLite model), pkg_resources (setuptools < 70), OpenCV's "
    "VideoCapture (opencv-contrib-python, which would replace this environment's opencv-python), pandas, tqdm and "
    "requests; it cannot share fervid's environment, so run it from its own, e.g. "
    "`python -m venv /tmp/fer-venv && /tmp/fer-venv/bin/pip install --no-deps fer==25.10.3 && /tmp/fer-venv/bin/pip "
    "install tensorflow-cpu 'setuptools<70' opencv-contrib-python pandas tqdm requests Pillow matplotlib 'moviepy<2'`, "
    "then pass `--fer-python /tmp/fer-venv/bin/python`"
)
FER_SCRIPT = """
import json, sys, time
start = time.perf_counter()
from fer.fer import FER
from fer.classes import Video
detector = FER()
loaded = time.perf_counter()
rows = Video(sys.argv[1], outdir=sys.argv[3]).analyze(
    detector, display=False, frequency=int(sys.argv[2]), save_frames=False, save_video=False,
    annotate_frames=False, zip_images=False)
done = time.perf_counter()
faces = sum(1 for row in rows for key in row if key.startswith("box"))
print(json.dumps({"load": loaded - start, "analyze": done - loaded, "frames_with_faces": len(rows), "faces": faces}))
"""


def fer_version(python: str) -> str | None:
    """fer's version when ``python`` imports it, else ``None``."""
    check = subprocess.run([python, "-c", "import fer, fer.fer, fer.classes; print(fer.__version__)"], capture_output=True, text=True, timeout=300)
    return check.stdout.strip() if check.returncode == 0 else None


def run_fer(python: str, video: Path, every: int, work: Path) -> dict[str, Any]:
    """fer's ``Video.analyze`` of every ``every``-th frame of ``video``: load and analysis seconds, frames, faces."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [python, "-c", FER_SCRIPT, str(video), str(every), str(work / "fer-out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def fer_section(
    report: Report, python: str, video: Path, settings: Settings, duration: float, fervid: dict[str, float], plan: Plan, work: Path
) -> None:
    """fer against fervid on the same video: sampled (``fervid["sampled"]``: the warm job's seconds) and every
    frame of the first ``plan.every_frame_seconds`` (``fervid["every_frame"]``: the pipeline's frames/s)."""
    report.section("Peer: the fer package's video analysis")
    version = fer_version(python)
    if version is None:
        report.note(f"fer cannot run with {python}: it does not import there. {FER_REQUIREMENTS}.")
        return
    every = round(FPS / settings.sample_fps)
    head = remux(video, work / "head.mp4", until=plan.every_frame_seconds)
    try:
        sampled = run_fer(python, video, every, work)
        each = run_fer(python, head, 1, work)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        report.note(f"fer {version} failed on the video: {error}")
        return
    each_fps = plan.every_frame_seconds * FPS / each["analyze"]
    rows: list[tuple[object, ...]] = [
        (f"fer {version} Video.analyze(frequency={every}), FER() defaults", sampled["analyze"], duration / sampled["analyze"], "", sampled["frames_with_faces"], sampled["faces"], 1.0),
        (f"fer {version} Video.analyze(frequency=1), first {plan.every_frame_seconds:g} s", each["analyze"], "", each_fps, each["frames_with_faces"], each["faces"], 1.0),
    ]
    if "sampled" in fervid:
        rows.append(("fervid warm job, same sampling (rows written to SQLite)", fervid["sampled"], duration / fervid["sampled"], "", "", "", sampled["analyze"] / fervid["sampled"]))
        report.target("the sampled job ≥ 4× faster than fer's at the same sampling", sampled["analyze"] / fervid["sampled"] >= 4, f"×{sampled['analyze'] / fervid['sampled']:.1f}")
    if "every_frame" in fervid:
        rows.append((f"fervid pipeline, every frame of the first {plan.every_frame_seconds:g} s", "", "", fervid["every_frame"], "", "", fervid["every_frame"] / each_fps))
        report.target("every frame at 720p ≥ 3× fer's frames/s", fervid["every_frame"] / each_fps >= 3, f"×{fervid['every_frame'] / each_fps:.1f}")
    report.note(
        f"fer ran with {python} (its own environment) on the same video with its defaults: Haar face detection on the "
        f"full frame, its TFLite classifier, OpenCV decoding with a seek to each analysed frame; every {every}th frame "
        f"({settings.sample_fps:g} fps), then every frame of the first {plan.every_frame_seconds:g} s (cut at a keyframe "
        f"without re-encoding). Loading took {sampled['load']:.1f} s (not counted)."
    )
    report.table(("analysis", "wall s", "× real time", "frames/s", "frames with faces", "faces", "× fer"), rows)


# --- GPU --------------------------------------------------------------------------------------------------------


def gpu_section(report: Report, requested: bool, checkpoint: Path, video: Path, settings: Settings, plan: Plan) -> None:
    report.section("GPU")
    if not torch.cuda.is_available():
        report.note("no GPU here (torch.cuda.is_available() is False): the `--device cuda` measurements were not run.")
        return
    if not requested:
        report.note(f"GPU present ({torch.cuda.get_device_name()}); run with `--device cuda` to measure it.")
        return
    ck = load_checkpoint(checkpoint)
    flops = count_flops(ck.build(), ck.input_size, ck.config.in_chans)
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)

    def matmul() -> None:
        a @ a
        torch.cuda.synchronize()

    peak = rate(matmul, 2 * n**3, 2 * plan.timing_seconds) / 1e9
    faces = np.random.default_rng(0).uniform(-1, 1, (4096, ck.config.in_chans, ck.input_size, ck.input_size)).astype(np.float32)
    rows: list[tuple[object, ...]] = []
    crops_per_batch: dict[int, float] = {}
    for batch in (64, 256, 1024):
        classifier = Classifier(ck, backend="torch", device="cuda", batch_size=batch)
        crops = crops_per_batch[batch] = rate(lambda: classifier.predict(faces), len(faces), plan.timing_seconds)
        rows.append((f"Classifier (PyTorch, float16 autocast, channels-last), batch {batch}", crops, crops * flops / 1e9 / peak))
    report.note(f"{torch.cuda.get_device_name()}: {peak:,.0f} GFLOP/s in an {n}×{n} float16 matmul (same run).")
    report.table(("classification", "crops/s (host arrays in and out)", "fraction of fp16 matmul peak"), rows)
    cuda = settings.replace(device="cuda")
    with GpuUtilisation() as sampled_use:
        sampled, _, counts = segment_run(video, cuda)
    with GpuUtilisation() as every_use:
        every, _, every_counts = segment_run(video, cuda, end=plan.every_frame_seconds, every_frame=True)
    providers = ", ".join(p for p in ort.get_available_providers() if p != "CPUExecutionProvider") or "CPU only"
    report.note(f"ONNX Runtime providers for detection: {providers}.")
    report.table(
        ("end to end on the GPU", "frames/s", "× real time", "GPU utilisation (mean of nvidia-smi samples)"),
        [
            (f"sampled at {settings.sample_fps:g} fps", counts.frames / sampled, probe(video).duration / sampled, sampled_use.text),
            ("every frame", every_counts.frames / every, every_counts.frames / every / FPS, every_use.text),
        ],
    )
    best_batch = max(crops_per_batch, key=crops_per_batch.__getitem__)
    print(
        f"GPU summary: {torch.cuda.get_device_name()}: classification {crops_per_batch[best_batch]:,.0f} crops/s (batch {best_batch}); "
        f"sampled job {counts.frames / sampled:,.0f} frames/s ({probe(video).duration / sampled:.1f}× real time, "
        f"GPU {sampled_use.text}); every frame {every_counts.frames / every:,.0f} frames/s (GPU {every_use.text})"
    )


class GpuUtilisation:
    """GPU utilisation while the block runs, from ``nvidia-smi`` sampled every 200 ms (``text``: the mean, or why
    there is none)."""

    def __enter__(self) -> GpuUtilisation:
        self.text = "n/a (no nvidia-smi)"
        try:
            self._process: subprocess.Popen[str] | None = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200", "-i", "0"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        except OSError:
            self._process = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        self._process.terminate()
        out, _ = self._process.communicate(timeout=10)
        samples = [float(line) for line in out.split() if line.replace(".", "", 1).isdigit()]
        if samples:
            self.text = f"{statistics.fmean(samples):.0f} % ({len(samples)} samples)"


# --- main -------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 20 s video, a 2-minute long one, fewer variants")
    parser.add_argument("--sample-fps", type=float, default=None, help="sampling rate of the job (default: settings, 5)")
    parser.add_argument("--detect-every", type=int, default=None, help="detect on every k-th sampled frame (default: settings, 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: also measure the GPU")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only these sections (repeatable)")
    parser.add_argument("--model", help="a shipped model's name or a checkpoint (default: settings, the jobs' default)")
    parser.add_argument("--fer-python", default=os.environ.get("FERVID_FER_PYTHON", sys.executable), help="a Python with fer installed")
    parser.add_argument("--postgres", default=ingest.POSTGRES_URL, help="PostgreSQL maintenance database URL")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where generated videos are kept")
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    sections = set(args.only or SECTIONS)
    started = time.perf_counter()

    report = Report()
    command = shlex.join(["python", "benchmarks/throughput.py", *(argv if argv is not None else sys.argv[1:])])
    report.parts.append(f"# Pipeline throughput\n\n`{command}` — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    info = hardware(report)
    short, long, what = test_videos(args.cache, plan)
    checkpoint, model_what = model_checkpoint(args.model or get_settings().model)
    duration = probe(short).duration
    with tempfile.TemporaryDirectory(prefix="fervid-bench-") as tmp:
        work = Path(tmp)
        settings = get_settings(
            data_dir=work, database_url=f"sqlite:///{work / 'fervid.db'}", model=str(checkpoint), device="cpu",
            sample_fps=args.sample_fps, detect_every=args.detect_every,
        )  # fmt: skip
        bitrate = short.stat().st_size * 8 / duration / 1e6
        report.section("Test input")
        report.note(
            f"{short.name}: {duration:.0f} s, {SIZE[0]}×{SIZE[1]} H.264 (libx264 veryfast, CRF 23, keyframe every 2 s), "
            f"{FPS} fps, {bitrate:.1f} Mbit/s: {what}. Long version for the memory check: {probe(long).duration:.0f} s "
            f"(the same stream looped). Cached in {args.cache}. Model: {model_what}. Settings: sample_fps "
            f"{settings.sample_fps:g}, detector {settings.detector} at detect_size {settings.detect_size}, detect_every "
            f"{settings.detect_every}, batch_size {settings.batch_size}; the pipeline detects on "
            f"{pipeline_detect_threads(settings)} frame(s) at once and its ONNX Runtime sessions use {SESSION_THREADS} "
            f"intra-op thread(s) each."
        )
        decode_fps = decode_section(report, short, duration)
        warm = job_section(report, short, settings, decode_fps, duration) if "job" in sections else None
        reference = stages_section(report, short, settings, decode_fps) if sections & {"stages", "detect"} else None
        fervid = {"sampled": warm} if warm is not None else {}
        if "every-frame" in sections:
            fervid["every_frame"] = every_frame_section(report, short, settings, decode_fps, plan.every_frame_seconds)
        if "crowd" in sections:
            crowd_section(report, crowd_video(args.cache, plan), settings, args.fer_python, work)
        if "classify" in sections:
            classify_section(report, checkpoint, settings, plan)
        if "detect" in sections and reference is not None:
            detect_section(report, short, settings, plan, reference)
        if "memory" in sections:
            memory_section(report, short, long, settings, work)
        if "ingest" in sections:
            ingest_section(report, plan.ingest_rows, args.postgres)
        if "scale-out" in sections:
            scale_out_section(report, short, settings, args.postgres, duration, work)
        if "fer" in sections:
            fer_section(report, args.fer_python, short, settings, duration, fervid, plan, work)
        if "gpu" in sections:
            gpu_section(report, args.device == "cuda", checkpoint, short, settings, plan)
    report.section("Targets")
    report.table(("target", "result", "measured"), report.targets)
    load = os.getloadavg()[0]
    report.note(f"Run took {time.perf_counter() - started:.0f} s; load average (1 min) at the end {load:.1f} on {info['cores']} cores.")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.markdown(), encoding="utf-8")
    report.console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

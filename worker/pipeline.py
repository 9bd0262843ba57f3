"""The job pipeline: decode → detect → track → classify in batches → one bulk write per segment.

The same functions run in-process on the embedded default and inside Celery tasks on workers.

A segment runs as stages joined by bounded queues (:func:`prefetch`), each in its own thread: a decoder; a
detector stage that runs the detector on several frames at once (:func:`ordered_map`: one thread per core, up to
:data:`DETECT_THREADS`, when the detector allows concurrent calls); a tracker stage that, in frame order, tracks
the faces and cuts out and preprocesses their crops, so each full frame is dropped as soon as its faces are cut
out; and the calling thread, which classifies the faces in batches. PyAV, OpenCV and ONNX Runtime release the
GIL while they work, so the stages overlap, the slowest one sets the pace and memory stays bounded by the queues.
Each ONNX Runtime session runs on :data:`SESSION_THREADS` intra-op thread(s): the parallelism comes from the
stages and the detector threads rather than from every session grabbing every core. Each stage's busy time is
kept in :attr:`SegmentCounts.seconds`.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Engine

from fervid.db.jobs import beat, begin_segment, fail_segment, get_job, get_segment, unfinished_segments
from fervid.db.writes import write_segment
from fervid.model.align import FaceCropper, locate_faces
from fervid.model.align import Located as Face
from fervid.model.detect import FaceDetector, cheaper_around, detect_around
from fervid.model.preprocess import preprocess
from fervid.settings import Settings
from fervid.worker import runtime
from fervid.worker.continuity import TrackFaces
from fervid.worker.finalize import finalize
from fervid.worker.labels import LabelRange, Labels
from fervid.worker.options import JobOptions
from fervid.worker.sources import Sample, image_samples, video_samples
from fervid.worker.thumbnails import Peaks, face_crop
from fervid.worker.track import IoUTracker

logger = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")
#: Items a stage may run ahead of the next one (decoded frames, or located frames with their face crops).
PREFETCH = 8
#: Intra-op threads of each ONNX Runtime session (detector, classifier) in the pipeline.
SESSION_THREADS = 1
#: Most frames detected at once, one per thread, by a detector that allows it (one per core up to this).
DETECT_THREADS = 4
#: Warning messages a segment keeps (stored as job events; every warning is counted).
MAX_EVENTS = 100
#: The stages whose busy time :attr:`SegmentCounts.seconds` holds.
STAGES: tuple[str, ...] = ("decode", "detect", "track", "classify", "identity")
_END = object()


@dataclass
class _Failure:
    """An exception raised in a :func:`prefetch` thread, on its way to the consumer."""

    error: BaseException


@dataclass
class SegmentCounts:
    """What a segment did: frames, faces, damaged frames, warnings, each stage's busy seconds (summed over the
    stage's threads), the face descriptors of its tracks (rows of ``track_descriptors``) and the thumbnails of
    its first and last sample (:mod:`fervid.worker.cuts`) and its face thumbnails (rows of ``face_thumbnails``)."""

    frames: int = 0
    faces: int = 0
    failed_frames: int = 0
    warnings: int = 0
    messages: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    descriptors: list[dict[str, Any]] = field(default_factory=list)
    thumbnails: tuple[bytes | None, bytes | None] = (None, None)
    faces_kept: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def warn(self, exc: Exception) -> None:
        self.warnings += 1
        if len(self.messages) < MAX_EVENTS:
            self.messages.append(str(exc))

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to ``stage``'s busy seconds."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[stage] += elapsed


class prefetch(Iterator[T]):  # noqa: N801 - used like the generator function it replaces
    """Run ``items`` in a thread called ``name``, up to ``size`` items ahead of the consumer, in order; the thread
    starts at once, so a stage works while its consumer is still getting ready (a cold job loads its models).

    An exception raised by ``items`` is re-raised here, after the items before it. When the consumer stops
    early (it closes this iterator, raises, or drops it) the thread stops and closes ``items``, so stages chained
    as ``prefetch(stage(prefetch(source)))`` shut down from the consumer back to the source.
    """

    def __init__(self, items: Iterable[T], size: int = PREFETCH, name: str = "fervid-prefetch") -> None:
        self._buffer: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._done = False
        # The thread holds the queue, the event and the items, never this object: dropping it stops the thread.
        self._thread = threading.Thread(target=_produce, args=(items, self._buffer, self._stop), name=name, daemon=True)
        self._thread.start()

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._buffer.get()
        if item is _END or isinstance(item, _Failure):
            self.close()
            if isinstance(item, _Failure):
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread (it closes ``items``) and wait for it."""
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._buffer.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    __del__ = close


def _produce(items: Iterable[Any], buffer: queue.Queue[Any], stop: threading.Event) -> None:
    """The body of a :class:`prefetch` thread."""
    try:
        for item in items:
            if stop.is_set():
                return
            buffer.put(item)
        buffer.put(_END)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer
        buffer.put(_Failure(exc))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _timed(items: Generator[T, None, None], counts: SegmentCounts, stage: str) -> Generator[T, None, None]:
    """``items``, with the time spent producing each one added to ``stage``'s busy seconds; closing this
    generator closes ``items``."""
    with closing(items):
        while True:
            with counts.timed(stage):
                item = next(items, _END)
            if item is _END:
                return
            yield item


def ordered_map(fn: Callable[[T], U], items: Iterable[T], threads: int, name: str) -> Generator[U, None, None]:
    """``fn(item)`` for each of ``items``, computed by up to ``threads`` threads called ``name`` at once and
    yielded in the items' order; at most ``2 × threads`` items are in flight. With one thread ``fn`` runs here.

    An exception raised by ``fn`` is re-raised here, in order. Closing this generator cancels the calls not yet
    started and waits for the running ones.
    """
    if threads <= 1:
        yield from map(fn, items)
        return
    pending: deque[Future[U]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix=name) as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def detect_threads(detector: FaceDetector | None) -> int:
    """How many frames the detector stage works on at once: one per core (up to :data:`DETECT_THREADS`) when the
    detector allows concurrent calls, else one."""
    if detector is None or not detector.concurrent:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(DETECT_THREADS, cores))


@dataclass(frozen=True)
class Located:
    """A frame's faces, found and tracked: their rows (not yet classified), their preprocessed crops and their
    thumbnail crops (:func:`~fervid.worker.thumbnails.face_crop`)."""

    rows: list[dict[str, Any]]
    faces: np.ndarray  # (len(rows), 1, S, S) float32, as fervid.model.preprocess.preprocess makes them
    crops: list[np.ndarray]


class Classifying:
    """Collects preprocessed faces with their rows and classifies them in batches of at least ``batch``; each
    classified face is offered to ``peaks`` with its thumbnail crop."""

    def __init__(
        self, classify: Callable[[np.ndarray], np.ndarray], classes: list[str], batch: int, counts: SegmentCounts,
        peaks: Peaks,
    ) -> None:  # fmt: skip
        self.classify, self.classes, self.batch, self.counts, self.peaks = classify, classes, batch, counts, peaks
        self.faces: list[np.ndarray] = []
        self.pending: list[dict[str, Any]] = []
        self.crops: list[np.ndarray] = []
        self.rows: list[dict[str, Any]] = []

    def add(self, located: Located) -> None:
        if located.rows:
            self.faces.append(located.faces)
            self.pending += located.rows
            self.crops += located.crops
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with self.counts.timed("classify"):
            probs = self.classify(np.concatenate(self.faces))
        for row, p, crop in zip(self.pending, probs, self.crops):
            best = int(p.argmax())
            row.update({f"p_{c}": float(v) for c, v in zip(self.classes, p)})
            row.update(label=self.classes[best], confidence=float(p[best]))
            self.rows.append(row)
            self.peaks.offer(row, crop)
        self.faces, self.pending, self.crops = [], [], []


def _samples(
    job: dict[str, Any], options: JobOptions, start: float, end: float | None, counts: SegmentCounts
) -> Generator[Sample, None, None]:
    def on_error(exc: Exception) -> None:
        counts.failed_frames += 1
        counts.warn(exc)

    if job["kind"] == "images":
        return image_samples(job["source"], start, end, on_error, on_warning=counts.warn)
    labels = Labels(tuple(LabelRange(*r) for r in options.labels)) if options.labels else None
    return video_samples(job["source"], start, end, options.sample_fps, labels, on_error)


def _runs(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of ``size`` (the last may be shorter)."""
    run: list[T] = []
    for item in items:
        run.append(item)
        if len(run) == size:
            yield run
            run = []
    if run:
        yield run


def find_faces(
    image: np.ndarray, detector: FaceDetector | None, images: bool, fallback: FaceDetector | None = None, context: str = "black"
) -> list[Face]:
    """The faces of a sample: in an image job as training finds them (:func:`~fervid.model.align.locate_faces`:
    a small image is a face crop in its crop definition's ``context``; a photo without a face at the threshold is
    read at ``fallback``'s likeliest face), in a video every face the detector finds."""
    if images or detector is None:
        return locate_faces(image, detector, fallback, context)
    return [Face(image, face, face.box) for face in detector.detect(image)]


def _located(
    samples: prefetch[Sample],
    job: dict[str, Any],
    idx: int,
    worker: str,
    options: JobOptions,
    detector: FaceDetector | None,
    fallback: FaceDetector | None,
    cropper: FaceCropper,
    counts: SegmentCounts,
    tracks: TrackFaces,
) -> Iterator[Located]:
    """The detector stage and, in frame order, the tracker stage: find the faces of each sample, track them
    (``tracks``) and cut out their crops with ``cropper``, preprocessed for the classifier.

    In a video the whole frame is searched on every ``detect_every``-th sample; on the samples between, only the
    surroundings of the previous sample's faces (:func:`~fervid.model.detect.detect_around`) where that is the
    cheaper search (a few faces, :func:`~fervid.model.detect.cheaper_around`), so a face that appears is found at
    the next whole-frame search. Each run of ``detect_every`` samples is one task of the
    detector threads. ``fallback``: the detector at the photo floor, for the photos of an image job."""
    images = job["kind"] == "images"
    every = 1 if images or detector is None else options.detect_every

    def detect(group: list[Sample]) -> list[tuple[Sample, list[Face]]]:
        found: list[tuple[Sample, list[Face]]] = []
        for sample in group:
            with counts.timed("detect"):
                if found and detector is not None and cheaper_around(detector, sample.image.shape, len(found[-1][1])):
                    near = detect_around(detector, sample.image, [f.box for f in found[-1][1]])
                    found.append((sample, [Face(sample.image, d, d.box) for d in near]))
                else:
                    found.append((sample, find_faces(sample.image, detector, images, fallback, cropper.context)))
        return found

    detected = ordered_map(detect, _runs(samples, every), detect_threads(detector), "fervid-detect")
    with closing(samples), closing(detected):
        for sample, faces in (item for group in detected for item in group):
            with counts.timed("track"):
                boxes = [f.box for f in faces]
                # Videos are tracked; the faces of an image are numbered within it.
                timed = sample.time is not None
                track_ids = tracks.update(sample.image, sample.time, faces) if timed else list(range(len(boxes)))
                crops = [cropper(f.image, f.face) for f in faces]
                located = Located(
                    [
                        {
                            "job_id": job["id"], "segment": idx, "frame_index": sample.frame_index, "t": sample.time,
                            "track_id": track, "x1": f.box[0], "y1": f.box[1], "x2": f.box[2], "y2": f.box[3],
                            "det_score": f.face.score if f.face is not None else None,
                            "truth": sample.truth, "source_path": sample.source_path, "worker": worker,
                        }
                        for f, track in zip(faces, track_ids)
                    ],
                    preprocess(crops, cropper.size),
                    [face_crop(f.image, f.box) for f in faces],
                )  # fmt: skip
            yield located


def run_segment(
    job: dict[str, Any],
    idx: int,
    start: float,
    end: float | None,
    settings: Settings,
    worker: str,
    on_frame: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, Any]], SegmentCounts]:
    """Detect, track and classify every sampled frame of one segment; returns its rows and counts.

    Decoding, detection, tracking and classification overlap in threads (see the module docstring).
    """
    options = JobOptions.from_params(job["params"])
    counts = SegmentCounts()
    # Decoding starts first and runs ahead while the models load (a cold worker's first job).
    samples = prefetch(_timed(_samples(job, options, start, end, counts), counts, "decode"), name="fervid-decode")
    with closing(samples):
        path = runtime.job_model(job["model_name"], options.model_path, job["model_sha256"], settings.model_dir)
        identity = runtime.embedder() if options.identity and job["kind"] == "video" else None
        with ThreadPoolExecutor(1, thread_name_prefix="fervid-load") as pool:
            loading = pool.submit(runtime.detector, options.detector, options.detect_size, options.threshold) if options.detector != "none" else None
            model = runtime.classifier(path, job["model_sha256"], settings.device, options.batch_size, SESSION_THREADS)
            detector = loading.result() if loading else None
        photos = job["kind"] == "images" and detector is not None and 0 < options.photo_floor < options.threshold
        fallback = runtime.detector(options.detector, options.detect_size, options.photo_floor) if photos else None
        cropper = FaceCropper.for_checkpoint(model.checkpoint.preprocessing, model.input_size, options.detector)
        peaks = Peaks(every_face=job["kind"] == "images")
        batch = Classifying(functools.partial(model.predict, flip=options.flip, shift=options.tta_shift), model.classes, options.batch_size, counts, peaks)
        tracks = TrackFaces(IoUTracker(max_gap=options.max_gap), options.cut_threshold, identity, options.identity_threshold)
        located = _located(samples, job, idx, worker, options, detector, fallback, cropper, counts, tracks)
        with closing(prefetch(located, name="fervid-track")) as frames:
            for frame in frames:
                counts.frames += 1
                batch.add(frame)
                if on_frame:
                    on_frame(1)
    batch.flush()
    counts.faces = len(batch.rows)
    with counts.timed("identity"):
        counts.descriptors = tracks.descriptors()
    counts.thumbnails = tuple(None if x is None else x.tobytes() for x in (tracks.cuts.first, tracks.cuts.last))
    counts.faces_kept = peaks.rows()
    return batch.rows, counts


def process_segment(
    engine: Engine,
    job_id: int,
    idx: int,
    settings: Settings,
    worker: str | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> bool:
    """Run one segment and write its rows in one transaction; finalize the job when it was the last one.

    Returns True when this call finalized the job. A cancelled job or a finished segment is skipped, except that
    a job whose segments are all stored but which is not finalized (finalizing failed) is finalized.
    """
    worker = worker or runtime.worker_name()
    if not begin_segment(engine, job_id, idx, worker):
        job = get_job(engine, job_id)
        if job["status"] in ("queued", "running") and not unfinished_segments(engine, job_id):
            finalize(engine, job_id)  # every segment is stored but finalizing failed before: do it now
            return True
        return False
    job = get_job(engine, job_id)
    segment = get_segment(engine, job_id, idx)
    try:
        with heartbeat(engine, job_id, idx, worker, settings.heartbeat_interval):
            rows, counts = run_segment(job, idx, segment["start"], segment["end"], settings, worker, on_frame)
    except Exception as exc:
        fail_segment(engine, job_id, idx, str(exc))
        raise
    for message in counts.messages:
        logger.warning("job %s segment %s: %s", job_id, idx, message)
    per_frame = ", ".join(f"{stage} {1000 * s / max(counts.frames, 1):.1f}" for stage, s in counts.seconds.items())
    logger.debug("job %s segment %s: %d frames, %d faces; ms per frame: %s", job_id, idx, counts.frames, counts.faces, per_frame)
    last = write_segment(
        engine, job_id, idx, rows, frames=counts.frames, failed_frames=counts.failed_frames, warnings=counts.warnings,
        worker=worker, events=counts.messages, descriptors=counts.descriptors, thumbnails=counts.thumbnails,
        face_images=counts.faces_kept,
    )  # fmt: skip
    if last:
        finalize(engine, job_id)
    return last


@contextmanager
def heartbeat(engine: Engine, job_id: int, idx: int, worker: str, interval: float) -> Iterator[None]:
    """Refresh the segment's heartbeat every ``interval`` seconds while the block runs (a thread), so that a
    worker that dies is noticed (:func:`~fervid.db.jobs.claim_stale_segments`); a failed refresh (the database
    briefly away) is logged and tried again at the next beat."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            try:
                beat(engine, job_id, idx, worker)
            except Exception as exc:  # noqa: BLE001 - a heartbeat never stops the segment
                logger.warning("job %s segment %s: heartbeat failed: %s", job_id, idx, exc)

    thread = threading.Thread(target=run, name="fervid-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

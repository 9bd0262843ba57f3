"""Submitting jobs and steering them: the embedded in-process runner, cancel, retry.

On the embedded default (no broker) a job runs here, segment after segment, through the same
:func:`~fervid.worker.pipeline.process_segment` that Celery workers run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from fervid.db.jobs import create_job, get_job, set_status, unfinished_segments
from fervid.db.migrate import database
from fervid.model.checkpoint import load_checkpoint
from fervid.settings import Settings
from fervid.worker.decode import probe
from fervid.worker.labels import load_labels
from fervid.worker.options import JobOptions
from fervid.worker.runtime import model_ref
from fervid.worker.sources import image_entries, is_video_source, plan_images, plan_video


@dataclass(frozen=True)
class Submission:
    """What ``fervid submit`` asks for, beyond the settings."""

    source: str
    every_frame: bool = False
    labels: str | None = None
    batch: str | None = None  # the name of the batch the job belongs to


def check_limits(
    source: str,
    settings: Settings,
    *,
    duration: float | None = None,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    unit: str = "frames",
) -> None:
    """Refuse input beyond the configured limits: ``max_duration`` seconds, ``max_frames`` frames (images of a
    folder), ``max_pixels`` per frame (settings, env ``FERVID_MAX_DURATION`` ...). The message names ``source``."""
    if duration and duration > settings.max_duration:
        limit = settings.max_duration
        raise ValueError(f"{source}: {duration:.1f} s long, over the limit of {limit:g} s (FERVID_MAX_DURATION)")
    if frames and frames > settings.max_frames:
        raise ValueError(f"{source}: {frames} {unit}, over the limit of {settings.max_frames} (FERVID_MAX_FRAMES)")
    if size and size[0] * size[1] > settings.max_pixels:
        limit = settings.max_pixels
        raise ValueError(f"{source}: frames of {size[0]}×{size[1]}, over the limit of {limit} pixels (FERVID_MAX_PIXELS)")


@contextmanager
def _stored_if_refused(engine: Engine, source: str, kind: str, common: dict[str, Any]) -> Iterator[None]:
    """Store a ``failed`` job with the reason when the block raises :class:`ValueError`, then re-raise."""
    try:
        yield
    except ValueError as exc:
        job_id = create_job(engine, source=source, kind=kind, segments=[(0.0, None)], **common)
        set_status(engine, job_id, "failed", str(exc))
        exc.job_id = job_id  # type: ignore[attr-defined]  # the failed job that records the refusal
        raise


def create(engine: Engine, submission: Submission, settings: Settings) -> int:
    """Validate the input, create the job and its segments; returns the job id (status ``queued``).

    A request that cannot be served raises before anything is stored: a missing path, a bad model checkpoint
    or labels file, a folder without images. A source that exists but cannot be processed (a video that does
    not decode, input over the limits of :func:`check_limits`) is stored as a ``failed`` job with the reason,
    which is then raised. Limits are checked on the video's headers, before any frame is decoded.
    """
    source = submission.source
    if "://" not in source:
        if not Path(source).exists():
            raise FileNotFoundError(f"{source}: no such file or directory")
        source = str(Path(source).resolve())
    model = model_ref(settings.model)
    checkpoint = load_checkpoint(model.path)
    labels = load_labels(submission.labels).ranges if submission.labels else None
    faces_found = settings.detector != "none"
    options = JobOptions(
        model_path=model.path,
        sample_fps=None if submission.every_frame else settings.sample_fps,
        detector=settings.detector,
        detect_size=settings.detect_size,
        detect_every=settings.detect_every,
        threshold=settings.detector_threshold,
        photo_floor=settings.photo_floor,
        flip=settings.flip,
        tta_shift=settings.tta_shift,
        batch_size=settings.batch_size,
        max_gap=settings.track_gap,
        # With --detector none the image is the "face": there is no face to follow through cuts or to identify.
        cut_threshold=settings.cut_threshold if faces_found else 1.0,
        smooth_seconds=settings.smooth_seconds,
        identity=settings.identity and faces_found,
        identity_threshold=settings.identity_threshold,
        labels=[tuple(r) for r in labels] if labels else None,
    )
    # The crop definition and input size are recorded beside the options: the job's faces are cut with them.
    params = asdict(options) | {"input_size": checkpoint.input_size, "preprocessing": checkpoint.preprocessing}
    common = dict(
        params=params, model_name=model.name, model_sha256=model.sha256, classes=checkpoint.classes, batch=submission.batch
    )
    if not is_video_source(source):
        if labels:
            raise ValueError(
                f"{submission.labels}: --labels is for videos; an image folder takes its ground truth from class sub-folders"
            )
        count = len(image_entries(source))
        if count == 0:
            raise ValueError(f"{source}: no images (png, jpg, bmp, tif, webp) in the folder or its sub-folders")
        with _stored_if_refused(engine, source, "images", common):
            check_limits(source, settings, frames=count, unit="images")
        return create_job(
            engine, source=source, kind="images", segments=plan_images(count), frames_total=count, **common
        )
    with _stored_if_refused(engine, source, "video", common):
        info = probe(
            source,
            check=lambda header: check_limits(
                source, settings, duration=header.duration, frames=header.frames, size=(header.width, header.height)
            ),
        )
    frames = round(info.duration * (settings.sample_fps if options.sample_fps else info.fps or 0)) if info.duration else None
    return create_job(
        engine,
        source=source,
        kind="video",
        segments=plan_video(info, settings.segment_seconds),
        duration=info.duration,
        frames_total=frames,
        **common,
    )


def run_embedded(engine: Engine, job_id: int, settings: Settings, on_frame: Callable[[int], None] | None = None) -> None:
    """Run a job's unfinished segments in this process; a failure marks the job failed and is re-raised."""
    from fervid.worker.pipeline import process_segment

    set_status(engine, job_id, "running")
    try:
        for idx in unfinished_segments(engine, job_id):
            process_segment(engine, job_id, idx, settings, on_frame=on_frame)
    except BaseException as exc:
        set_status(engine, job_id, "failed", str(exc) or type(exc).__name__)
        raise


def submit(
    submission: Submission,
    settings: Settings,
    *,
    on_created: Callable[[int, dict[str, Any]], None] | None = None,
    on_start: Callable[[int, dict[str, Any]], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> int:
    """Create a job and run it here (embedded default) or enqueue its segments (broker configured); ``on_created``
    and ``on_start`` see the job's row when it is stored and before it starts."""
    engine = database(settings)
    job_id = create(engine, submission, settings)
    job = get_job(engine, job_id)
    for callback in (on_created, on_start):
        if callback:
            callback(job_id, job)
    start(engine, job_id, settings, on_frame)
    return job_id


def submit_many(
    sources: Sequence[str],
    settings: Settings,
    *,
    every_frame: bool = False,
    batch: str | None = None,
    on_created: Callable[[int, dict[str, Any]], None] | None = None,
    on_start: Callable[[int, dict[str, Any]], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> list[int]:
    """Create one job per source (:func:`~fervid.worker.sources.expand_inputs` makes them from paths), all in
    ``batch``, then run them one after another here (embedded default) or enqueue them all (broker configured);
    their ids. ``on_start`` is told when a job starts running here.

    The model is checked before anything is stored. A source that cannot be processed gets a ``failed`` job with
    the reason and the others go on, as does every job after one that fails while running; the caller reads the
    jobs' statuses.
    """
    if not sources:
        raise ValueError("no inputs to submit")
    load_checkpoint(model_ref(settings.model).path)  # a bad model refuses the whole request
    engine = database(settings)
    job_ids = []
    for source in sources:
        try:
            job_id = create(engine, Submission(source, every_frame, batch=batch), settings)
        except ValueError as exc:
            job_id = getattr(exc, "job_id", None)  # stored as failed with the reason (see _stored_if_refused)
            if job_id is None:
                raise
        job_ids.append(job_id)
        if on_created:
            on_created(job_id, get_job(engine, job_id))
    for job_id in job_ids:
        job = get_job(engine, job_id)
        if job["status"] != "queued":
            continue
        if on_start:
            on_start(job_id, job)
        try:
            start(engine, job_id, settings, on_frame)
        except Exception:  # noqa: BLE001 - start marked the job failed with the reason; the batch goes on
            continue
    return job_ids


def start(engine: Engine, job_id: int, settings: Settings, on_frame: Callable[[int], None] | None = None) -> None:
    """Process the job's unfinished segments: in this process, or on workers through the broker.

    A job whose segments cannot be enqueued (the broker unreachable) is marked failed with the reason, which is
    re-raised; ``fervid retry N`` enqueues it again.
    """
    if settings.embedded:
        run_embedded(engine, job_id, settings, on_frame)
        return
    from fervid.worker.tasks import enqueue_segments

    idxs = unfinished_segments(engine, job_id)
    try:
        enqueue_segments(job_id, idxs, settings)
    except Exception as exc:
        set_status(engine, job_id, "failed", f"could not enqueue its segments: {str(exc) or type(exc).__name__}")
        raise


def cancel(settings: Settings, job_id: int) -> dict[str, Any]:
    """Cancel a job: workers skip its segments that have not started; finished rows stay."""
    engine = database(settings)
    job = get_job(engine, job_id)
    if job["status"] in ("done", "cancelled"):
        raise ValueError(f"job {job_id} is already {job['status']}")
    set_status(engine, job_id, "cancelled")
    return get_job(engine, job_id)


def retry(settings: Settings, job_id: int, on_frame: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run a failed or cancelled job's unfinished segments again; finished segments are kept, never redone."""
    engine = database(settings)
    job = get_job(engine, job_id)
    if job["status"] not in ("failed", "cancelled"):
        raise ValueError(f"job {job_id} is {job['status']}; only failed or cancelled jobs can be retried")
    set_status(engine, job_id, "queued")
    start(engine, job_id, settings, on_frame)
    return get_job(engine, job_id)

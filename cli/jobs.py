"""Job commands: submit, jobs, report, export, cancel, retry, recover, worker."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fervid.cli.errors import EXIT_FAILED, err_console, handle_errors, printable, redact
from fervid.settings import DETECTOR_CHOICES, Settings, described, get_settings

console = Console(highlight=False)

DatabaseUrl = Annotated[Optional[str], typer.Option(help="Database URL \\[default: embedded SQLite; env: FERVID_DATABASE_URL].")]
BrokerUrl = Annotated[Optional[str], typer.Option(help="Celery broker URL \\[default: none, run in-process; env: FERVID_BROKER_URL].")]
JobId = Annotated[int, typer.Option("--job", "-j", help="Job id (`fervid jobs` lists them).")]


def _settings(database_url: str | None = None, broker_url: str | None = None, **overrides: Any) -> Settings:
    return get_settings(database_url=database_url, broker_url=broker_url, **overrides)


def _progress(total: int | None) -> Progress:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err_console, transient=False)


@handle_errors
def submit(
    path: Annotated[str, typer.Argument(help="A video file or URL, or a folder of images (class sub-folders give ground truth).")],
    sample_fps: Annotated[Optional[float], typer.Option(help=described("sample_fps", "Frames per second to analyse, by timestamp."))] = None,
    every_frame: Annotated[bool, typer.Option("--every-frame", metavar="", help="Analyse every frame.")] = False,
    model: Annotated[Optional[str], typer.Option(help=described("model", "Shipped model name (`fervid models`) or checkpoint path."))] = None,
    detector: Annotated[
        Optional[str], typer.Option(help=described("detector", f"{', '.join(DETECTOR_CHOICES)}: haar is the paper's; none: each image is the face."))
    ] = None,
    detect_every: Annotated[
        Optional[int], typer.Option(help=described("detect_every", "Detect on every k-th sampled frame; the tracker fills the gaps."))
    ] = None,
    flip: Annotated[
        Optional[bool], typer.Option(metavar="", help=described("flip", "Average each face with its mirror image."))
    ] = None,
    smooth_seconds: Annotated[
        Optional[float], typer.Option(help=described("smooth_seconds", "Temporal smoothing: seconds an expression is expected to last; 0: off."))
    ] = None,
    identity: Annotated[
        Optional[bool], typer.Option(metavar="", help=described("identity", "Link tracks of one face into persons; end tracks where the face changes."))
    ] = None,
    labels: Annotated[Optional[Path], typer.Option(help="CSV start,end,label (seconds) with the video's ground truth.")] = None,
    segment_seconds: Annotated[Optional[float], typer.Option(help=described("segment_seconds", "Segment length for parallel workers."))] = None,
    wait: Annotated[bool, typer.Option("--wait", metavar="", help="With a broker: wait for the job and show its progress.")] = False,
    database_url: DatabaseUrl = None,
    broker_url: BrokerUrl = None,
) -> None:
    """Submit a video or an image folder. Prints the job id; on the embedded default the job runs right away."""
    from fervid.worker.jobs import Submission
    from fervid.worker.jobs import submit as submit_job

    if every_frame and sample_fps is not None:
        raise typer.BadParameter("give --sample-fps or --every-frame, not both")
    settings = _settings(
        database_url, broker_url, sample_fps=sample_fps, model=model, detector=detector, detect_every=detect_every,
        segment_seconds=segment_seconds, flip=flip, smooth_seconds=smooth_seconds, identity=identity,
    )  # fmt: skip
    with _progress(None) as progress:
        task = progress.add_task("frames", total=None, visible=settings.embedded)

        def created(job_id: int, job: dict[str, Any]) -> None:
            progress.console.print(f"job {job_id}: {job['kind']} {escape(printable(job['source']))}")
            progress.update(task, total=job["frames_total"], description=f"job {job_id}")

        job_id = submit_job(
            Submission(path, every_frame, str(labels) if labels else None),
            settings,
            on_created=created,
            on_frame=lambda n: progress.advance(task, n),
        )
    console.print(job_id)
    if not settings.embedded and wait:
        _wait(settings, job_id)
    _exit_for(settings, job_id)


def _wait(settings: Settings, job_id: int) -> None:
    from fervid.db import database
    from fervid.db.jobs import wait_job

    started, warned = time.monotonic(), False
    with _progress(None) as progress:
        task = progress.add_task(f"job {job_id} segments", total=None)

        def show(job: dict[str, Any]) -> None:
            nonlocal warned
            progress.update(
                task,
                completed=job["segments_done"],
                total=job["segments_total"],
                description=f"job {job_id}: {job['frames_done']} frames, {job['faces']} faces, segments",
            )
            if job["status"] == "queued" and not warned and time.monotonic() - started > settings.wait_notice:
                warned = True
                progress.console.print(
                    f"[yellow]no worker has taken job {job_id} after {settings.wait_notice:g} s:[/] is a `fervid worker` "
                    f"running on queue {settings.queue!r} of {redact(settings.broker_url or '')}?"
                )

        wait_job(database(settings), job_id, show, outage=settings.wait_outage)


def _exit_for(settings: Settings, job_id: int) -> None:
    from fervid.db import database
    from fervid.db.jobs import get_job

    job = get_job(database(settings), job_id)
    if job["status"] == "failed":
        err_console.print(f"[bold red]job {job_id} failed:[/] {escape(redact(job['error'] or ''))}")
        raise typer.Exit(EXIT_FAILED)


@handle_errors
def list_jobs(
    limit: Annotated[int, typer.Option(help="How many of the newest jobs.")] = 20,
    database_url: DatabaseUrl = None,
) -> None:
    """List jobs, newest first; a failed job shows its error."""
    from fervid.db import database
    from fervid.db.jobs import list_jobs as query

    table = Table("id", "status", "kind", "source", "frames", "faces", "segments", "created", "error")
    for job in query(database(_settings(database_url)), limit):
        color = {"done": "green", "failed": "red", "running": "cyan", "cancelled": "yellow"}.get(job["status"], "white")
        table.add_row(
            str(job["id"]), f"[{color}]{job['status']}[/]", job["kind"], escape(printable(_short(job["source"]))),
            str(job["frames_done"]) + (f" ({job['warnings']} warnings: fervid report)" if job["warnings"] else ""),
            str(job["faces"]), f"{job['segments_done']}/{job['segments_total']}", f"{job['created_at']:%Y-%m-%d %H:%M}",
            escape(printable(redact(job["error"] or ""))),
        )  # fmt: skip
    console.print(table)


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


@handle_errors
def report(
    job: JobId,
    format: Annotated[str, typer.Option("--format", "-f", help="table|json|csv")] = "table",
    plot: Annotated[Optional[Path], typer.Option(help="Write the timeline figure (and the confusion figure) to FILE.png|svg.")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Write a self-contained HTML report.")] = None,
    raw: Annotated[bool, typer.Option("--raw", metavar="", help="Figures of the raw readings, not smoothed over time.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Report on a job: summary, expression distribution, persons, per-track timelines, recall statistics."""
    from fervid.db import database
    from fervid.db.reports import job_report

    engine = database(_settings(database_url))
    data = job_report(engine, job)
    if format == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif format == "csv":
        _report_csv(data)
    elif format == "table":
        from fervid.cli.render import render_report

        render_report(console, data)
    else:
        raise typer.BadParameter(f"unknown format {format!r}; choose table, json or csv")
    if plot or html:
        from fervid.db.figures import write_figures, write_html

        smoothed = not raw
        written_files = [*write_figures(engine, job, plot, smoothed)] if plot else []
        written_files += [write_html(engine, job, html, smoothed)] if html else []
        for written in written_files:
            err_console.print(f"wrote {written}")


def _report_csv(data: dict[str, Any]) -> None:
    """One row for the whole job ('all', raw readings) and one per track (smoothed): its person, faces and the
    share of each expression."""
    labels = list(data["distribution"])
    writer = csv.writer(sys.stdout)
    writer.writerow(["track", "person", "first_t", "last_t", "faces", "dominant", *labels])
    dominant = max(labels, key=lambda c: data["distribution"][c]["faces"]) if data["faces"] else ""
    writer.writerow(["all", "", "", "", data["faces"], dominant, *(data["distribution"][c]["share"] for c in labels)])
    for t in data["tracks"]:
        person = "" if t["person_id"] is None else t["person_id"]
        shares = (t["shares"].get(c, 0.0) for c in labels)
        writer.writerow([t["id"], person, t["first_t"], t["last_t"], t["faces"], t["dominant_label"], *shares])


@handle_errors
def export(
    job: JobId,
    format: Annotated[str, typer.Option("--format", "-f", help="csv|parquet|jsonl")] = "csv",
    per: Annotated[str, typer.Option(help="frame (every row) or second (mean probabilities, dominant label).")] = "frame",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (default: standard output; parquet needs a file).")] = None,
    smoothed: Annotated[bool, typer.Option("--smoothed/--raw", help="Readings smoothed over time, or the raw ones.")] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Export a job's timeline, streaming (memory does not grow with the job)."""
    from fervid.db import database
    from fervid.db.export import export_timeline

    count = export_timeline(database(_settings(database_url)), job, format, output, per=per, smoothed=smoothed)
    err_console.print(f"exported {count} rows" + (f" to {output}" if output else ""))


@handle_errors
def cancel(job_id: Annotated[int, typer.Argument()], database_url: DatabaseUrl = None) -> None:
    """Cancel a job; finished segments keep their rows."""
    from fervid.worker.jobs import cancel as cancel_job

    console.print(f"job {job_id}: {cancel_job(_settings(database_url), job_id)['status']}")


@handle_errors
def retry(job_id: Annotated[int, typer.Argument()], database_url: DatabaseUrl = None, broker_url: BrokerUrl = None) -> None:
    """Re-run the unfinished segments of a failed or cancelled job."""
    from fervid.worker.jobs import retry as retry_job

    settings = _settings(database_url, broker_url)
    with _progress(None) as progress:
        task = progress.add_task(f"job {job_id}", total=None, visible=settings.embedded)
        job = retry_job(settings, job_id, on_frame=lambda n: progress.advance(task, n))
    console.print(f"job {job_id}: {job['status']}")
    _exit_for(settings, job_id)


@handle_errors
def recover(database_url: DatabaseUrl = None, broker_url: BrokerUrl = None) -> None:
    """Re-enqueue the unfinished segments of running jobs whose broker messages were lost."""
    from fervid.worker.tasks import recover as recover_jobs

    found = recover_jobs(_settings(database_url, broker_url))
    console.print(f"re-enqueued {sum(len(v) for v in found.values())} segments of {len(found)} jobs")


@handle_errors
def worker(
    gpus: Annotated[Optional[str], typer.Option(help="Comma-separated GPU indices: one worker process per GPU.")] = None,
    cpu: Annotated[bool, typer.Option("--cpu", metavar="", help="A CPU worker (the default when no GPU is present).")] = False,
    concurrency: Annotated[int, typer.Option(help="Worker processes per device (CPU: processes).")] = 1,
    queues: Annotated[Optional[str], typer.Option(help="Comma-separated queues to consume.")] = None,
    database_url: DatabaseUrl = None,
    broker_url: BrokerUrl = None,
) -> None:
    """Start Celery workers: one process per GPU pinned with CUDA_VISIBLE_DEVICES, or CPU workers."""
    from fervid.worker.launcher import run_workers

    settings = _settings(database_url, broker_url)
    raise typer.Exit(run_workers(settings, gpus=gpus, cpu=cpu, concurrency=concurrency, queues=queues))

"""Job commands: submit, jobs, show, report, export, cancel, delete, retry, recover, worker."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fervid.cli.errors import EXIT_FAILED, err_console, handle_errors, redact
from fervid.report.terminal import printable
from fervid.settings import DETECTOR_CHOICES, Settings, described, get_settings

console = Console(highlight=False)

DatabaseUrl = Annotated[Optional[str], typer.Option(help="Database URL \\[default: embedded SQLite; env: FERVID_DATABASE_URL].")]
BrokerUrl = Annotated[Optional[str], typer.Option(help="Celery broker URL \\[default: none, run in-process; env: FERVID_BROKER_URL].")]
JobId = Annotated[int, typer.Option("--job", "-j", help="Job id (`fervid jobs` lists them).")]
TtaShift = Annotated[
    Optional[float],
    typer.Option(help=described("tta_shift", "Also average each face over 4 copies moved this fraction of its side, e.g. 0.06; 0: off.")),
]


def _settings(database_url: str | None = None, broker_url: str | None = None, **overrides: Any) -> Settings:
    return get_settings(database_url=database_url, broker_url=broker_url, **overrides)


def _progress(total: int | None) -> Progress:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err_console, transient=False)


@handle_errors
def submit(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Videos (files or URLs), folders of videos, or folders of images (class sub-folders give ground truth); one job each.",
            show_default=False,
        ),
    ],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", metavar="", help="Look for videos in sub-folders too.")] = False,
    glob: Annotated[Optional[str], typer.Option(help="Pattern of the video files to take from folders, e.g. '*.mp4'.")] = None,
    batch: Annotated[Optional[str], typer.Option(help="Name of the batch the jobs belong to (default with several jobs: batch-<date>-<time>).")] = None,
    sample_fps: Annotated[Optional[float], typer.Option(help=described("sample_fps", "Frames per second to analyse, by timestamp."))] = None,
    every_frame: Annotated[bool, typer.Option("--every-frame", metavar="", help="Analyse every frame.")] = False,
    model: Annotated[Optional[str], typer.Option(help=described("model", "Shipped model name (`fervid models`) or checkpoint path."))] = None,
    detector: Annotated[
        Optional[str], typer.Option(help=described("detector", f"{', '.join(DETECTOR_CHOICES)}: haar is the paper's; none: each image is the face."))
    ] = None,
    detect_every: Annotated[
        Optional[int], typer.Option(help=described("detect_every", "Search the whole frame on every k-th sample; between, only around the faces found."))
    ] = None,
    flip: Annotated[
        Optional[bool], typer.Option(metavar="", help=described("flip", "Average each face with its mirror image."))
    ] = None,
    tta_shift: TtaShift = None,
    smooth_seconds: Annotated[
        Optional[float], typer.Option(help=described("smooth_seconds", "Temporal smoothing: seconds an expression is expected to last; 0: off."))
    ] = None,
    identity: Annotated[
        Optional[bool], typer.Option(metavar="", help=described("identity", "Link tracks of one face into persons; end tracks where the face changes."))
    ] = None,
    labels: Annotated[Optional[Path], typer.Option(help="CSV start,end,label (seconds) with the video's ground truth (one video only).")] = None,
    segment_seconds: Annotated[Optional[float], typer.Option(help=described("segment_seconds", "Segment length for parallel workers."))] = None,
    wait: Annotated[bool, typer.Option("--wait", metavar="", help="With a broker: wait for the jobs and show their progress.")] = False,
    database_url: DatabaseUrl = None,
    broker_url: BrokerUrl = None,
) -> None:
    """Submit videos and image folders, one job each. Prints the job ids; on the embedded default the jobs run
    right away, one after another."""
    from fervid.worker.jobs import Submission, submit_many
    from fervid.worker.jobs import submit as submit_job
    from fervid.worker.sources import expand_inputs

    if every_frame and sample_fps is not None:
        raise typer.BadParameter("give --sample-fps or --every-frame, not both")
    settings = _settings(
        database_url, broker_url, sample_fps=sample_fps, model=model, detector=detector, detect_every=detect_every,
        segment_seconds=segment_seconds, flip=flip, tta_shift=tta_shift, smooth_seconds=smooth_seconds, identity=identity,
    )  # fmt: skip
    sources = expand_inputs(paths, recursive=recursive, pattern=glob)
    if labels and len(sources) > 1:
        raise typer.BadParameter(f"--labels holds the ground truth of one video, and {len(sources)} inputs were given")
    if batch is None and len(sources) > 1:
        batch = f"batch-{datetime.now():%Y%m%d-%H%M%S}"
    with _progress(None) as progress:
        task = progress.add_task("frames", total=None, visible=False)
        total = progress.add_task("all jobs", total=len(sources), visible=settings.embedded and len(sources) > 1)

        def created(job_id: int, job: dict[str, Any]) -> None:
            state = "" if job["status"] == "queued" else f" [red]{job['status']}[/]"
            progress.console.print(f"job {job_id}: {job['kind']} {escape(printable(job['source']))}{state}")

        started_jobs: list[int] = []

        def started(job_id: int, job: dict[str, Any]) -> None:
            nonlocal task
            progress.update(total, completed=len(started_jobs))  # the jobs before this one are finished
            task = progress.add_task(f"job {job_id}", total=job["frames_total"], visible=settings.embedded)
            started_jobs.append(job_id)

        callbacks = dict(on_created=created, on_start=started, on_frame=lambda n: progress.advance(task, n))
        if len(sources) == 1:  # one input: its errors are the command's (exit 2 for bad input)
            submission = Submission(sources[0], every_frame, str(labels) if labels else None, batch=batch)
            job_ids = [submit_job(submission, settings, **callbacks)]
        else:
            job_ids = submit_many(sources, settings, every_frame=every_frame, batch=batch, **callbacks)
        progress.update(total, completed=len(sources))
    for job_id in job_ids:
        console.print(job_id)
    if batch:
        err_console.print(f"batch {escape(batch)}: {len(job_ids)} jobs (`fervid report --batch {escape(batch)}` compares them)")
    if not settings.embedded and wait:
        _wait(settings, job_ids)
    _exit_for(settings, job_ids)


def _wait(settings: Settings, job_ids: list[int]) -> None:
    from fervid.db import database
    from fervid.db.jobs import wait_jobs
    from fervid.db.schema import FINISHED_STATUSES

    started, warned = time.monotonic(), False
    with _progress(None) as progress:
        tasks = {job_id: progress.add_task(f"job {job_id} segments", total=None) for job_id in job_ids}
        total = progress.add_task("all jobs", total=len(job_ids), visible=len(job_ids) > 1)

        def show(rows: list[dict[str, Any]]) -> None:
            nonlocal warned
            for job in rows:
                progress.update(
                    tasks[job["id"]],
                    completed=job["segments_done"],
                    total=job["segments_total"],
                    description=f"job {job['id']}: {job['frames_done']} frames, {job['faces']} faces, segments",
                )
            progress.update(total, completed=sum(job["status"] in FINISHED_STATUSES for job in rows))
            queued = [job["id"] for job in rows if job["status"] == "queued"]
            if queued and not warned and time.monotonic() - started > settings.wait_notice:
                warned = True
                progress.console.print(
                    f"[yellow]no worker has taken job {queued[0]} after {settings.wait_notice:g} s:[/] is a `fervid worker` "
                    f"running on queue {settings.queue!r} of {redact(settings.broker_url or '')}?"
                )

        wait_jobs(database(settings), job_ids, show, outage=settings.wait_outage)


def _exit_for(settings: Settings, job_ids: list[int]) -> None:
    """Exit with :data:`EXIT_FAILED` when one of the jobs failed, naming each failed one and its error."""
    from fervid.db import database
    from fervid.db.jobs import get_jobs

    failed = [job for job in get_jobs(database(settings), job_ids) if job["status"] == "failed"]
    for job in failed:
        err_console.print(f"[bold red]job {job['id']} failed:[/] {escape(redact(job['error'] or ''))}")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@handle_errors
def list_jobs(
    limit: Annotated[int, typer.Option(help="How many of the newest jobs.")] = 20,
    batch: Annotated[Optional[str], typer.Option(help="Only the jobs of this batch (fervid submit --batch).")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List jobs, newest first (`fervid show N` has a job's full details)."""
    from fervid.db import database
    from fervid.db.jobs import list_jobs as query
    from fervid.report.terminal import render_jobs

    render_jobs(console, query(database(_settings(database_url)), limit, batch=batch))


@handle_errors
def show(job_id: Annotated[int, typer.Argument(help="Job id (`fervid jobs` lists them).")], database_url: DatabaseUrl = None) -> None:
    """Show a job's full details: source, options, model, timing, error, segments and warnings."""
    from fervid.db import database
    from fervid.db.jobs import get_job, get_segments
    from fervid.db.reports import stored_events
    from fervid.report.terminal import render_job

    engine = database(_settings(database_url))
    render_job(console, get_job(engine, job_id), get_segments(engine, job_id), stored_events(engine, job_id))


@handle_errors
def report(
    job: Annotated[Optional[int], typer.Option("--job", "-j", help="Job id (`fervid jobs` lists them).")] = None,
    batch: Annotated[Optional[str], typer.Option(help="Compare the jobs of this batch instead (fervid submit --batch).")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table|json|csv")] = "table",
    plot: Annotated[Optional[Path], typer.Option(help="Write the timeline figure (and the confusion figure) to FILE.png|svg.")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Write a self-contained interactive HTML report (works offline).")] = None,
    raw: Annotated[bool, typer.Option("--raw", metavar="", help="Figures of the raw readings, not smoothed over time.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Report on a job (summary, expression distribution, persons, per-track timelines, recall statistics) or
    compare the jobs of a batch."""
    from fervid.db import database
    from fervid.db.reports import batch_report, job_report
    from fervid.report import terminal
    from fervid.report.tabular import batch_csv, report_csv

    if (job is None) == (batch is None):
        raise typer.BadParameter("give --job N or --batch NAME")
    if format not in ("table", "json", "csv"):
        raise typer.BadParameter(f"unknown format {format!r}; choose table, json or csv")
    if batch is not None and plot:
        raise typer.BadParameter("--plot draws one job: give --job N")
    engine = database(_settings(database_url))
    data = job_report(engine, job) if job is not None else batch_report(engine, batch)
    if format == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif format == "csv":
        (report_csv if job is not None else batch_csv)(data, sys.stdout)
    else:
        (terminal.render_report if job is not None else terminal.render_batch)(console, data)
    written_files = []
    if plot:
        from fervid.report.figures import write_figures

        written_files += write_figures(engine, job, plot, smoothed=not raw)
    if html:
        from fervid.report.html import write_batch_html, write_html

        written_files.append(write_html(engine, job, html, smoothed=not raw) if job is not None else write_batch_html(engine, batch, html))
    for written in written_files:
        err_console.print(f"wrote {written}")


@handle_errors
def export(
    job: JobId,
    format: Annotated[str, typer.Option("--format", "-f", help="csv|parquet|jsonl")] = "csv",
    per: Annotated[str, typer.Option(help="frame (every row) or second (mean probabilities, dominant label).")] = "frame",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (default or -: standard output; parquet needs a file).")] = None,
    smoothed: Annotated[bool, typer.Option("--smoothed/--raw", metavar="", help="Readings smoothed over time, or the raw ones.")] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Export a job's timeline, streaming (memory does not grow with the job)."""
    from fervid.db import database
    from fervid.report.export import export_timeline

    output = None if output == Path("-") else output
    count = export_timeline(database(_settings(database_url)), job, format, output, per=per, smoothed=smoothed)
    err_console.print(f"exported {count} rows" + (f" to {output}" if output else ""))


@handle_errors
def cancel(job_id: Annotated[int, typer.Argument()], database_url: DatabaseUrl = None) -> None:
    """Cancel a job; finished segments keep their rows."""
    from fervid.worker.jobs import cancel as cancel_job

    console.print(f"job {job_id}: {cancel_job(_settings(database_url), job_id)['status']}")


@handle_errors
def delete(job_id: Annotated[int, typer.Argument()], database_url: DatabaseUrl = None) -> None:
    """Delete a finished job with everything stored for it (readings, thumbnails, persons, statistics)."""
    from fervid.db import database
    from fervid.db.jobs import delete_job

    delete_job(database(_settings(database_url)), job_id)
    console.print(f"job {job_id}: deleted")


@handle_errors
def retry(job_id: Annotated[int, typer.Argument()], database_url: DatabaseUrl = None, broker_url: BrokerUrl = None) -> None:
    """Re-run the unfinished segments of a failed or cancelled job."""
    from fervid.worker.jobs import retry as retry_job

    settings = _settings(database_url, broker_url)
    with _progress(None) as progress:
        task = progress.add_task(f"job {job_id}", total=None, visible=settings.embedded)
        job = retry_job(settings, job_id, on_frame=lambda n: progress.advance(task, n))
    console.print(f"job {job_id}: {job['status']}")
    _exit_for(settings, [job_id])


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

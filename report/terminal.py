"""Terminal rendering with rich (colour on a terminal, plain text when piped): a job report, a job's details, the
job list and a batch comparison."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fervid.expressions import COLORS


def printable(text: str) -> str:
    """``text`` with control characters (escape sequences, newlines in file names) shown as ``\\x1b``, ``\\n``."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes):02d}:{seconds:04.1f}"


def _number(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or "–" where there is none (a class without faces or samples)."""
    return "–" if value is None else format(value, spec)


def _timeline(codes: str, legend: dict[str, str]) -> Text:
    text = Text()
    for code in codes:
        label = legend.get(code)
        text.append(code, style=COLORS.get(label, "dim") if label else "dim")
    return text


def render_report(console: Console, data: dict[str, Any]) -> None:
    """Print the summary, the expression distribution, the persons, per-track timelines (smoothed) and recall
    statistics."""
    speed = f"{data['speed']:.1f}× real time" if data.get("speed") else "–"
    summary = Table.grid(padding=(0, 2))
    for name, value in [
        ("source", printable(data["source"])),
        ("status", data["status"] + (f" — {printable(data['error'])}" if data.get("error") else "")),
        ("kind", data["kind"]),
        ("duration", _seconds(data.get("duration"))),
        ("frames", f"{data['frames_done']} ({data['failed_frames']} failed, {data['warnings']} warnings)"),
        ("faces / tracks", f"{data['faces']} / {data['track_count']}"),
        ("model", f"{data['model_name']} (sha256 {str(data['model_sha256'])[:12]})"),
        ("processing", f"{data['processing_seconds'] or 0:.1f} s, {speed}"),
    ]:
        summary.add_row(Text(name, style="bold"), Text(str(value)))
    console.print(Panel(summary, title=f"job {data['job_id']}", expand=False))

    dist = Table("expression", "faces", "share", "mean p", title="expression distribution")
    for label, row in data["distribution"].items():
        dist.add_row(Text(label, style=COLORS.get(label, "")), str(row["faces"]), _number(row["share"], ".1%"), _number(row["mean_probability"], ".3f"))
    console.print(dist)

    if data.get("persons"):
        people = Table("person", "tracks", "from", "to", "seen", "dominant", "changes/min (raw)", title="persons")
        for p in data["persons"]:
            people.add_row(
                str(p["id"]),
                ",".join(map(str, p["tracks"])),
                _seconds(p["first_t"]),
                _seconds(p["last_t"]),
                _seconds(p["seconds"]),
                Text(str(p["dominant_label"]), style=COLORS.get(p["dominant_label"], "")),
                f"{_number(p['label_changes_per_minute'], '.1f')} ({_number(p['label_changes_per_minute_raw'], '.1f')})",
            )
        console.print(people)

    if data["tracks"]:
        tracks = Table("track", "person", "from", "to", "faces", "dominant", "timeline", title="tracks (smoothed)")
        for t in data["tracks"]:
            tracks.add_row(
                str(t["id"]),
                "" if t.get("person_id") is None else str(t["person_id"]),
                _seconds(t["first_t"]),
                _seconds(t["last_t"]),
                str(t["faces"]),
                Text(str(t["dominant_label"]), style=COLORS.get(t["dominant_label"], "")),
                _timeline(t["timeline"], data["timeline_legend"]) if t["timeline"] else "",
            )
        console.print(tracks)
        legend = Text("timeline: ")
        for code, label in data["timeline_legend"].items():
            legend.append(f"{code}={label} ", style=COLORS.get(label, ""))
        console.print(legend)

    if data.get("events"):
        events = Table("segment", "level", "message", title=f"events ({data['warnings']} warnings)")
        for event in data["events"]:
            events.add_row(str(event["segment"]), event["level"], Text(printable(event["message"])))
        console.print(events)

    evaluation = data.get("evaluation")
    if evaluation:
        metrics = Table("class", "recall", "precision", "f1", "support", title=f"recall statistics — accuracy {evaluation['accuracy']:.2%}")
        for label, m in evaluation["per_class"].items():
            metrics.add_row(label, _number(m["recall"], ".3f"), _number(m["precision"], ".3f"), _number(m["f1"], ".3f"), str(m["support"]))
        confusion = Table("truth \\ pred", *evaluation["classes"], title="confusion matrix")
        for label, row in zip(evaluation["classes"], evaluation["confusion"]):
            confusion.add_row(label, *(str(v) for v in row))
        console.print(Group(metrics, confusion))


STATUS_COLORS = {"done": "green", "failed": "red", "running": "cyan", "cancelled": "yellow"}


def _status(status: str) -> Text:
    return Text(status, style=STATUS_COLORS.get(status, ""))


def file_name(source: str) -> str:
    """A source's file or folder name (a URL as it is)."""
    return source if "://" in source else PurePath(source).name or source


def render_jobs(console: Console, rows: list[dict[str, Any]]) -> None:
    """The job list, readable at 80 columns: file names (``fervid show N`` has the full path and the error)."""
    batches = any(job.get("batch") for job in rows)
    table = Table("id", "status", "kind", "file", "frames", "faces", *(["batch"] if batches else []), "created", "error")
    table.columns[3].overflow = "fold"
    table.columns[-1].overflow, table.columns[-1].no_wrap = "ellipsis", True
    for job in rows:
        frames = str(job["frames_done"]) + (f" ({job['warnings']}⚠)" if job["warnings"] else "")
        table.add_row(
            str(job["id"]), _status(job["status"]), job["kind"], Text(printable(file_name(job["source"]))), frames,
            str(job["faces"]), *([Text(printable(job.get("batch") or ""))] if batches else []),
            f"{job['created_at']:%m-%d %H:%M}", Text(printable(job["error"] or "")),
        )  # fmt: skip
    console.print(table)


def render_job(console: Console, job: dict[str, Any], segments: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """A job's full details: every field and option, its segments, and its warnings."""
    fields = Table.grid(padding=(0, 2))
    params = job.get("params") or {}
    shown = {name: job[name] for name in ("source", "kind", "status", "batch", "created_at", "started_at", "finished_at",
                                          "duration", "frames_total", "frames_done", "faces", "failed_frames", "warnings",
                                          "model_name", "model_sha256", "processing_seconds", "error")}  # fmt: skip
    shown |= {name: value for name, value in params.items() if name not in ("preprocessing", "model_path")}
    for name, value in shown.items():
        fields.add_row(Text(name, style="bold"), Text(printable("–" if value is None else str(value))))
    console.print(Panel(fields, title=f"job {job['id']}", expand=False))
    table = Table("segment", "start", "end", "status", "worker", "frames", "faces", "error", title="segments")
    for seg in segments:
        end = "end" if seg["end"] is None else f"{seg['end']:g}"
        table.add_row(
            str(seg["idx"]), f"{seg['start']:g}", end, _status(seg["status"]), printable(seg["worker"] or ""),
            str(seg["frames"]), str(seg["faces"]), Text(printable(seg["error"] or "")),
        )  # fmt: skip
    console.print(table)
    if events:
        warnings = Table("segment", "level", "message", title="warnings")
        for event in events:
            warnings.add_row(str(event["segment"]), event["level"], Text(printable(event["message"])))
        console.print(warnings)


def render_batch(console: Console, data: dict[str, Any]) -> None:
    """The jobs of a batch side by side: status, duration, faces, persons, dominant expression and the largest
    expression shares."""
    table = Table("job", "file", "status", "length", "faces", "persons", "shares", title=f"batch {data['batch']}")
    table.columns[1].overflow = "fold"
    for job in data["jobs"]:
        shares = Text()
        for label, share in sorted(job["shares"].items(), key=lambda item: -item[1])[:3]:
            shares.append(f"{label} {share:.0%} ", style=COLORS.get(label, ""))
        table.add_row(
            str(job["job_id"]), Text(printable(file_name(job["source"]))), _status(job["status"]), _seconds(job["duration"]),
            str(job["faces"]), "–" if job["persons"] is None else str(job["persons"]), shares,
        )  # fmt: skip
    console.print(table)

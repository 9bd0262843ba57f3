"""Terminal rendering of a job report with rich: colour on a terminal, plain text when piped."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fervid.cli.errors import printable
from fervid.expressions import COLORS


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

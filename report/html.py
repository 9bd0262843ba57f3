"""The HTML report: one self-contained page that works offline, with interactive Plotly charts.

plotly.js (bundled with the ``plotly`` package) is inlined once in the page's head, thumbnails are JPEG data URIs,
the CSS is inline: nothing is fetched. The page holds the job summary and its run parameters, a card per person
(per track without persons) with its face thumbnails, an interactive timeline per person (zoom, hover with time and
probabilities, smoothed or raw at a click), the expression distribution, for labelled jobs the recall statistics
and confusion matrix, for image jobs a table of the images, and the commands that export the job. Every number
comes from :func:`~fervid.db.reports.job_report` and :mod:`fervid.db.series`.
"""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import Engine

from fervid.db.reports import batch_report, job_report
from fervid.db.series import Series, Timeline, thumbnails, timeline_series
from fervid.report.formatting import check_output, clock, color
from fervid.settings import CROP_CONTEXTS

HTML_SUFFIXES: tuple[str, ...] = (".html", ".htm")
#: Persons (or tracks) drawn in the timeline and given cards; thumbnails per card; image rows in an image job.
MAX_PERSONS = 12
THUMBNAILS_PER_CARD = 6
MAX_IMAGE_ROWS = 500
#: Samples per series drawn at most (longer series are thinned evenly; the exports keep every sample).
MAX_POINTS = 4000

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1240px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; vertical-align: middle; }
th:first-child, td:first-child, .text { text-align: left; }
th { background: #f5f5f5; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; vertical-align: baseline; }
.muted { color: #666; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.8rem; width: 360px; }
.card h3 { margin: 0 0 0.3rem 0; font-size: 1rem; }
.faces { display: flex; flex-wrap: wrap; gap: 4px; margin: 0.4rem 0; }
.faces figure { margin: 0; text-align: center; font-size: 0.7rem; }
img.face { width: 72px; height: 72px; object-fit: cover; border-radius: 4px; border: 3px solid #ccc; display: block; }
pre { background: #f5f5f5; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; }
.columns { display: flex; flex-wrap: wrap; gap: 2rem; }
"""


def write_html(engine: Engine, job_id: int, path: Path, smoothed: bool = True) -> Path:
    """Write the job's HTML report to ``path`` (``.html``); the timeline opens on the smoothed readings, or the
    raw ones (``smoothed=False``)."""
    path = check_output(path, HTML_SUFFIXES)
    report = job_report(engine, job_id)
    faces = thumbnails(engine, job_id)
    sections = [_summary(report)]
    if report["kind"] == "video":
        timeline = timeline_series(engine, job_id, limit=MAX_PERSONS)
        sections.append(_cards(report, timeline, faces))
        sections.append(_timeline(report, timeline, smoothed))
    sections.append(_distribution(report))
    if report["kind"] == "images":
        sections.append(_images(faces))
    if report["evaluation"] is not None:
        sections.append(_evaluation(report["evaluation"]))
    sections.append(_exports(report))
    source = str(report["source"])
    path.write_text(_page(f"fervid job {job_id} · {PurePath(source).name or source}", sections), encoding="utf-8")
    return path


def write_batch_html(engine: Engine, batch: str, path: Path) -> Path:
    """Write the comparison of a batch's jobs (:func:`~fervid.db.reports.batch_report`) to ``path`` (``.html``):
    each job's expression shares as a stacked bar, and a table of the jobs."""
    import plotly.graph_objects as go

    path = check_output(path, HTML_SUFFIXES)
    data = batch_report(engine, batch)
    jobs = data["jobs"]
    labels = list(dict.fromkeys(label for job in jobs for label in job["shares"]))
    names = [f"{job['job_id']} · {PurePath(str(job['source'])).name}" for job in jobs]
    figure = go.Figure(
        [
            go.Bar(
                y=names, x=[job["shares"].get(label, 0.0) for job in jobs], name=label, orientation="h",
                marker_color=color(label), hovertemplate=f"%{{y}}<br>{label} %{{x:.1%}}<extra></extra>",
            )
            for label in labels
        ]
    )  # fmt: skip
    figure.update_layout(barmode="stack", height=140 + 32 * len(jobs), xaxis={"tickformat": ".0%", "range": [0, 1]},
                         yaxis={"autorange": "reversed"}, margin={"l": 220, "r": 20, "t": 30, "b": 40})  # fmt: skip
    rows = [
        [
            _cell(job["job_id"]),
            _cell(job["source"], text=True),
            _cell(job["status"], text=True),
            _cell(None if job["duration"] is None else clock(job["duration"])),
            _cell(job["faces"]),
            _cell(job["persons"]),
            _label_cell(job["dominant_label"]),
            _cell(_shares(job["shares"]), text=True),
            _cell(_number(job["accuracy"], ".1%")),
        ]
        for job in jobs
    ]
    table = _table(["job", "source", "status", "duration", "faces", "persons", "dominant", "shares", "accuracy"], rows)
    sections = ["<h2>Expression shares per job</h2>", _chart(figure, "shares"), "<h2>Jobs</h2>", table,
                "<p class='muted'>each job's own report: <code>fervid report --job N --html job-N.html</code></p>"]  # fmt: skip
    path.write_text(_page(f"fervid batch {batch} · {len(jobs)} jobs", sections), encoding="utf-8")
    return path


def _page(title: str, sections: Iterable[str]) -> str:
    from plotly.offline import get_plotlyjs

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>\n<body>\n'
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def _chart(figure: Any, element_id: str) -> str:
    """A Plotly figure as a ``div`` and the script that draws it (plotly.js is in the page's head)."""
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=element_id, config={"displaylogo": False, "responsive": True})


def _cell(value: Any, text: bool = False) -> str:
    shown = "–" if value is None or value == "" else str(value)
    return f'<td class="text">{html.escape(shown)}</td>' if text else f"<td>{html.escape(shown)}</td>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fields(fields: list[tuple[str, Any]]) -> str:
    return _table(["field", "value"], [[_cell(name, text=True), _cell(value, text=True)] for name, value in fields])


def _label_cell(label: str | None) -> str:
    swatch = f'<span class="swatch" style="background:{html.escape(color(label))}"></span>'
    return f'<td class="text">{swatch}{html.escape(str(label))}</td>'


def _number(value: float | None, spec: str, unit: str = "") -> str | None:
    return None if value is None else format(value, spec) + unit


def _shares(shares: dict[str, float]) -> str:
    return " · ".join(f"{label} {share:.0%}" for label, share in shares.items())


def _face(face: dict[str, Any], caption: str) -> str:
    uri = "data:image/jpeg;base64," + base64.b64encode(face["image"]).decode("ascii")
    alt = f"{face['label']} {face['probability']:.0%}"
    return (
        f'<figure><img class="face" alt="{html.escape(alt)}" src="{uri}" '
        f'style="border-color:{html.escape(color(face["label"]))}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def _summary(report: dict[str, Any]) -> str:
    params = report["params"] or {}
    frames = report["frames_done"] if report["frames_total"] is None else f"{report['frames_done']} / {report['frames_total']}"
    job = [
        ("source", report["source"]),
        ("kind", report["kind"]),
        ("status", report["status"]),
        ("error", report["error"]),
        ("created", _when(report["created_at"])),
        ("finished", _when(report["finished_at"])),
        ("duration", None if report["duration"] is None else clock(report["duration"])),
        ("frames", frames),
        ("faces", report["faces"]),
        ("tracks", report["track_count"]),
        ("persons", len(report["persons"]) if report["kind"] == "video" else None),
        ("failed frames", report["failed_frames"]),
        ("warnings", report["warnings"]),
        ("segments", f"{report['segments_done']} / {report['segments_total']}"),
        ("processing", _number(report["processing_seconds"], ".1f", " s")),
        ("speed", _number(report["speed"], ".2f", "× real time")),
    ]
    run = [
        ("model", report["model_name"]),
        ("model sha256", report["model_sha256"]),
        ("classes", ", ".join(report["classes"] or [])),
        ("detector", params.get("detector")),
        ("sample rate", "every frame" if params.get("sample_fps") is None else f"{params['sample_fps']:g} frames/s"),
        ("crop", _crop(params)),
        ("flip averaging", params.get("flip")),
        ("shifted views", f"±{params['tta_shift']:g} of the side" if params.get("tta_shift") else "off"),
        ("smoothing", f"{params.get('smooth_seconds', 0):g} s" if params.get("smooth_seconds") else "off"),
        ("identity", f"on (threshold {params.get('identity_threshold', 0):g})" if params.get("identity") else "off"),
        ("track gap", _number(params.get("max_gap"), "g", " s")),
        ("cut threshold", params.get("cut_threshold")),
    ]
    parts = ['<h2>Summary</h2><div class="columns">', _fields(job), _fields(run), "</div>"]
    if report["events"]:
        rows = [[_cell(e["segment"]), _cell(e["level"], text=True), _cell(e["message"], text=True)] for e in report["events"]]
        parts += ["<h3>Events</h3>", _table(["segment", "level", "message"], rows)]
    return "\n".join(parts)


def _when(iso: str | None) -> str | None:
    """An ISO timestamp to the second, UTC."""
    return None if iso is None else iso[:19].replace("T", " ") + " UTC"


def _crop(params: dict[str, Any]) -> str | None:
    """The face-crop definition the job cut its faces with, in words."""
    preprocessing = params.get("preprocessing")
    if not preprocessing:
        return None
    size = params.get("input_size")
    crop = preprocessing.get("crop")
    if crop is None:
        return f"box + {preprocessing.get('margin', 0):.0%} margin, {size} px (legacy)"
    (lx, ly), (rx, _), (mx, my) = crop["template"]
    context = crop.get("context", "black")
    return (
        f"aligned: eyes at ({lx:.2f}, {ly:.2f}) and ({rx:.2f}, {ly:.2f}), mouth at ({mx:.2f}, {my:.2f}) of a "
        f"{size} px square (landmarks; calibrated box rule for detectors without them; face crops surrounded by "
        f"{CROP_CONTEXTS.get(context, context)})"
    )


def _cards(report: dict[str, Any], timeline: Timeline, faces: list[dict[str, Any]]) -> str:
    """A card per person (per track without persons): time on screen, expression shares and face thumbnails at
    the peaks of its expressions (the highest probability per label, best first)."""
    by_person = timeline.unit == "person"
    entries = report["persons"] if by_person else report["tracks"]
    key = "person_id" if by_person else "track_id"
    peaks: dict[Any, dict[str, dict[str, Any]]] = defaultdict(dict)
    for face in faces:
        best = peaks[face[key]].get(face["label"])
        if best is None or face["probability"] > best["probability"]:
            peaks[face[key]][face["label"]] = face
    cards = []
    for entry in sorted(entries, key=lambda e: -e["faces"])[:MAX_PERSONS]:
        shown = sorted(peaks.get(entry["id"], {}).values(), key=lambda f: -f["probability"])[:THUMBNAILS_PER_CARD]
        thumbs = "".join(_face(f, f"{f['label']} {f['probability']:.0%} · {clock(f['t'] or 0)}") for f in shown)
        seconds = entry.get("seconds")
        seen = f"{clock(entry['first_t'] or 0)}–{clock(entry['last_t'] or 0)}" + (f", {seconds:.1f} s on screen" if seconds else "")
        changes = entry.get("label_changes_per_minute")
        cards.append(
            f'<div class="card"><h3>{timeline.unit} {entry["id"]}</h3>'
            f'<div class="muted">{html.escape(seen)} · {entry["faces"]} faces'
            + (f" · tracks {', '.join(map(str, entry['tracks']))}" if by_person else "")
            + "</div>"
            f'<div class="faces">{thumbs or "<span class=muted>no thumbnails stored</span>"}</div>'
            f'<div><span class="swatch" style="background:{html.escape(color(entry["dominant_label"]))}"></span>'
            f"<b>{html.escape(str(entry['dominant_label']))}</b> · {html.escape(_shares(entry['shares'] or {}))}</div>"
            + (
                f'<div class="muted">label changes per minute: {changes:.1f} smoothed, '
                f"{entry['label_changes_per_minute_raw']:.1f} raw</div>"
                if changes is not None
                else ""
            )
            + "</div>"
        )
    if not cards:
        return f"<h2>{timeline.unit.capitalize()}s</h2><p class='muted'>no faces detected</p>"
    more = len(entries) - len(cards)
    note = f"<p class='muted'>showing the {len(cards)} with the most faces of {len(entries)}</p>" if more > 0 else ""
    return f"<h2>{timeline.unit.capitalize()}s</h2>{note}<div class='cards'>{''.join(cards)}</div>"


def _thinned(series: Series) -> tuple[list[float], list[list[float | None]], list[list[float | None]]]:
    """At most :data:`MAX_POINTS` samples, evenly spaced, with a zero row inside every gap longer than two sample
    steps so that the stacked areas drop to nothing while the person is away."""
    step = max(1, -(-len(series.t) // MAX_POINTS))
    t, smoothed, raw = series.t[::step], series.smoothed[::step], series.raw[::step]
    gaps = [b - a for a, b in zip(t, t[1:]) if b > a]
    period = sorted(gaps)[len(gaps) // 2] if gaps else 1.0
    out_t, out_s, out_r = [], [], []
    zero = [0.0] * (len(smoothed[0]) if smoothed else 0)
    for i, time in enumerate(t):
        if i and time - t[i - 1] > 2 * period:
            out_t += [t[i - 1] + period / 2, time - period / 2]
            out_s += [zero, zero]
            out_r += [zero, zero]
        out_t.append(time)
        out_s.append(smoothed[i])
        out_r.append(raw[i])
    return out_t, out_s, out_r


def _timeline(report: dict[str, Any], timeline: Timeline, smoothed: bool) -> str:
    """Stacked expression probabilities over time, one panel per person, smoothed and raw (buttons switch)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    shown = timeline.series
    if not shown or not timeline.classes:
        return "<h2>Timeline</h2><p class='muted'>no faces detected</p>"
    names = ["untracked" if s.key is None else f"{timeline.unit} {s.key}" for s in shown]
    figure = make_subplots(rows=len(shown), cols=1, shared_xaxes=True, vertical_spacing=0.04 if len(shown) > 1 else 0.0,
                           subplot_titles=[f"{name} · {s.faces} faces" for name, s in zip(names, shown)])  # fmt: skip
    figure.update_annotations(x=0, xanchor="left", font_size=12)  # panel titles on the left, the legend on the right
    visible_smoothed = []
    for row, series in enumerate(shown, start=1):
        t, values_smoothed, values_raw = _thinned(series)
        for kind, values in (("smoothed", values_smoothed), ("raw", values_raw)):
            for i, label in enumerate(timeline.classes):
                figure.add_trace(
                    go.Scatter(
                        x=t, y=[v[i] for v in values], name=label, legendgroup=label, showlegend=row == 1 and kind == "smoothed",
                        stackgroup=f"{kind}{row}", mode="lines", line={"width": 0, "color": color(label)},
                        fillcolor=color(label), visible=(kind == "smoothed") == smoothed,
                        hovertemplate=f"{label} %{{y:.2f}}<extra>{kind}</extra>",
                    ),
                    row=row, col=1,
                )  # fmt: skip
                visible_smoothed.append(kind == "smoothed")
        figure.update_yaxes(range=[0, 1], title_text="p", row=row, col=1)
    end = report["duration"] or timeline.last_t or 1.0
    figure.update_xaxes(title_text="time (s)", range=[0 if report["duration"] else timeline.first_t, end], row=len(shown), col=1)
    buttons = [
        {"label": "smoothed", "method": "update", "args": [{"visible": visible_smoothed}]},
        {"label": "raw", "method": "update", "args": [{"visible": [not v for v in visible_smoothed]}]},
    ]
    figure.update_layout(
        height=140 + 190 * len(shown), hovermode="x unified", margin={"l": 60, "r": 20, "t": 60, "b": 50},
        updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons if smoothed else buttons[::-1],
                      "x": 0, "y": 1.0 + 60 / (140 + 190 * len(shown)), "xanchor": "left", "yanchor": "bottom"}],
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
    )  # fmt: skip
    note = ""
    if timeline.total > len(shown):
        note = f"<p class='muted'>showing the {len(shown)} largest of {timeline.total} {timeline.unit}s</p>"
    return "<h2>Timeline</h2>" + note + _chart(figure, "timeline")


def _distribution(report: dict[str, Any]) -> str:
    import plotly.graph_objects as go

    distribution = report["distribution"]
    if not distribution:
        return '<h2>Expression distribution</h2><p class="muted">no statistics (the job has not finished)</p>'
    labels = list(distribution)
    figure = go.Figure(
        go.Bar(
            x=labels, y=[distribution[c]["faces"] for c in labels], marker_color=[color(c) for c in labels],
            text=[f"{distribution[c]['share']:.0%}" for c in labels], hovertemplate="%{x}: %{y} faces<extra></extra>",
        )
    )  # fmt: skip
    figure.update_layout(height=320, margin={"l": 60, "r": 20, "t": 20, "b": 40}, yaxis_title="faces")
    rows = [
        [
            _label_cell(label),
            _cell(stats["faces"]),
            _cell(_number(stats["share"], ".1%")),
            _cell(_number(stats["mean_probability"], ".3f")),
            _cell(_number(stats["mean_confidence"], ".3f")),
        ]
        for label, stats in distribution.items()
    ]
    table = _table(["expression", "faces", "share", "mean probability", "mean confidence"], rows)
    return "<h2>Expression distribution</h2>" + _chart(figure, "distribution") + table


def _images(faces: list[dict[str, Any]]) -> str:
    """An image job's faces: thumbnail, file, label, confidence and truth, sorted by file."""
    faces = sorted(faces, key=lambda f: (f["source_path"] or "", f["track_id"] or 0))
    rows = [
        [
            f"<td>{_face(f, '')}</td>",
            _cell(f["source_path"], text=True),
            _label_cell(f["label"]),
            _cell(_number(f["probability"], ".2f")),
            _cell(f["truth"], text=True),
            _cell("" if f["truth"] is None else ("✓" if f["truth"] == f["label"] else "✗"), text=True),
        ]
        for f in faces[:MAX_IMAGE_ROWS]
    ]
    if not rows:
        return "<h2>Images</h2><p class='muted'>no faces stored with thumbnails</p>"
    note = f"<p class='muted'>the first {MAX_IMAGE_ROWS} of {len(faces)} faces</p>" if len(faces) > MAX_IMAGE_ROWS else ""
    return "<h2>Images</h2>" + note + _table(["face", "file", "label", "confidence", "truth", ""], rows)


def _evaluation(evaluation: dict[str, Any]) -> str:
    import plotly.graph_objects as go

    classes = list(evaluation["classes"])
    counts = evaluation["confusion"]
    normalised = [[n / sum(row) if sum(row) else 0.0 for n in row] for row in counts]
    figure = go.Figure(
        go.Heatmap(
            z=normalised, x=classes, y=classes, colorscale="Blues", zmin=0, zmax=1,
            text=[[f"{p:.0%}<br>{n}" for p, n in zip(prow, crow)] for prow, crow in zip(normalised, counts)],
            texttemplate="%{text}", hovertemplate="true %{y}, predicted %{x}: %{z:.1%}<extra></extra>",
        )
    )  # fmt: skip
    figure.update_layout(height=120 + 45 * len(classes), width=200 + 70 * len(classes), margin={"t": 20},
                         xaxis_title="predicted", yaxis={"title": "true", "autorange": "reversed"})  # fmt: skip
    accuracy = f"{evaluation['accuracy']:.1%}" + (f" ± {evaluation['accuracy_std']:.1%}" if evaluation["accuracy_std"] is not None else "")
    fields = _fields(
        [("accuracy", accuracy), ("evaluation", evaluation["name"]), ("model", evaluation["model_name"]),
         ("protocol", evaluation["protocol"]), ("folds", evaluation["folds"])]
    )  # fmt: skip
    per_class = [
        [
            _label_cell(label),
            _cell(_number(m["recall"], ".3f")),
            _cell(_number(m["precision"], ".3f")),
            _cell(_number(m["f1"], ".3f")),
            _cell(m["support"]),
        ]
        for label, m in evaluation["per_class"].items()
    ]
    recall = _table(["class", "recall", "precision", "f1", "support"], per_class)
    return (
        "<h2>Recall statistics</h2>" + fields + '<div class="columns"><div>' + recall + "</div><div>"
        + _chart(figure, "confusion") + "</div></div>"
    )  # fmt: skip


def _exports(report: dict[str, Any]) -> str:
    job = report["job_id"]
    commands = [
        f"fervid export --job {job} --format csv --output job-{job}.csv",
        f"fervid export --job {job} --format parquet --output job-{job}.parquet",
        f"fervid report --job {job} --format json > job-{job}.json",
    ]
    if report["kind"] == "video":
        commands[1:1] = [
            f"fervid export --job {job} --per second --output job-{job}-seconds.csv",
            f"fervid export --job {job} --raw --output job-{job}-raw.csv",
        ]
    sql = f"SELECT * FROM fervid_timeline WHERE job_id = {job} ORDER BY t, track_id;"
    return (
        "<h2>Export</h2><pre>" + html.escape("\n".join(commands)) + "</pre>"
        "<p class='muted'>or query the database directly:</p><pre>" + html.escape(sql) + "</pre>"
    )

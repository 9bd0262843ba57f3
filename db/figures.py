"""Figures of a job's results (timeline, confusion matrix) and a self-contained HTML report.

Figures are drawn on :class:`matplotlib.figure.Figure` with an Agg canvas, never through ``pyplot``: nothing global
(backend, open-figure registry) changes, so this is safe in workers and threads. Every figure colours an expression
with its fixed :data:`fervid.expressions.COLORS` entry.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator
from sqlalchemy import Connection, Engine, func, select

from fervid.db.export import check_output
from fervid.db.jobs import get_job
from fervid.db.reports import job_report
from fervid.db.schema import PROBABILITY_COLUMNS, fervid_timeline
from fervid.expressions import COLORS, EXPRESSIONS

#: Resolution of written figures: a figure of W x H inches becomes W*DPI x H*DPI pixels.
DPI = 100
#: The timeline figure shows at most this many tracks, the ones with the most faces.
MAX_TRACKS = 8
WIDTH = 12.0
FIGURE_SUFFIXES: tuple[str, ...] = (".png", ".svg")
HTML_SUFFIXES: tuple[str, ...] = (".html", ".htm")
#: Spacings of time ticks, in seconds: the smallest that gives at most ten ticks is used.
TIME_STEPS: tuple[float, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
#: Colour of labels outside the canonical vocabulary.
OTHER_COLOR = "#607d8b"


def timeline_figure(engine: Engine, job_id: int, smoothed: bool = True) -> Figure:
    """The expressions over time, one panel per person (the :data:`MAX_TRACKS` persons with the most faces; per
    track for jobs stored before persons existed).

    Each panel stacks the person's expression probabilities, ``smoothed`` over time as the job stored them
    (:mod:`fervid.worker.smoothing`) or raw, and below them a band coloured by the dominant expression, their
    argmax. Where the person is absent for more than two sampling steps both are left empty. An image job, which
    has no times, gets a bar chart of its predicted expressions instead (stacked per ground-truth class when it
    has one).
    """
    job = get_job(engine, job_id)
    title = f"job {job_id} · {PurePath(job['source']).name or job['source']}"
    with engine.connect() as conn:
        if job["kind"] == "images":
            return _distribution_figure(conn, job_id, title)
        return _persons_figure(conn, job, smoothed, title)


def confusion_figure(engine: Engine, job_id: int) -> Figure | None:
    """The job's evaluation: row-normalised confusion matrix and per-class recall; ``None`` without one."""
    evaluation = job_report(engine, job_id, timeline_width=1)["evaluation"]
    return None if evaluation is None else _confusion_figure(job_id, evaluation)


def write_figures(engine: Engine, job_id: int, path: Path, smoothed: bool = True) -> list[Path]:
    """Write the timeline figure to ``path`` (``.png`` or ``.svg``) and, when the job has an evaluation, the
    confusion figure next to it as ``<stem>-confusion<suffix>``; the files written.

    ``path``'s directory must exist.
    """
    path = check_output(path, FIGURE_SUFFIXES)
    figures = [(path, timeline_figure(engine, job_id, smoothed))]
    confusion = confusion_figure(engine, job_id)
    if confusion is not None:
        figures.append((path.with_name(f"{path.stem}-confusion{path.suffix}"), confusion))
    for target, figure in figures:
        figure.savefig(target, format=target.suffix[1:].lower(), dpi=DPI)
    return [target for target, _ in figures]


def write_html(engine: Engine, job_id: int, path: Path, smoothed: bool = True) -> Path:
    """Write one self-contained HTML page (figures inlined as PNG data URIs, inline CSS, no scripts or links).

    Every number comes from :func:`~fervid.db.reports.job_report`, so the page matches ``fervid report --format
    json``: the job summary, the figures, the expression distribution, the tracks and the evaluation.
    """
    path = check_output(path, HTML_SUFFIXES)
    report = job_report(engine, job_id)
    figures = [("timeline" if report["kind"] == "video" else "expressions", timeline_figure(engine, job_id, smoothed))]
    if report["evaluation"] is not None:
        figures.append(("confusion matrix and recall", _confusion_figure(job_id, report["evaluation"])))
    path.write_text(_page(report, figures), encoding="utf-8")
    return path


def clock(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from one hour on."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _new_figure(height: float) -> Figure:
    figure = Figure(figsize=(WIDTH, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _color(label: str | None) -> str:
    return COLORS.get(label or "", OTHER_COLOR)


def _label_order(labels: set[str | None]) -> list[str | None]:
    """Canonical expressions first, in their order, then the others alphabetically, ``None`` last."""
    order = {name: i for i, name in enumerate(EXPRESSIONS)}
    return sorted(labels, key=lambda label: (label is None, order.get(label or "", len(order)), label or ""))


def _persons_figure(conn: Connection, job: dict[str, Any], smoothed: bool, title: str) -> Figure:
    view = fervid_timeline.c
    job_id = job["id"]
    present = conn.execute(
        select(*(func.count(view[name]) for name in PROBABILITY_COLUMNS)).where(view.job_id == job_id)
    ).one()
    classes = [name.removeprefix("p_") for name, n in zip(PROBABILITY_COLUMNS, present) if n]
    columns = [func.coalesce(view[f"ps_{c}"], view[f"p_{c}"]) if smoothed else view[f"p_{c}"] for c in classes]
    by_person = conn.scalar(select(func.count(view.person_id)).where(view.job_id == job_id)) > 0
    key = view.person_id if by_person else view.track_id
    panels = conn.execute(
        select(key, func.count(), func.min(view.t), func.max(view.t))
        .where(view.job_id == job_id, view.t.is_not(None))
        .group_by(key)
        .order_by(func.count().desc(), key)
    ).all()
    shown = panels[:MAX_TRACKS]
    figure = _new_figure(1.6 + 1.9 * max(len(shown), 1))
    height = figure.get_figheight()
    figure.suptitle(title, x=0.07, y=1 - 0.12 / height, ha="left", va="top", fontsize=13, parse_math=False)
    note = f"stacked probabilities ({'smoothed over time' if smoothed else 'raw'}); band: dominant expression"
    if len(panels) > len(shown):
        note += f"; showing the {len(shown)} largest of {len(panels)} {'persons' if by_person else 'tracks'}"
    figure.text(0.07, 1 - 0.5 / height, note, fontsize=9, color="#555555", va="top")
    figure.legend(
        [Patch(color=COLORS[c]) for c in classes], classes, loc="upper right", ncols=max(len(classes), 1),
        bbox_to_anchor=(0.98, 1 - 0.05 / height), frameon=False, fontsize=9,
    )  # fmt: skip
    if not shown or not columns:
        figure.text(0.5, 0.5, "no faces detected", ha="center", va="center", fontsize=14, color="#555555")
        return figure
    start = 0.0 if job["duration"] else min(panel[2] for panel in panels)
    end = job["duration"] or max(panel[3] for panel in panels)
    grid = GridSpec(
        len(shown), 1, figure=figure, left=0.07, right=0.98, top=1 - 1.0 / height, bottom=0.6 / height, hspace=0.3
    )
    axes: list[Axes] = []
    for i, (ident, faces, _, _) in enumerate(shown):
        cell = grid[i].subgridspec(2, 1, height_ratios=(5, 1), hspace=0.0)
        probs = figure.add_subplot(cell[0], sharex=axes[0] if axes else None)
        band = figure.add_subplot(cell[1], sharex=probs)
        axes += [probs, band]
        rows = conn.execute(
            select(view.t, *columns)
            .where(view.job_id == job_id, key.is_(None) if ident is None else key == ident, view.t.is_not(None))
            .order_by(view.t)
        ).all()
        t = np.array([row[0] for row in rows], dtype=float)
        p = np.nan_to_num(np.array([row[1:] for row in rows], dtype=float))
        _draw_track(probs, band, t, p, classes)
        name = "untracked" if ident is None else f"{'person' if by_person else 'track'} {ident}"
        probs.set_ylabel(f"{name}\n{faces} faces", fontsize=9)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    axes[0].set_xlim(start, max(end, start + 1e-3))
    step = next((s for s in TIME_STEPS if (end - start) / s <= 10), TIME_STEPS[-1])
    axes[-1].xaxis.set_major_locator(MultipleLocator(step))
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda x, _: clock(max(x, 0.0))))
    axes[-1].set_xlabel("time (h:mm:ss)" if end >= 3600 else "time (mm:ss)")
    return figure


def _draw_track(probs: Axes, band: Axes, t: np.ndarray, values: np.ndarray, classes: list[str]) -> None:
    """The stacked probabilities and the dominant-expression band of one panel, broken at its gaps."""
    steps = np.diff(t)
    step = float(np.median(steps[steps > 0])) if np.any(steps > 0) else 1.0
    breaks = np.flatnonzero(steps > 2 * step)
    # A NaN row after each sample that precedes a gap: the stack is not drawn across it.
    plot_t = np.insert(t, breaks + 1, t[breaks] + step / 2)
    plot_p = np.insert(values, breaks + 1, np.nan, axis=0)
    probs.stackplot(plot_t, plot_p.T, colors=[COLORS[c] for c in classes], linewidth=0)
    probs.set_ylim(0, 1)
    probs.set_yticks([0, 0.5, 1])
    probs.tick_params(labelsize=8)
    dominant = np.argmax(values, axis=1)
    runs: dict[int, list[tuple[float, float]]] = defaultdict(list)
    first = 0
    for i in range(1, len(t) + 1):
        if i == len(t) or dominant[i] != dominant[first] or t[i] - t[i - 1] > 2 * step:
            left, right = t[first] - step / 2, t[i - 1] + step / 2
            runs[int(dominant[first])].append((left, right - left))
            first = i
    for index, spans in runs.items():
        band.broken_barh(spans, (0, 1), facecolors=COLORS[classes[index]])
    band.set_ylim(0, 1)
    band.set_yticks([])


def _distribution_figure(conn: Connection, job_id: int, title: str) -> Figure:
    """Predicted expressions of an image job: a bar per label, or per ground-truth class stacked by prediction."""
    view = fervid_timeline.c
    counts: dict[str | None, dict[str | None, int]] = defaultdict(dict)
    for truth, label, faces in conn.execute(
        select(view.truth, view.label, func.count()).where(view.job_id == job_id).group_by(view.truth, view.label)
    ):
        counts[truth][label] = faces
    figure = _new_figure(5.0)
    figure.suptitle(title, x=0.07, ha="left", fontsize=13, parse_math=False)
    ax = figure.add_axes((0.07, 0.15, 0.75, 0.72))
    ax.set_ylabel("faces")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    labels = _label_order({label for per_truth in counts.values() for label in per_truth})
    if not labels:
        ax.text(0.5, 0.5, "no faces detected", ha="center", va="center", transform=ax.transAxes, color="#555555")
        return figure
    if set(counts) == {None}:
        faces = [counts[None][label] for label in labels]
        total = sum(faces)
        bars = ax.bar([str(label) for label in labels], faces, color=[_color(label) for label in labels])
        ax.bar_label(bars, [f"{n} ({n / total:.0%})" for n in faces], fontsize=9)
        ax.set_ylim(0, max(faces) * 1.1)
        ax.set_xlabel("predicted expression")
        return figure
    truths = _label_order(set(counts))
    names = ["unlabelled" if truth is None else truth for truth in truths]
    bottom = np.zeros(len(truths))
    for label in labels:
        faces = np.array([counts[truth].get(label, 0) for truth in truths], dtype=float)
        ax.bar(names, faces, bottom=bottom, color=_color(label), label=str(label))
        bottom += faces
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{int(total)}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, bottom.max() * 1.1)
    ax.set_xlabel("ground truth (class folder)")
    ax.legend(title="predicted", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    return figure


def _confusion_figure(job_id: int, evaluation: dict[str, Any]) -> Figure:
    """Row-normalised confusion matrix annotated with percentages and counts, and per-class recall bars."""
    classes = list(evaluation["classes"])
    counts = np.asarray(evaluation["confusion"], dtype=float)
    support = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    n = len(classes)
    figure = _new_figure(max(4.5, 0.6 * n + 2.0))
    accuracy = f"accuracy {evaluation['accuracy']:.1%}"
    if evaluation["accuracy_std"] is not None:
        accuracy += f" ± {evaluation['accuracy_std']:.1%}"
    title = f"job {job_id} · {evaluation['name'] or 'evaluation'} · {accuracy}"
    figure.suptitle(title, x=0.07, ha="left", fontsize=13, parse_math=False)
    grid = GridSpec(1, 2, figure=figure, width_ratios=(3, 2), left=0.12, right=0.95, top=0.86, bottom=0.2, wspace=0.45)
    matrix, recall = figure.add_subplot(grid[0]), figure.add_subplot(grid[1])
    matrix.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(n):
        for j in range(n):
            text = f"{normalised[i, j]:.0%}\n{int(counts[i, j])}" if support[i, 0] else "–"
            matrix.text(
                j, i, text, ha="center", va="center", fontsize=8,
                color="white" if normalised[i, j] > 0.5 else "black",
            )  # fmt: skip
    matrix.set_xticks(range(n), classes, rotation=45, ha="right")
    matrix.set_yticks(range(n), classes)
    matrix.set_xlabel("predicted")
    matrix.set_ylabel("true")
    matrix.set_title("confusion (row-normalised)", fontsize=10)
    per_class = evaluation["per_class"]
    values = [per_class.get(c, {}).get("recall") for c in classes]
    bars = recall.barh(range(n), [v or 0.0 for v in values], color=[_color(c) for c in classes])
    recall.bar_label(
        bars, [f"{'n/a' if v is None else format(v, '.0%')} (n={per_class.get(c, {}).get('support', 0)})" for c, v in zip(classes, values)],
        fontsize=8, padding=2,
    )  # fmt: skip
    recall.set_yticks(range(n), classes)
    recall.invert_yaxis()
    recall.set_xlim(0, 1.25)
    recall.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    recall.set_title("recall per class", fontsize=10)
    return figure


def _png_data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1240px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child, .text { text-align: left; }
th { background: #f5f5f5; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; vertical-align: baseline; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; }
.muted { color: #666; }
"""


def _cell(value: Any, text: bool = False) -> str:
    shown = "–" if value is None or value == "" else str(value)
    return f'<td class="text">{html.escape(shown)}</td>' if text else f"<td>{html.escape(shown)}</td>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _label_cell(label: str | None) -> str:
    swatch = f'<span class="swatch" style="background:{html.escape(_color(label))}"></span>'
    return f'<td class="text">{swatch}{html.escape(str(label))}</td>'


def _number(value: float | None, spec: str, unit: str = "") -> str | None:
    return None if value is None else format(value, spec) + unit


def _page(report: dict[str, Any], figures: list[tuple[str, Figure]]) -> str:
    job_id = report["job_id"]
    source = str(report["source"])
    title = f"fervid job {job_id} · {PurePath(source).name or source}"
    sections = [f"<h1>{html.escape(title)}</h1>", "<h2>Summary</h2>", _summary(report), "<h2>Figures</h2>"]
    sections += [
        f'<figure><img alt="{html.escape(name)}" src="{_png_data_uri(figure)}">'
        f'<figcaption class="muted">{html.escape(name)}</figcaption></figure>'
        for name, figure in figures
    ]
    sections += ["<h2>Expression distribution</h2>", _distribution(report)]
    if report["persons"]:
        sections += ["<h2>Persons</h2>", _persons(report)]
    sections += ["<h2>Tracks</h2>", _tracks(report)]
    sections += ["<h2>Statistics</h2>", _statistics(report)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _summary(report: dict[str, Any]) -> str:
    frames = (
        report["frames_done"]
        if report["frames_total"] is None
        else f"{report['frames_done']} / {report['frames_total']}"
    )
    fields = [
        ("source", report["source"]),
        ("kind", report["kind"]),
        ("status", report["status"]),
        ("error", report["error"]),
        ("model", report["model_name"]),
        ("classes", ", ".join(report["classes"] or [])),
        ("created", report["created_at"]),
        ("started", report["started_at"]),
        ("finished", report["finished_at"]),
        ("duration", None if report["duration"] is None else clock(report["duration"])),
        ("frames", frames),
        ("faces", report["faces"]),
        ("tracks", report["track_count"]),
        ("failed frames", report["failed_frames"]),
        ("warnings", report["warnings"]),
        ("segments", f"{report['segments_done']} / {report['segments_total']}"),
        ("processing", _number(report["processing_seconds"], ".1f", " s")),
        ("speed", _number(report["speed"], ".2f", "× real time")),
    ]
    return _table(["field", "value"], [[_cell(name, text=True), _cell(value, text=True)] for name, value in fields])


def _distribution(report: dict[str, Any]) -> str:
    rows = [
        [
            _label_cell(label),
            _cell(stats["faces"]),
            _cell(_number(stats["share"], ".1%")),
            _cell(_number(stats["mean_probability"], ".3f")),
            _cell(_number(stats["mean_confidence"], ".3f")),
        ]
        for label, stats in report["distribution"].items()
    ]
    if not rows:
        return '<p class="muted">no statistics (the job has not finished)</p>'
    return _table(["expression", "faces", "share", "mean probability", "mean confidence"], rows)


def _persons(report: dict[str, Any]) -> str:
    rows = [
        [
            _cell(person["id"], text=True),
            _cell(", ".join(map(str, person["tracks"])), text=True),
            _cell(clock(person["first_t"])),
            _cell(clock(person["last_t"])),
            _cell(_number(person["seconds"], ".1f", " s")),
            _label_cell(person["dominant_label"]),
            _cell(" · ".join(f"{label} {share:.0%}" for label, share in person["shares"].items()), text=True),
            _cell(f"{person['label_changes_per_minute']:.1f} ({person['label_changes_per_minute_raw']:.1f})"),
        ]
        for person in report["persons"]
    ]
    headers = ["person", "tracks", "from", "to", "on screen", "dominant", "shares", "label changes/min (raw)"]
    return _table(headers, rows)


def _tracks(report: dict[str, Any]) -> str:
    rows = [
        [
            _cell(track["id"], text=True),
            _cell(track["person_id"], text=True),
            _cell(None if track["first_t"] is None else clock(track["first_t"])),
            _cell(None if track["last_t"] is None else clock(track["last_t"])),
            _cell(track["faces"]),
            _label_cell(track["dominant_label"]),
            _cell(" · ".join(f"{label} {share:.0%}" for label, share in track["shares"].items()), text=True),
        ]
        for track in report["tracks"]
    ]
    if not rows:
        return '<p class="muted">no faces detected</p>'
    return _table(["track", "person", "from", "to", "faces", "dominant", "shares"], rows)


def _statistics(report: dict[str, Any]) -> str:
    evaluation = report["evaluation"]
    if evaluation is None:
        return '<p class="muted">no evaluation: the job has no ground-truth labels</p>'
    accuracy = f"{evaluation['accuracy']:.1%}"
    if evaluation["accuracy_std"] is not None:
        accuracy += f" ± {evaluation['accuracy_std']:.1%}"
    fields = [
        ("accuracy", accuracy),
        ("evaluation", evaluation["name"]),
        ("model", evaluation["model_name"]),
        ("protocol", evaluation["protocol"]),
        ("folds", evaluation["folds"]),
    ]
    parts = [_table(["field", "value"], [[_cell(name, text=True), _cell(value, text=True)] for name, value in fields])]
    per_class = [
        [
            _label_cell(label),
            _cell(_number(metrics["recall"], ".3f")),
            _cell(_number(metrics["precision"], ".3f")),
            _cell(_number(metrics["f1"], ".3f")),
            _cell(metrics["support"]),
        ]
        for label, metrics in evaluation["per_class"].items()
    ]
    parts += ["<h3>Per class</h3>", _table(["class", "recall", "precision", "f1", "support"], per_class)]
    classes = evaluation["classes"]
    confusion = [[_label_cell(truth), *(_cell(n) for n in row)] for truth, row in zip(classes, evaluation["confusion"])]
    parts += ["<h3>Confusion (rows: true, columns: predicted)</h3>", _table(["true \\ predicted", *classes], confusion)]
    return "\n".join(parts)

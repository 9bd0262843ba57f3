"""Figures of a job's results as PNG or SVG: the expressions over time per person, an image job's predictions, the
confusion matrix.

Figures are drawn on :class:`matplotlib.figure.Figure` with an Agg canvas, never through ``pyplot``: nothing global
(backend, open-figure registry) changes, so this is safe in workers and threads. Every figure colours an expression
with its fixed :data:`fervid.expressions.COLORS` entry.
"""

from __future__ import annotations

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
from sqlalchemy import Engine

from fervid.db.jobs import get_job
from fervid.db.reports import job_report
from fervid.db.series import prediction_counts, timeline_series
from fervid.expressions import COLORS
from fervid.report.formatting import check_output, clock, color, label_order

#: Resolution of written figures: a figure of W x H inches becomes W*DPI x H*DPI pixels.
DPI = 100
#: The timeline figure shows at most this many persons (or tracks), the ones with the most faces.
MAX_TRACKS = 8
WIDTH = 12.0
FIGURE_SUFFIXES: tuple[str, ...] = (".png", ".svg")
#: Spacings of time ticks, in seconds: the smallest that gives at most ten ticks is used.
TIME_STEPS: tuple[float, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


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
    if job["kind"] == "images":
        return _distribution_figure(prediction_counts(engine, job_id), title)
    return _persons_figure(engine, job, smoothed, title)


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


def _new_figure(height: float) -> Figure:
    figure = Figure(figsize=(WIDTH, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _persons_figure(engine: Engine, job: dict[str, Any], smoothed: bool, title: str) -> Figure:
    timeline = timeline_series(engine, job["id"], limit=MAX_TRACKS)
    classes, shown = timeline.classes, timeline.series
    figure = _new_figure(1.6 + 1.9 * max(len(shown), 1))
    height = figure.get_figheight()
    figure.suptitle(title, x=0.07, y=1 - 0.12 / height, ha="left", va="top", fontsize=13, parse_math=False)
    note = f"stacked probabilities ({'smoothed over time' if smoothed else 'raw'}); band: dominant expression"
    if timeline.total > len(shown):
        note += f"; showing the {len(shown)} largest of {timeline.total} {timeline.unit}s"
    figure.text(0.07, 1 - 0.5 / height, note, fontsize=9, color="#555555", va="top")
    figure.legend(
        [Patch(color=COLORS[c]) for c in classes], classes, loc="upper right", ncols=max(len(classes), 1),
        bbox_to_anchor=(0.98, 1 - 0.05 / height), frameon=False, fontsize=9,
    )  # fmt: skip
    if not shown or not classes:
        figure.text(0.5, 0.5, "no faces detected", ha="center", va="center", fontsize=14, color="#555555")
        return figure
    start = 0.0 if job["duration"] else timeline.first_t
    end = job["duration"] or timeline.last_t
    grid = GridSpec(
        len(shown), 1, figure=figure, left=0.07, right=0.98, top=1 - 1.0 / height, bottom=0.6 / height, hspace=0.3
    )
    axes: list[Axes] = []
    for i, series in enumerate(shown):
        cell = grid[i].subgridspec(2, 1, height_ratios=(5, 1), hspace=0.0)
        probs = figure.add_subplot(cell[0], sharex=axes[0] if axes else None)
        band = figure.add_subplot(cell[1], sharex=probs)
        axes += [probs, band]
        t = np.array(series.t, dtype=float)
        p = np.nan_to_num(np.array(series.smoothed if smoothed else series.raw, dtype=float))
        _draw_track(probs, band, t, p, classes)
        name = "untracked" if series.key is None else f"{timeline.unit} {series.key}"
        probs.set_ylabel(f"{name}\n{series.faces} faces", fontsize=9)
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


def _distribution_figure(counts: dict[str | None, dict[str | None, int]], title: str) -> Figure:
    """Predicted expressions of an image job: a bar per label, or per ground-truth class stacked by prediction."""
    figure = _new_figure(5.0)
    figure.suptitle(title, x=0.07, ha="left", fontsize=13, parse_math=False)
    ax = figure.add_axes((0.07, 0.15, 0.75, 0.72))
    ax.set_ylabel("faces")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    labels = label_order({label for per_truth in counts.values() for label in per_truth})
    if not labels:
        ax.text(0.5, 0.5, "no faces detected", ha="center", va="center", transform=ax.transAxes, color="#555555")
        return figure
    if set(counts) == {None}:
        faces = [counts[None][label] for label in labels]
        total = sum(faces)
        bars = ax.bar([str(label) for label in labels], faces, color=[color(label) for label in labels])
        ax.bar_label(bars, [f"{n} ({n / total:.0%})" for n in faces], fontsize=9)
        ax.set_ylim(0, max(faces) * 1.1)
        ax.set_xlabel("predicted expression")
        return figure
    truths = label_order(set(counts))
    names = ["unlabelled" if truth is None else truth for truth in truths]
    bottom = np.zeros(len(truths))
    for label in labels:
        faces = np.array([counts[truth].get(label, 0) for truth in truths], dtype=float)
        ax.bar(names, faces, bottom=bottom, color=color(label), label=str(label))
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
    bars = recall.barh(range(n), [v or 0.0 for v in values], color=[color(c) for c in classes])
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

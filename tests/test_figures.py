"""Figures (fervid.report.figures) of synthetic jobs on SQLite: files that decode, at the expected size, not blank,
in the fixed expression colours."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine
from test_timeline_export import image_job, new_job, video_job

from fervid.db import finalize_job, get_engine, upgrade, write_segment
from fervid.expressions import COLORS
from fervid.report.figures import (
    DPI,
    MAX_TRACKS,
    confusion_figure,
    timeline_figure,
    write_figures,
)


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    upgrade(sqlite_url)
    return get_engine(sqlite_url)


def rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def decoded(path_or_bytes: Path | bytes) -> np.ndarray:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(source) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def expression_colors(pixels: np.ndarray) -> set[str]:
    """The expressions whose fixed colour fills at least 200 pixels."""
    colors, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    filled = {tuple(int(v) for v in c) for c, n in zip(colors, counts) if n >= 200}
    return {name for name, color in COLORS.items() if rgb(color) in filled}


def test_timeline_png(engine: Engine, tmp_path: Path) -> None:
    job_id = video_job(engine)
    figure = timeline_figure(engine, job_id)
    assert len(figure.axes) == 4  # two tracks: probabilities and dominant band each
    assert figure.axes[0].get_ylabel() == "track 0\n100 faces"
    assert figure.axes[2].get_ylabel() == "track 1\n50 faces"
    assert "smoothed over time" in " ".join(text.get_text() for text in figure.texts)
    raw = timeline_figure(engine, job_id, smoothed=False)
    assert "(raw)" in " ".join(text.get_text() for text in raw.texts)

    written = write_figures(engine, job_id, tmp_path / "timeline.png")
    assert written == [tmp_path / "timeline.png"]  # unlabelled: no confusion figure
    pixels = decoded(written[0])
    width, height = figure.get_size_inches() * DPI
    assert pixels.shape == (round(height), round(width), 3)
    assert pixels.std() > 10
    drawn = expression_colors(pixels)
    assert len(drawn) >= 4 and "contempt" not in drawn  # the model has no contempt: never drawn
    labels = [label.get_text() for label in figure.axes[-1].get_xticklabels()]
    assert "00:10" in labels and all(re.fullmatch(r"\d\d:\d\d", label) for label in labels if label)


def test_timeline_svg_parses(engine: Engine, tmp_path: Path) -> None:
    [path] = write_figures(engine, video_job(engine), tmp_path / "timeline.svg")
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.attrib["width"].endswith("pt")


def test_image_job_figures(engine: Engine, tmp_path: Path) -> None:
    job_id = image_job(engine)
    written = write_figures(engine, job_id, tmp_path / "faces.png")
    assert written == [tmp_path / "faces.png", tmp_path / "faces-confusion.png"]
    bars, confusion = (decoded(path) for path in written)
    assert bars.shape == (500, 1200, 3)
    assert {"neutral", "happy", "sad", "fear"} <= expression_colors(bars)  # the predicted expressions
    assert confusion.shape[1] == 1200 and confusion.std() > 10
    assert len(np.unique(confusion.reshape(-1, 3), axis=0)) > 50


def test_confusion_figure_only_with_an_evaluation(engine: Engine) -> None:
    assert confusion_figure(engine, video_job(engine)) is None
    figure = confusion_figure(engine, image_job(engine))
    assert "accuracy 75.0%" in figure.texts[0].get_text()  # suptitle
    matrix, recall = figure.axes
    annotations = {text.get_text() for text in matrix.texts}
    assert {"75%\n3", "100%\n4", "50%\n2", "25%\n1"} <= annotations  # neutral, happy, sad (row %), counts
    assert [bar.get_width() for bar in recall.patches][:3] == pytest.approx([0.75, 1.0, 0.5])


def test_timeline_shows_the_largest_tracks(engine: Engine) -> None:
    job_id = new_job(engine, "video", [(0.0, None)], duration=10.0)
    rows = [
        {"frame_index": i, "t": i / 5, "track_id": track, "label": "happy", "confidence": 0.9, "p_happy": 0.9,
         "p_neutral": 0.1}
        for track in range(MAX_TRACKS + 2)
        for i in range(track + 1)  # track k has k + 1 faces
    ]  # fmt: skip
    write_segment(engine, job_id, 0, rows, frames=10)
    finalize_job(engine, job_id, processing_seconds=1.0)
    figure = timeline_figure(engine, job_id)
    assert len(figure.axes) == 2 * MAX_TRACKS
    assert figure.axes[0].get_ylabel() == f"track {MAX_TRACKS + 1}\n{MAX_TRACKS + 2} faces"
    notes = " ".join(text.get_text() for text in figure.texts)
    assert f"showing the {MAX_TRACKS} largest of {MAX_TRACKS + 2} tracks" in notes


def test_write_figures_rejects_bad_paths(engine: Engine, tmp_path: Path) -> None:
    job_id = video_job(engine)
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        write_figures(engine, job_id, tmp_path / "timeline.jpg")
    with pytest.raises(IsADirectoryError):
        write_figures(engine, job_id, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_figures(engine, job_id, tmp_path / "missing" / "timeline.png")
    assert not list(tmp_path.rglob("timeline*"))

"""The HTML report (fervid.report.html) of real embedded jobs, and face thumbnails: stored at processing time,
at each track's expression peaks (every face in image jobs), renumbered with the tracks, deleted with the job; a
self-contained page (plotly.js inlined, nothing fetched) that headless Chromium renders offline without errors."""

from __future__ import annotations

import html as html_lib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_pipeline import _image_folder
from videos import make_video

from fervid.db import database
from fervid.db.jobs import delete_job
from fervid.db.reports import job_report
from fervid.db.series import thumbnails
from fervid.report.html import write_html
from fervid.worker.jobs import Submission, submit
from fervid.worker.thumbnails import SIZE, Peaks, face_crop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.size


def test_peaks_keep_the_highest_probability_per_track_and_label() -> None:
    peaks = Peaks()
    crop = np.zeros((8, 8, 3), np.uint8)
    for track, label, confidence in [(0, "happy", 0.6), (0, "happy", 0.9), (0, "happy", 0.7), (0, "sad", 0.5), (1, "happy", 0.4)]:
        peaks.offer({"track_id": track, "label": label, "confidence": confidence, "t": confidence}, crop)
    kept = sorted((r["track_id"], r["label"], r["probability"]) for r in peaks.rows())
    assert kept == [(0, "happy", 0.9), (0, "sad", 0.5), (1, "happy", 0.4)]
    every = Peaks(every_face=True)
    for i in range(3):
        every.offer({"track_id": 0, "label": "happy", "confidence": 0.5, "source_path": f"{i}.png"}, crop)
    assert [r["source_path"] for r in every.rows()] == ["0.png", "1.png", "2.png"]


def test_face_crop_is_a_small_square_around_the_box() -> None:
    image = np.zeros((400, 600, 3), np.uint8)
    image[100:200, 300:400] = 255  # the "face"
    crop = face_crop(image, (300, 100, 400, 200))
    assert crop.shape == (SIZE, SIZE, 3)
    centre = crop[SIZE // 2 - 5 : SIZE // 2 + 5, SIZE // 2 - 5 : SIZE // 2 + 5]
    assert centre.min() == 255 and crop[0, 0].max() == 0  # the face in the middle, the margin around it
    assert face_crop(image, (580, 380, 700, 500)).shape[2] == 3  # clipped at the border
    assert face_crop(image[:, :, 0], (10, 10, 50, 50)).shape == (SIZE, SIZE, 3)  # gray frames too


@pytest.fixture
def video_job(tmp_path: Path, embedded_settings) -> tuple[object, int]:
    settings = embedded_settings.replace(detector="none", sample_fps=5.0, segment_seconds=1.0)
    video = make_video(tmp_path / "lecture.mp4", seconds=3.0, fps=25)
    return settings, submit(Submission(str(video)), settings)


def test_video_thumbnails_are_peaks_of_the_job_wide_tracks(video_job) -> None:
    settings, job_id = video_job
    engine = database(settings)
    report = job_report(engine, job_id)
    faces = thumbnails(engine, job_id)
    tracks = {t["id"] for t in report["tracks"]}
    assert faces and {f["track_id"] for f in faces} <= tracks  # renumbered with the tracks when segments stitched
    assert len({f["track_id"] for f in faces}) == len(tracks) == 1
    # per segment (three of 1 s) at most one thumbnail per label shown, each at that label's highest probability
    labels = {f["label"] for f in faces}
    assert len(faces) <= 3 * len(labels)
    with engine.connect() as conn:
        from sqlalchemy import text

        for f in faces:
            best = conn.execute(
                text("SELECT max(confidence) FROM detections WHERE job_id = :j AND label = :l AND t >= :s AND t < :e"),
                {"j": job_id, "l": f["label"], "s": float(int(f["t"])), "e": float(int(f["t"]) + 1)},
            ).scalar()
            assert f["probability"] == pytest.approx(best)
    assert all(jpeg_size(f["image"])[0] == SIZE for f in faces)
    delete_job(engine, job_id)
    assert thumbnails(engine, job_id) == []


def test_video_html_report(video_job, tmp_path: Path) -> None:
    settings, job_id = video_job
    engine = database(settings)
    page = write_html(engine, job_id, tmp_path / "report.html").read_text(encoding="utf-8")
    report = job_report(engine, job_id)
    library = re.search(r'<script type="text/javascript">(.*?)</script></head>', page, re.S)
    assert library and len(library.group(1)) > 3_000_000  # plotly.js itself is in the page, inline
    own = page.replace(library.group(1), "")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", own)  # nothing fetched
    assert "<link" not in own and "@import" not in own and "<script src" not in own
    assert own.count("Plotly.newPlot") == 2  # the timeline and the distribution
    for field in (report["model_sha256"], "detector", "none", "5 frames/s", "margin, 48 px (legacy)", "0.4 s"):
        assert field in page
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(images) == min(len({f["label"] for f in thumbnails(engine, job_id)}), 6)  # the card: one peak per label
    assert f"fervid export --job {job_id} --format csv" in page
    timeline = json.loads(re.search(r'Plotly.newPlot\(\s*"timeline",\s*(\[.*?\]),\s*\{', page, re.S).group(1))
    classes = report["classes"]
    assert len(timeline) == 2 * len(classes)  # one panel: smoothed and raw stacks of every class
    assert [trace["visible"] for trace in timeline] == [True] * len(classes) + [False] * len(classes)


def test_image_job_html_lists_every_image_with_its_thumbnail(tmp_path: Path, embedded_settings) -> None:
    counts = _image_folder(tmp_path / "faces")
    job_id = submit(Submission(str(tmp_path / "faces")), embedded_settings)
    engine = database(embedded_settings)
    faces = thumbnails(engine, job_id)
    assert len(faces) == sum(counts.values())
    assert {f["truth"] for f in faces} == {"happy", "sad", "surprise"}
    page = write_html(engine, job_id, tmp_path / "faces.html").read_text(encoding="utf-8")
    assert len(re.findall(r'src="data:image/jpeg;base64,', page)) == sum(counts.values())
    for f in faces:
        assert html_lib.escape(f["source_path"]) in page
    assert "Recall statistics" in page and 'Plotly.newPlot(\n' in page or "Plotly.newPlot(" in page
    assert page.count("Plotly.newPlot") == 2  # the distribution and the confusion matrix


def test_html_escapes_text(sqlite_url: str, tmp_path: Path) -> None:
    from test_timeline_export import video_job as synthetic_video_job

    from fervid.db import get_engine, upgrade

    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    job_id = synthetic_video_job(engine, source='/data/<i>"smile" & $x^$.mp4')
    page = write_html(engine, job_id, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<title>fervid job 1 · &lt;i&gt;&quot;smile&quot; &amp; $x^$.mp4</title>" in page
    assert '/data/<i>"smile"' not in page and "no thumbnails stored" in page  # stored without thumbnails
    report = job_report(engine, job_id)
    for track in report["tracks"]:  # no persons (not finalized by a worker): a card per track
        assert f"<h3>track {track['id']}</h3>" in page


#: Injected before the page's own scripts: records errors and console errors, then on load what rendered.
_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
const __error = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); __error(...a); };
window.addEventListener('load', () => setTimeout(() => {
  const images = [...document.images];
  document.body.setAttribute('data-probe', JSON.stringify({
    errors: window.__errors, plots: document.querySelectorAll('.js-plotly-plot .main-svg').length,
    traces: document.querySelectorAll('.js-plotly-plot .trace').length, images: images.length,
    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length}));
}, 500));
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    offline = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--no-proxy-server=false"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *offline, "--virtual-time-budget=10000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt install chromium)")
def test_chromium_renders_the_report_offline(video_job, tmp_path: Path) -> None:
    settings, job_id = video_job
    page = write_html(database(settings), job_id, tmp_path / "report.html")
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    dom = _chromium("--window-size=1280,1600", "--dump-dom", probed.as_uri())
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    probe = json.loads(html_lib.unescape(found.group(1)))
    assert probe["errors"] == []
    assert probe["plots"] >= 2 and probe["traces"] > 0
    assert probe["images"] > 0 and probe["loaded"] == probe["images"]
    shot = tmp_path / "shot.png"
    _chromium("--window-size=1280,1600", f"--screenshot={shot}", page.as_uri())
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (1600, 1280)
    colours = np.unique(pixels.reshape(-1, 3) // 16, axis=0)
    assert len(colours) > 50  # not blank: text, thumbnails, chart fills

"""Temporal smoothing chosen by measurement: label changes per minute and frame accuracy for several time constants.

Two jobs run once through the embedded pipeline with smoothing off: the shared clip (``../shared/videos``, one
person, no ground truth) and a posed sequence made of CK+ subjects (each shows happy, surprise, sadness and
anger for 3 s each, hard cuts between subjects; ground truth from a labels file: tests/scenes.py). Their stored raw readings are
then smoothed per track with each time constant (:func:`fervid.worker.smoothing.smooth_probabilities`), and the
script prints, per constant, the label changes per minute of both jobs and the posed sequence's frame accuracy.

    python benchmarks/smoothing.py [--seconds 0.5 1 2 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scenes import CLIP, posed_sequence  # noqa: E402

from fervid.db.jobs import get_job  # noqa: E402
from fervid.db.migrate import database  # noqa: E402
from fervid.db.tracks import track_readings  # noqa: E402
from fervid.settings import get_settings  # noqa: E402
from fervid.worker.jobs import Submission, submit  # noqa: E402
from fervid.worker.smoothing import label_changes, smooth_probabilities  # noqa: E402


def measure(engine, job_id: int, seconds: float) -> tuple[float, float | None]:  # type: ignore[no-untyped-def]
    """Label changes per minute and frame accuracy (where truth is known) with smoothing constant ``seconds``."""
    job = get_job(engine, job_id)
    classes = job["classes"]
    changes, right, known = 0, 0, 0
    for _, rows in track_readings(engine, job_id, with_truth=True):
        probs = np.array([[row[f"p_{c}"] or 0.0 for c in classes] for row in rows])
        labels = [classes[i] for i in smooth_probabilities([r["t"] for r in rows], probs, seconds).argmax(axis=1)]
        changes += label_changes(labels)
        judged = [(label, row["truth"]) for row, label in zip(rows, labels) if row["truth"]]
        known += len(judged)
        right += sum(label == truth for label, truth in judged)
    return changes / (job["duration"] / 60), (right / known if known else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--subjects", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        settings = get_settings(data_dir=folder, smooth_seconds=0.0, database_url=None, broker_url=None)
        engine = database(settings)
        video, labels = posed_sequence(folder, args.subjects)
        clip_job = submit(Submission(str(CLIP)), settings)
        posed_job = submit(Submission(str(video), labels=str(labels)), settings)
        print(f"model {settings.model}; shared clip: job {clip_job}; posed sequence ({args.subjects} CK+ subjects): job {posed_job}")
        print(f"{'seconds':>8} {'clip changes/min':>17} {'posed changes/min':>18} {'posed accuracy':>15}")
        for seconds in [0.0, *args.seconds]:
            clip_changes, _ = measure(engine, clip_job, seconds)
            posed_changes, accuracy = measure(engine, posed_job, seconds)
            name = "raw" if seconds == 0 else f"{seconds:g}"
            print(f"{name:>8} {clip_changes:17.1f} {posed_changes:18.1f} {accuracy:15.1%}")


if __name__ == "__main__":
    main()

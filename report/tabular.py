"""CSV renderings of a job report and of a batch comparison."""

from __future__ import annotations

import csv
from typing import Any, TextIO


def report_csv(data: dict[str, Any], stream: TextIO) -> None:
    """One row for the whole job ('all', raw readings) and one per track (smoothed): its person, faces and the
    share of each expression."""
    labels = list(data["distribution"])
    writer = csv.writer(stream)
    writer.writerow(["track", "person", "first_t", "last_t", "faces", "dominant", *labels])
    dominant = max(labels, key=lambda c: data["distribution"][c]["faces"]) if data["faces"] else ""
    writer.writerow(["all", "", "", "", data["faces"], dominant, *(data["distribution"][c]["share"] for c in labels)])
    for t in data["tracks"]:
        person = "" if t["person_id"] is None else t["person_id"]
        shares = (t["shares"].get(c, 0.0) for c in labels)
        writer.writerow([t["id"], person, t["first_t"], t["last_t"], t["faces"], t["dominant_label"], *shares])


def batch_csv(data: dict[str, Any], stream: TextIO) -> None:
    """One row per job of the batch: its source, status, duration, faces, persons, dominant expression and the
    share of each expression."""
    labels = list(dict.fromkeys(label for job in data["jobs"] for label in job["shares"]))
    writer = csv.writer(stream)
    writer.writerow(["batch", "job", "source", "kind", "status", "duration", "faces", "persons", "dominant", *labels])
    for job in data["jobs"]:
        writer.writerow(
            [data["batch"], job["job_id"], job["source"], job["kind"], job["status"], job["duration"], job["faces"],
             job["persons"], job["dominant_label"], *(job["shares"].get(label, 0.0) for label in labels)]
        )  # fmt: skip

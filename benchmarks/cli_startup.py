"""How fast read-only commands start: wall time of `fervid jobs`, `models`, `show`, `report`, `export` and `--help` on the
embedded database, against `python -c pass` in the same run.

    python benchmarks/cli_startup.py [--runs 7]

A job is made first (an image folder of two generated images, detector none) in a temporary data directory, so
`report` and `export` have something to read. Each command runs ``--runs`` times; the median is printed. The
target: `fervid jobs` under 0.6 s on the project's 2-core machine when it is otherwise idle (the load average is
printed beside the figures).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FERVID = str(Path(sys.executable).with_name("fervid"))


def wall(command: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    import cv2

    with tempfile.TemporaryDirectory(prefix="fervid-startup-") as tmp:
        env = {**os.environ, "FERVID_DATA_DIR": tmp, "FERVID_DETECTOR": "none"}
        for name in ("FERVID_DATABASE_URL", "FERVID_BROKER_URL"):
            env.pop(name, None)
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i in range(2):
            cv2.imwrite(str(folder / f"{i}.png"), np.full((48, 48), 100 + i, np.uint8))
        job = subprocess.run([FERVID, "submit", str(folder)], env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
        baseline = wall([sys.executable, "-c", "pass"], env, args.runs)
        rows = [("python -c pass", baseline)]
        for command in (["jobs"], ["models"], ["--help"], ["show", job], ["report", "--job", job],
                        ["report", "--job", job, "--format", "json"], ["export", "--job", job, "--format", "csv"]):  # fmt: skip
            rows.append((f"fervid {' '.join(command)}", wall([FERVID, *command], env, args.runs)))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; median of {args.runs} runs")
    print("| command | wall (s) | × python -c pass |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| `{name}` | {seconds:.3f} | {seconds / baseline:.1f} |")


if __name__ == "__main__":
    main()

"""The accuracy of the real pipeline, not of the classifier alone: labelled face crops placed into realistic
frames and run through ``fervid submit``, against the model's accuracy on the crops themselves.

    python benchmarks/pipeline_accuracy.py [--quick] [--images N] [--model NAME_OR_PATH ...]
                                           [--dataset ferplus|fer2013|ck48 ...] [--detector centerface|haar ...]
                                           [--folder DIR ...] [--roll 0 --roll 25] [--no-flip] [--tta-shift F]
                                           [--out FILE]

For each dataset (``../shared``: FER+ val, FER2013 val, CK+ six classes) a fixed random sample of ``--images``
faces (``--quick``: 150) is placed into frames, once upright and once rolled by up to ``±roll`` degrees: each
face is upscaled to a random side of 100–300 px (bicubic), its surroundings filled by border reflection into a
frame of at least 320 px with the face at a random position, rolled about its centre, given a random brightness
(±15 %) and contrast (±15 %) and saved as JPEG of quality 60–95. ``fervid submit FOLDER --detector D --model M``
runs on each folder (class sub-folders give the ground truth), into a SQLite database of its own. A frame's
reading is the detection at the placed face (its box holds the face's centre; the reflected surroundings hold
mirrored copies of the face, which are not read); a frame where no detection holds it counts as wrong. Printed per model, dataset and roll:

* direct: the model on the original crops (``fervid evaluate``'s path, the model's own crop definition);
* per detector: pipeline accuracy (a frame without a face is wrong) and its gap to direct; the share of frames in
  which a face was found; and on those frames alone, pipeline against direct accuracy on the same faces — the
  crop's effect without the detector's misses.

The same flip averaging and shifted views (``--no-flip``: off; ``--tta-shift``: :mod:`fervid.model.tta`) are used
on both sides; direct accuracy is also printed with the other flip setting, which is how the default for jobs was
chosen. The tables are printed; ``--out FILE`` also writes them to FILE (the curated record of every run is
``benchmarks/results/pipeline_accuracy.md``: paste a run's tables there, with what it shows).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
DATASETS = {
    "ferplus": (SHARED / "ferplus" / "val", None),
    "fer2013": (SHARED / "fer2013" / "val", None),
    "ck48": (SHARED / "ck48", ["happy", "sad", "surprise", "fear", "disgust", "anger"]),
}
#: Which shipped model reads which dataset by default (the class sets must overlap).
DEFAULT_MODELS = {"ferplus": "ferplus-csa", "fer2013": "fer2013-csa", "ck48": "ckplus-csa"}
FACE_SIDES = (100, 300)
MIN_FRAME = 320


def sample_images(root: Path, classes: list[str] | None, count: int, seed: int = 0) -> list[tuple[Path, str]]:
    """A fixed random sample of ``count`` labelled images (canonical class names) of a class-folder tree."""
    from fervid.model.data import class_folders, list_images

    files = [
        (p, name)
        for name, folders in class_folders(root, classes, skip_unknown=True).items()
        for f in folders
        for p in list_images(f)
    ]
    order = np.random.default_rng(seed).permutation(len(files))[:count]
    return [files[i] for i in sorted(order)]


def place(face: np.ndarray, roll: float, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """A face crop in a realistic frame (see the module docstring), and the face's centre in it."""
    side = int(rng.integers(*FACE_SIDES, endpoint=True))
    up = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    frame_side = max(int(side * rng.uniform(1.8, 2.6)), MIN_FRAME)
    left, top = (int(rng.integers(0, frame_side - side + 1)) for _ in range(2))
    frame = cv2.copyMakeBorder(up, top, frame_side - side - top, left, frame_side - side - left, cv2.BORDER_REFLECT_101)
    if roll:
        centre = (left + side / 2, top + side / 2)
        matrix = cv2.getRotationMatrix2D(centre, float(rng.uniform(-roll, roll)), 1.0)
        frame = cv2.warpAffine(frame, matrix, (frame_side, frame_side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    frame = frame.astype(np.float32)
    mean = frame.mean()
    frame = (frame - mean) * rng.uniform(0.85, 1.15) + mean * rng.uniform(0.85, 1.15)
    return np.clip(frame, 0, 255).astype(np.uint8), (left + side / 2, top + side / 2)


def make_frames(images: list[tuple[Path, str]], folder: Path, roll: float, seed: int) -> dict[str, tuple[float, float]]:
    """Write the frames into class folders; returns each frame's face centre, by file stem."""
    from fervid.model.data import read_image

    rng = np.random.default_rng(seed)
    centres = {}
    for path, label in images:
        (folder / label).mkdir(parents=True, exist_ok=True)
        frame, centres[path.stem] = place(read_image(path), roll, rng)
        quality = int(rng.integers(60, 96))
        cv2.imwrite(str(folder / label / (path.stem + ".jpg")), frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return centres


def run_job(
    folder: Path, centres: dict[str, tuple[float, float]], model: str, detector: str, flip: bool, shift: float, work: Path
) -> tuple[dict[str, bool], float]:
    """``fervid submit`` on a frames folder: per frame (by file stem), whether the placed face was read right — the
    detection whose box holds the face's centre, the nearest one if several do (the reflected surroundings hold
    mirrored copies of the face); frames where no box holds it are absent — and the seconds the command took."""
    data_dir = work / f"db-{detector}"
    env = {**os.environ, "FERVID_DATA_DIR": str(data_dir), "FERVID_MODEL": model, "FERVID_DETECTOR": detector,
           "FERVID_FLIP": "1" if flip else "0", "FERVID_TTA_SHIFT": str(shift)}  # fmt: skip
    for name in ("FERVID_DATABASE_URL", "FERVID_BROKER_URL"):
        env.pop(name, None)
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("fervid")), "submit", str(folder)], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"fervid submit {folder} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    job_id = int(done.stdout.strip().splitlines()[-1])
    with sqlite3.connect(data_dir / "fervid.db") as db:
        rows = db.execute(
            "SELECT source_path, label, truth, x1, y1, x2, y2 FROM detections WHERE job_id = ?", (job_id,)
        ).fetchall()
    by_frame: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        by_frame[Path(row[0]).stem].append(row)
    found = {}
    for stem, detections in by_frame.items():
        i = nearest_holding([d[3:] for d in detections], centres[stem])
        if i is not None:
            found[stem] = detections[i][1] == detections[i][2]
    return found, seconds


def nearest_holding(boxes: list[tuple[float, float, float, float]], centre: tuple[float, float]) -> int | None:
    """The index of the box that holds ``centre``, the one whose centre is nearest if several do; ``None``: none."""
    cx, cy = centre
    holding = [
        (((x1 + x2) / 2 - cx) ** 2 + ((y1 + y2) / 2 - cy) ** 2, i)
        for i, (x1, y1, x2, y2) in enumerate(boxes)
        if x1 <= cx <= x2 and y1 <= cy <= y2
    ]
    return min(holding)[1] if holding else None


def direct_readings(model: str, images: list[tuple[Path, str]], flip: bool, shift: float, work: Path) -> dict[str, bool]:
    """Per image (by file stem), whether the model reads the original crop right, through the path ``fervid
    evaluate`` takes (the model's own crop definition), on a folder of links to the sample."""
    import torch

    from fervid.model.checkpoint import load_checkpoint
    from fervid.model.experiment import checkpoint_data
    from fervid.model.train import predict_probabilities
    from fervid.model.weights import resolve_model

    folder = work / "crops"
    if not folder.exists():
        for path, label in images:
            (folder / label).mkdir(parents=True, exist_ok=True)
            (folder / label / path.name).symlink_to(path.resolve())
    ckpt = load_checkpoint(resolve_model(model))
    data = checkpoint_data(ckpt).load(folder)
    probs = predict_probabilities(ckpt.build(), data.x, torch.device("cpu"), flip=flip, shift=shift)
    predicted = [ckpt.classes[i] for i in probs.argmax(1)]
    return {Path(p).stem: pred == data.classes[y] for p, pred, y in zip(data.paths, predicted, data.y)}


def share(values) -> float:  # type: ignore[no-untyped-def]
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 images per dataset")
    parser.add_argument("--images", type=int, default=600, help="images per dataset (default 600)")
    parser.add_argument("--model", action="append", help="model name or checkpoint (default: per dataset)")
    parser.add_argument("--dataset", action="append", choices=sorted(DATASETS))
    parser.add_argument("--folder", action="append", type=Path, default=[], help="also a class-folder tree (needs --model)")
    parser.add_argument("--detector", action="append", choices=["centerface", "haar"])
    parser.add_argument("--roll", action="append", type=float, help="roll range in degrees (default: 0 and 25)")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="no flip averaging")
    parser.add_argument("--tta-shift", type=float, default=0.0, help="shifted views, fraction of the side (default 0)")
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args()
    from fervid.model.checkpoint import load_checkpoint
    from fervid.model.weights import resolve_model

    count = 150 if args.quick else args.images
    if args.folder and not args.model:
        parser.error("--folder needs --model: which model reads it")
    known_sets = {**DATASETS, **{folder.name: (folder, None) for folder in args.folder}}
    datasets = (args.dataset or ([] if args.folder else list(DATASETS))) + [folder.name for folder in args.folder]
    detectors = args.detector or ["centerface", "haar"]
    rolls = args.roll or [0.0, 25.0]
    lines = [
        f"# Pipeline accuracy ({time.strftime('%Y-%m-%d')})",
        "",
        f"`python benchmarks/pipeline_accuracy.py {' '.join(sys.argv[1:])}`: {count} faces per dataset, each placed into a "
        f"frame (face {FACE_SIDES[0]}–{FACE_SIDES[1]} px, reflected context, random position, brightness and contrast "
        f"±15 %, JPEG 60–95; rolled uniformly within ±roll), run through `fervid submit`; flip averaging "
        f"{'on' if args.flip else 'off'}, shifted views {args.tta_shift:g} on both sides. Direct: the model on the original crops.",
        "",
        "| model | dataset | roll | direct | direct, flip "
        + ("off" if args.flip else "on")
        + " | "
        + " | ".join(f"{d} | gap | found | on found: {d} / direct | gap" for d in detectors)
        + " |",
        "|---|---|---:|---:|---:|" + "---:|" * (5 * len(detectors)),
    ]
    summary: dict[str, dict] = defaultdict(dict)
    with tempfile.TemporaryDirectory(prefix="fervid-pipeline-accuracy-") as tmp:
        for name in datasets:
            root, classes = known_sets[name]
            if not root.is_dir():
                print(f"skipped {name}: {root} is absent")
                continue
            for model in args.model or [DEFAULT_MODELS[name]]:
                known = load_checkpoint(resolve_model(model)).classes
                images = sample_images(root, [c for c in classes or known if c in known], count)
                work = Path(tmp) / name / Path(model).stem
                readings = direct_readings(model, images, args.flip, args.tta_shift, work)
                direct = share(readings.values())
                other = share(direct_readings(model, images, not args.flip, args.tta_shift, work).values())
                for roll in rolls:
                    folder = work / f"frames-roll{roll:g}"
                    centres = make_frames(images, folder, roll, seed=int(roll) + 1)
                    cells = []
                    for detector in detectors:
                        found, seconds = run_job(folder, centres, model, detector, args.flip, args.tta_shift, work / f"roll{roll:g}")
                        accuracy = sum(found.values()) / len(readings)
                        on_found = share(found.values())
                        direct_found = share(readings[stem] for stem in found if stem in readings)
                        result = {
                            "accuracy": accuracy, "direct": direct, "found": len(found) / len(readings),
                            "on_found": on_found, "direct_on_found": direct_found, "seconds": seconds,
                        }  # fmt: skip
                        summary[f"{model} {name} roll {roll:g}"][detector] = result
                        cells += [f"{accuracy:.1%}", f"{(accuracy - direct) * 100:+.1f}", f"{result['found']:.1%}",
                                  f"{on_found:.1%} / {direct_found:.1%}", f"{(on_found - direct_found) * 100:+.1f}"]  # fmt: skip
                        print(f"{model} {name} roll ±{roll:g}°: direct {direct:.1%}; {detector} {accuracy:.1%} "
                              f"(found {result['found']:.1%}; on those {on_found:.1%} against {direct_found:.1%} direct; "
                              f"{seconds:.0f} s)", flush=True)  # fmt: skip
                    lines.append(f"| {model} | {name} | ±{roll:g}° | {direct:.1%} | {other:.1%} | " + " | ".join(cells) + " |")
    lines += ["", "```json", json.dumps(summary, indent=1), "```", ""]
    print("\n".join(lines[:-4]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()

"""Which change between a face crop and a frame moves a model's reading: the gap that
``benchmarks/pipeline_accuracy.py`` measures, taken apart one change at a time.

    python benchmarks/frame_sensitivity.py --model NAME_OR_PATH [--model ...] [--folder DIR | --dataset ferplus]
                                           [--images N] [--no-flip]

Each labelled face crop of the set is read as an image job reads a photo — the production detector (with the job's
photo floor), :func:`~fervid.model.align.locate_faces` and the model's own crop definition, in process — from frames
built with one more change per row: the crop itself (``fervid evaluate``'s path); the face upscaled 3× in a black
border (:func:`~fervid.model.align.training_frame`: a black-context model's training frame); the same in a reflected
border; the face
at a random side of 100–300 px and position, in a black and in a reflected border; then brightness and contrast
±15 %; then JPEG quality 60–95 (``pipeline_accuracy.py``'s frames, upright). Two more rows split the reflected 3×
frame: CenterFace's landmarks from one frame with the pixels of the other (the first: a reflect-context model's
training frame). A frame is read at the detection whose
box holds the face's centre (the nearest if several); none counts as wrong. Flip averaging as jobs do (``--no-flip``:
off).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_accuracy import DATASETS, FACE_SIDES, MIN_FRAME, nearest_holding, sample_images  # noqa: E402

from fervid.model.align import FRAME_PAD, FRAME_SCALE, FaceCropper, Located, locate_faces  # noqa: E402
from fervid.model.data import read_image  # noqa: E402
from fervid.model.detect import FaceDetector  # noqa: E402
from fervid.model.preprocess import to_gray  # noqa: E402

BLACK, REFLECT = cv2.BORDER_CONSTANT, cv2.BORDER_REFLECT_101
#: The rows after the split ones: the frame's changes, each row adding one (same sides, positions and draws).
SIZED = [
    ("100–300 px, black border", {"border": BLACK}),
    ("100–300 px, reflected border", {"border": REFLECT}),
    ("  + brightness and contrast ±15 %", {"border": REFLECT, "photometric": True}),
    ("  + JPEG 60–95 (pipeline_accuracy.py's frames, upright)", {"border": REFLECT, "photometric": True, "jpeg": True}),
]
Found = list[tuple[Located | None, np.ndarray]]


def place(
    face: np.ndarray, rng: np.random.Generator, *, border: int, sized: bool = True, photometric: bool = False, jpeg: bool = False
) -> tuple[np.ndarray, tuple[float, float]]:
    """A frame holding ``face`` and the face's centre in it: the face at a random side of 100–300 px and position in
    a frame 1.8–2.6× its side (at least 320 px), or (``sized`` false) upscaled 3× in a border of half its side as
    :func:`~fervid.model.align.training_frame` places it. Every random value is drawn whether used or not, so that
    frames differing in one change are otherwise the same."""
    gray = to_gray(face)
    side = int(rng.integers(*FACE_SIDES, endpoint=True))
    frame_side = max(int(side * rng.uniform(1.8, 2.6)), MIN_FRAME)
    left, top = (int(rng.integers(0, frame_side - side + 1)) for _ in range(2))
    contrast, brightness, quality = rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15), int(rng.integers(60, 96))
    if not sized:
        side = gray.shape[0] * FRAME_SCALE
        left = top = round(FRAME_PAD * side)
        frame_side = side + 2 * left
    up = cv2.resize(gray, (side, side), interpolation=cv2.INTER_CUBIC)
    frame = cv2.copyMakeBorder(up, top, frame_side - side - top, left, frame_side - side - left, border, value=0)
    if photometric:
        pixels = frame.astype(np.float32)
        mean = pixels.mean()
        frame = np.clip((pixels - mean) * contrast + mean * brightness, 0, 255).astype(np.uint8)
    if jpeg:
        frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)
    return frame, (left + side / 2, top + side / 2)


def at(located: list[Located], centre: tuple[float, float]) -> Located | None:
    """The located face whose box holds ``centre``, the nearest one if several do."""
    i = nearest_holding([f.box for f in located], centre)
    return None if i is None else located[i]


def find(faces: list[np.ndarray], detector: FaceDetector, fallback: FaceDetector | None, **how: Any) -> Found:
    """Each face placed into a frame (:func:`place`), with the face an image job locates at its centre."""
    rng = np.random.default_rng(1)
    out = []
    for face in faces:
        frame, centre = place(face, rng, **how)
        out.append((at(locate_faces(frame, detector, fallback), centre), frame))
    return out


def cut(cropper: FaceCropper, found: Found, pixels: Found | None = None) -> list[np.ndarray | None]:
    """The crop of each located face (``None`` where none was), cut from ``pixels``' frames when given."""
    frames = [frame for _, frame in pixels] if pixels else [f.image if f else None for f, _ in found]
    return [None if f is None else cropper(frame, f.face) for (f, _), frame in zip(found, frames)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="model name or checkpoint")
    parser.add_argument("--folder", type=Path, help="a class-folder tree of face crops")
    parser.add_argument("--dataset", choices=sorted(DATASETS), help="a dataset of ../shared instead of --folder")
    parser.add_argument("--images", type=int, default=400, help="a fixed random sample of this many (default 400)")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="no flip averaging")
    args = parser.parse_args()
    if (args.folder is None) == (args.dataset is None):
        parser.error("give one of --folder and --dataset")
    import torch

    from fervid.model.checkpoint import load_checkpoint
    from fervid.model.detect import create_detector
    from fervid.model.experiment import production_detector
    from fervid.model.preprocess import preprocess
    from fervid.model.train import predict_probabilities
    from fervid.model.weights import resolve_model
    from fervid.settings import get_settings

    settings = get_settings()
    root, classes = (args.folder, None) if args.folder else DATASETS[args.dataset]
    detector = production_detector("centerface")
    fallback = (
        create_detector("centerface", threshold=settings.photo_floor, max_side=settings.detect_size)
        if settings.photo_floor
        else None
    )
    print(f"{root}, CenterFace, flip averaging {'on' if args.flip else 'off'}; accuracy of all faces (a missed face is wrong)")
    for model in args.model:
        checkpoint = load_checkpoint(resolve_model(model))
        images = sample_images(root, [c for c in classes or checkpoint.classes if c in checkpoint.classes], args.images)
        faces, labels = [read_image(path) for path, _ in images], [label for _, label in images]
        cropper = FaceCropper.for_checkpoint(checkpoint.preprocessing, checkpoint.input_size, "centerface")
        network = checkpoint.build()

        def accuracy(crops: list[np.ndarray | None]) -> str:
            found = [i for i, crop in enumerate(crops) if crop is not None]
            x = preprocess([crops[i] for i in found], checkpoint.input_size)
            predicted = predict_probabilities(network, x, torch.device("cpu"), flip=args.flip).argmax(1)
            return f"{sum(checkpoint.classes[p] == labels[i] for i, p in zip(found, predicted)) / len(faces):6.1%}"

        direct = [(locate_faces(face, detector, context=cropper.context)[0], face) for face in faces]
        black = find(faces, detector, fallback, border=BLACK, sized=False)
        reflect = find(faces, detector, fallback, border=REFLECT, sized=False)
        rows = [
            ("the crops (direct)", accuracy(cut(cropper, direct))),
            ("3× in a black border (training's frame, black context)", accuracy(cut(cropper, black))),
            ("3× in a reflected border", accuracy(cut(cropper, reflect))),
            ("  landmarks of the black frame, pixels of the reflected one (reflect)", accuracy(cut(cropper, black, reflect))),
            ("  landmarks of the reflected frame, pixels of the black one", accuracy(cut(cropper, reflect, black))),
        ]
        rows += [(name, accuracy(cut(cropper, find(faces, detector, fallback, **how)))) for name, how in SIZED]
        print(f"\n{model}: {len(faces)} faces")
        for name, value in rows:
            print(f"  {name:<62} {value}", flush=True)


if __name__ == "__main__":
    main()

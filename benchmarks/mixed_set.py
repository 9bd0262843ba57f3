"""The FER+ + CK+ training set of ``ferplus-ck-csa``: in-the-wild faces with posed ones, as a tree of symbolic links.

    python benchmarks/mixed_set.py [--out ~/mix] [--shared ../shared/datasets] [--repeat 4] [--every 5]

``OUT/train``: every FER+ training image, and the CK+ images (seven classes, ``sadness`` as ``sad``) of all but
every ``--every``-th subject (subjects sorted by id), each linked ``--repeat`` times (``ck0_…``, ``ck1_…``) so that
posed faces weigh more against 24,712 FER+ faces. ``OUT/val``: FER+ val and the CK+ images of the held-out
subjects (``ck0_…``), the set the model is selected on. ``OUT/ckval``: only those CK+ subjects, to measure posed
faces of people the model never saw. FER+'s ``votes.csv`` names FER+ files only, so CK+ images keep their folder's
label. Nothing is copied: the links point into ``../shared``.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from fervid.expressions import EXPRESSIONS, canonical

SUBJECT = re.compile(r"S\d+")


def link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(source.resolve(), target)


def build(shared: Path, out: Path, repeat: int, every: int) -> dict[str, int]:
    """Build the three trees under ``out`` (which must not exist yet); returns the number of links in each."""
    if out.exists():
        raise SystemExit(f"{out} exists: remove it or choose another --out")
    counts = {"train": 0, "val": 0, "ckval": 0}
    for split in ("train", "val"):
        for name in EXPRESSIONS:
            for image in sorted((shared / "ferplus" / split / name).glob("*.png")):
                link(image, out / split / name / image.name)
                counts[split] += 1
    folders = sorted(d for d in (shared / "ck48").iterdir() if d.is_dir())
    ck = [(canonical(folder.name), image) for folder in folders for image in sorted(folder.glob("*.png"))]
    subjects = sorted({SUBJECT.match(image.name).group() for _, image in ck})  # type: ignore[union-attr]
    held_out = set(subjects[::every])
    for name, image in ck:
        if SUBJECT.match(image.name).group() in held_out:  # type: ignore[union-attr]
            link(image, out / "val" / name / f"ck0_{image.name}")
            link(image, out / "ckval" / name / image.name)
            counts["val"] += 1
            counts["ckval"] += 1
        else:
            for k in range(repeat):
                link(image, out / "train" / name / f"ck{k}_{image.name}")
                counts["train"] += 1
    print(f"CK+: {len(subjects)} subjects, {len(held_out)} held out ({', '.join(sorted(held_out))})")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path.home() / "mix")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--repeat", type=int, default=4, help="links per CK+ training image")
    parser.add_argument("--every", type=int, default=5, help="hold out every k-th CK+ subject")
    args = parser.parse_args()
    counts = build(args.shared, args.out, args.repeat, args.every)
    print(", ".join(f"{split}: {n} images" for split, n in counts.items()))


if __name__ == "__main__":
    main()

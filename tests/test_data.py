"""Class-folder datasets: the alias table, image decoding, in-memory loading and batch augmentation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fervid.expressions import ALIASES, EXPRESSIONS, UnknownExpressionError, canonical, canonical_order
from fervid.model.augment import Augment
from fervid.model.data import DatasetError, ImageReadError, class_folders, load_image_folder, read_image
from fervid.model.preprocess import preprocess


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def _tree(root: Path, counts: dict[str, int], size: int = 20) -> Path:
    """One folder per name holding ``count`` gray images whose value encodes folder and index."""
    for f, (name, count) in enumerate(counts.items()):
        for i in range(count):
            _write(root / name / f"img{i:02d}.png", np.full((size, size), 10 * f + i, dtype=np.uint8))
    return root


# --- the alias table -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("happiness", "happy"),
        ("HA", "happy"),
        ("angry", "anger"),
        ("sadness", "sad"),
        ("Surprised", "surprise"),
        ("  Fear-ful ", "fear"),
        ("DISGUST", "disgust"),
        ("neutral_", "neutral"),
        ("Contempt", "contempt"),
    ],
)
def test_canonical_aliases_ignore_case_and_punctuation(name: str, expected: str) -> None:
    assert canonical(name) == expected


def test_every_canonical_name_maps_to_itself() -> None:
    assert [canonical(e) for e in EXPRESSIONS] == list(EXPRESSIONS)
    assert set(ALIASES.values()) == set(EXPRESSIONS)


def test_unknown_expression_lists_known_names() -> None:
    with pytest.raises(UnknownExpressionError) as info:
        canonical("bored")
    message = str(info.value)
    assert "'bored'" in message and info.value.name == "bored"
    assert all(alias in message for alias in ("happiness", "angry", "sadness", "contempt"))
    assert isinstance(info.value, ValueError)  # the CLI turns it into exit code 2


def test_canonical_order_follows_vocabulary_and_dedupes() -> None:
    assert canonical_order(["surprised", "Happy", "happiness", "neutral"]) == ["neutral", "happy", "surprise"]


# --- class folders ---------------------------------------------------------------------------------------------


def test_class_folders_map_aliases_and_merge(tmp_path: Path) -> None:
    for name in ("happiness", "HA", "angry", "sadness", "Neutral", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("not a folder")
    folders = class_folders(tmp_path)
    assert list(folders) == ["neutral", "happy", "sad", "anger"]  # vocabulary order
    assert sorted(p.name for p in folders["happy"]) == ["HA", "happiness"]
    assert [p.name for p in folders["sad"]] == ["sadness"]


def test_class_folders_unknown_folder_is_named(tmp_path: Path) -> None:
    for name in ("happy", "bored"):
        (tmp_path / name).mkdir()
    with pytest.raises(DatasetError, match="'bored'"):
        class_folders(tmp_path)
    assert list(class_folders(tmp_path, skip_unknown=True)) == ["happy"]


def test_class_folders_subset_by_alias(tmp_path: Path) -> None:
    for name in ("happy", "sadness", "anger", "contempt"):
        (tmp_path / name).mkdir()
    assert list(class_folders(tmp_path, classes=["angry", "sad"])) == ["sad", "anger"]
    with pytest.raises(DatasetError, match="no class folders"):
        class_folders(tmp_path, classes=["fear"])
    with pytest.raises(UnknownExpressionError):
        class_folders(tmp_path, classes=["bored"])


def test_class_folders_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        class_folders(tmp_path / "missing")


# --- decoding --------------------------------------------------------------------------------------------------


def test_read_image_gray_as_bgr(tmp_path: Path) -> None:
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    image = read_image(_write(tmp_path / "g.png", gray))
    assert image.dtype == np.uint8 and image.shape == (8, 8, 3)
    assert all(np.array_equal(image[..., c], gray) for c in range(3))


def test_read_image_16_bit_scaled_to_8_bit(tmp_path: Path) -> None:
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    image = read_image(_write(tmp_path / "deep.png", deep))
    assert image.dtype == np.uint8 and image.shape == (8, 8, 3)
    expected = np.round(deep.astype(np.float64) * 255 / 65535)
    assert np.abs(image[..., 0].astype(np.float64) - expected).max() <= 1
    assert image[-1, -1, 0] == 245 and image[0, 0, 0] == 0


def test_read_image_bgra_drops_alpha(tmp_path: Path) -> None:
    bgra = np.zeros((6, 7, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 30, 200, 40
    image = read_image(_write(tmp_path / "a.png", bgra))
    assert image.shape == (6, 7, 3)
    assert np.array_equal(image, bgra[..., :3])


def test_read_image_non_ascii_path(tmp_path: Path) -> None:
    image = read_image(_write(tmp_path / "gesicht_ö_顔.png", np.full((4, 5, 3), 77, dtype=np.uint8)))
    assert image.shape == (4, 5, 3) and int(image[0, 0, 0]) == 77


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_read_image_rejects_garbage(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(path)
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")


# --- loading a tree --------------------------------------------------------------------------------------------


def test_load_image_folder_shapes_labels_and_skips(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"happiness": 3, "sadness": 2, "angry": 4}, size=20)
    (root / "sadness" / "broken.png").write_bytes(b"\x89PNG truncated")
    (root / "angry" / "readme.txt").write_text("ignored: not an image suffix")
    seen: list[str] = []
    data = load_image_folder(root, 32, on_skip=seen.append, threads=2)
    assert data.classes == ["happy", "sad", "anger"]
    assert data.x.shape == (9, 1, 32, 32) and data.x.dtype == np.float32
    assert data.y.dtype == np.int64 and np.bincount(data.y).tolist() == [3, 2, 4]
    assert len(data) == 9 and len(data.paths) == 9
    assert all(Path(p).parent.name == ["happiness", "sadness", "angry"][c] for p, c in zip(data.paths, data.y))
    assert len(data.skipped) == 1 and "broken.png" in data.skipped[0]
    assert seen == data.skipped
    first = read_image(data.paths[0])
    assert np.array_equal(data.x[0], preprocess([first], 32)[0])  # the shared preprocessing


def test_load_image_folder_subset_and_subset_indexing(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"happy": 2, "sad": 3, "fear": 1})
    data = load_image_folder(root, 32, classes=["sadness", "fear"])
    assert data.classes == ["sad", "fear"] and np.bincount(data.y).tolist() == [3, 1]
    part = data.subset(np.array([3, 0]))
    assert part.y.tolist() == [1, 0] and part.paths == [data.paths[3], data.paths[0]]
    assert np.array_equal(part.x[1], data.x[0])


def test_load_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "happy").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        load_image_folder(tmp_path / "empty", 32)
    bad = tmp_path / "bad" / "happy" / "x.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"junk")
    with pytest.raises(DatasetError, match="none of the 1 images"):
        load_image_folder(tmp_path / "bad", 32)


# --- augmentation ----------------------------------------------------------------------------------------------


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_augment_keeps_shape_dtype_and_range(batch: torch.Tensor) -> None:
    out = Augment(rotation=30, brightness=0.9, contrast=0.9)(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    assert not torch.allclose(out, batch)


def test_augment_is_deterministic_under_a_seeded_generator(batch: torch.Tensor) -> None:
    augment = Augment()
    a = augment(batch, torch.Generator().manual_seed(7))
    b = augment(batch, torch.Generator().manual_seed(7))
    c = augment(batch, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_augment_identity_when_everything_is_off(batch: torch.Tensor) -> None:
    still = Augment(flip=False, rotation=0, scale=(1, 1), translate=0, brightness=0, contrast=0)
    torch.testing.assert_close(still(batch, torch.Generator().manual_seed(0)), batch, atol=1e-5, rtol=0)


def test_augment_flips_horizontally_about_half_the_time() -> None:
    ramp = torch.linspace(-1, 1, 32).expand(64, 1, 32, 32).contiguous()  # asymmetric left to right
    only_flip = Augment(flip=True, rotation=0, scale=(1, 1), translate=0, brightness=0, contrast=0)
    out = only_flip(ramp, torch.Generator().manual_seed(0))
    same = [torch.allclose(o, r, atol=1e-5) for o, r in zip(out, ramp)]
    mirrored = [torch.allclose(o, r.flip(-1), atol=1e-5) for o, r in zip(out, ramp)]
    assert all(s != m for s, m in zip(same, mirrored))  # each image is either kept or mirrored
    assert 16 <= sum(mirrored) <= 48
    no_flip = Augment(flip=False, rotation=0, scale=(1, 1), translate=0, brightness=0, contrast=0)
    torch.testing.assert_close(no_flip(ramp, torch.Generator().manual_seed(0)), ramp, atol=1e-5, rtol=0)

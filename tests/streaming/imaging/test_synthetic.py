"""Synthetic X-rays: deterministic, fast, label only in the pixels, Kaggle layout and names."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from streaming.core.paths import parse_xray_path
from streaming.imaging.synthetic import make_xray_array, make_xray_jpeg, write_synthetic_dataset


def decode(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def test_jpeg_is_grayscale_sized_and_deterministic():
    content = make_xray_jpeg("NORMAL", 1, size=(320, 240))
    image = decode(content)
    assert (image.format, image.mode, image.size) == ("JPEG", "L", (320, 240))
    assert content == make_xray_jpeg("NORMAL", 1, size=(320, 240))
    assert content != make_xray_jpeg("NORMAL", 2, size=(320, 240))


def test_label_changes_pixels_only():
    normal = decode(make_xray_jpeg("NORMAL", 5, size=(300, 200), quality=85))
    sick = decode(make_xray_jpeg("PNEUMONIA", 5, size=(300, 200), quality=85))
    assert (normal.size, normal.mode) == (sick.size, sick.mode)
    assert normal.info.get("dpi") == sick.info.get("dpi")


def test_looks_like_a_chest_film():
    pixels = make_xray_array("NORMAL", 0, size=(256, 256)).astype(float)
    corners = np.concatenate([pixels[:16, :16].ravel(), pixels[:16, -16:].ravel()])
    spine = pixels[100:200, 124:132]
    left_lung, right_lung = pixels[90:150, 60:90], pixels[90:150, 166:196]
    assert corners.mean() < spine.mean()  # dark background, bright spine
    assert left_lung.mean() < spine.mean() and right_lung.mean() < spine.mean()  # lungs darker than bone
    assert pixels.std() > 20  # structure, not a flat picture


def test_classes_are_not_separable_by_mean_brightness():
    means = {label: [make_xray_array(label, seed).mean() for seed in range(40)] for label in ("NORMAL", "PNEUMONIA")}
    y = [0] * 40 + [1] * 40
    auc = roc_auc_score(y, means["NORMAL"] + means["PNEUMONIA"])
    assert max(auc, 1 - auc) < 0.85


def test_large_images_have_the_exact_size():
    # Speed is `xray bench`'s to measure (ratios in one run), never a timed assert on a shared machine.
    image = decode(make_xray_jpeg("PNEUMONIA", 3, size=(1800, 1400)))
    assert image.size == (1800, 1400)


def test_every_seed_gives_its_own_image_and_the_same_again():
    made = [make_xray_jpeg(("NORMAL", "PNEUMONIA")[seed % 2], seed) for seed in range(20)]
    assert len(set(made)) == 20
    assert make_xray_jpeg("PNEUMONIA", 3) == made[3]


def test_rejects_unknown_labels_and_tiny_sizes():
    with pytest.raises(ValueError, match="label"):
        make_xray_jpeg("COVID", 0)
    with pytest.raises(ValueError, match="size"):
        make_xray_jpeg("NORMAL", 0, size=(4, 4))
    assert decode(make_xray_jpeg("normal", 0, size=(64, 64))).size == (64, 64)  # case-insensitive


def test_dataset_layout_names_and_patients(tmp_path):
    paths = write_synthetic_dataset(tmp_path, per_class=12, splits=("train", "test"), seed=1, size=(96, 96))
    assert len(paths) == 48 and all(path.is_file() for path in paths)
    infos = [parse_xray_path(str(path)) for path in paths]
    assert Counter((info.split, info.label) for info in infos) == {
        ("train", "NORMAL"): 12, ("train", "PNEUMONIA"): 12, ("test", "NORMAL"): 12, ("test", "PNEUMONIA"): 12,
    }
    for path, info in zip(paths, infos, strict=True):
        assert path.relative_to(tmp_path).parts[:2] == (info.split, info.label)
        assert info.patient_key is not None, path.name
        if info.label == "NORMAL":
            assert path.name.startswith("IM-") and info.pneumonia_type is None
        else:
            assert path.name.startswith("person") and info.pneumonia_type in ("bacteria", "virus")
    per_patient = Counter(info.patient_key for info in infos)
    assert max(per_patient.values()) > 1  # several images for some patients
    by_split = {split: {i.patient_key for i in infos if i.split == split} for split in ("train", "test")}
    assert not by_split["train"] & by_split["test"]  # splits are patient-disjoint
    assert len(set(paths)) == len(paths)


def test_dataset_is_deterministic(tmp_path):
    first = write_synthetic_dataset(tmp_path / "a", per_class=5, splits=("train",), seed=3, size=(64, 64))
    second = write_synthetic_dataset(tmp_path / "b", per_class=5, splits=("train",), seed=3, size=(64, 64))
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))

"""What a Kaggle-style path says: label, split, patient and pneumonia type (no Spark, no files)."""

from __future__ import annotations

import dataclasses

import pytest

from streaming.core.paths import PathInfo, parse_xray_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/data/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg", ("PNEUMONIA", "test", "person1", "virus")),
        ("/data/chest_xray/train/NORMAL/IM-0115-0001.jpeg", ("NORMAL", "train", "IM-0115", None)),
        ("chest_xray/val/NORMAL/NORMAL2-IM-1234-0001.jpeg", ("NORMAL", "val", "NORMAL2-IM-1234", None)),
        ("train/PNEUMONIA/person123_bacteria_456.jpeg", ("PNEUMONIA", "train", "person123", "bacteria")),
        # Real oddities of the data set: a second image suffix on both naming schemes.
        ("train/NORMAL/IM-0429-0001-0002.jpeg", ("NORMAL", "train", "IM-0429", None)),
        ("train/PNEUMONIA/person447_virus_921_1.jpeg", ("PNEUMONIA", "train", "person447", "virus")),
    ],
)
def test_kaggle_layout(path, expected):
    info = parse_xray_path(path)
    assert (info.label, info.split, info.patient_key, info.pneumonia_type) == expected


def test_uris_and_windows_paths():
    uri = parse_xray_path("file:///mnt/x%20ray/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg")
    assert uri == PathInfo("PNEUMONIA", "test", "person1", "virus")
    assert parse_xray_path("file:/tmp/train/NORMAL/IM-0001-0001.jpeg").label == "NORMAL"
    remote = parse_xray_path("s3a://bucket/landing/chest_xray/train/NORMAL/IM-0115-0001.jpeg")
    assert (remote.label, remote.split, remote.patient_key) == ("NORMAL", "train", "IM-0115")
    dbfs = parse_xray_path("dbfs:/Volumes/main/xray/landing/test/NORMAL/IM-0003-0001.jpeg")
    assert (dbfs.label, dbfs.split, dbfs.patient_key) == ("NORMAL", "test", "IM-0003")
    windows = parse_xray_path(r"C:\Users\me\chest_xray\val\PNEUMONIA\person9_bacteria_38.jpeg")
    assert windows == PathInfo("PNEUMONIA", "val", "person9", "bacteria")


def test_case_insensitive_directories_and_validation_alias():
    info = parse_xray_path("data/Validation/pneumonia/Person12_Virus_3.JPEG")
    assert (info.label, info.split, info.patient_key, info.pneumonia_type) == (
        "PNEUMONIA", "val", "Person12", "virus"
    )
    assert parse_xray_path("x/TRAIN/Normal/im-0001-0001.jpg").split == "train"


def test_nearest_directory_wins():
    # A "test" folder higher up must not override the split folder right above the label.
    info = parse_xray_path("/home/test/projects/chest_xray/train/NORMAL/IM-0115-0001.jpeg")
    assert (info.split, info.label) == ("train", "NORMAL")
    info = parse_xray_path("/data/NORMAL/archive/PNEUMONIA/person1_virus_6.jpeg")
    assert info.label == "PNEUMONIA"


@pytest.mark.parametrize(
    "path",
    ["", "/", "scan.jpeg", "inbox/upload_2024-01-01.png", "IM-.jpeg", "personX_virus_1.jpeg", "file:///"],
)
def test_unknown_layouts_give_none_not_errors(path):
    info = parse_xray_path(path)
    assert info.label is None and info.split is None
    assert info.patient_key is None and info.pneumonia_type is None


def test_patient_without_label_directory():
    info = parse_xray_path("inbox/NORMAL2-IM-0383-0001.jpeg")
    assert (info.label, info.split, info.patient_key) == (None, None, "NORMAL2-IM-0383")
    # NORMAL in the file name is not a directory: no label from it.
    assert parse_xray_path("NORMAL-scan.jpeg").label is None


def test_label_known_but_name_unknown():
    info = parse_xray_path("landing/train/PNEUMONIA/scan-42.jpeg")
    assert (info.label, info.split, info.patient_key, info.pneumonia_type) == ("PNEUMONIA", "train", None, None)


def test_path_info_is_frozen():
    info = parse_xray_path("train/NORMAL/IM-0115-0001.jpeg")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.label = "PNEUMONIA"  # type: ignore[misc]

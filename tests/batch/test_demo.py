"""The demo's staged files: DICOM examples of every kind silver reads, and the deliberately bad ones."""

from __future__ import annotations

import hashlib

import pydicom

from batch.demo import (
    BAD_EXAMPLES,
    DICOM_VARIANTS,
    FAKE_PATIENT_NAME,
    _quarantine_line,
    stage_bad_examples,
    stage_dicom_examples,
)
from streaming.core.names import LABELS, is_image_name
from streaming.imaging.images import inspect_image


def test_dicom_examples_decode_and_carry_only_fake_identifiers(tmp_path):
    written = stage_dicom_examples(tmp_path)
    assert len(written) == len(DICOM_VARIANTS) * len(LABELS)
    assert {path.parent.name for path in written} == set(LABELS)
    kinds = set()
    for path in written:
        assert is_image_name(path.name) and path.parent.parent.name == "train"
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == FAKE_PATIENT_NAME and ds.PatientID.startswith("DEMO-")
        inspected = inspect_image(path.read_bytes(), 10_000_000)
        assert inspected.detected_format == "DICOM" and inspected.features is not None, inspected.decode_error
        kinds.add((ds.PhotometricInterpretation, int(ds.BitsStored), ds.file_meta.TransferSyntaxUID.name))
    assert {kind[0] for kind in kinds} == {"MONOCHROME1", "MONOCHROME2"} and {kind[1] for kind in kinds} == {8, 12}
    assert any(kind[2] == "RLE Lossless" for kind in kinds)
    # The same contents every run: a second demo run stages no new images.
    again = stage_dicom_examples(tmp_path / "again")
    assert [hashlib.sha256(p.read_bytes()).digest() for p in again] == \
        [hashlib.sha256(p.read_bytes()).digest() for p in written]


def test_the_ct_example_is_a_dicom_that_is_not_a_radiograph(tmp_path):
    written = stage_bad_examples(tmp_path)
    assert len(written) == len(BAD_EXAMPLES)
    ct = next(path for path in written if path.suffix == ".dcm")
    inspected = inspect_image(ct.read_bytes(), 10_000_000)
    assert inspected.detected_format == "DICOM" and inspected.dicom.modality == "CT"
    line = _quarantine_line({"dicom_radiograph": 1, "decodes": 1}, "xray status")
    assert "dicom_radiograph 1 (a CT DICOM, not a radiograph)" in line and line.startswith(
        "Quarantined on purpose: 2 file(s)")


def test_the_next_step_names_the_label_folders(tmp_path, capsys):
    from batch.demo import _look_next
    from streaming.core.config import load_config

    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"))
    _look_next(config, None, {})
    out = capsys.readouterr().out
    assert f"drop labelled images into {config.landing_dir}/<split>/<LABEL>/ (e.g. " \
           f"{config.landing_dir}/train/PNEUMONIA/), images to classify into {config.landing_dir}/unlabelled/" in out
    assert "(drop files into" not in out

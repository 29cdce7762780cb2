"""DICOM reading (streaming/imaging/dicom.py through images.inspect_image): pixels as displayed, features
that agree with the JPEG/PNG export, attributes, and every bad DICOM as a value (never an exception)."""

from __future__ import annotations

import logging

import numpy as np
import pydicom.data
import pytest
from dicomfiles import (
    IDENTIFYING,
    SENTINEL_PATIENT_ID,
    dicom_of,
    jpeg_lossless_with_gdcm,
    jpeg_of,
    png_of,
    radiograph,
)

from streaming.imaging.dicom import read_dicom
from streaming.imaging.dicomwrite import DicomSpec, dicom_bytes
from streaming.imaging.display import _window
from streaming.imaging.images import inspect_image

MAX_PIXELS = 10**8
PIXELS = radiograph(7, size=(240, 200))


def features(content: bytes, expected: str | None = None) -> np.ndarray:
    inspected = inspect_image(content, MAX_PIXELS, expected)
    assert inspected.decode_error is None and inspected.features is not None, inspected
    return inspected.features


def agree(a: np.ndarray, b: np.ndarray, mean_abs: float = 0.02) -> bool:
    return float(np.corrcoef(a, b)[0, 1]) > 0.995 and float(np.abs(a - b).mean()) < mean_abs


@pytest.fixture(scope="module")
def exported() -> dict[str, np.ndarray]:
    return {"png": features(png_of(PIXELS)), "jpeg": features(jpeg_of(PIXELS))}


@pytest.mark.parametrize("compression", ["none", "implicit", "rle", "jpeg2000", "jpeg"])
def test_features_of_a_dicom_agree_with_its_jpeg_and_png_export(exported, compression):
    dicom = features(dicom_of(PIXELS, compression=compression))
    assert agree(dicom, exported["png"]) and agree(dicom, exported["jpeg"])
    # The comparison can fail: another image's features do not agree.
    assert not agree(features(png_of(radiograph(8, size=(240, 200)))), dicom)


def test_jpeg_lossless_decodes_through_gdcm(exported, tmp_path):
    lossless = jpeg_lossless_with_gdcm(dicom_of(PIXELS), tmp_path)
    if lossless is None:
        pytest.skip("python-gdcm could not re-encode the file as JPEG Lossless here")
    assert agree(features(lossless), exported["png"])


def test_depths_photometrics_and_luts_display_the_same_image(exported):
    wide = PIXELS.astype(np.uint16)
    variants = {
        "MONOCHROME1": dicom_of(255 - PIXELS, photometric="MONOCHROME1"),
        "12 bit": dicom_of(wide * 16, bits_stored=12),
        "16 bit, JPEG 2000": dicom_of(wide * 257, bits_stored=16, compression="jpeg2000"),
        "rescale slope/intercept": dicom_of(wide * 2 + 1000, bits_stored=12, rescale=(0.5, -500.0)),
        # A window exactly around the data range: what a viewer shows is the full image.
        "window": dicom_of(wide * 16 + 100, bits_stored=12, window=(100 + 16 * 127.5 + 0.5, 16 * 255 + 1)),
    }
    for name, content in variants.items():
        assert agree(features(content), exported["png"]), name


def test_a_narrow_window_changes_what_is_seen(exported):
    # Half the gray levels clipped: a different picture, as on the viewer.
    narrow = features(dicom_of(PIXELS.astype(np.uint16) * 16, bits_stored=12, window=(16 * 200, 16 * 60)))
    assert not agree(narrow, exported["png"])


def test_window_functions_follow_the_standard():
    def values():  # a fresh float32 array each time: the window works in place
        return np.array([0.0, 99.5, 100.0, 100.5, 200.0], dtype=np.float32)

    class Header(dict):
        get = dict.get

    linear = _window(values(), Header(WindowCenter=100.0, WindowWidth=101.0))
    assert linear[0] == 0.0 and linear[-1] == 1.0 and linear[2] == pytest.approx(0.505, abs=1e-3)
    exact = _window(values(), Header(WindowCenter=100.0, WindowWidth=100.0, VOILUTFunction="LINEAR_EXACT"))
    assert exact[2] == pytest.approx(0.5)
    sigmoid = _window(values(), Header(WindowCenter=100.0, WindowWidth=50.0, VOILUTFunction="SIGMOID"))
    assert sigmoid[2] == pytest.approx(0.5) and 0 < sigmoid[0] < 0.01
    assert _window(values(), Header()) is None


def test_voi_lut_sequence_is_applied():
    from pydicom.dataset import Dataset

    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.add_new(0x00283006, "OW", np.arange(255, -1, -1, dtype=np.uint16).tobytes())  # an inverting LUT
    shown = read_dicom(dicom_bytes(PIXELS, DicomSpec(extra={"VOILUTSequence": [lut]})), MAX_PIXELS).gray
    plain = read_dicom(dicom_bytes(PIXELS), MAX_PIXELS).gray
    assert np.allclose(shown, 1.0 - plain, atol=1e-6)


def test_multi_frame_uses_the_first_frame(exported):
    content = dicom_of(np.stack([PIXELS, 255 - PIXELS, PIXELS // 2]))
    inspected = inspect_image(content, MAX_PIXELS)
    assert inspected.dicom.frame_count == 3
    assert agree(inspected.features, exported["png"])


def test_attributes_are_kept_and_identifiers_only_handed_over_raw():
    inspected = inspect_image(dicom_of(PIXELS, view_position="AP", burned_in_annotation="YES",
                                       extra={**IDENTIFYING, "Manufacturer": "Acme", "ManufacturerModelName": "DR-1"}),
                              MAX_PIXELS)
    attributes = inspected.dicom
    assert (attributes.modality, attributes.body_part, attributes.view_position) == ("DX", "CHEST", "AP")
    assert attributes.pixel_spacing == [0.143, 0.143] and attributes.bits_stored == 8
    assert (attributes.manufacturer, attributes.manufacturer_model) == ("ACME", "DR-1")
    assert attributes.transfer_syntax_uid == "1.2.840.10008.1.2.1" and attributes.transfer_syntax_supported
    assert attributes.study_year == 2019 and attributes.burned_in_annotation == "YES"
    assert (inspected.width, inspected.height, inspected.mode) == (200, 240, "MONOCHROME2")
    assert attributes.identifiers["patient"] == SENTINEL_PATIENT_ID
    assert set(attributes.identifiers) == {"patient", "study", "series", "instance"}
    kept = {k: v for k, v in vars(attributes).items() if k != "identifiers"}
    assert not [v for v in IDENTIFYING.values() if v.split("^")[0] in repr(kept)]


def test_bad_dicom_files_are_values_not_exceptions(caplog, capsys):
    valid = dicom_of(PIXELS)
    caplog.set_level(logging.DEBUG)
    cases = {
        "no pixel data": dicom_of(None, with_pixels=False),
        "truncated pixels": valid[: len(valid) - 5000],
        "truncated header": valid[:200],
        "unknown syntax": _with_transfer_syntax(valid, "1.2.3.4.5.6.7"),
        "syntax without a decoder": _with_transfer_syntax(valid, "1.2.840.10008.1.2.4.100"),  # MPEG-2 video
        "malformed values": dicom_of(PIXELS, extra={"PatientBirthDate": "SENTINELBADDATE", "Rows": 240}),
        "claims too many pixels": _claiming_size(valid, 60000, 60000),
    }
    results = {name: inspect_image(content, MAX_PIXELS) for name, content in cases.items()}
    assert results["no pixel data"].dicom.has_pixel_data is False
    assert "truncated" in results["truncated header"].dicom.header_error
    assert "could not be decoded" in results["truncated pixels"].decode_error
    for name, uid in (("unknown syntax", "1.2.3.4.5.6.7"), ("syntax without a decoder", "1.2.840.10008.1.2.4.100")):
        assert results[name].dicom.transfer_syntax_supported is False, name
        assert results[name].dicom.transfer_syntax_uid == uid and results[name].dicom.header_error is None
    assert results["malformed values"].features is not None
    bomb = results["claims too many pixels"]
    assert bomb.pixel_count == 60000 * 60000 and bomb.features is None and bomb.decode_error is None
    printed = capsys.readouterr()
    errors = [(r.decode_error, r.dicom.header_error if r.dicom else None) for r in results.values()]
    emitted = caplog.text + printed.out + printed.err + repr(errors)
    assert "SENTINEL" not in emitted  # pydicom's warnings quote values: silenced


def test_dicom_named_file_without_preamble_is_read_as_dicom_and_text_is_not():
    raw = dicom_of(PIXELS)[132:]  # the dataset without the Part 10 preamble
    assert inspect_image(raw, MAX_PIXELS).detected_format is None  # no name hint: unknown data
    hinted = inspect_image(raw, MAX_PIXELS, "DICOM")
    assert hinted.detected_format == "DICOM" and hinted.features is not None
    text = inspect_image(b"a note, not an image\n" * 30, MAX_PIXELS, "DICOM")
    assert (text.detected_format, text.content_kind, text.dicom) == (None, "text", None)


@pytest.mark.parametrize(("name", "check"), [
    ("CT_small.dcm", lambda r: r.dicom.modality == "CT" and r.features is not None),
    ("MR_small_jpeg_ls_lossless.dcm", lambda r: r.features is not None),
    ("examples_palette.dcm", lambda r: "PALETTE COLOR" in r.decode_error),
    ("rtplan.dcm", lambda r: r.dicom.has_pixel_data is False),
    ("SC_rgb_jpeg.dcm", lambda r: r.features is not None and r.mode in ("RGB", "YBR_FULL", "YBR_FULL_422")),
])
def test_pydicom_sample_files(name, check):
    path = pydicom.data.get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom's sample {name} is not bundled with this pydicom")
    with open(path, "rb") as handle:
        assert check(inspect_image(handle.read(), MAX_PIXELS))


def _with_transfer_syntax(content: bytes, uid: str) -> bytes:
    import io

    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(io.BytesIO(content))
    ds.PixelData = encapsulate([ds.PixelData])  # the bytes as one compressed frame would be stored
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid
    out = io.BytesIO()
    # Written as explicit little endian (what every compressed syntax uses), declared as ``uid``.
    ds.save_as(out, enforce_file_format=False, little_endian=True, implicit_vr=False)
    return out.getvalue()


def _claiming_size(content: bytes, rows: int, columns: int) -> bytes:
    import io

    ds = pydicom.dcmread(io.BytesIO(content))
    ds.Rows, ds.Columns = rows, columns
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()

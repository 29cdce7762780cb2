"""The DICOM display pipeline at the feature size (streaming/imaging/display.py) against the reference: the
pipeline on every pixel of the full frame, then Pillow's box reduction (what silver did before issue 29).

Tolerance, and why: the fast path is exact by construction (integer block sums, or one table lookup built
by the reference itself), so the only differences left are float32 rounding in another order of
operations, about 1e-7 on gray levels in [0, 1]. Features are z-scored (a gray-level rounding of 1e-7 is
about 1e-6 in their units), so 1e-4 on any feature value is a bound a hundred times above the rounding
and far below a real change (a narrow window or another picture moves features by 0.1 or more).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
import pytest
from dicomfiles import dicom_of, radiograph
from PIL import Image
from pydicom.dataset import Dataset

from streaming.imaging.dicom import _first_frame
from streaming.imaging.display import area_reduce, display_reduced, display_reference
from streaming.imaging.features import extract_features, fixed_size_levels, reduction_factor
from streaming.imaging.images import inspect_image

FEATURE_TOLERANCE = 1e-4
# Odd sizes: the bottom and right blocks are partial; 1030 columns give the largest factor, 8.
PIXELS = radiograph(11, size=(1031, 1030), label="PNEUMONIA")
WIDE = PIXELS.astype(np.uint16)


def _voi_lut(bits: int) -> Dataset:
    """A gamma-like VOI LUT sequence item over the stored values 0 .. 2**bits - 1 (non-linear)."""
    lut = Dataset()
    entries = 1 << bits
    lut.LUTDescriptor = [entries if entries < 65536 else 0, 0, 16]
    lut.add_new(0x00283006, "OW", (65535 * (np.arange(entries) / (entries - 1)) ** 0.6).astype(np.uint16).tobytes())
    return lut


VARIANTS = {
    "MONOCHROME2 8 bit": (PIXELS, {}),
    "MONOCHROME1 8 bit": (255 - PIXELS, {"photometric": "MONOCHROME1"}),
    "12 bit": (WIDE * 16, {"bits_stored": 12}),
    "16 bit": (WIDE * 257, {"bits_stored": 16}),
    "rescale slope/intercept": (WIDE * 2 + 1000, {"bits_stored": 12, "rescale": (0.5, -500.0)}),
    "window around the data": (WIDE * 16 + 100, {"bits_stored": 12, "window": (100 + 16 * 127.5 + 0.5, 16 * 256)}),
    # Windows that clip inside the data: blocks straddle the clipping points.
    "window clipping, 12 bit": (WIDE * 16, {"bits_stored": 12, "window": (16 * 120, 16 * 100)}),
    "window clipping, MONOCHROME1 16 bit": (WIDE * 257, {"bits_stored": 16, "photometric": "MONOCHROME1",
                                                          "window": (257 * 140, 257 * 90)}),
    "window clipping, rescaled": (WIDE * 16, {"bits_stored": 12, "rescale": (2.0, -1024.0),
                                              "window": (2 * 16 * 120 - 1024, 2 * 16 * 100)}),
    "SIGMOID window": (WIDE * 16, {"bits_stored": 12, "window": (16 * 120, 16 * 100),
                                   "extra": {"VOILUTFunction": "SIGMOID"}}),
    "VOI LUT 8 bit": (PIXELS, {"extra": {"VOILUTSequence": [_voi_lut(8)]}}),
    "VOI LUT 12 bit, MONOCHROME1": (WIDE * 16, {"bits_stored": 12, "photometric": "MONOCHROME1",
                                                "extra": {"VOILUTSequence": [_voi_lut(12)]}}),
}


def _reference_features(content: bytes) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(content))
    with warnings.catch_warnings():  # pydicom's warning on VOI LUTs over float input: read_dicom silences it
        warnings.simplefilter("ignore")
        return extract_features(fixed_size_levels(display_reference(_first_frame(ds), ds)))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_features_of_the_fast_path_match_the_reference(name):
    pixels, spec = VARIANTS[name]
    content = dicom_of(pixels, **spec)
    inspected = inspect_image(content, 10**8)
    assert inspected.decode_error is None and inspected.features is not None
    reference = _reference_features(content)
    assert float(np.abs(inspected.features - reference).max()) <= FEATURE_TOLERANCE, name


def test_reducing_before_a_clipping_window_would_drift():
    # Why the lookup path exists: the mean does not commute with the clip, so reducing the stored values and
    # then windowing moves features by far more than the tolerance the test above holds the fast path to.
    pixels, spec = VARIANTS["window clipping, 12 bit"]
    ds = pydicom.dcmread(io.BytesIO(dicom_of(pixels, **spec)))
    frame = _first_frame(ds)
    factor = reduction_factor(frame.shape[1], frame.shape[0])
    from streaming.imaging.features import resize_levels

    naive = extract_features(resize_levels(display_reference(area_reduce(frame, factor), ds)))
    fast = extract_features(resize_levels(display_reduced(frame, ds, factor)))
    assert float(np.abs(naive - fast).max()) > 100 * FEATURE_TOLERANCE
    assert float(np.abs(fast - _reference_features(dicom_of(pixels, **spec))).max()) <= FEATURE_TOLERANCE


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_area_reduce_is_pillows_box_reduction(factor, dtype):
    frame = (PIXELS[:203, :181].astype(np.int32) * (3 if dtype != np.uint8 else 1)
             - (200 if dtype == np.int16 else 0)).astype(dtype)
    expected = np.asarray(Image.fromarray(frame.astype(np.float32)).reduce(factor)) if factor > 1 else frame
    reduced = area_reduce(frame, factor)
    assert reduced.dtype == np.float32 and reduced.shape == expected.shape
    assert np.allclose(reduced, expected, rtol=0, atol=1e-3)


def test_constant_and_signed_frames():
    class Header(dict):
        get = dict.get

    assert np.all(display_reduced(np.full((300, 260), 7, dtype=np.uint16), Header(), 2) == 0.0)
    signed = (WIDE[:600, :520].astype(np.int16) * 8 - 1000).astype(np.int16)
    header = Header(WindowCenter=0.0, WindowWidth=800.0)
    expected = np.asarray(Image.fromarray(display_reference(signed, header)).reduce(4))
    assert np.allclose(display_reduced(signed, header, 4), expected, atol=1e-5)


@pytest.mark.parametrize("bits, pixels, garbage", [(8, PIXELS, 0), (16, WIDE * 257, 0), (12, WIDE * 16, 0xF000)])
def test_first_frame_is_pydicoms_decode(bits, pixels, garbage):
    """The first frame read as a view of native pixel data (no unused bits) is pydicom's decoded copy; with
    unused bits (12 of 16) it is still a copy with them masked, even when the file sets them."""
    from streaming.imaging.dicom import _viewable

    ds = pydicom.dcmread(io.BytesIO(dicom_of(pixels, bits_stored=bits)))
    if garbage:
        ds.PixelData = (pixels.astype(np.uint16) | garbage).tobytes()
    frame = _first_frame(ds)
    assert _viewable(ds, ds.file_meta.TransferSyntaxUID) == (bits != 12)
    assert frame.flags.writeable == (bits == 12)  # a view of the bytes is read-only: nothing may write into it
    np.testing.assert_array_equal(frame, pixels)
    np.testing.assert_array_equal(frame, ds.pixel_array)

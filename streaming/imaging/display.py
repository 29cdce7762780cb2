"""The display pipeline of a decoded DICOM frame (PS3.3 C.11), at the size the features need.

``display_reference`` is the pipeline as the standard states it, on every pixel of the frame: the modality
LUT (rescale slope/intercept, or a modality LUT sequence through pydicom), then the VOI LUT sequence or the
first window center/width (LINEAR, LINEAR_EXACT or SIGMOID), else the image's own range; ``MONOCHROME1``
inverted so bone is bright; gray levels in [0, 1], float32 and in place.

``display_reduced`` gives the same gray levels area-reduced by an integer factor (the mean of each
factor × factor block, as Pillow's ``Image.reduce``), without running the pipeline on the full frame: for
integer pixels the pipeline is a function of the stored value, so it is computed once per stored value
present (a table over ``min..max``, through ``display_reference`` itself, so both can never disagree).
Then:

* the table is affine over the values present (no window, a rescale, a window wider than the data, even
  inverted): the mean commutes with it, so the stored values are reduced first, in integers (exact block
  sums; ``area_reduce``), and the table's line is applied to the small frame. Exact.
* otherwise (a window that clips inside the data, SIGMOID, a LUT sequence): reducing first would not be
  exact where a block straddles a clipping point, so every pixel goes through the table (one lookup, no
  arithmetic on the full frame) and the display values are reduced. Exact.

Colour frames and non-integer pixels take ``display_reference`` and then ``area_reduce``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["area_reduce", "display_reduced", "display_reference"]

_MAX_TABLE = 1 << 16  # stored values of up to 16 bits: a table of 64 K float32 (256 KB) at most
_LOOKUP_ROWS = 32
# A table within 1e-6 of its line is the line plus float32 rounding (about 2e-7 on values in [0, 1]); a real
# clip or curve departs from it by far more. A table that only rounds worse takes the lookup: still exact.
_AFFINE_TOLERANCE = 1e-6


def _text(ds, keyword: str) -> str | None:
    """A header value as upper-case text (the first of several), None when absent or empty."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    text = str(value).strip() if value is not None else ""
    return text.upper() if text else None


def _number(ds, keyword: str) -> float | None:
    """A header value as a number (the first of several), None when absent or not a number."""
    value = ds.get(keyword)
    if type(value).__name__ == "MultiValue" or isinstance(value, (list, tuple)):
        value = value[0] if len(value) else None
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _window(values: np.ndarray, ds) -> np.ndarray | None:
    """The first VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1], computed in place on float32 ``values``;
    None (``values`` untouched) when there is no usable one."""
    center, width = _number(ds, "WindowCenter"), _number(ds, "WindowWidth")
    if center is None or width is None:
        return None
    function = (_text(ds, "VOILUTFunction") or "LINEAR").upper()
    if function == "SIGMOID" and width > 0:
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT" and width > 0:
        offset, scale = center, width
    elif function != "SIGMOID" and width > 1:
        offset, scale = center - 0.5, width - 1
    elif function != "SIGMOID" and width == 1:
        return (values >= center).astype(np.float32)
    else:
        return None
    values -= np.float32(offset)
    values *= np.float32(1.0 / scale)
    values += np.float32(0.5)
    return np.clip(values, 0.0, 1.0, out=values)


def _to_unit_range(values: np.ndarray) -> np.ndarray:
    """Float32 ``values`` scaled in place to [0, 1] by their own range (all zeros when constant)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        values[...] = 0.0
        return values
    values -= np.float32(low)
    values *= np.float32(1.0 / (high - low))
    return values


def _modality(frame: np.ndarray, ds) -> np.ndarray:
    """Stored values → modality values, as a float32 array of their own (rescale in place; a modality LUT
    sequence through pydicom)."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(frame, ds), dtype=np.float32)
    values = frame.astype(np.float32)
    slope, intercept = _number(ds, "RescaleSlope"), _number(ds, "RescaleIntercept")
    if slope not in (None, 1.0):
        values *= np.float32(slope)
    if intercept not in (None, 0.0):
        values += np.float32(intercept)
    return values


def display_reference(frame: np.ndarray, ds) -> np.ndarray:
    """One decoded frame → float32 gray levels in [0, 1] as displayed, every pixel through the pipeline (see
    the module docstring). Float32 and in place: a 2500 × 2000 frame costs one 20 MB array."""
    photometric = _text(ds, "PhotometricInterpretation") or "MONOCHROME2"
    if frame.ndim == 3:  # colour, already RGB (pydicom converts YBR): luminance as Pillow's convert("L")
        frame = frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114
        return _to_unit_range(frame.astype(np.float32))
    values = _modality(frame, ds)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        from pydicom.pixels import apply_voi_lut

        shown = _to_unit_range(np.asarray(apply_voi_lut(values, ds, prefer_lut=True), dtype=np.float32))
    else:
        windowed = _window(values, ds)
        shown = windowed if windowed is not None else _to_unit_range(values)
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), shown, out=shown)
    return shown.astype(np.float32, copy=False)


def _block_sums(values: np.ndarray, factor: int, axis: int, accumulator: type) -> np.ndarray:
    """Sums of ``factor`` consecutive rows (axis 0) or columns (axis 1), the last block possibly shorter:
    ``factor`` strided additions, much faster than ``reshape(...).sum`` or ``np.add.reduceat``."""
    size = values.shape[axis]
    shape = list(values.shape)
    shape[axis] = -(-size // factor)
    sums = np.zeros(shape, dtype=accumulator)
    for start in range(min(factor, size)):
        part = values[start::factor] if axis == 0 else values[:, start::factor]
        if axis == 0:
            sums[: part.shape[0]] += part
        else:
            sums[:, : part.shape[1]] += part
    return sums


def _accumulator(dtype: np.dtype) -> type:
    if dtype.kind == "u" and dtype.itemsize <= 2:
        return np.uint32  # 64 values of 16 bits sum below 2**22: exact, and exact again in float32
    if dtype.kind == "i" and dtype.itemsize <= 2:
        return np.int32
    # Float32 sums of display values in [0, 1]: 16 roundings of 6e-8 at most, far below any gray level.
    return np.int64 if dtype.kind in "ui" else np.float32


def area_reduce(frame: np.ndarray, factor: int) -> np.ndarray:
    """The mean of every ``factor`` × ``factor`` block of a 2-D array as float32, the blocks at the bottom and
    right edges averaged over the pixels they have (as ``PIL.Image.reduce``). Integer frames are summed in
    integers: the means of 16-bit values by a factor up to 8 are exact."""
    if factor <= 1:
        return np.array(frame, dtype=np.float32)
    accumulator = _accumulator(frame.dtype)
    sums = _block_sums(_block_sums(frame, factor, 0, accumulator), factor, 1, accumulator)
    rows, columns = frame.shape
    per_row = np.full(sums.shape[0], factor, dtype=np.float64)
    per_row[-1] = rows - factor * (sums.shape[0] - 1)
    per_column = np.full(sums.shape[1], factor, dtype=np.float64)
    per_column[-1] = columns - factor * (sums.shape[1] - 1)
    means = sums.astype(np.float32)
    means *= (1.0 / np.outer(per_row, per_column)).astype(np.float32)
    return means


def _table(low: int, high: int, ds) -> np.ndarray:
    """The display value of every stored value from ``low`` to ``high`` (float32), by the reference pipeline:
    its own range, when it is the one used, is then the range of the frame's values (the first and last
    stored values are present, and the LUTs radiographs carry are monotone)."""
    return display_reference(np.arange(low, high + 1, dtype=np.int64), ds)


def _is_affine(table: np.ndarray) -> bool:
    if len(table) <= 2:
        return True
    line = np.linspace(table[0], table[-1], len(table), dtype=np.float64)
    return float(np.abs(table - line).max()) <= _AFFINE_TOLERANCE


def _lookup(frame: np.ndarray, table: np.ndarray, low: int) -> np.ndarray:
    """``table[frame - low]`` for every pixel (float32), by bands of rows: numpy turns indices into 8-byte
    integers first, and a band's stay in the CPU cache (twice as fast as the whole frame at once)."""
    if frame.dtype.kind == "u":  # index by the stored value itself: no subtraction pass
        table = np.concatenate([np.zeros(low, dtype=np.float32), table])
        low = 0
    shown = np.empty(frame.shape, dtype=np.float32)
    for row in range(0, frame.shape[0], _LOOKUP_ROWS):
        band = frame[row:row + _LOOKUP_ROWS]
        index = band if low == 0 else band.astype(np.intp) - low
        np.take(table, index, out=shown[row:row + _LOOKUP_ROWS], mode="clip")
    return shown


def display_reduced(frame: np.ndarray, ds, factor: int) -> np.ndarray:
    """``area_reduce(display_reference(frame, ds), factor)``, computed without the pipeline on the full frame
    where the result is the same (see the module docstring)."""
    if frame.ndim != 2 or frame.dtype.kind not in "ui":
        return area_reduce(display_reference(frame, ds), factor)
    low, high = int(frame.min()), int(frame.max())
    if high - low >= _MAX_TABLE:
        return area_reduce(display_reference(frame, ds), factor)
    table = _table(low, high, ds)
    if not _is_affine(table):
        return area_reduce(_lookup(frame, table, low), factor)
    means = area_reduce(frame, factor)
    if high == low:
        means[...] = table[0]
        return means
    step = np.float32((float(table[-1]) - float(table[0])) / (high - low))
    means -= np.float32(low)
    means *= step
    means += table[0]
    return np.clip(means, 0.0, 1.0, out=means)

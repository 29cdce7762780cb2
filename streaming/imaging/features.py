"""Fixed-size pixel features for chest X-rays, cheap enough to run per image in Spark Python workers.

Pipeline for one image (``features_from_bytes``):

1. ``fixed_size_gray``: decode (JPEG in draft mode, so a 2000 px original is decoded at 1/8 scale by
   libjpeg itself), convert to 8-bit gray, resize to ``FEATURE_SIZE`` x ``FEATURE_SIZE`` ignoring the
   aspect ratio. Squashing rather than center-cropping is deliberate: the 224x224 Kaggle copies were
   made by squashing the originals, so squashing makes an original and its 224 copy give (nearly) the
   same features, and a crop would cut off lung apices/costophrenic angles on tall images.
2. ``extract_features``: per-image z-score (removes global brightness/contrast, which depend on the
   device and post-processing rather than on the disease), then three blocks concatenated:

   * ``pixels``: 16x16 mean-pooled z-scored image (256 values), the coarse layout of opacities;
   * ``hog``: histograms of oriented gradients, 8x8 cells of 16 px, 9 unsigned orientations,
     non-overlapping 2x2-cell blocks with L2-Hys normalisation (4*4*36 = 576 values), the rib/vessel
     edge structure that consolidation blurs out; block normalisation makes it invariant to local contrast;
   * ``lbp``: rotation-invariant uniform local binary patterns (10 codes) on the image pooled to 64x64,
     histogrammed on a 4x4 grid (160 values), fine texture; pooling first keeps JPEG noise out of it.

Nothing here looks at the file size, the encoded dimensions or the aspect ratio: in this data set they
leak the label (NORMAL originals are much bigger), so a model using them would not generalise.

Everything is numpy on a 128x128 array; ``extract_features`` takes well under 1 ms per image.
Bump ``FEATURE_VERSION`` whenever the output changes, so stored features are never mixed across versions.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = [
    "FEATURE_VERSION",
    "FEATURE_SIZE",
    "FEATURE_LENGTH",
    "FEATURE_BLOCKS",
    "fixed_size_gray",
    "fixed_size_levels",
    "reduction_factor",
    "resize_levels",
    "extract_features",
    "features_from_bytes",
    "frame_bytes",
    "frames_array",
]

FEATURE_VERSION = "gray128-pix16-hog16px9-lbp4-v2"  # v2: LBP tie tolerance
FEATURE_SIZE = 128

_POOL = 8  # pixels block: FEATURE_SIZE / _POOL = 16 -> 16x16
_HOG_CELLS = 8  # cells per side -> 16 px cells
_HOG_BINS = 9
_HOG_CLIP = 0.2  # L2-Hys clipping (Dalal & Triggs)
_HOG_EPS = 1.0  # in z-score units: keeps flat regions (black borders) from amplifying JPEG noise
_LBP_GRID = 4
_LBP_CODES = 10  # riu2 with 8 neighbours: 0..8 uniform + 1 "non-uniform"
_LBP_TIE_TOLERANCE = 1e-4

_PIXELS_LENGTH = (FEATURE_SIZE // _POOL) ** 2
_HOG_LENGTH = _HOG_CELLS**2 * _HOG_BINS
_LBP_LENGTH = _LBP_GRID**2 * _LBP_CODES
FEATURE_LENGTH = _PIXELS_LENGTH + _HOG_LENGTH + _LBP_LENGTH

FEATURE_BLOCKS: dict[str, slice] = {
    "pixels": slice(0, _PIXELS_LENGTH),
    "hog": slice(_PIXELS_LENGTH, _PIXELS_LENGTH + _HOG_LENGTH),
    "lbp": slice(_PIXELS_LENGTH + _HOG_LENGTH, FEATURE_LENGTH),
}
"""Where each block of the feature vector lives (for inspection and ablations)."""


def _cell_index(size: int, grid: int) -> np.ndarray:
    """Map every pixel of a size x size image to its cell number on a grid x grid layout."""
    cell = np.arange(size) * grid // size
    return (cell[:, None] * grid + cell[None, :]).astype(np.intp)


def _riu2_table() -> np.ndarray:
    """Lookup from 8-bit LBP codes to rotation-invariant uniform codes (Ojala et al. 2002)."""
    table = np.empty(256, dtype=np.intp)
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        transitions = sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
        table[code] = sum(bits) if transitions <= 2 else _LBP_CODES - 1
    return table


_HOG_CELL_INDEX = (_cell_index(FEATURE_SIZE, _HOG_CELLS) * _HOG_BINS).ravel()
_LBP_SIZE = FEATURE_SIZE // 2 - 2  # LBP codes exist for interior pixels of the 64x64 image
_LBP_CELL_INDEX = (_cell_index(_LBP_SIZE, _LBP_GRID) * _LBP_CODES).ravel()
_RIU2 = _riu2_table()
# Neighbours in circular order, as (row, col) offsets into the padded window.
_LBP_OFFSETS = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))


def fixed_size_gray(image: Image.Image) -> np.ndarray:
    """Decode ``image`` to a float32 ``(FEATURE_SIZE, FEATURE_SIZE)`` gray array in [0, 1].

    Must be given a freshly opened image (not yet loaded): for JPEGs it calls
    ``image.draft("L", (FEATURE_SIZE, FEATURE_SIZE))`` so libjpeg decodes straight to gray at the
    smallest power-of-two scale still at least ``FEATURE_SIZE`` on both sides, which is most of the
    speed on large originals. The image is then resized to a square with a bilinear (antialiased) filter,
    ignoring the aspect ratio on purpose (see the module docstring). 16-bit and float images are
    min-max scaled instead of clipped.
    """
    size = (FEATURE_SIZE, FEATURE_SIZE)
    # JPEG (and MPO, its subclass) decoders honour draft(); for other formats, or an image already
    # loaded, it is a no-op, so no format check is needed.
    image.draft("L", size)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # Pillow's convert("L") clips such images to 0..255, which would blank most 16-bit radiographs.
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
        resized = Image.fromarray(array).resize(size, Image.Resampling.BILINEAR)  # float32: mode "F"
        return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    if image.mode != "L":
        image = image.convert("L")
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) * np.float32(1.0 / 255.0)


def reduction_factor(width: int, height: int) -> int:
    """The power of two (up to 8) a frame of that size is box-reduced by before its resize to the feature
    size: the largest that keeps both sides at least ``FEATURE_SIZE``, as libjpeg's draft mode scales a JPEG,
    so a DICOM and its JPEG export are reduced alike (and a 3000 px frame is not resized in one costly step)."""
    factor = 1
    while min(width, height) // (factor * 2) >= FEATURE_SIZE and factor < 8:
        factor *= 2
    return factor


def resize_levels(reduced: np.ndarray) -> np.ndarray:
    """Gray levels in [0, 1] already reduced by ``reduction_factor`` → the ``fixed_size_gray`` array."""
    image = Image.fromarray(np.ascontiguousarray(reduced, dtype=np.float32))  # float32: mode "F"
    resized = image.resize((FEATURE_SIZE, FEATURE_SIZE), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def fixed_size_levels(levels: np.ndarray) -> np.ndarray:
    """Gray levels already in [0, 1] at any size → the ``fixed_size_gray`` array: box-reduced by
    ``reduction_factor``, then resized (a DICOM frame takes ``display.display_reduced`` + ``resize_levels``,
    the same result without the full-size display values)."""
    image = Image.fromarray(np.ascontiguousarray(levels, dtype=np.float32))  # float32: mode "F"
    factor = reduction_factor(*image.size)
    return resize_levels(image.reduce(factor) if factor > 1 else image)


def _pool(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean-pool a square array by an integer factor (several times faster than reshape + mean((1, 3)))."""
    if factor == 2:
        return (image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2]) * np.float32(0.25)
    size = image.shape[0] // factor
    rows = image.reshape(size, factor, image.shape[1]).sum(axis=1)
    return rows.reshape(size, size, factor).sum(axis=2) * np.float32(1.0 / (factor * factor))


def _hog(z: np.ndarray) -> np.ndarray:
    """HOG: unsigned orientations, hard binning, non-overlapping 2x2-cell blocks, L2-Hys normalisation.

    Non-overlapping blocks give 4x fewer values than Dalal-Triggs' stride-one blocks with the same
    validation accuracy and robustness in our experiments, so stored features and models stay small.
    """
    gx = np.zeros_like(z)
    gy = np.zeros_like(z)
    np.subtract(z[:, 2:], z[:, :-2], out=gx[:, 1:-1])
    np.subtract(z[2:, :], z[:-2, :], out=gy[1:-1, :])
    magnitude = np.sqrt(gx * gx + gy * gy)
    # Fold each gradient into the upper half plane instead of taking arctan2 modulo pi: float modulo
    # costs more than the rest of the descriptor.
    angle = np.arctan2(np.abs(gy), np.where(gy < 0, -gx, gx))
    bins = (angle * np.float32(_HOG_BINS / np.pi)).astype(np.intp)
    bins[bins >= _HOG_BINS] = 0  # exactly pi (a horizontal gradient pointing left) is orientation 0
    hist = np.bincount(
        _HOG_CELL_INDEX + bins.ravel(),
        weights=magnitude.ravel(),
        minlength=_HOG_CELLS * _HOG_CELLS * _HOG_BINS,
    )
    half = _HOG_CELLS // 2
    blocks = (
        hist.reshape(half, 2, half, 2, _HOG_BINS).transpose(0, 2, 1, 3, 4).reshape(half * half, 4 * _HOG_BINS)
    )
    blocks /= np.sqrt((blocks * blocks).sum(axis=1, keepdims=True) + _HOG_EPS)
    np.minimum(blocks, _HOG_CLIP, out=blocks)
    blocks /= np.sqrt((blocks * blocks).sum(axis=1, keepdims=True) + 1e-6)
    return blocks.ravel()


def _lbp(small: np.ndarray) -> np.ndarray:
    """Per-cell histograms (each summing to 1) of riu2 LBP codes of a small image."""
    # The tolerance makes ties robust to float rounding (a brightness change must not flip flat areas);
    # it is far below one gray level (~0.02 in z units), so real differences are untouched.
    center = small[1:-1, 1:-1] - np.float32(_LBP_TIE_TOLERANCE)
    rows, cols = center.shape
    code = np.zeros(center.shape, dtype=np.intp)
    for bit, (dy, dx) in enumerate(_LBP_OFFSETS):
        code |= (small[dy : dy + rows, dx : dx + cols] >= center).astype(np.intp) << bit
    counts = np.bincount(
        _LBP_CELL_INDEX + _RIU2[code].ravel(), minlength=_LBP_GRID * _LBP_GRID * _LBP_CODES
    ).reshape(_LBP_GRID * _LBP_GRID, _LBP_CODES)
    return (counts / counts.sum(axis=1, keepdims=True)).ravel()


def extract_features(gray: np.ndarray) -> np.ndarray:
    """Turn a ``(FEATURE_SIZE, FEATURE_SIZE)`` gray array into a float32 vector of ``FEATURE_LENGTH``.

    Deterministic and invariant to affine changes of brightness/contrast (it z-scores the image first).
    Raises ``ValueError`` for any other shape, so a wrong resize fails loudly instead of silently.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.shape != (FEATURE_SIZE, FEATURE_SIZE):
        raise ValueError(f"expected a {FEATURE_SIZE}x{FEATURE_SIZE} gray array, got shape {gray.shape}")
    # A floor on the std keeps a blank image at all-zero pixels instead of dividing noise by ~0.
    z = (gray - gray.mean()) / max(float(gray.std()), 1e-3)
    out = np.concatenate([_pool(z, _POOL).ravel(), _hog(z), _lbp(_pool(z, 2))])
    return out.astype(np.float32, copy=False)


def features_from_bytes(content: bytes) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) and return its feature vector."""
    with Image.open(io.BytesIO(content)) as image:
        return extract_features(fixed_size_gray(image))


def frame_bytes(gray: np.ndarray) -> bytes:
    """The ``fixed_size_gray`` array as silver keeps it for the cnn model family: 8-bit levels, row-major
    (``FEATURE_SIZE``² bytes, 16 KB), rounded to the nearest level."""
    gray = np.asarray(gray, dtype=np.float32)
    if gray.shape != (FEATURE_SIZE, FEATURE_SIZE):
        raise ValueError(f"expected a {FEATURE_SIZE}x{FEATURE_SIZE} gray array, got shape {gray.shape}")
    return np.rint(np.clip(gray, 0.0, 1.0) * 255.0).astype(np.uint8).tobytes()


def frames_array(frames: list[bytes]) -> np.ndarray:
    """Frames kept by ``frame_bytes`` → uint8 array (n, FEATURE_SIZE, FEATURE_SIZE); ``ValueError`` for a
    frame of another length (never reshaped silently)."""
    size = FEATURE_SIZE * FEATURE_SIZE
    bad = [i for i, frame in enumerate(frames) if frame is None or len(frame) != size]
    if bad:
        raise ValueError(f"{len(bad)} frame(s) missing or not {size} bytes (first at row {bad[0]})")
    if not frames:
        return np.zeros((0, FEATURE_SIZE, FEATURE_SIZE), np.uint8)
    return np.frombuffer(b"".join(frames), np.uint8).reshape(len(frames), FEATURE_SIZE, FEATURE_SIZE)

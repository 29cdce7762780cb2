"""Changed copies of an image at the feature size: training-time augmentation and validation perturbations.

Why: a model validated on patients of the same sites looks perfect (ROC AUC 0.998) and still called half
the healthy patients of the held-out Kaggle test split PNEUMONIA. Measured on the train split, the same
model's specificity fell to 0.25 when validation images were shifted by 10 px, and to 0.79–0.89 under
gamma, contrast or zoom changes, while patient-grouped and series-held-out validations saw nothing. So:

* ``augmented_copies``: two random copies per training image (gamma, contrast, scale, shift, rotation,
  blur, JPEG re-encoding), seeded by the image, used only on the training side of every split;
* ``PERTURBATIONS``: ten fixed changes of validation images (exposure, contrast, resolution, JPEG quality,
  zoom, shift, blur, sharpening) under which the validation reports the model's worst and mean figures.

All functions take and return float32 gray arrays of ``FEATURE_SIZE`` × ``FEATURE_SIZE`` in [0, 1], the
array `features.extract_features` reads. Runs on executors (pure; no state).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from streaming.imaging.features import FEATURE_SIZE, extract_features

__all__ = ["AUGMENTED_COPIES", "PERTURBATIONS", "augmented_copies", "augmented_features", "perturbed_features"]

AUGMENTED_COPIES = 2
_CENTER = FEATURE_SIZE / 2


def _image(gray: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8))


def _array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) * np.float32(1.0 / 255.0)


def _reencoded(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _affine(image: Image.Image, scale: float, shift: tuple[int, int], degrees: float = 0.0) -> Image.Image:
    """Scale about the centre, rotate, shift; the border outside the image is black (as on a detector)."""
    cos, sin = np.cos(np.deg2rad(degrees)) / scale, np.sin(np.deg2rad(degrees)) / scale
    matrix = (cos, -sin, _CENTER - _CENTER * cos + _CENTER * sin + shift[0],
              sin, cos, _CENTER - _CENTER * sin - _CENTER * cos + shift[1])
    return image.transform(image.size, Image.AFFINE, matrix, Image.BILINEAR, fillcolor=0)


def _exposure_copy(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma 0.7–1.4, contrast 0.8–1.25, scale ±10 %, shift ±8 px, blur (half the time), JPEG q20–80 (30 %)."""
    gray = np.power(gray, rng.uniform(0.7, 1.4)).astype(np.float32)
    gray = np.clip(gray.mean() + rng.uniform(0.8, 1.25) * (gray - gray.mean()), 0.0, 1.0)
    image = _affine(_image(gray), rng.uniform(0.9, 1.1), tuple(rng.integers(-8, 9, 2)))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.3:
        image = _reencoded(image, int(rng.integers(20, 80)))
    return _array(image)


def _framing_copy(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma 0.7–1.4, scale ±15 %, shift ±12 px, rotation ±5°, blur (half the time): positioning."""
    gray = np.power(gray, rng.uniform(0.7, 1.4)).astype(np.float32)
    image = _affine(_image(gray), rng.uniform(0.85, 1.15), tuple(rng.integers(-12, 13, 2)), rng.uniform(-5, 5))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return _array(image)


def _seed(key: str, copy: int, seed: int) -> np.random.Generator:
    # Seeded by the image (its id), not its position: a copy is the same whatever else is in the batch.
    digest = hashlib.sha256(f"{seed}:{copy}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def augmented_copies(gray: np.ndarray, key: str, seed: int = 0) -> list[np.ndarray]:
    """``AUGMENTED_COPIES`` random copies of one image, the same for the same (image key, seed)."""
    return [_exposure_copy(gray, _seed(key, 0, seed)), _framing_copy(gray, _seed(key, 1, seed))]


def augmented_features(gray: np.ndarray, key: str, seed: int = 0) -> np.ndarray:
    """Features of the augmented copies: shape (AUGMENTED_COPIES, FEATURE_LENGTH)."""
    return np.stack([extract_features(copy) for copy in augmented_copies(gray, key, seed)])


def _zoom_out(gray: np.ndarray) -> np.ndarray:
    inner = FEATURE_SIZE - FEATURE_SIZE // 8
    canvas = Image.new("L", (FEATURE_SIZE, FEATURE_SIZE), 0)
    canvas.paste(_image(gray).resize((inner, inner), Image.BILINEAR), ((FEATURE_SIZE - inner) // 2,) * 2)
    return _array(canvas)


def _zoom_in(gray: np.ndarray) -> np.ndarray:
    margin = FEATURE_SIZE // 12
    box = (margin, margin, FEATURE_SIZE - margin, FEATURE_SIZE - margin)
    return _array(_image(gray).crop(box).resize((FEATURE_SIZE, FEATURE_SIZE), Image.BILINEAR))


def _down_up(gray: np.ndarray) -> np.ndarray:
    small = _image(gray).resize((48, 48), Image.BILINEAR)
    return _array(small.resize((FEATURE_SIZE, FEATURE_SIZE), Image.BILINEAR))


PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gamma 0.6 (overexposed)": lambda g: np.power(g, 0.6).astype(np.float32),
    "gamma 1.6 (underexposed)": lambda g: np.power(g, 1.6).astype(np.float32),
    "contrast x1.4, clipped": lambda g: np.clip(0.5 + 1.4 * (g - g.mean()), 0.0, 1.0).astype(np.float32),
    "resolution 48 px": _down_up,
    "JPEG quality 15": lambda g: _array(_reencoded(_image(g), 15)),
    "zoom in 8 %": _zoom_in,
    "zoom out, black border": _zoom_out,
    "shift 10 px": lambda g: np.pad(g, ((0, 10), (10, 0)), mode="edge")[10:, :FEATURE_SIZE].astype(np.float32),
    "blur 1.2 px": lambda g: _array(_image(g).filter(ImageFilter.GaussianBlur(1.2))),
    "sharpened": lambda g: _array(_image(g).filter(ImageFilter.UnsharpMask(2, 150, 0))),
}
"""Fixed changes a validation image is put through (name → change), one feature vector each."""


def perturbed_features(gray: np.ndarray) -> np.ndarray:
    """Features of every perturbation of one image: shape (len(PERTURBATIONS), FEATURE_LENGTH)."""
    return np.stack([extract_features(change(gray)) for change in PERTURBATIONS.values()])

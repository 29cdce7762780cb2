"""Pixel features: fixed length, deterministic, blind to file size/format/mode/dimensions, cheap."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from streaming.imaging import features
from streaming.imaging.features import (
    FEATURE_LENGTH,
    FEATURE_SIZE,
    extract_features,
    features_from_bytes,
    fixed_size_gray,
)
from streaming.imaging.synthetic import make_xray_array


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def picture(seed: int = 3, size: tuple[int, int] = (512, 512), label: str = "PNEUMONIA") -> Image.Image:
    return Image.fromarray(make_xray_array(label, seed, size))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two feature vectors."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_constants_are_consistent():
    assert isinstance(features.FEATURE_VERSION, str) and features.FEATURE_VERSION
    assert FEATURE_SIZE == 128
    blocks = features.FEATURE_BLOCKS
    assert sum(s.stop - s.start for s in blocks.values()) == FEATURE_LENGTH
    assert blocks["pixels"].start == 0 and blocks["lbp"].stop == FEATURE_LENGTH


def test_fixed_size_gray_shape_range_and_dtype():
    gray = fixed_size_gray(Image.open(io.BytesIO(encode(picture(size=(300, 200))))))
    assert gray.shape == (FEATURE_SIZE, FEATURE_SIZE) and gray.dtype == np.float32
    assert 0.0 <= gray.min() < gray.max() <= 1.0


def test_fixed_size_gray_uses_jpeg_draft_mode():
    # A 1024 px RGB JPEG must be decoded by libjpeg at 1/8 scale straight to gray, not at full size.
    content = encode(picture(size=(1024, 1024)).convert("RGB"))
    image = Image.open(io.BytesIO(content))
    fixed_size_gray(image)
    assert image.mode == "L" and image.size == (128, 128)
    # 1000 px cannot be reduced 8x without going below 128 px: 4x (250 px) it is.
    image = Image.open(io.BytesIO(encode(picture(size=(1000, 1000)).convert("RGB"))))
    fixed_size_gray(image)
    assert image.size == (250, 250)


def test_extract_features_fixed_length_and_deterministic():
    gray = fixed_size_gray(picture())
    first = extract_features(gray)
    assert first.shape == (FEATURE_LENGTH,) and first.dtype == np.float32
    assert np.isfinite(first).all()
    assert np.array_equal(first, extract_features(gray.copy()))
    content = encode(picture())
    assert np.array_equal(features_from_bytes(content), features_from_bytes(content))


def test_extract_features_rejects_wrong_shape():
    with pytest.raises(ValueError, match="128x128"):
        extract_features(np.zeros((64, 64), np.float32))


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_blank_images_give_finite_features(value):
    vector = extract_features(np.full((FEATURE_SIZE, FEATURE_SIZE), value, np.float32))
    assert np.isfinite(vector).all()


def test_invariant_to_global_brightness_and_contrast():
    gray = fixed_size_gray(picture())
    base = extract_features(gray)
    changed = extract_features(np.clip(gray * 0.6 + 0.2, 0, 1))
    assert np.allclose(base, changed, atol=1e-3)


def test_same_picture_at_other_size_format_mode_or_quality_gives_near_identical_features():
    original = picture(size=(768, 640))
    reference = features_from_bytes(encode(original, quality=95))
    variants = {
        "smaller": encode(original.resize((384, 320), Image.Resampling.LANCZOS), quality=95),
        "224 squashed": encode(original.resize((224, 224), Image.Resampling.LANCZOS), quality=95),
        "rgb": encode(original.convert("RGB"), quality=95),
        "png": encode(original, "PNG"),
        "low quality": encode(original, quality=60),
        "16-bit png": encode(Image.fromarray(np.asarray(original).astype(np.uint16) * 257), "PNG"),
    }
    # Scale of "different": the nearest of a few other pictures of the same class and size.
    others = [features_from_bytes(encode(picture(seed, (768, 640)))) for seed in (4, 5, 6, 7)]
    nearest_other = min(float(np.linalg.norm(reference - other)) for other in others)
    for name, content in variants.items():
        vector = features_from_bytes(content)
        distance = float(np.linalg.norm(reference - vector))
        assert distance < 0.25 * nearest_other, f"{name}: {distance:.3f} vs another picture {nearest_other:.3f}"
        assert similarity(reference, vector) > 0.99, name


def test_blind_to_file_size_and_dimensions():
    # Same pixels padded with nothing but metadata or stored at a different size: features follow pixels.
    image = picture(size=(400, 300))
    plain = encode(image, quality=90)
    padded = encode(image, quality=90, comment=b"x" * 50_000)
    assert len(padded) > len(plain) + 40_000
    assert np.array_equal(features_from_bytes(plain), features_from_bytes(padded))
    # Dimensions: upscaling the identical picture 2x changes bytes and pixel counts, not features much.
    bigger = encode(image.resize((800, 600), Image.Resampling.BICUBIC), quality=90)
    assert similarity(features_from_bytes(plain), features_from_bytes(bigger)) > 0.99


def test_features_separate_the_synthetic_classes():
    normal = np.stack([features_from_bytes(encode(picture(seed, (256, 256), "NORMAL"))) for seed in range(6)])
    sick = np.stack([features_from_bytes(encode(picture(seed, (256, 256), "PNEUMONIA"))) for seed in range(6)])
    within = np.mean([similarity(a, b) for i, a in enumerate(normal) for b in normal[i + 1:]])
    across = np.mean([similarity(a, b) for a in normal for b in sick])
    assert within > across


def test_extract_features_is_cheap():
    grays = [fixed_size_gray(picture(seed, (256, 256))) for seed in range(20)]
    extract_features(grays[0])
    started = time.perf_counter()
    for _ in range(5):
        for gray in grays:
            extract_features(gray)
    per_image_ms = (time.perf_counter() - started) * 1000 / 100
    # ~0.25 ms on an idle core; generous bound for a loaded CI machine.
    assert per_image_ms < 5.0

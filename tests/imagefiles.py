"""Small image files made on the fly for tests: valid X-ray-like pictures and every bad input we handle."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def xray_like(seed: int, size: tuple[int, int] = (160, 160), brightness: float = 0.0) -> Image.Image:
    """A grayscale picture with structure and noise (never constant), distinct per seed."""
    rng = np.random.default_rng(seed)
    height, width = size[1], size[0]
    y, x = np.mgrid[0:height, 0:width]
    base = 90 + 60 * np.sin(x / (7 + seed % 5)) * np.cos(y / 11) + brightness
    noise = rng.normal(0, 25, size=(height, width))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="L")


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def gif_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="GIF")
    return buffer.getvalue()


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def bad_inputs(max_pixels: int) -> dict[str, tuple[str, bytes]]:
    """Bad files by the silver rule that must catch them: rule -> (file name, bytes)."""
    valid = jpeg_bytes(xray_like(99))
    side = int(max_pixels ** 0.5) + 50
    bomb = jpeg_bytes(Image.new("L", (side, side), 0), quality=10)
    return {
        "not_empty": ("empty.jpeg", b""),
        "is_image": ("notes.jpeg", b"patient notes, not an image\n" * 20),
        "is_image_pdf": ("report.jpeg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 10),
        "decodes": ("truncated.jpeg", valid[: len(valid) // 2]),
        "format_matches_name": ("disguised.jpeg", gif_bytes(xray_like(5))),
        "pixel_limit": ("bomb.jpeg", bomb),
        "min_dimensions": ("tiny.jpeg", jpeg_bytes(xray_like(6, size=(64, 64)))),
        "not_blank": ("blank.jpeg", jpeg_bytes(Image.new("L", (200, 200), 128))),
    }

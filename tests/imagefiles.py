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


def labelled_xray(label: str, seed: int, size: tuple[int, int] = (192, 192)) -> bytes:
    """A JPEG whose class shows in its structure: PNEUMONIA adds bright diffuse opacities over the
    rib-like stripes (learnable from gradients/texture, not from global brightness after z-scoring)."""
    rng = np.random.default_rng(seed)
    height, width = size[1], size[0]
    y, x = np.mgrid[0:height, 0:width]
    pixels = 80 + 50 * np.sin(y / 5.0 + rng.uniform(0, 6)) + rng.normal(0, 10, size=(height, width))
    if label == "PNEUMONIA":
        for _ in range(4):
            cy, cx = rng.uniform(0.25, 0.75) * height, rng.uniform(0.2, 0.8) * width
            radius = rng.uniform(0.12, 0.2) * width
            blob = np.exp(-(((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2)))
            pixels = pixels * (1 - 0.8 * blob) + 200 * blob
    return jpeg_bytes(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L"))


def stage_labelled_dataset(landing: Path, per_class: int, split: str = "train", seed: int = 0,
                           images_per_patient: int = 2) -> list[Path]:
    """Kaggle-style labelled files with several images per patient."""
    written = []
    for index in range(per_class):
        patient = seed * 1000 + index // images_per_patient
        normal = landing / split / "NORMAL" / f"IM-{patient:04d}-{index % images_per_patient + 1:04d}.jpeg"
        written.append(write(normal, labelled_xray("NORMAL", seed * 10_000 + index)))
        sick = landing / split / "PNEUMONIA" / f"person{patient}_bacteria_{index}.jpeg"
        written.append(write(sick, labelled_xray("PNEUMONIA", seed * 10_000 + 5000 + index)))
    return written


# Every name a filesystem allows that once broke the promise (URL-decoded, cut at '#' or '?', ...).
AWKWARD_NAMES = [
    "person9018_a%41b_18.jpeg", "x 11 %20%.jpeg", "x#y?z.jpeg", "new\nline.jpeg", "a.jpeg", "a.jpeg#x.jpeg",
    "-leading-dash.jpeg", "ünïcödé_Ω.jpeg", "file:not-a-uri.jpeg", "%2Fslash.jpeg",
]

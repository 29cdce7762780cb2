"""Synthetic chest-X-ray-like JPEGs (and DICOM files of them) for tests and the offline demo (users have no
real data).

A picture is a dark background, a soft-tissue body, two dark lung fields crossed by curved ribs, a bright
spine, clavicles and a heart shadow, with random pose, size, exposure, contrast and gamma. PNEUMONIA
pictures add diffuse, patchy opacities inside the lungs that also wash out the ribs behind them.

The difference is easy for texture/edge features (the feature set of ``streaming.imaging.features`` separates
~100 images with validation accuracy well above 0.9), but mean brightness alone is a poor cue because
exposure varies per image by more than the opacities add. Nothing about the file depends on the label
but the pixels: same size, same mode, same JPEG quality.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from streaming.core.names import LABELS

if TYPE_CHECKING:
    from streaming.imaging.dicomwrite import DicomSpec

__all__ = ["LABELS", "make_xray_dicom", "make_xray_jpeg", "make_xray_array", "write_synthetic_dataset"]

_MAX_RENDER_SIDE = 384  # render at most this big, then upscale: big "originals" stay cheap to generate


def _check_label(label: str) -> str:
    name = str(label).upper()
    if name not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    return name


def make_xray_array(label: str, seed: int, size: tuple[int, int] = (256, 256)) -> np.ndarray:
    """The picture as a uint8 array of shape (height, width); ``size`` is (width, height) like Pillow.

    The random draws happen in a fixed order (body, lungs, ribs, opacities, overlays, exposure), so a
    (label, seed, size) always gives the same picture."""
    name = _check_label(label)
    width, height = int(size[0]), int(size[1])
    if width < 8 or height < 8:
        raise ValueError(f"size must be at least 8x8, got {size}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, LABELS.index(name)])
    scale = min(1.0, _MAX_RENDER_SIDE / max(width, height))
    w, h = max(8, round(width * scale)), max(8, round(height * scale))
    # Normalised coordinates keep the anatomy proportional whatever the size; 1-D axes let separable
    # terms (blobs, spine) be built as outer products, several times cheaper than full 2-D exps.
    u_axis = (np.arange(w, dtype=np.float32) + 0.5) / w
    v_axis = (np.arange(h, dtype=np.float32) + 0.5) / h
    grid = _Grid(u_axis, v_axis, u_axis[None, :], v_axis[:, None])

    picture, cx, cy, body_h = _body(rng, grid)
    lungs, lung_centres = _lungs(rng, grid, cx, cy)
    ribs = _ribs(rng, grid, cx)
    opacity = _opacities(rng, grid, lungs, lung_centres) if name == "PNEUMONIA" else np.zeros((h, w), np.float32)
    lung_darkness = rng.uniform(0.27, 0.33)
    picture -= lung_darkness * lungs
    picture += 0.17 * ribs * lungs * (1.0 - np.clip(opacity, 0.0, 1.0))  # opacities hide the ribs
    picture += 0.3 * opacity
    picture = _overlays(rng, grid, picture, cx, cy, body_h)
    array = _exposure(rng, picture)
    if (w, h) != (width, height):
        array = np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BICUBIC))
    return array


@dataclass(frozen=True)
class _Grid:
    """Normalised coordinates: 1-D axes and their broadcastable 2-D views."""

    u_axis: np.ndarray
    v_axis: np.ndarray
    u: np.ndarray
    v: np.ndarray


def _body(rng: np.random.Generator, grid: _Grid) -> tuple[np.ndarray, float, float, float]:
    """Background and the soft ellipse of the body; (picture, centre x, centre y, body half-height)."""
    cx = 0.5 + rng.uniform(-0.04, 0.04)
    cy = 0.52 + rng.uniform(-0.04, 0.04)
    body_w = rng.uniform(0.36, 0.44)
    body_h = rng.uniform(0.48, 0.56)
    picture = np.full((len(grid.v_axis), len(grid.u_axis)), rng.uniform(0.02, 0.08), dtype=np.float32)
    body = ((grid.u - cx) / body_w) ** 2 + ((grid.v - cy) / body_h) ** 2
    picture += 0.38 * np.sqrt(np.clip(1.6 - 1.6 * body, 0.0, 1.0))
    return picture, cx, cy, body_h


def _lungs(rng: np.random.Generator, grid: _Grid, cx: float, cy: float) -> tuple[np.ndarray, list[tuple]]:
    """Both lung fields (flat inside, soft edge) and their (x, y, half-width, half-height)."""
    lungs = np.zeros((len(grid.v_axis), len(grid.u_axis)), dtype=np.float32)
    lung_centres = []
    for side in (-1, 1):
        lx = cx + side * rng.uniform(0.15, 0.19)
        ly = cy - rng.uniform(0.02, 0.06)
        lw, lh = rng.uniform(0.1, 0.13), rng.uniform(0.26, 0.32)
        lung = ((grid.u - lx) / lw) ** 2 + ((grid.v - ly) / lh) ** 2
        lungs = np.maximum(lungs, np.clip(1.3 - 1.3 * lung, 0.0, 1.0))
        lung_centres.append((lx, ly, lw, lh))
    return np.minimum(lungs * 2.0, 1.0), lung_centres


def _ribs(rng: np.random.Generator, grid: _Grid, cx: float) -> np.ndarray:
    """Ribs: bright curved bands, denser than the lung they cross."""
    spacing = rng.uniform(0.055, 0.07)
    curvature = rng.uniform(1.2, 2.0)
    phase = rng.uniform(0.0, 1.0)
    band = 0.5 + 0.5 * np.cos(2 * np.pi * ((grid.v + curvature * (grid.u - cx) ** 2) / spacing + phase))
    ribs = band * band
    return ribs * ribs * ribs


def _opacities(rng: np.random.Generator, grid: _Grid, lungs: np.ndarray, lung_centres: list[tuple]) -> np.ndarray:
    """Patchy consolidation: a few broad blobs plus finer mottling, in one or both lungs."""
    u_axis, v_axis = grid.u_axis, grid.v_axis
    opacity = np.zeros_like(lungs)
    sides = [0, 1] if rng.random() < 0.8 else [int(rng.integers(0, 2))]
    for index in sides:
        lx, ly, lw, lh = lung_centres[index]
        for _ in range(int(rng.integers(3, 6))):
            bx = lx + rng.uniform(-0.6, 0.6) * lw
            by = ly + rng.uniform(-0.2, 0.8) * lh  # lower zones more often, as in real cases
            sx, sy = rng.uniform(0.05, 0.1), rng.uniform(0.06, 0.13)
            weight = rng.uniform(0.7, 1.0)
            opacity += np.outer(weight * np.exp(-(((v_axis - by) / sy) ** 2)), np.exp(-(((u_axis - bx) / sx) ** 2)))
    # Mottling: a product of two smooth random profiles, far cheaper than resizing 2-D noise.
    knots = 20
    rows = np.interp(v_axis, np.linspace(0, 1, knots), rng.standard_normal(knots)).astype(np.float32)
    cols = np.interp(u_axis, np.linspace(0, 1, knots), rng.standard_normal(knots)).astype(np.float32)
    opacity *= 0.75 + 0.25 * np.clip(np.outer(rows, cols), -2.0, 2.0)
    # Plus a diffuse haze over both lungs: interstitial/bilateral involvement, and what makes the
    # class learnable from a few dozen examples wherever the blobs land.
    return np.clip(opacity + rng.uniform(0.15, 0.4), 0.0, 1.2) * lungs


def _overlays(rng: np.random.Generator, grid: _Grid, picture: np.ndarray, cx: float, cy: float,
              body_h: float) -> np.ndarray:
    """Spine, heart and clavicles over the lungs."""
    u, v = grid.u, grid.v
    spine_w = rng.uniform(0.03, 0.045)
    picture += np.outer(0.32 * (grid.v_axis > cy - body_h * 0.9), np.exp(-(((grid.u_axis - cx) / spine_w) ** 2)))
    heart_x = cx + rng.uniform(0.03, 0.07)
    heart_y = cy + rng.uniform(0.08, 0.14)
    heart = ((u - heart_x) / rng.uniform(0.1, 0.14)) ** 2 + ((v - heart_y) / rng.uniform(0.1, 0.13)) ** 2
    picture += 0.14 * np.sqrt(np.clip(1.0 - heart, 0.0, 1.0))
    for side in (-1, 1):
        # Clavicles: oblique bones from the top of the spine out to the shoulders.
        clavicle_y = cy - body_h * 0.6 - rng.uniform(0.15, 0.3) * np.abs(u - cx)
        near = np.abs(u - cx - side * 0.13) < 0.12
        picture += 0.16 * np.exp(-(((v - clavicle_y) / 0.014) ** 2)) * near
    return picture


def _exposure(rng: np.random.Generator, picture: np.ndarray) -> np.ndarray:
    """Exposure, contrast and gamma vary more than the opacities change the mean: brightness is no shortcut."""
    h, w = picture.shape
    picture = picture * rng.uniform(0.75, 1.35) + rng.uniform(-0.08, 0.12)
    picture += np.float32(0.04) * (rng.random((h, w), dtype=np.float32) - np.float32(0.5))  # quantum noise
    levels = (np.clip(picture, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    gamma = np.linspace(0.0, 1.0, 256) ** rng.uniform(0.75, 1.3)  # a lookup table: pow per pixel is slow
    return (gamma * 255.0 + 0.5).astype(np.uint8)[levels]


def make_xray_jpeg(label: str, seed: int, size: tuple[int, int] = (256, 256), quality: int = 90) -> bytes:
    """A grayscale JPEG of a synthetic chest X-ray of class ``label`` ("NORMAL"/"PNEUMONIA").

    ``size`` is (width, height). Deterministic for (label, seed, size, quality); the size, mode and quality
    never depend on the label.
    """
    buffer = io.BytesIO()
    Image.fromarray(make_xray_array(label, seed, size)).save(buffer, "JPEG", quality=int(quality))
    return buffer.getvalue()


def make_xray_dicom(label: str, seed: int, spec: DicomSpec | None = None, size: tuple[int, int] = (256, 256)
                    ) -> bytes:
    """A DICOM file of the same synthetic chest X-ray as ``make_xray_array`` gives, stored as ``spec`` says:
    8 or more bits (levels scaled to ``bits_stored``), ``MONOCHROME1`` stored inverted (a viewer, and
    silver, invert it back), any compression of ``dicomwrite.COMPRESSIONS``. Deterministic pixels for
    (label, seed, size); UIDs are new each time."""
    from streaming.imaging.dicomwrite import DicomSpec, dicom_bytes

    spec = spec or DicomSpec()
    levels = make_xray_array(label, seed, size).astype(np.uint16)
    top = (1 << spec.bits_stored) - 1
    if spec.bits_stored > 8:
        levels = (levels * top + 127) // 255  # 0-255 → 0-4095 for 12 bits
    if spec.photometric == "MONOCHROME1":
        levels = top - levels
    return dicom_bytes(levels, spec)


def _patient_plan(count: int, rng: np.random.Generator) -> list[int]:
    """Images per patient adding up to ``count``: mostly one, some patients with two or three."""
    plan = []
    while sum(plan) < count:
        plan.append(min(int(rng.choice([1, 1, 1, 2, 3])), count - sum(plan)))
    return plan


def write_synthetic_dataset(
    root: Path,
    per_class: int,
    splits: Iterable[str] = ("train", "test"),
    seed: int = 0,
    size: tuple[int, int] = (256, 256),
) -> list[Path]:
    """Write ``per_class`` images of each class for each split in the Kaggle layout; return the paths.

    Layout ``root/<split>/<LABEL>/<name>`` with Kaggle-style names: NORMAL ``IM-%04d-%04d.jpeg``
    (patient, image) and PNEUMONIA ``person%d_bacteria_%d.jpeg`` / ``person%d_virus_%d.jpeg``
    (patient, running image number). Some patients have several images; patient numbers never repeat
    across splits, so a split is also patient-disjoint. Deterministic for a given ``seed``.
    """
    root = Path(root)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7])
    written: list[Path] = []
    normal_patient, pneumonia_patient, pneumonia_image = 100, 1, 1
    for split in splits:
        for label in LABELS:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for images in _patient_plan(int(per_class), rng):
                kind = "bacteria" if rng.random() < 0.65 else "virus"
                for image in range(1, images + 1):
                    if label == "NORMAL":
                        name = f"IM-{normal_patient:04d}-{image:04d}.jpeg"
                    else:
                        name = f"person{pneumonia_patient}_{kind}_{pneumonia_image}.jpeg"
                        pneumonia_image += 1
                    image_seed = int(rng.integers(0, 2**31 - 1))
                    path = folder / name
                    path.write_bytes(make_xray_jpeg(label, image_seed, size))
                    written.append(path)
                if label == "NORMAL":
                    normal_patient += 1
                else:
                    pneumonia_patient += 1
    return written

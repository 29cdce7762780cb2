"""Changed copies of an image (streaming/imaging/augment.py): seeded by the image, in range, and each
perturbation really changes what the features see."""

from __future__ import annotations

import numpy as np
from imagefiles import labelled_xray

from streaming.imaging.augment import (
    AUGMENTED_COPIES,
    PERTURBATIONS,
    augmented_copies,
    augmented_features,
    perturbed_features,
)
from streaming.imaging.features import FEATURE_LENGTH, FEATURE_SIZE, extract_features
from streaming.imaging.images import decoded_gray, inspect_image

CONTENT = labelled_xray("PNEUMONIA", 3)
GRAY = decoded_gray(CONTENT, 10**8)


def test_decoded_gray_is_what_silver_computes_features_from():
    assert GRAY.shape == (FEATURE_SIZE, FEATURE_SIZE) and GRAY.dtype == np.float32
    assert np.array_equal(extract_features(GRAY), inspect_image(CONTENT, 10**8).features)
    assert decoded_gray(b"not an image", 10**8) is None and decoded_gray(b"", 10**8) is None


def test_augmented_copies_are_seeded_by_the_image_and_stay_in_range():
    copies = augmented_copies(GRAY, "image-a")
    assert len(copies) == AUGMENTED_COPIES
    for copy in copies:
        assert copy.shape == GRAY.shape and copy.dtype == np.float32 and 0.0 <= copy.min() <= copy.max() <= 1.0
        assert not np.allclose(copy, GRAY, atol=0.02)  # a real change
    again = augmented_copies(GRAY, "image-a")
    assert all(np.array_equal(a, b) for a, b in zip(copies, again, strict=True))
    other = augmented_copies(GRAY, "image-b")
    assert not np.array_equal(copies[0], other[0])
    assert not np.array_equal(copies[0], augmented_copies(GRAY, "image-a", seed=1)[0])
    assert augmented_features(GRAY, "image-a").shape == (AUGMENTED_COPIES, FEATURE_LENGTH)


def test_every_perturbation_changes_the_features():
    original = extract_features(GRAY)
    perturbed = perturbed_features(GRAY)
    assert perturbed.shape == (len(PERTURBATIONS), FEATURE_LENGTH)
    for name, vector in zip(PERTURBATIONS, perturbed, strict=True):
        assert np.isfinite(vector).all(), name
        assert np.abs(vector - original).max() > 1e-3, name

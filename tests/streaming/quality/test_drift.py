"""Population stability index (streaming/quality/drift.py): pure numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streaming.quality.drift import bin_proportions, psi, quantile_edges, reference_bins, sample_psi


def test_a_sample_of_the_same_distribution_is_stable_and_a_shifted_one_is_not():
    rng = np.random.default_rng(0)
    reference = reference_bins(rng.normal(0, 1, 5000), bins=5)
    assert reference["proportions"] == pytest.approx([0.2] * 5, abs=1e-3)
    assert sample_psi(reference, rng.normal(0, 1, 2000)) < 0.02
    assert sample_psi(reference, rng.normal(1, 1, 2000)) > 0.25  # one standard deviation
    assert sample_psi(reference, 1 - rng.normal(0, 1, 2000)) > 0.25  # mirrored (an inverted image's mean)


def test_psi_is_the_textbook_sum_and_empty_bins_stay_finite():
    expected, actual = [0.5, 0.5], [0.9, 0.1]
    assert psi(expected, actual, epsilon=0.0) == pytest.approx(0.4 * math.log(0.9 / 0.5) - 0.4 * math.log(0.1 / 0.5))
    assert psi(expected, expected) == 0.0
    everything_in_one_bin = psi([0.2] * 5, [1, 0, 0, 0, 0])
    assert math.isfinite(everything_in_one_bin) and everything_in_one_bin > 5
    with pytest.raises(ValueError, match="bins"):
        psi([0.5, 0.5], [1.0])


def test_bins_are_open_ended_ties_merge_and_missing_values_are_ignored():
    edges = quantile_edges([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], bins=5)
    assert edges.tolist() == pytest.approx([2.8, 4.6, 6.4, 8.2])
    # Values beyond the reference's range fall in the end bins; NaN is no value at all.
    assert bin_proportions([-100, 100, 100, float("nan")], edges).tolist() == pytest.approx([1 / 3, 0, 0, 0, 2 / 3])
    mostly_two_values = [3.0] * 50 + [4.0] * 50
    tied = quantile_edges(mostly_two_values, bins=5)
    assert tied.tolist() == [3.0, 4.0]
    assert bin_proportions(mostly_two_values, tied).tolist() == [0.0, 0.5, 0.5]
    assert bin_proportions([float("nan")], edges).tolist() == [0.0] * 5
    with pytest.raises(ValueError, match="no finite value"):
        quantile_edges([float("nan")], bins=5)

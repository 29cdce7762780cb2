"""Population stability index (PSI): how far a sample's distribution moved from a reference's.

A statistic's reference is its quantile bin edges and the share of reference values in each bin; a sample
is binned by the same edges and compared bin by bin:

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

Rules of thumb: below 0.1 no real change, 0.1-0.25 a moderate one, above 0.25 a shift worth a look. A bin
left empty on either side would make the logarithm infinite, so proportions are smoothed (``EPSILON`` added
to every bin, then renormalised). Sampling noise alone gives an expected PSI of about
``(bins - 1) * (1 / n_reference + 1 / n_sample)``, which is why few bins suit small samples.

Pure numpy: no Spark, no Arrow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["EPSILON", "bin_proportions", "psi", "quantile_edges", "reference_bins", "sample_psi"]

EPSILON = 1e-4


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def quantile_edges(values: Sequence[float] | np.ndarray, bins: int) -> np.ndarray:
    """The inner edges of ``bins`` equal-count bins of the finite ``values`` (ties merge bins: a statistic
    that is mostly one value gets fewer, wider bins). Raises ``ValueError`` without a finite value."""
    finite = _finite(values)
    if finite.size == 0:
        raise ValueError("no finite value to take quantiles of")
    if bins < 2:
        raise ValueError(f"need at least 2 bins, got {bins}")
    return np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def bin_proportions(values: Sequence[float] | np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Share of the finite ``values`` in each of the ``len(edges) + 1`` bins ``(-inf, e0), [e0, e1), ...,
    [e_last, inf)`` (open ends: a value beyond the reference's range falls in an end bin). All zeros
    without a finite value."""
    finite = _finite(values)
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    return counts / finite.size if finite.size else counts.astype(np.float64)


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray,
        epsilon: float = EPSILON) -> float:
    """The PSI of two distributions over the same bins (proportions), smoothed by ``epsilon``."""
    e = np.asarray(expected, dtype=np.float64) + epsilon
    a = np.asarray(actual, dtype=np.float64) + epsilon
    if e.shape != a.shape:
        raise ValueError(f"expected {e.shape[0]} bins, got {a.shape[0]}")
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def reference_bins(values: Sequence[float] | np.ndarray, bins: int) -> dict[str, list[float]]:
    """A statistic's reference, JSON-ready: ``{"edges": [...], "proportions": [...]}``."""
    edges = quantile_edges(values, bins)
    return {"edges": edges.tolist(), "proportions": bin_proportions(values, edges).tolist()}


def sample_psi(reference: dict[str, Sequence[float]], values: Sequence[float] | np.ndarray) -> float:
    """The PSI of a sample's finite values against a statistic's reference (`reference_bins`)."""
    return psi(reference["proportions"], bin_proportions(values, reference["edges"]))

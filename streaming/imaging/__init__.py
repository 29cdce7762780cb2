"""Image bytes → pixels → features: sniffing and decoding (``images``), the fixed-length feature vector
(``features``), and synthetic X-ray-like images for demos and tests (``synthetic``).
"""

__all__ = ["features", "images", "synthetic"]

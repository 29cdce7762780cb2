"""Silver (``silver_xray_metadata``, ``silver_image_features``, ``silver_quarantine``): the rules
(``expectations``), the executors' inspection of bronze rows (``inspect``), pure Arrow transforms to each
table's rows (``transform``) and the driver's micro-batch writer (``batch``).
"""

__all__ = ["batch", "expectations", "inspect", "transform"]

"""Evaluation: ``xray metrics`` (``metrics``), the HTML/PNG report (``report``) and the offline quality check
on a folder of images (``evaluate_quality``).
"""

__all__ = ["evaluate_quality", "metrics", "report"]

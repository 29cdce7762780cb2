"""Training: the classifier and its validation (``model``), ``xray retrain`` (``retrain``) and ``xray rescore``
(``rescore``).
"""

__all__ = ["model", "rescore", "retrain"]

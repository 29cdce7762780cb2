"""Training: the classifier and its validation (``model``), ``xray retrain`` (``retrain``), ``xray rescore``
(``rescore``) and when periodic retraining is due (``schedule``).
"""

__all__ = ["model", "rescore", "retrain", "schedule"]

"""Gold (``gold_pneumonia_predictions``): scoring silver features with the champion model, exactly once
per image (``scoring``).
"""

__all__ = ["scoring"]

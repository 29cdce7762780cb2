"""Gold (``gold_pneumonia_predictions``): scoring silver features with the champion model, exactly once
per image (``scoring``), and the drift of the scored images against the champion's training images (``drift``).
"""

__all__ = ["drift", "scoring"]

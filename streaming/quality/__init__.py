"""Data-quality expectations declared as data (``expectations``: rule, SQL condition, action, reason) and the
one engine that evaluates them as flag columns in Spark (``spark``) and splits the flagged rows with Spark or,
on the driver, with Arrow (``arrow``); the population stability index of drift (``drift``).
"""

__all__ = ["arrow", "drift", "expectations", "spark"]

"""Data-quality expectations declared as data (rule, SQL condition, action, reason) and the one engine that
flags, splits and counts them on Spark DataFrames and on Arrow tables.
"""

__all__ = ["expectations"]

"""What every other package stands on: the typed configuration, named errors, the project's vocabulary
(labels, splits, layers, landing names), path parsing, keyed pseudonyms, file permissions, the stream lock,
the MLflow model registry and JSON POSTs to a webhook (``webhook``).
"""

__all__ = ["config", "errors", "locks", "names", "paths", "permissions", "pseudonym", "registry", "webhook"]

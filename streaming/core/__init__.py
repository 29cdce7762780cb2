"""What every other package stands on: the typed configuration, named errors, the project's vocabulary
(labels, splits, layers, landing names), path parsing, keyed pseudonyms, file permissions, the stream lock,
the MLflow model registry, JSON POSTs to a webhook (``webhook``) and the services' stop on a signal
(``signals``).
"""

__all__ = ["config", "errors", "locks", "names", "paths", "permissions", "pseudonym", "registry", "signals",
           "webhook"]

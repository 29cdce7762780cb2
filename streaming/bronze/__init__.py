"""Bronze, the raw layer (``bronze_xray_images``): the landing source with the lakehouse's settings and
``clean_source`` (``source``), the executors' read of each entry into its bronze row (``read``), and what
landing still holds for it (``backlog``).
The only layer holding paths and file names.
"""

__all__ = ["backlog", "read", "source"]

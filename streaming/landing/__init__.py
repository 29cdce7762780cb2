"""The landing folder: a scan that reads every path as what it is (``scan``), the durable log of what it
found and the batch boundaries (``log``), when a file written straight into landing is complete
(``settle``), the Spark streaming source over them (``source``) and the backlog measure (``backlog``).
"""

__all__ = ["backlog", "log", "scan", "settle", "source"]

"""The Delta tables: their catalogue (``catalog``: every table's name, layer and schema), the one place that
knows which Delta engine reads and writes them (``engine.Lakehouse``), delta-rs behind a Spark data source
(``deltars``), the Spark session (``session``), ``pipeline_events`` (``events``) storage failures named
for people (``failures``), table maintenance (``maintenance``), alerts (``alerts``: the log,
``pipeline_alerts``, the webhook) and the one door to a table from the driver (``tables``: opened, read and
counted by name). Nothing above this package names a table format or imports ``deltalake``.
"""

__all__ = ["alerts", "catalog", "deltars", "engine", "events", "failures", "maintenance", "session", "tables"]

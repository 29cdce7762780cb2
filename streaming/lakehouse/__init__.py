"""The Delta tables: their catalogue (``catalog``: every table's name, layer and schema), the one place that
knows which Delta engine reads and writes them (``engine.Lakehouse``), delta-rs behind a Spark data source
(``deltars``), the Spark session (``session``), ``pipeline_events`` (``events``) storage failures named
for people (``failures``), table maintenance (``maintenance``) and alerts (``alerts``: the log,
``pipeline_alerts``, the webhook). Nothing above this package names a table format.
"""

__all__ = ["alerts", "catalog", "deltars", "engine", "events", "failures", "maintenance", "session"]

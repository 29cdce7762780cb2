"""The row every staging run appends to ``bronze_kaggle_dataset_info``: what was staged, from where, how."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from streaming.core.config import XrayConfig
from streaming.ingest.options import StagingOptions
from streaming.ingest.stage import StagingReport

__all__ = ["record_run"]


def record_run(spark: Any, config: XrayConfig, report: StagingReport, options: StagingOptions) -> None:
    """Append the run's row to bronze_kaggle_dataset_info (starting Spark only now when given None)."""
    from streaming.lakehouse.catalog import BRONZE_KAGGLE_DATASET_INFO
    from streaming.lakehouse.engine import Lakehouse

    if spark is None:
        from streaming.lakehouse.session import get_spark

        spark = get_spark(config)

    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    row = (
        report.dataset_ref,
        report.source,
        report.title,
        report.version,
        report.license,
        report.files_staged,
        report.bytes_staged,
        dict(report.per_split_label),
        json.dumps(options.as_record(), sort_keys=True),
        datetime.now(timezone.utc),
    )
    frame = spark.createDataFrame([row], BRONZE_KAGGLE_DATASET_INFO.schema)
    lakehouse.append(frame, BRONZE_KAGGLE_DATASET_INFO.name)

"""The one door to Delta storage from the driver (streaming.lakehouse.tables): real delta-rs tables."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from streaming.core.config import load_config
from streaming.lakehouse import tables
from streaming.lakehouse.direct import append_rows

EVENTS = "pipeline_events"


@pytest.fixture
def config(tmp_path):
    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"), delta_engine="delta-rs")
    config.root.mkdir()
    return config


def test_a_missing_table_is_none_everywhere(config):
    assert not tables.table_exists(config, EVENTS)
    assert tables.open_table(config, EVENTS) is None
    assert tables.read_arrow(config, EVENTS, ["query"]) is None
    assert tables.count_rows(config, EVENTS) == 0


def test_an_empty_delta_log_folder_is_not_a_table(config):
    """One existence rule: a folder with an empty `_delta_log` (a creation cut short) is not a table yet."""
    (config.table_path(EVENTS) / "_delta_log").mkdir(parents=True)
    assert not tables.table_exists(config, EVENTS)
    assert tables.open_table(config, EVENTS) is None
    assert tables.count_rows(config, EVENTS) == 0


def test_a_table_is_opened_read_and_counted_by_name(config):
    append_rows(config, EVENTS, [{"query": "bronze", "batch_id": n, "output_rows": n} for n in range(3)])
    assert tables.table_exists(config, EVENTS) and tables.table_exists(config.table_path(EVENTS))
    assert tables.open_table(config, EVENTS).version() == 1  # created empty (0), then appended to (1)
    assert tables.table_path(config.root, EVENTS) == config.table_path(EVENTS)
    rows = tables.read_arrow(config, EVENTS, ["batch_id"])
    assert rows.column_names == ["batch_id"] and sorted(rows.column(0).to_pylist()) == [0, 1, 2]
    assert tables.count_rows(config, EVENTS) == 3
    assert tables.count_rows(config, EVENTS, ds.field("batch_id") >= 1) == 2


def test_sql_over_registered_tables(config):
    append_rows(config, EVENTS, [{"query": "gold", "batch_id": 7}])
    builder = tables.query_builder(config, [EVENTS, "gold_pneumonia_predictions"])  # the second is missing
    result = pa.table(pa.RecordBatchReader.from_stream(builder.execute(f"SELECT batch_id FROM {EVENTS}")))
    assert result.column("batch_id").to_pylist() == [7]


def test_the_commit_conflict_error_is_deltas_own():
    from deltalake.exceptions import CommitFailedError

    assert tables.CommitFailedError is CommitFailedError
    with pytest.raises(AttributeError):
        tables.NoSuchThing  # noqa: B018


def test_a_config_needs_a_table_name():
    with pytest.raises(TypeError):
        tables.table_path(load_config(environ={}, lakehouse="/tmp/x"))

"""The one door to Delta storage from the driver (streaming.lakehouse.tables): real delta-rs tables."""

from __future__ import annotations

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


def test_the_commit_conflict_error_is_deltas_own():
    from deltalake.exceptions import CommitFailedError

    assert tables.CommitFailedError is CommitFailedError
    with pytest.raises(AttributeError):
        tables.NoSuchThing  # noqa: B018


def test_a_config_needs_a_table_name():
    with pytest.raises(TypeError):
        tables.table_path(load_config(environ={}, lakehouse="/tmp/x"))


def test_checksums_of_a_lost_commit_are_removed_and_the_table_opens_again(config):
    """Delta Lake's `N.crc` and Hadoop's `.N.json.crc` / `.N.crc.crc` beside a commit whose JSON was lost:
    delta-rs refuses the table until they go; checksums of commits that exist stay."""
    append_rows(config, EVENTS, [{"query": "bronze", "batch_id": 0}])
    append_rows(config, EVENTS, [{"query": "bronze", "batch_id": 1}])
    log = config.table_path(EVENTS) / "_delta_log"
    kept = ["00000000000000000001.crc", ".00000000000000000001.json.crc"]
    stale = ["00000000000000000002.crc", ".00000000000000000002.json.crc", ".00000000000000000002.crc.crc"]
    (log / kept[0]).write_text('{"tableSizeBytes": 1}')
    (log / kept[1]).write_bytes(b"crc")
    (log / "00000000000000000002.json").rename(log / "lost")  # stands for a lost commit, its checksums left
    (log / "lost").unlink()
    (log / stale[0]).write_text('{"tableSizeBytes": 2}')
    (log / stale[1]).write_bytes(b"crc")
    (log / stale[2]).write_bytes(b"crc")
    with pytest.raises(Exception, match="CRC file version 2 is newer"):
        tables.open_table(config, EVENTS)

    assert tables.remove_stale_checksums(config, EVENTS) == sorted(stale)
    assert all((log / name).exists() for name in kept)
    assert tables.open_table(config, EVENTS).version() == 1
    assert tables.remove_stale_checksums(config, EVENTS) == []
    assert tables.remove_stale_checksums(config, "no_such_table") == []

"""The progress of a backlog drain, from the query's own progress reports (no Spark needed)."""

from __future__ import annotations

import io
import logging

from streaming.pipeline.drain import DrainProgress


class FakeQuery:
    def __init__(self) -> None:
        self.recentProgress: list[dict] = []

    def batch(self, batch_id: int, start: int | None, end: int, latest: int) -> None:
        self.recentProgress.append({
            "batchId": batch_id, "numInputRows": 10,
            "sources": [{"startOffset": None if start is None else f'{{"seq":{start}}}',
                         "endOffset": f'{{"seq":{end}}}', "latestOffset": f'{{"seq":{latest}}}'}],
        })


def test_files_out_of_the_backlog_with_its_total(caplog):
    clock = iter(range(0, 1000, 3)).__next__  # 3 s between polls
    query, drain = FakeQuery(), DrainProgress("bronze", terminal=False, clock=clock)
    with caplog.at_level(logging.INFO, logger="streaming.core.progress"):
        for batch in range(5):  # a drain of 50 files from position 100, 10 per batch
            query.batch(batch, 100 + 10 * batch if batch else None, 110 + 10 * batch, 150)
            drain.poll(query)
            drain.poll(query)  # a batch is counted once however often it is seen
        drain.close()
    assert drain.bar.done == 50 and drain.bar.total == 50
    lines = [r.getMessage() for r in caplog.records]
    assert 1 <= len(lines) <= 4, lines
    assert lines[-1].startswith("bronze backlog: 50 of 50 files (100%)") and lines[-1].endswith("(done)")


def test_nothing_to_drain_shows_nothing(caplog):
    query, drain = FakeQuery(), DrainProgress("bronze", terminal=False)
    query.recentProgress.append({"batchId": 0, "numInputRows": 0, "sources": []})
    with caplog.at_level(logging.INFO):
        drain.poll(query)
        drain.close()
    assert drain.bar is None and not caplog.records


def test_a_terminal_gets_a_bar_and_delta_sources_count_rows():
    stream = io.StringIO()
    query, drain = FakeQuery(), DrainProgress("silver", terminal=True, stream=stream)
    query.recentProgress.append({"batchId": 3, "numInputRows": 7, "sources": [{"endOffset": '{"reservoirVersion": 4}'}]})
    drain.poll(query)
    assert drain.bar.terminal and drain.bar.done == 7 and drain.bar.total is None
    drain.close()
    assert "silver backlog" in stream.getvalue()

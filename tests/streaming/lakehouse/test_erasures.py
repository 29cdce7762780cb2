"""The erasure journal (streaming/lakehouse/erasures.py): written whole or not at all, read back as written,
pending until every step is done, and the contents of every erasure (finished or not) refused."""

from __future__ import annotations

from streaming.lakehouse.erasures import (
    STEPS,
    erased_contents,
    journal_dir,
    journals,
    new_journal,
    pending_erasures,
    write_journal,
)

A, B = "a" * 64, "b" * 64


def test_no_folder_means_no_erasure(config):
    assert journals(config) == [] and pending_erasures(config) == [] and erased_contents(config) == frozenset()


def test_a_journal_is_pending_until_its_last_step_and_its_contents_stay_refused(config):
    first = new_journal(A, "run-1")
    first.contents = ["1" * 64]
    write_journal(config, first)
    second = new_journal(B, "run-2")
    second.contents, second.done = ["2" * 64], list(STEPS)
    write_journal(config, second)
    assert [(j.patient, j.next_step()) for j in pending_erasures(config)] == [(A, "listed")]
    assert erased_contents(config) == {"1" * 64, "2" * 64}, "a finished erasure's contents are still refused"
    first.done = list(STEPS[:-1])
    write_journal(config, first)
    assert [j.next_step() for j in pending_erasures(config)] == ["landing_log"]
    first.done.append(STEPS[-1])
    write_journal(config, first)
    assert pending_erasures(config) == [] and [j.run_id for j in journals(config)] == ["run-1", "run-2"]


def test_what_is_not_a_whole_journal_is_skipped(config):
    write_journal(config, new_journal(A, None))
    folder = journal_dir(config)
    (folder / f".{B}.json.123.tmp").write_text('{"patient": "')  # a write killed midway
    (folder / f"{B}.json").write_text('{"patient": "')  # damaged by hand
    (folder / "copy.json").write_text((folder / f"{A}.json").read_text())  # a copy under another name
    assert [j.patient for j in journals(config)] == [A]

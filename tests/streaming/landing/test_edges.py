"""Landing files at the edges (issue 24): a file replaced under the same name is ingested again, a file
written slowly straight into landing is read only once complete (and a complete one at once), and links
that loop block nothing. Real Spark streams on small generated images."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

from imagefiles import jpeg_bytes, labelled_xray, stage_labelled_dataset, write, xray_like
from support import table_rows

from streaming.core.config import XrayConfig
from streaming.landing.backlog import backlog_scan
from streaming.landing.scan import scan_landing
from streaming.landing.settle import open_for_writing
from streaming.landing.source import LandingStreamReader
from streaming.pipeline.service import run_stream


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def bronze_by_path(config: XrayConfig) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in table_rows(config, "bronze_xray_images", ["path", "content_sha256", "batch_id"]):
        found.setdefault(os.path.relpath(row["path"], config.landing_dir), []).append(row)
    return {path: sorted(rows, key=lambda r: r["batch_id"]) for path, rows in found.items()}


def reader_for(tmp_path, **options: str) -> LandingStreamReader:
    landing = tmp_path / "landing"
    landing.mkdir(exist_ok=True)
    return LandingStreamReader({"landing": str(landing), "log": str(tmp_path / "log"), **options})


def admitted(reader: LandingStreamReader, start: int) -> list[str]:
    """One trigger of the source: the names of the entries it admits after ``start``."""
    end = reader.latestOffset({"seq": start}, None)["seq"]
    return [os.path.basename(e.path) for e in reader.log.entries[start:end]]


# ---- same name, new bytes ------------------------------------------------------------------------------
def test_a_file_replaced_under_the_same_name_is_ingested_again_into_bronze_silver_and_gold(spark, config):
    """Replaced by an atomic rename and rewritten in place: each is a second bronze row with the new bytes
    (the first row stays), silver gets the new image and gold scores it; the batch's event says so."""
    from batch.training.retrain import retrain

    staged = stage_labelled_dataset(config.landing_dir, per_class=20, split="train", seed=5)
    run_stream(spark, config, once=True)
    retrain(spark, config)
    renamed, in_place = staged[0], staged[2]
    before = bronze_by_path(config)
    new_renamed, new_in_place = labelled_xray("NORMAL", 777), labelled_xray("NORMAL", 778)
    staging = write(config.landing_dir / ".staging" / "copy.jpeg", new_renamed)
    os.replace(staging, renamed)  # how a careful exporter replaces a file
    with open(in_place, "r+b") as handle:  # how a careless one does
        handle.truncate(0)
        handle.write(new_in_place)

    run_stream(spark, config, once=True)

    after = bronze_by_path(config)
    for path, content in ((renamed, new_renamed), (in_place, new_in_place)):
        name = os.path.relpath(path, config.landing_dir)
        assert [r["content_sha256"] for r in after[name]] == [before[name][0]["content_sha256"], sha(content)]
    assert sum(len(rows) for rows in after.values()) == len(staged) + 2, "nothing else ingested again"
    silver = {r["image_id"] for r in table_rows(config, "silver_xray_metadata", ["image_id"])}
    gold = {r["image_id"] for r in table_rows(config, "gold_pneumonia_predictions", ["image_id"])}
    assert {sha(new_renamed), sha(new_in_place)} <= silver & gold
    events = [e for e in table_rows(config, "pipeline_events") if e["query"] == "bronze" and e["message"]]
    note = next(e["message"] for e in events if "replaced in landing" in e["message"])
    assert "re-ingested 2 file(s)" in note and str(config.landing_dir) not in note and "IM-" not in note

    run_stream(spark, config, once=True)  # unchanged since: nothing again
    assert sum(len(rows) for rows in bronze_by_path(config).values()) == len(staged) + 2


def test_with_allow_overwrites_off_a_replaced_file_is_not_read_again(spark, config):
    config = config.with_overrides(allow_overwrites=False)
    path = write(config.landing_dir / "train" / "NORMAL" / "IM-0001-0001.jpeg", jpeg_bytes(xray_like(1)))
    run_stream(spark, config, layers=("bronze",), once=True)
    write(path, jpeg_bytes(xray_like(2)))
    run_stream(spark, config, layers=("bronze",), once=True)
    assert len(bronze_by_path(config)["train/NORMAL/IM-0001-0001.jpeg"]) == 1


def test_the_log_gives_a_changed_file_a_new_entry_that_survives_a_restart(tmp_path):
    """The entry carries the version (size, mtime_ns, inode): a replay plans the same files, a change is a
    new entry naming the one it replaces (numbers only in replaced.jsonl)."""
    reader = reader_for(tmp_path)
    landing = reader.landing
    path = write(landing / "a.jpeg", jpeg_bytes(xray_like(1)))
    assert admitted(reader, 0) == ["a.jpeg"]
    first = reader.log.entries[0]
    assert (first.size, first.mtime_ns, first.inode) == (path.stat().st_size, path.stat().st_mtime_ns,
                                                          path.stat().st_ino)
    assert admitted(reader, 1) == []
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))  # touched: a new version
    assert admitted(reader, 1) == ["a.jpeg"] and reader.log.entries[1].replaces == 0
    reader.stop()
    again = reader_for(tmp_path)
    assert again.latestOffset({"seq": 1}, None) == {"seq": 2}, "the planned batch is planned alike"
    assert admitted(again, 2) == []
    assert [json.loads(line) for line in (tmp_path / "log" / "replaced.jsonl").read_text().splitlines()] == [
        {"seq": 1, "replaces": 0}]
    again.stop()


# ---- written slowly straight into landing ----------------------------------------------------------------
def test_a_complete_file_is_admitted_by_the_first_trigger_after_it_is_dropped(tmp_path):
    reader = reader_for(tmp_path)
    try:
        assert admitted(reader, 0) == []  # the source is running (its file events too)
        write(reader.landing / "whole.jpeg", jpeg_bytes(xray_like(3)))
        write(reader.landing / "junk.jpeg", b"not an image, but its writer is done")  # closed: read now
        staging = write(tmp_path / "outside.jpeg", jpeg_bytes(xray_like(4)))
        os.replace(staging, reader.landing / "moved.jpeg")
        assert sorted(admitted(reader, 0)) == ["junk.jpeg", "moved.jpeg", "whole.jpeg"]
    finally:
        reader.stop()


def test_a_file_still_open_for_writing_waits_for_its_writer_to_close_it(tmp_path):
    reader = reader_for(tmp_path, settleseconds="0.2")
    content = jpeg_bytes(xray_like(5))
    try:
        assert admitted(reader, 0) == []
        with open(reader.landing / "slow.jpeg", "wb") as handle:
            handle.write(content[: len(content) // 2])
            handle.flush()
            assert open_for_writing(str(reader.landing / "slow.jpeg")) is True
            for _ in range(3):  # longer than settleSeconds: a writer that pauses is still waited for
                time.sleep(0.3)
                assert admitted(reader, 0) == []
            handle.write(content[len(content) // 2:])
        assert admitted(reader, 0) == ["slow.jpeg"]
        assert reader.log.entries[0].size == len(content)
    finally:
        reader.stop()


def test_a_file_being_written_before_the_source_started_waits_and_an_old_one_does_not(tmp_path):
    landing = tmp_path / "landing"
    old = write(landing / "old.jpeg", b"written long ago, never closed by anyone we know of")
    os.utime(old, (1_000_000, 1_000_000))
    with open(landing / "open.jpeg", "wb") as handle:
        handle.write(b"half")
        handle.flush()
        reader = reader_for(tmp_path)
        try:
            assert admitted(reader, 0) == ["old.jpeg"]
        finally:
            reader.stop()


def test_a_slow_writer_is_never_read_half_way_while_the_stream_runs(spark, config):
    """A JPEG written half, left open across several triggers (longer than landing_settle_seconds), then
    finished: never quarantined as ``decodes``, ingested once, whole; other files flow meanwhile."""
    config = config.with_overrides(landing_settle_seconds=0.5)
    landing = config.landing_dir / "train" / "NORMAL"
    content = jpeg_bytes(xray_like(9))
    stop = threading.Event()
    stream = threading.Thread(target=run_stream, args=(spark, config), daemon=True,
                              kwargs={"layers": ("bronze", "silver"), "stop_event": stop})
    stream.start()
    try:
        landing.mkdir(parents=True, exist_ok=True)
        with open(landing / "IM-0900-0001.jpeg", "wb") as handle:
            handle.write(content[: len(content) // 2])
            handle.flush()
            for index in range(2):  # two later files, each dropped whole, go through while it waits
                write(landing / f"IM-091{index}-0001.jpeg", jpeg_bytes(xray_like(10 + index)))
                wait_for(lambda i=index: f"train/NORMAL/IM-091{i}-0001.jpeg" in bronze_by_path(config))
            time.sleep(1.5)
            assert "train/NORMAL/IM-0900-0001.jpeg" not in bronze_by_path(config)
            handle.write(content[len(content) // 2:])
        wait_for(lambda: "train/NORMAL/IM-0900-0001.jpeg" in bronze_by_path(config))
        wait_for(lambda: sha(content) in {r["image_id"] for r in table_rows(config, "silver_xray_metadata")})
    finally:
        stop.set()
        stream.join(timeout=120)
    assert [r["content_sha256"] for r in bronze_by_path(config)["train/NORMAL/IM-0900-0001.jpeg"]] == [sha(content)]
    assert table_rows(config, "silver_quarantine") == []


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # a table not created yet
            pass
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


# ---- links that loop -----------------------------------------------------------------------------------
def test_looping_links_are_listed_never_followed_and_block_nothing(spark, config, capsys):
    """``ln -s selfloop.jpeg selfloop.jpeg`` and a two-link loop: quarantined as not regular files
    (``link_loop``), the other files ingested, and `xray status` works."""
    from streaming.ops.status import print_status

    landing = config.landing_dir / "train" / "NORMAL"
    good = write(landing / "IM-0001-0001.jpeg", jpeg_bytes(xray_like(1)))
    os.symlink("selfloop.jpeg", landing / "selfloop.jpeg")
    os.symlink("b.jpeg", landing / "a.jpeg")
    os.symlink("a.jpeg", landing / "b.jpeg")
    found = {os.path.basename(f.path): f.status for f in scan_landing(config.landing_dir)[0]}
    assert found == {"IM-0001-0001.jpeg": "file", "selfloop.jpeg": "link_loop", "a.jpeg": "link_loop",
                     "b.jpeg": "link_loop"}
    assert backlog_scan(config.landing_dir, None).files == 1

    run_stream(spark, config, layers=("bronze", "silver"), once=True)

    assert bronze_by_path(config)["train/NORMAL/IM-0001-0001.jpeg"][0]["content_sha256"] == sha(good.read_bytes())
    quarantine = table_rows(config, "silver_quarantine", ["rule", "reason"])
    assert sorted(r["rule"] for r in quarantine) == ["regular_file"] * 3
    assert all("link_loop" in r["reason"] for r in quarantine)
    status = print_status(spark, config)
    assert status["landing_backlog"]["files"] == 0


def test_available_now_leaves_a_file_still_open_for_the_next_run(tmp_path):
    reader = reader_for(tmp_path, settleseconds="0.2")
    write(reader.landing / "whole.jpeg", jpeg_bytes(xray_like(6)))
    with open(reader.landing / "open.jpeg", "wb") as handle:
        handle.write(b"half")
        handle.flush()
        try:
            reader.prepareForTriggerAvailableNow()  # waits for it a little, then goes on without it
            assert admitted(reader, 0) == ["whole.jpeg"]
        finally:
            reader.stop()
    again = reader_for(tmp_path, settleseconds="0.2")
    try:
        again.prepareForTriggerAvailableNow()
        assert admitted(again, 1) == ["open.jpeg"]
    finally:
        again.stop()


def test_a_file_replaced_after_its_entry_was_compacted_away_is_new_again(tmp_path):
    """Compaction keeps the version of an old entry still in landing: unchanged it stays known, replaced it
    is new; a log compacted before versions were kept re-ingests nothing on upgrade."""
    from streaming.landing.log import LandingLog

    landing = tmp_path / "landing"
    kept, replaced = write(landing / "kept.jpeg", b"k"), write(landing / "replaced.jpeg", b"r")
    log = LandingLog(tmp_path / "log")
    log.add_new(scan_landing(landing)[0])
    log.add_new([])
    assert log.compact(2) and log.entries.first == 2 and log.old_paths == 2
    os.replace(write(tmp_path / "new.jpeg", b"new bytes"), replaced)
    base = json.loads((tmp_path / "log" / "base.json").read_text())
    again = LandingLog(tmp_path / "log")
    assert [(e.path, e.replaces) for e in again.add_new(scan_landing(landing)[0])] == [
        (str(replaced), base["seen"][str(replaced)])], "the kept file is unchanged: known"
    (tmp_path / "log" / "base.json").write_text(json.dumps({"first_seq": base["first_seq"], "seen": base["seen"]}))
    os.utime(kept, ns=(kept.stat().st_atime_ns, kept.stat().st_mtime_ns + 5))
    assert LandingLog(tmp_path / "log").unlogged(scan_landing(landing)[0]) == [], \
        "an old entry without a recorded version (a log from before) is taken as unchanged"

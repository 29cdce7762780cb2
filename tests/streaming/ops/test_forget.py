"""`xray forget` without the stream (streaming/ops/forget.py): the patient as given, the wait for a running
stream's planned batches, the report that names only keyed hashes, and an interrupted erasure finished from
its journal by the next `xray maintain` or `xray forget`. The end-to-end erasure with a stream,
a model and a byte search over the lakehouse is tests/e2e/test_forget.py."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from imagefiles import jpeg_bytes, write, xray_like
from support import table_rows

from streaming.bronze.source import landing_log_dir
from streaming.cli.commands import main
from streaming.core.errors import ErasureError
from streaming.core.locks import stream_lock
from streaming.core.pseudonym import path_ref, patient_ref
from streaming.lakehouse.erasures import pending_erasures
from streaming.lakehouse.forgetlist import read_forget_list
from streaming.landing.log import LandingLog
from streaming.landing.scan import Found
from streaming.ops.forget import (
    erasure_lines,
    erasure_status,
    forget_patient,
    patient_key_ref,
    wait_for_planned_batches,
)
from streaming.ops.maintain import maintain_command

# Runs once per Delta engine (tests/conftest.py).
pytestmark = pytest.mark.engine_dependent


def test_the_patient_is_a_raw_identifier_or_its_keyed_hash(config):
    ref = patient_ref("person7", config.patient_salt())
    assert patient_key_ref(config, "person7") == ref
    assert patient_key_ref(config, f" {ref.upper()} ") == ref
    with pytest.raises(ErasureError, match="empty"):
        patient_key_ref(config, "  ")


def test_without_yes_nothing_is_written(config):
    report = forget_patient(config, "person7")
    assert not report.erased and report.images == 0
    assert "run again with --yes" in report.lines()[0] and "person7" not in " ".join(report.lines())
    assert not config.table_path("forget_list").exists()


def batch(config, query: str, folder: str, number: int) -> None:
    path = config.checkpoint_path(query) / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / str(number)).write_text("v1\n{}\n")


def test_a_running_stream_s_planned_batch_is_waited_for(config):
    wait_for_planned_batches(config, timeout=0.1)  # no stream, no checkpoint: nothing to wait for
    batch(config, "bronze", "offsets", 3)
    batch(config, "bronze", "commits", 2)
    wait_for_planned_batches(config, timeout=0.1)  # batch 3 was planned by a stream that is gone: replayed later

    held, release = threading.Event(), threading.Event()

    def stream() -> None:
        with stream_lock(config.root):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(ErasureError, match="planned batch of bronze.*run the same 'xray forget' again"):
            wait_for_planned_batches(config, timeout=0.3)
        threading.Timer(0.3, batch, (config, "bronze", "commits", 3)).start()
        started = time.monotonic()
        wait_for_planned_batches(config, timeout=20)  # returns once batch 3 is committed
        assert (config.checkpoint_path("bronze") / "commits" / "3").exists() and time.monotonic() - started < 20
    finally:
        release.set()
        thread.join()
    with stream_lock(config.root):  # the probe never kept the lock: a stream starts as before
        pass


def test_a_committed_batch_0_is_not_waited_for(config):
    """A stream's first batch (0) planned and committed: nothing is pending (0 is a batch, not 'none')."""
    batch(config, "gold", "offsets", 0)
    batch(config, "gold", "commits", 0)
    held, release = threading.Event(), threading.Event()

    def stream() -> None:
        with stream_lock(config.root):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        assert held.wait(10)
        wait_for_planned_batches(config, timeout=5)  # returns at once; before the fix it raised after 5 s
        batch(config, "gold", "offsets", 1)
        with pytest.raises(ErasureError, match="planned batch of gold"):
            wait_for_planned_batches(config, timeout=0.3)  # batch 1 is planned and not committed: waited for
    finally:
        release.set()
        thread.join()


# ---- an erasure is a resumable transaction -------------------------------------------------------------
def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def stocked(lakehouse):
    """person41 (an image, in landing, bronze, silver, gold and the landing log) and person42 (the same)."""
    config, key = lakehouse.config, lakehouse.config.patient_salt()
    rows = []
    for number, patient in ((41, "person41"), (42, "person42")):
        content = jpeg_bytes(xray_like(number))
        path = str(write(config.landing_dir / f"train/NORMAL/{patient}_virus_1.jpeg", content))
        rows.append({"path": path, "path_ref": path_ref(path, key), "content": content,
                     "content_sha256": sha(content), "size_bytes": len(content), "patient": patient_ref(patient, key)})
    lakehouse.append_rows("bronze_xray_images", [{k: r[k] for k in ("path", "path_ref", "content", "content_sha256",
                                                                    "size_bytes")} for r in rows])
    lakehouse.append_rows("silver_xray_metadata", [{"image_id": r["content_sha256"], "patient_id": r["patient"],
                                                    "path_ref": r["path_ref"]} for r in rows])
    lakehouse.append_rows("gold_pneumonia_predictions", [{"image_id": r["content_sha256"]} for r in rows])
    LandingLog(landing_log_dir(config)).add_new([Found(r["path"], 1, r["size_bytes"], "file") for r in rows])
    return config, rows


def interrupted(config, monkeypatch, patient: str, step: str) -> None:
    """Run `xray forget` for ``patient`` and stop it, as a crash would, when it reaches ``step`` (a function
    of streaming.ops.forget; nothing of that step is done)."""
    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt(f"killed before {step}")

    with monkeypatch.context() as patched:  # only this patch is undone (not the conftest's)
        patched.setattr(f"streaming.ops.forget.{step}", crash)
        with pytest.raises(KeyboardInterrupt):
            forget_patient(config, patient, yes=True)


def left_of(config, rows: list[dict]) -> dict[str, int]:
    """How much of each patient is left: rows in the tables, files in landing, paths in the landing log."""
    log_text = "".join(p.read_text() for p in landing_log_dir(config).rglob("*.json*"))
    return {r["patient"][:6]: sum(r["content_sha256"] in {x.get("content_sha256"), x.get("image_id")}
                                  for name in ("bronze_xray_images", "silver_xray_metadata", "gold_pneumonia_predictions")
                                  for x in table_rows(config, name))
            + Path(r["path"]).exists() + (r["path"] in log_text) for r in rows}


def holding(folder: Path, content: bytes) -> list[Path]:
    """Files under ``folder`` that hold ``content``: as bytes, or as a value once a Parquet file is decoded
    (Delta Lake's own writer compresses with snappy, which may split the bytes)."""
    import pyarrow.parquet as pq

    def holds(path: Path) -> bool:
        if content in path.read_bytes():
            return True
        if path.suffix != ".parquet":
            return False
        data = pq.read_table(path)
        return any(content == value for name in data.column_names if data.schema.field(name).type == "binary"
                   for value in data.column(name).to_pylist())

    return [p for p in folder.rglob("*") if p.is_file() and holds(p)]


def test_an_erasure_interrupted_before_its_files_is_finished_by_xray_maintain(stocked, monkeypatch, capsys):
    config, rows = stocked
    interrupted(config, monkeypatch, "person41", "erase_files")
    assert left_of(config, rows) == {rows[0]["patient"][:6]: 2, rows[1]["patient"][:6]: 5}  # file and log path
    [journal] = pending_erasures(config)
    assert journal.next_step() == "files" and journal.contents == [rows[0]["content_sha256"]]
    text = (config.root / "erasures" / f"{journal.patient}.json").read_text()
    assert "person41" not in text and "landing" not in text, "the journal holds keyed hashes only"
    assert erasure_status(config)["pending"] == 1
    assert "ERASURE  1 interrupted" in "\n".join(erasure_lines({"erasures": erasure_status(config)}))

    maintain_command(config, dry_run=True)
    assert len(pending_erasures(config)) == 1, "a dry run changes nothing"
    maintain_command(config)
    assert pending_erasures(config) == [] and erasure_lines({"erasures": erasure_status(config)}) == []
    assert left_of(config, rows) == {rows[0]["patient"][:6]: 0, rows[1]["patient"][:6]: 5}
    assert read_forget_list(config).contents == {rows[0]["content_sha256"]}, "its bytes stay refused"


def test_an_erasure_interrupted_before_its_purge_is_finished_by_another_patient_s(stocked, monkeypatch):
    config, rows = stocked
    bronze = config.table_path("bronze_xray_images")
    interrupted(config, monkeypatch, "person41", "purge_history")
    assert holding(bronze, rows[0]["content"]), "old files still hold it"

    report = forget_patient(config, "person42", yes=True)
    assert [(o.patient, o.resumed, o.images) for o in report.others] == [(rows[0]["patient"], True, 1)]
    assert "finished the interrupted erasure of 1 image(s)" in "\n".join(report.lines())
    assert pending_erasures(config) == [] and report.images == 1
    assert left_of(config, rows) == {rows[0]["patient"][:6]: 0, rows[1]["patient"][:6]: 0}
    assert not any(holding(bronze, r["content"]) for r in rows)
    assert read_forget_list(config).patients == {r["patient"] for r in rows}


def test_forgetting_a_patient_again_keeps_the_contents_refused(stocked):
    config, rows = stocked
    forget_patient(config, "person41", yes=True)
    again = forget_patient(config, "person41", yes=True)
    assert (again.images, again.contents, again.resumed) == (0, 0, False)
    assert read_forget_list(config).contents == {rows[0]["content_sha256"]}


def test_an_interrupted_erasure_is_finished_when_xray_stream_starts(stocked, monkeypatch):
    config, rows = stocked
    interrupted(config, monkeypatch, "person41", "erase_rows")
    assert [j.next_step() for j in pending_erasures(config)] == ["rows"]
    assert main(["stream", "--once", "--lakehouse", str(config.root)]) == 0
    assert pending_erasures(config) == []
    assert rows[0]["content_sha256"] not in {r["image_id"] for r in table_rows(config, "silver_xray_metadata")}

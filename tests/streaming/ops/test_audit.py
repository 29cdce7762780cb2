"""The audit trail of real `xray` commands: a started and a finished row per run of a command that changes
the lakehouse, the outcome and exit code as the command ended, the tables it changed, no raw path or
patient identifier, nothing for read-only commands, and a warning (not a changed result) when the row
cannot be written."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from imagefiles import labelled_xray, write
from support import REPO, strings_in

from streaming.cli.commands import main
from streaming.cli.exits import Terminated
from streaming.cli.table import AUDITED, COMMANDS_BY_NAME
from streaming.core.errors import NothingToDoError
from streaming.core.pseudonym import path_ref, patient_ref
from streaming.ops.audit import audit_options, current_run_id, scrub

PATIENT_FILE = "person123_bacteria_1.jpeg"
# README (Audit trail): runs that started and never finished (killed, or still running).
UNFINISHED = ("SELECT s.run_id, s.event_time, s.command, s.user, s.host, s.pid FROM audit_log s "
              "LEFT JOIN audit_log f ON f.run_id = s.run_id AND f.event = 'finished' "
              "WHERE s.event = 'started' AND f.run_id IS NULL ORDER BY s.event_time")


def audit_rows(root: Path) -> list[dict]:
    path = root / "tables" / "audit_log"
    if not DeltaTable.is_deltatable(str(path)):
        return []
    return sorted(DeltaTable(str(path)).to_pyarrow_table().to_pylist(),
                  key=lambda r: (r["event_time"], r["event"] != "started"))


def one_run(root: Path, command: str) -> tuple[dict, dict]:
    """The started and finished rows of the only run of ``command``."""
    rows = [r for r in audit_rows(root) if r["command"] == command]
    assert [r["event"] for r in rows] == ["started", "finished"], rows
    assert rows[0]["run_id"] == rows[1]["run_id"]
    return rows[0], rows[1]


def salt_of(root: Path) -> str:
    return (root / "_secrets" / "patient_id_salt").read_text().strip()


@pytest.fixture
def root(tmp_path):
    """An existing, empty lakehouse folder."""
    folder = tmp_path / "lh"
    folder.mkdir()
    return folder


def test_options_keep_no_secret_path_or_patient():
    options = {"command": "forget", "patient": "12345", "inbox": "inbox", "dataset": "owner/slug", "seed": 0,
               "labels": None, "api_token": "s3cr3t", "new_path_option": "/data/person1_virus_2.jpeg",
               "layer": ["bronze", "silver"], "once": False}
    recorded = audit_options(options, "k")
    assert recorded == {
        "patient": patient_ref("12345", "k"), "inbox": f"path:{path_ref(os.path.abspath('inbox'), 'k')}",
        "dataset": "owner/slug", "seed": 0, "api_token": "<redacted>",
        "new_path_option": f"path:{path_ref('/data/person1_virus_2.jpeg', 'k')}",
        "layer": ["bronze", "silver"], "once": False,
    }
    # A patient given as its keyed hash (what silver and forget_list hold) stays that hash.
    assert audit_options({"patient": "ab" * 32}, "k") == {"patient": "ab" * 32}


def test_messages_lose_paths_file_names_and_patients():
    options = {"path": "exports/person9", "patient": "P-777", "api_key": "hunter2"}
    message = ("source exports/person9 does not exist; also /abs/IM-0001-0001.jpeg, person5_virus_1.jpeg, "
               "patient P-777, key hunter2; see https://example.org/docs; pass split/LABEL/*.jpeg (or .zip/.tar)")
    scrubbed = scrub(message, options, "k")
    for raw in ("person9", "IM-0001", "person5", "P-777", "hunter2", "/abs"):
        assert raw not in scrubbed
    assert f"path:{path_ref(os.path.abspath('exports/person9'), 'k')} does not exist" in scrubbed
    assert patient_ref("P-777", "k") in scrubbed and "key <redacted>" in scrubbed
    assert scrubbed.endswith("see https://example.org/docs; pass split/LABEL/*.jpeg (or .zip/.tar)")
    assert "path:" + path_ref("/abs/IM-0001-0001.jpeg", "k") in scrubbed


def test_recover_leaves_a_started_and_an_ok_row_and_read_only_commands_none(root, capsys):
    assert main(["recover", "--lakehouse", str(root)]) == 0
    started, finished = one_run(root, "recover")
    assert started["outcome"] == "started" and started["exit_code"] is None and started["tables"] is None
    assert finished["outcome"] == "ok" and finished["exit_code"] == 0 and finished["message"] is None
    assert finished["tables"] == [] and finished["duration_ms"] >= 0
    assert finished["event_time"] >= started["event_time"]
    assert json.loads(finished["options"]) == {"lakehouse": f"path:{path_ref(str(root), salt_of(root))}"}
    assert finished["pid"] == os.getpid() and finished["user"] and finished["host"]
    assert finished["package_version"] and finished["package_version"] != "unknown"
    assert "warning" not in capsys.readouterr().err

    assert main(["status", "--lakehouse", str(root)]) == 0
    main(["sql", "--lakehouse", str(root), "SELECT count(*) FROM audit_log"])
    assert len(audit_rows(root)) == 2
    assert {"status", "sql", "bench"}.isdisjoint(AUDITED)


def stage_folder(tmp_path: Path) -> Path:
    """A folder to stage whose own name names a patient, holding two labelled images."""
    source = tmp_path / "exports" / PATIENT_FILE
    write(source / "train" / "PNEUMONIA" / PATIENT_FILE, labelled_xray("PNEUMONIA", 1))
    write(source / "train" / "NORMAL" / "IM-0001-0001.jpeg", labelled_xray("NORMAL", 2))
    return source


@pytest.mark.engine_dependent
def test_ingest_folder_records_the_table_it_wrote_and_no_raw_path(tmp_path, lakehouse, capsys):
    root = lakehouse.config.root
    before = DeltaTable(lakehouse.path("bronze_kaggle_dataset_info")).version()
    source = stage_folder(tmp_path)
    assert main(["ingest-folder", str(source), "--lakehouse", str(root), "--sample", "5"]) == 0
    _, finished = one_run(root, "ingest-folder")
    assert finished["outcome"] == "ok", finished
    assert finished["tables"] == [{"table": "bronze_kaggle_dataset_info", "version_before": before,
                                   "version_after": before + 1}]
    options = json.loads(finished["options"])
    assert options["path"] == f"path:{path_ref(str(source), salt_of(root))}"
    assert options["sample"] == 5 and options["splits"] == "train,test,val"
    for value in strings_in(audit_rows(root)):
        assert "person123" not in value and "exports" not in value
    assert "warning" not in capsys.readouterr().err


def test_a_failing_command_records_its_error_without_the_path_it_names(tmp_path, root, capsys):
    missing = tmp_path / "gone" / PATIENT_FILE
    assert main(["ingest-folder", str(missing), "--lakehouse", str(root)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("xray ingest-folder: error: ")
    _, finished = one_run(root, "ingest-folder")
    assert (finished["outcome"], finished["exit_code"]) == ("error", 2)
    ref = f"path:{path_ref(str(missing), salt_of(root))}"
    assert finished["message"].startswith(f"source {ref} does not exist; pass a folder"), finished["message"]
    assert not any("person123" in value for value in strings_in(audit_rows(root)))


def test_a_user_error_in_a_missing_lakehouse_records_nothing_and_creates_nothing(tmp_path, capsys):
    lakehouse = tmp_path / "typo"
    assert main(["ingest-folder", str(tmp_path / "missing"), "--lakehouse", str(lakehouse)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not lakehouse.exists()


def replace_run(monkeypatch, name: str, run) -> None:
    """The command ``name`` of the command table runs ``run`` instead of its own function."""
    monkeypatch.setitem(COMMANDS_BY_NAME, name, dataclasses.replace(COMMANDS_BY_NAME[name], run=run))


@pytest.mark.parametrize(("raised", "code", "outcome", "message"), [
    (KeyboardInterrupt(), 130, "interrupted", None),
    (Terminated(), 143, "terminated", None),
    (NothingToDoError("nothing to recover: run xray stream first"), 2, "error",
     "nothing to recover: run xray stream first"),
], ids=["SIGINT", "SIGTERM", "named-error"])
def test_the_outcome_is_how_the_command_ended(root, monkeypatch, capsys, raised, code, outcome, message):
    seen = []

    def ends(args, config):
        seen.append(current_run_id())
        raise raised

    replace_run(monkeypatch, "recover", ends)
    assert main(["recover", "--lakehouse", str(root)]) == code
    started, finished = one_run(root, "recover")
    assert (finished["outcome"], finished["exit_code"], finished["message"]) == (outcome, code, message)
    assert seen == [started["run_id"]] and current_run_id() is None
    assert "warning" not in capsys.readouterr().err


def test_a_bug_records_its_class_and_first_line_and_still_raises(root, monkeypatch):
    def ends(args, config):
        raise RuntimeError("boom at /data/person4_virus_9.jpeg\nsecond line")

    replace_run(monkeypatch, "recover", ends)
    with pytest.raises(RuntimeError, match="boom"):
        main(["recover", "--lakehouse", str(root)])
    _, finished = one_run(root, "recover")
    assert (finished["outcome"], finished["exit_code"]) == ("error", 1)
    ref = path_ref("/data/person4_virus_9.jpeg", salt_of(root))
    assert finished["message"] == f"RuntimeError: boom at path:{ref}"


def test_an_audit_that_cannot_be_written_is_a_warning_not_a_changed_result(tmp_path, root, capsys):
    (root / "tables").mkdir()
    (root / "tables" / "audit_log").write_text("a file where the table should be")  # works as root too
    assert main(["recover", "--lakehouse", str(root)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xray recover: warning: audit_log not recorded ("), err

    assert main(["ingest-folder", str(tmp_path / "missing"), "--lakehouse", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("xray ingest-folder: error: ") and "does not exist" in err[0]
    assert len(err) == 2 and err[1].startswith("xray ingest-folder: warning: audit_log not recorded ("), err


def test_a_killed_stream_leaves_a_started_row_without_a_finished_one(root, capsys):
    environment = {**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable}
    process = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", "stream", "--lakehouse", str(root), "--master", "local[1]"],
        cwd=root.parent, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the JVM it may have started dies with it
    )
    try:
        deadline = time.monotonic() + 120
        while not audit_rows(root) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    rows = audit_rows(root)
    assert [(r["command"], r["event"], r["outcome"]) for r in rows] == [("stream", "started", "started")]
    assert rows[0]["pid"] == process.pid
    # The README's query for runs that never finished finds it.
    capsys.readouterr()
    assert main(["sql", "--lakehouse", str(root), "--format", "json", UNFINISHED]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == [rows[0]["run_id"]]

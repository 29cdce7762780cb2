"""Every user error is answered before Spark starts: one line saying what to do, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from streaming.cli.commands import main
from streaming.cli.preflight import NO_LABELLED_SILVER

ROOT = Path(__file__).resolve().parents[3]


def one_line_error(capsys, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"xray {command}: error: ")
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.fixture
def empty_lakehouse(tmp_path):
    root = tmp_path / "lh"
    root.mkdir()
    return root


@pytest.mark.parametrize("command", [["retrain"], ["stream", "--once"], ["ingest-folder", "."], ["demo"]])
def test_a_lakehouse_that_cannot_be_created_is_one_line(tmp_path, capsys, no_spark, command):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("x")
    assert main([*command, "--lakehouse", str(in_the_way / "lh")]) == 2
    line = one_line_error(capsys, command[0])
    assert f"{in_the_way} is a file, not a folder" in line and "--lakehouse" in line


def test_a_lakehouse_under_proc_is_one_line(capsys, no_spark):
    assert main(["--lakehouse", "/proc/no-such-process/lh", "stream", "--once"]) == 2
    line = one_line_error(capsys, "stream")
    assert "cannot create the lakehouse /proc/no-such-process/lh" in line and "--lakehouse" in line


def test_a_lakehouse_that_is_a_file_is_one_line(tmp_path, capsys, no_spark):
    lakehouse = tmp_path / "lh"
    lakehouse.write_text("x")
    assert main(["status", "--lakehouse", str(lakehouse)]) == 2
    assert "is not a directory" in one_line_error(capsys, "status")


def test_ingest_folder_of_a_missing_folder(tmp_path, capsys, no_spark, empty_lakehouse):
    missing = tmp_path / "does/not/exist"
    assert main(["ingest-folder", str(missing), "--lakehouse", str(empty_lakehouse)]) == 2
    line = one_line_error(capsys, "ingest-folder")
    assert f"{missing} does not exist; pass a folder" in line


def test_a_user_error_leaves_no_lakehouse_behind(tmp_path, capsys, no_spark):
    lakehouse = tmp_path / "new-lh"
    assert main(["ingest-folder", str(tmp_path / "missing"), "--lakehouse", str(lakehouse)]) == 2
    one_line_error(capsys, "ingest-folder")
    assert not lakehouse.exists()


@pytest.mark.parametrize("command", [["maintain"], ["forget", "--patient", "person1", "--yes"]])
def test_maintenance_and_erasure_of_a_mistyped_lakehouse_create_nothing(tmp_path, capsys, no_spark, command):
    lakehouse = tmp_path / "lh-typo"
    assert main([*command, "--lakehouse", str(lakehouse)]) == 2
    line = one_line_error(capsys, command[0])
    assert f"no lakehouse at {lakehouse}" in line and "person1" not in line
    assert not lakehouse.exists()


def test_a_bad_config_file(tmp_path, capsys, no_spark):
    settings = tmp_path / "bad.toml"
    settings.write_text("max_files_per_trigger = [\n")
    assert main(["--config", str(settings), "stream", "--once"]) == 2
    assert f"cannot parse config file {settings}" in one_line_error(capsys, "stream")
    assert main(["--config", str(tmp_path / "none.toml"), "retrain"]) == 2
    assert "does not exist" in one_line_error(capsys, "retrain")


def test_retrain_on_an_empty_lakehouse_says_what_to_do(capsys, no_spark, empty_lakehouse):
    assert main(["retrain", "--lakehouse", str(empty_lakehouse)]) == 2
    assert one_line_error(capsys, "retrain").endswith(NO_LABELLED_SILVER)
    assert "xray ingest-folder" in NO_LABELLED_SILVER and "xray stream" in NO_LABELLED_SILVER


def test_retrain_every_with_a_bad_duration_or_a_forced_promotion(capsys, no_spark, empty_lakehouse):
    assert main(["retrain", "--every", "6x", "--lakehouse", str(empty_lakehouse)]) == 2
    assert "invalid duration '6x'" in one_line_error(capsys, "retrain")
    assert main(["retrain", "--every", "6h", "--force-promote", "--lakehouse", str(empty_lakehouse)]) == 2
    assert "without --every" in one_line_error(capsys, "retrain")


def test_rescore_and_metrics_with_nothing_to_do(capsys, no_spark, empty_lakehouse):
    assert main(["rescore", "--lakehouse", str(empty_lakehouse)]) == 2
    assert "nothing to rescore" in one_line_error(capsys, "rescore")
    assert main(["metrics", "--lakehouse", str(empty_lakehouse)]) == 2
    line = one_line_error(capsys, "metrics")
    assert "nothing to evaluate" in line and "xray retrain" in line


def test_refeature_with_nothing_to_do_or_a_bad_chunk_size(capsys, no_spark, empty_lakehouse):
    assert main(["refeature", "--lakehouse", str(empty_lakehouse)]) == 2
    assert "nothing to refeature" in one_line_error(capsys, "refeature")
    assert main(["refeature", "--chunk-images", "0", "--lakehouse", str(empty_lakehouse)]) == 2
    assert "--chunk-images must be at least 1" in one_line_error(capsys, "refeature")


@pytest.mark.parametrize("command", [["stream", "--watch"], ["watch"]])
def test_a_missing_inbox(tmp_path, capsys, no_spark, empty_lakehouse, command):
    inbox = tmp_path / "inbox"
    assert main([*command, str(inbox), "--lakehouse", str(empty_lakehouse)]) == 2
    line = one_line_error(capsys, command[0])
    assert f"inbox {inbox} does not exist" in line and "mkdir -p" in line


def test_preflight_table_names_are_the_catalogs():
    from streaming.cli import preflight
    from streaming.lakehouse.catalog import GOLD_PREDICTIONS, SILVER_FEATURES, SILVER_METADATA

    source = Path(preflight.__file__).read_text()
    for spec in (GOLD_PREDICTIONS, SILVER_FEATURES, SILVER_METADATA):
        assert f'"{spec.name}"' in source


def test_ingest_folder_of_a_missing_folder_answers_in_a_second_or_two(tmp_path):
    """The real command in a fresh interpreter: no JVM, no traceback, fast (it took 53 s before)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "streaming.cli", "ingest-folder", "/does/not/exist",
         "--lakehouse", str(tmp_path / "lh")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "xray ingest-folder: error: source /does/not/exist does not exist; pass a folder (or .zip/.tar) "
        "holding split/LABEL/*.jpeg images"]
    assert elapsed < 5, elapsed  # about 1 s on an idle machine; slack for a loaded CI host


# -- the landing folder ---------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["stream", "--once"], ["ingest-folder", "."], ["ingest-kaggle"], ["demo"],
                                     ["watch", "."]])
def test_a_landing_that_is_a_file_is_one_line_and_no_alert(capsys, no_spark, empty_lakehouse, command):
    (empty_lakehouse / "landing").write_text("not a folder")
    assert main([*command, "--lakehouse", str(empty_lakehouse)]) == 2
    line = one_line_error(capsys, command[0])
    assert f"landing {empty_lakehouse / 'landing'} is a file, not a folder" in line and "move the file away" in line
    # A user's mistake found before the stream starts: no stream_stopped alert (only the audit trail's row).
    assert not (empty_lakehouse / "tables" / "pipeline_alerts").exists()


def test_stream_of_gold_alone_does_not_need_landing(no_spark, empty_lakehouse):
    from streaming.cli.parser import build_parser
    from streaming.cli.preflight import preflight
    from streaming.core.config import load_config

    (empty_lakehouse / "landing").write_text("not a folder")
    args = build_parser().parse_args(["stream", "--once", "--layer", "gold", "--lakehouse", str(empty_lakehouse)])
    preflight(args, load_config(lakehouse=str(empty_lakehouse)))  # no error: gold reads silver, not landing


def _as_root_without_file_capabilities(command: list[str], lakehouse: Path) -> subprocess.CompletedProcess:
    """Run ``xray`` as root without the capabilities that let root read and write any folder."""
    return subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner",
         sys.executable, "-m", "streaming.cli", *command, "--lakehouse", str(lakehouse)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


needs_setpriv = pytest.mark.skipif(
    __import__("shutil").which("setpriv") is None,
    reason="setpriv (util-linux) is needed to drop root's file-access capabilities")


@needs_setpriv
def test_an_unreadable_landing_is_one_line_before_the_stream_starts(empty_lakehouse):
    landing = empty_lakehouse / "landing"
    landing.mkdir()
    landing.chmod(0)
    try:
        started = time.monotonic()
        result = _as_root_without_file_capabilities(["stream", "--once"], empty_lakehouse)
        elapsed = time.monotonic() - started
    finally:
        landing.chmod(0o700)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"xray stream: error: cannot read landing {landing} (Permission denied): the stream could not see a file "
        "in it; give this user read access (chmod u+rx, or run as its owner)"]
    assert not (empty_lakehouse / "tables" / "pipeline_alerts").exists()  # no JVM, no stream, no alert
    assert elapsed < 30, elapsed  # a second or two: no JVM (slack for a loaded host)


@needs_setpriv
def test_an_unwritable_landing_is_one_line_for_ingest_folder(tmp_path, empty_lakehouse):
    from imagefiles import labelled_xray

    source = tmp_path / "export" / "train" / "NORMAL"
    source.mkdir(parents=True)
    (source / "IM-0001-0001.jpeg").write_bytes(labelled_xray("NORMAL", 1))
    landing = empty_lakehouse / "landing"
    landing.mkdir()
    landing.chmod(0o500)
    try:
        result = _as_root_without_file_capabilities(["ingest-folder", str(tmp_path / "export")], empty_lakehouse)
    finally:
        landing.chmod(0o700)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"xray ingest-folder: error: cannot write in landing {landing} (Permission denied): files are staged "
        "there; give this user write access (chmod u+w, or run as its owner)"]
    assert list(landing.iterdir()) == []

"""The command table is the one list of commands: the parser, the dispatch, the preflight and the audit read
it, so they cannot disagree; a mistyped command, option or lakehouse is one honest line, exit 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from streaming.cli.commands import main
from streaming.cli.parser import make_parser
from streaming.cli.preflight import preflight
from streaming.cli.table import AUDITED, COMMANDS, COMMANDS_BY_NAME, Command, build_parser
from streaming.core.config import load_config
from streaming.core.locks import stream_lock
from streaming.lakehouse.direct import append_rows

ROOT = Path(__file__).resolve().parents[3]
# The fewest arguments each command accepts (a new command needs its line here: this test then covers it).
MINIMAL_ARGUMENTS = {
    "stream": ["--once"], "recover": [], "watch": ["inbox"], "ingest-kaggle": [], "ingest-folder": ["folder"],
    "retrain": [], "metrics": [], "rescore": [], "refeature": [], "status": [], "serve": [], "sql": ["SELECT 1"],
    "forget": ["--patient", "person1"], "maintain": [], "demo": [], "bench": [],
    "feedback": ["--image-id", "0" * 64, "--label", "NORMAL"],
}


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# -- the table and what derives from it ------------------------------------------------------------------
def test_every_command_that_writes_is_audited():
    """A command not declared read-only is audited, unless it names why its rows are elsewhere (bench)."""
    for command in COMMANDS:
        assert command.audited == (not command.read_only and command.audited_elsewhere is None), command.name
        assert command.name in AUDITED or command.read_only or command.audited_elsewhere, command.name
    assert {c.name for c in COMMANDS if c.audited_elsewhere} == {"bench"}
    assert {c.name for c in COMMANDS if c.read_only} == {"status", "serve", "sql"}


def test_a_new_command_that_writes_is_audited_without_another_list():
    new = Command("export", None, lambda args, config: 0, help="writes something")
    assert new.audited and not new.read_only and not new.creates_lakehouse
    assert not Command("peek", None, lambda args, config: 0, help="reads", read_only=True).audited


def test_the_parser_offers_exactly_the_tables_commands():
    parser = build_parser()
    assert list(parser.commands) == [c.name for c in COMMANDS]
    assert set(MINIMAL_ARGUMENTS) == set(COMMANDS_BY_NAME)
    for name, arguments in MINIMAL_ARGUMENTS.items():
        assert parser.parse_args([name, *arguments]).command == name


def test_a_command_added_to_a_table_is_parsed_and_listed():
    def arguments(command: argparse.ArgumentParser) -> None:
        command.add_argument("--dry-run", action="store_true")

    parser = make_parser([*COMMANDS, Command("export", arguments, lambda args, config: 0, help="export rows")])
    assert parser.parse_args(["export", "--dry-run"]).dry_run is True


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"], ["sql", "SELECT count(*) FROM pipeline_events"]])
def test_a_command_declared_read_only_changes_nothing(tmp_path, capsys, no_spark, argv):
    """The declaration the audit trusts is true: a read-only command leaves every file as it was."""
    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"), delta_engine="delta-rs")
    append_rows(config, "pipeline_events", [{"query": "bronze", "batch_id": 0}])
    config.patient_salt()  # the key exists, as after any stream
    before = snapshot(config.root)
    assert COMMANDS_BY_NAME[argv[0]].read_only
    assert main([*argv, "--lakehouse", str(config.root), "--delta-engine", "delta-rs"]) == 0, capsys.readouterr()
    assert snapshot(config.root) == before


def test_read_only_commands_are_not_audited_and_creators_are_few():
    creators = {c.name for c in COMMANDS if c.creates_lakehouse}
    assert creators == {"stream", "watch", "ingest-kaggle", "ingest-folder", "demo", "bench"}
    assert not any(c.read_only and c.creates_lakehouse for c in COMMANDS)


# -- a lakehouse that is not there ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(c.name for c in COMMANDS if not c.creates_lakehouse))
def test_a_command_on_a_path_with_no_lakehouse_is_one_line_and_creates_nothing(tmp_path, capsys, no_spark, name):
    typo = tmp_path / "lakehuose"
    assert main([name, *MINIMAL_ARGUMENTS[name], "--lakehouse", str(typo)]) == 2
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert line.startswith(f"xray {name}: error: no lakehouse at {typo}; check --lakehouse")
    assert "xray stream" in line and captured.out == ""
    assert not typo.exists()


def test_creating_a_lakehouse_says_so_in_one_line(tmp_path, capsys):
    new = tmp_path / "new-lh"
    config = load_config(environ={}, lakehouse=str(new))
    args = build_parser().parse_args(["stream", "--once"])
    preflight(args, config, COMMANDS_BY_NAME["stream"])
    assert new.is_dir()
    assert one_line(capsys.readouterr().err) == f"xray stream: created a new lakehouse at {new.resolve()}"
    preflight(args, config, COMMANDS_BY_NAME["stream"])  # it exists now: nothing said
    assert capsys.readouterr().err == ""


def test_a_typo_in_lakehouse_is_answered_by_a_fresh_interpreter_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "streaming.cli", "status", "--lakehouse", str(tmp_path / "typo")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and result.stdout == ""
    assert one_line(result.stderr).startswith(f"xray status: error: no lakehouse at {tmp_path / 'typo'}")
    assert not (tmp_path / "typo").exists()


# -- mistyped commands and options -----------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "expected"), [
    (["stram"], "xray: error: no command 'stram'; did you mean 'xray stream'? (see xray --help)"),
    (["statsu"], "xray: error: no command 'statsu'; did you mean 'xray status'?"),
    (["frobnicate"], "xray: error: no command 'frobnicate'; the commands: stream, recover, watch,"),
    (["--once", "stream"], "xray: error: --once is an option of 'xray stream', not of xray itself: put it after "
                           "the command: xray stream --once ..."),
    (["--layer", "bronze", "stream"], "xray: error: --layer is an option of 'xray stream', not of xray itself"),
    (["stream", "--onse"], "xray stream: error: no option --onse; did you mean --once? (see xray stream --help)"),
    (["stream", "--json"], "xray stream: error: --json is an option of 'xray status', not of xray stream"),
    (["stream", "--layer", "bronz"], "xray stream: error: argument --layer: 'bronz' is not one of bronze, silver, "
                                     "gold, all; did you mean 'bronze'?"),
    ([], "xray: error: no command given; the commands: stream,"),
])
def test_a_mistyped_command_or_option_is_one_line_with_a_suggestion(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert one_line(captured.err).startswith(expected) and captured.out == ""


# -- refeature answers before Spark ----------------------------------------------------------------------
@pytest.fixture
def silver_image(tmp_path):
    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"), delta_engine="delta-rs")
    config.root.mkdir()
    append_rows(config, "silver_xray_metadata", [{"image_id": "a" * 64, "label": 0}])
    return config


def test_refeature_beside_a_running_stream_is_refused_before_spark(silver_image, capsys, no_spark):
    with stream_lock(silver_image.root):
        assert main(["refeature", "--lakehouse", str(silver_image.root)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("xray refeature: error: lakehouse") and "already being streamed by pid" in line


def test_refeature_with_nothing_stale_says_so_before_spark(silver_image, capsys, no_spark):
    from streaming.imaging.features import FEATURE_VERSION

    append_rows(silver_image, "silver_image_features", [{"image_id": "a" * 64, "feature_version": FEATURE_VERSION}])
    assert main(["refeature", "--lakehouse", str(silver_image.root)]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"xray refeature: error: nothing to refeature: every silver image with features has features of the "
        f"current version {FEATURE_VERSION}")

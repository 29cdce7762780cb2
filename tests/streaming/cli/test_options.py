"""Common options work before or after the subcommand, with the same effect; given in both places, the
one after the subcommand wins."""

from __future__ import annotations

import pytest

from streaming.cli.commands import build_parser, config_from_args, main

# option, a value, another value, the attribute argparse stores it in
COMMON = [
    ("--lakehouse", "/data/lh-a", "/data/lh-b", "lakehouse"),
    ("--config", "a.toml", "b.toml", "config"),
    ("--master", "local[1]", "local[2]", "master"),
    ("--delta-engine", "delta-rs", "delta-spark", "delta_engine"),
    ("--mlflow-tracking-uri", "sqlite:///a.db", "sqlite:///b.db", "mlflow_tracking_uri"),
    ("--log-level", "DEBUG", "ERROR", "log_level"),
]
COMMANDS = [["status"], ["retrain", "--seed", "3"], ["stream", "--once"], ["ingest-folder", "/data/in"]]


def parse(argv):
    return build_parser().parse_args(argv)


@pytest.mark.parametrize(("option", "value", "other", "attribute"), COMMON, ids=[c[0] for c in COMMON])
@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_common_option_before_and_after_the_subcommand_has_the_same_effect(option, value, other, attribute,
                                                                            command):
    before = parse([option, value, *command])
    after = parse([*command, option, value])
    assert getattr(before, attribute) == getattr(after, attribute) == value
    assert before.command == after.command == command[0]
    assert vars(before) == vars(after)


@pytest.mark.parametrize(("option", "value", "other", "attribute"), COMMON, ids=[c[0] for c in COMMON])
def test_given_before_and_after_the_later_one_wins(option, value, other, attribute):
    assert getattr(parse([option, value, "status", option, other]), attribute) == other


@pytest.mark.parametrize(("option", "value", "other", "attribute"), COMMON, ids=[c[0] for c in COMMON])
def test_common_option_not_given_is_none_in_either_position(option, value, other, attribute):
    assert getattr(parse(["status"]), attribute) is None
    assert getattr(parse([option, value, "status"]), attribute) == value  # not reset by the subparser


def test_options_before_the_subcommand_reach_the_configuration(tmp_path):
    args = parse(["--lakehouse", str(tmp_path / "lh"), "--master", "local[1]", "--delta-engine", "delta-rs",
                  "--log-level", "WARNING", "--mlflow-tracking-uri", "sqlite:///x.db", "status"])
    config = config_from_args(args)
    assert config.root == (tmp_path / "lh").resolve()
    assert (config.spark_master, config.delta_engine, config.log_level, config.mlflow_tracking_uri) == (
        "local[1]", "delta-rs", "WARNING", "sqlite:///x.db")


def test_status_uses_the_lakehouse_given_before_the_subcommand(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "elsewhere"
    target.mkdir()
    assert main(["--lakehouse", str(target), "--delta-engine", "delta-rs", "status"]) == 0
    out = capsys.readouterr().out
    assert f"xray status of {target}" in out
    assert not (tmp_path / "lakehouse").exists()  # never the default in the current folder


def test_a_bad_config_file_given_before_the_subcommand_is_reported(tmp_path, capsys):
    settings = tmp_path / "bad.toml"
    settings.write_text("unknown = 1\n")
    assert main(["--config", str(settings), "status"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("xray status: error: unknown config key 'unknown'")
    assert len(error.splitlines()) == 1


def test_help_says_where_common_options_go_and_lists_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "before or after COMMAND" in text and "the one after COMMAND wins" in text
    for code in ("0 ", "1 ", "2 ", "130", "143"):
        assert f"  {code}" in text


def test_version(capsys):
    from streaming.cli.exits import package_version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    version, engine = capsys.readouterr().out.strip().splitlines()
    assert version == f"xray {package_version()}"
    assert package_version()[0].isdigit()
    assert engine.startswith("delta engine: ")


def test_version_says_which_delta_engine_and_why(capsys, monkeypatch, tmp_path):
    """Pinned to delta-rs; auto without the jars (an empty cache: delta-rs, and how to add them); auto
    with them (native, and where they are)."""
    from streaming.lakehouse.deltajars import COMPLETE, delta_jars

    def engine_line(*argv):
        with pytest.raises(SystemExit):
            main([*argv, "--version"])
        return capsys.readouterr().out.strip().splitlines()[1]

    assert engine_line("--delta-engine", "delta-rs") == "delta engine: delta-rs (delta_engine = delta-rs)"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("XRAY_DELTA_ENGINE")  # the suite's default (tests/conftest.py): back to auto
    line = engine_line()
    assert line.startswith("delta engine: delta-rs (delta_engine = auto: delta-rs in a session built here")
    assert "no Delta Lake jars: run ./setup.sh" in line and str(delta_jars().folder) in line
    assert "requested but no Delta Lake jars" in engine_line("--delta-engine", "delta-spark")
    delta_jars().folder.mkdir(parents=True)
    (delta_jars().folder / "delta-spark.jar").write_bytes(b"")
    assert "no Delta Lake jars" in engine_line()  # no COMPLETE marker: a fetch that did not finish
    (delta_jars().folder / COMPLETE).write_text("")
    assert "jars cached in" in engine_line()
    assert engine_line("--delta-engine", "delta-spark").startswith(
        "delta engine: delta-spark (delta_engine = delta-spark; Delta Lake ")


def test_version_falls_back_to_setup_cfg_when_not_installed(monkeypatch):
    from importlib import metadata

    from streaming.cli import exits

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    import configparser
    from pathlib import Path

    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(Path(exits.__file__).resolve().parents[2] / "setup.cfg")
    monkeypatch.setattr(exits.metadata, "version", not_installed)
    assert exits.package_version() == setup_cfg.get("metadata", "version")

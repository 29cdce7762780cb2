"""Configuration precedence and errors, the Java check, and the CLI's error handling (no Spark needed)."""

from __future__ import annotations

import pytest

from streaming.cli.commands import build_parser, main
from streaming.core.config import load_config
from streaming.core.errors import ConfigError, JavaMissingError
from streaming.lakehouse.session import check_java


def test_defaults_and_derived_locations(tmp_path):
    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"))
    assert config.spark_master == "local[*]" and config.delta_engine == "auto"
    assert config.table_path("bronze_xray_images") == tmp_path / "lh" / "tables" / "bronze_xray_images"
    assert config.landing_dir == tmp_path / "lh" / "landing"
    assert config.checkpoint_path("silver") == tmp_path / "lh" / "checkpoints" / "silver"
    assert config.tracking_uri == f"sqlite:///{tmp_path / 'lh' / 'mlflow' / 'mlflow.db'}"


def test_precedence_file_then_environment_then_options(tmp_path):
    settings = tmp_path / "xray.toml"
    settings.write_text('trigger_seconds = 3.5\nmax_files_per_trigger = 10\nlakehouse = "from-file"\n'
                        '[spark_conf]\n"spark.driver.memory" = "3g"\n')
    environ = {"XRAY_CONFIG": str(settings), "XRAY_MAX_FILES_PER_TRIGGER": "20", "XRAY_LAKEHOUSE": "from-env"}
    config = load_config(environ=environ, lakehouse=str(tmp_path / "from-option"))
    assert config.trigger_seconds == 3.5  # file
    assert config.max_files_per_trigger == 20  # environment beats file
    assert config.lakehouse == tmp_path / "from-option"  # option beats environment
    assert config.spark_conf == {"spark.driver.memory": "3g"}


def test_yaml_file_and_xray_table(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("xray:\n  clean_source: archive\n  spark_ui: true\n")
    config = load_config(config_file=settings, environ={})
    assert config.clean_source == "archive" and config.spark_ui is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("no_such_key = 1\n", "unknown config key 'no_such_key'"),
        ("max_files_per_trigger = 'many'\n", "invalid 'max_files_per_trigger'"),
        ("trigger_seconds = -1\n", "invalid 'trigger_seconds'"),
        ("delta_engine = 'duckdb'\n", "expected one of auto, delta-rs, delta-spark"),
        ("spark_ui = 'maybe'\n", "invalid 'spark_ui'"),
        ("this is not toml\n", "cannot parse config file"),
    ],
)
def test_invalid_file_values_name_the_key(tmp_path, content, message):
    settings = tmp_path / "xray.toml"
    settings.write_text(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(config_file=settings, environ={})
    assert "\n" not in str(raised.value)


def test_invalid_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match=r"\$XRAY_SHUFFLE_PARTITIONS"):
        load_config(environ={"XRAY_SHUFFLE_PARTITIONS": "four"})


def test_lakehouse_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        load_config(environ={}, lakehouse=str(blocker))


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "absent.toml", environ={})


def test_patient_salt_is_generated_once_and_private(tmp_path):
    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"))
    salt = config.patient_salt()
    assert salt == config.patient_salt() and len(salt) == 32
    salt_file = tmp_path / "lh" / "_secrets" / "patient_id_salt"
    assert oct(salt_file.stat().st_mode & 0o777) == "0o600"
    assert load_config(environ={}, lakehouse=str(tmp_path / "lh"), patient_id_salt="fixed").patient_salt() == "fixed"
    assert sorted(p.name for p in salt_file.parent.iterdir()) == ["patient_id_salt"]  # no temporary left


def test_an_empty_key_file_is_a_named_error_not_a_new_key(tmp_path):
    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"))
    salt_file = tmp_path / "lh" / "_secrets" / "patient_id_salt"
    salt_file.parent.mkdir(parents=True)
    salt_file.write_text("")  # what a full disk once left behind
    with pytest.raises(ConfigError, match="is empty; restore it from a backup"):
        config.patient_salt()
    assert salt_file.read_text() == "", "the damaged key is not replaced silently (pseudonyms would not join)"


def test_java_check_says_how_to_install(tmp_path, monkeypatch):
    fake_home = tmp_path / "jdk"
    (fake_home / "bin").mkdir(parents=True)
    java = fake_home / "bin" / "java"
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(fake_home))
    with pytest.raises(JavaMissingError, match="Java 11 found.*apt-get install -y openjdk-17-jre-headless"):
        check_java()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaMissingError, match="no Java runtime found"):
        check_java()


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    settings = tmp_path / "bad.toml"
    settings.write_text("unknown = 1\n")
    assert main(["status", "--config", str(settings)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("xray status: error: unknown config key 'unknown'")
    assert len(error.splitlines()) == 1


def test_common_options_are_accepted_after_the_subcommand():
    args = build_parser().parse_args(["retrain", "--lakehouse", "/x", "--delta-engine", "delta-rs", "--seed", "3"])
    assert (args.command, args.lakehouse, args.delta_engine, args.seed) == ("retrain", "/x", "delta-rs", 3)
    layers = build_parser().parse_args(["stream", "--layer", "bronze", "--layer", "silver"]).layer
    assert layers == ["bronze", "silver"]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("stream", "watch", "ingest-kaggle", "ingest-folder", "retrain", "metrics", "rescore",
                    "status", "demo", "bench"):
        assert command in text


def test_alert_settings_from_the_environment_and_a_bad_webhook_url_is_not_echoed(tmp_path):
    environ = {"XRAY_ALERT_WEBHOOK_URL": "https://hooks.example.com/T1/secret", "XRAY_DRIFT_PSI_THRESHOLD": "0.3"}
    config = load_config(environ=environ, lakehouse=str(tmp_path / "lh"))
    assert (config.alert_webhook_url, config.drift_psi_threshold) == ("https://hooks.example.com/T1/secret", 0.3)
    with pytest.raises(ConfigError, match="alert_webhook_url") as error:
        load_config(environ={"XRAY_ALERT_WEBHOOK_URL": "hooks.example.com/T1/secret"}, lakehouse=str(tmp_path))
    assert "secret" not in str(error.value)
    with pytest.raises(ConfigError, match="alert_quarantine_rate"):
        load_config(environ={}, lakehouse=str(tmp_path), alert_quarantine_rate=1.5)
    with pytest.raises(ConfigError, match="drift_min_images"):
        load_config(environ={}, lakehouse=str(tmp_path), drift_window_images=50, drift_min_images=100)

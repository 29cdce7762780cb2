"""The lakehouse key is made for a new lakehouse only: once tables exist, a deleted or different key makes
every command refuse with one line naming the file to restore, never a second ``patient_id`` for the same
patient. Real Delta tables (delta-rs), the real `xray` entry point; no Spark (refused before it starts)."""

from __future__ import annotations

import pytest

from streaming.cli.commands import main
from streaming.core.config import load_config
from streaming.core.errors import ConfigError
from streaming.core.lakehousekey import FINGERPRINT_FILE, KEY_FILE, fingerprint
from streaming.core.pseudonym import patient_ref
from streaming.lakehouse.direct import append_rows

COMMANDS = (["stream", "--once"], ["status"], ["sql", "SELECT 1"], ["feedback", "--image-id", "a" * 64,
            "--label", "NORMAL", "--reader", "Dr A"], ["retrain"], ["recover"], ["maintain"])


@pytest.fixture
def written(config):
    """A lakehouse whose silver holds a patient pseudonymised with its key; returns (config, that id)."""
    config.root.mkdir(parents=True)
    key = config.patient_salt()
    patient = patient_ref("person123", key)
    append_rows(config, "silver_xray_metadata", [{"image_id": "a" * 64, "patient_id": patient}])
    assert config.patient_salt() == key  # the first use where tables are: the fingerprint is written
    assert (config.root / FINGERPRINT_FILE).read_text() == fingerprint(key)
    return config, patient


def refused_everywhere(root, capsys, *options: str) -> None:
    for command in COMMANDS:
        code = main([*command, "--lakehouse", str(root), *options])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 2, (command, captured.err)
        assert len(lines) == 1 and "restore" in lines[0] and str(root / KEY_FILE) in lines[0], (command, lines)
        assert "Traceback" not in captured.err + captured.out


def test_a_deleted_key_is_refused_by_every_command_never_made_again(written, capsys):
    config, patient = written
    (config.root / KEY_FILE).unlink()
    refused_everywhere(config.root, capsys)
    assert not (config.root / KEY_FILE).exists(), "no new key: the same patient would get a second patient_id"
    with pytest.raises(ConfigError, match="is missing but the tables .* hold data"):
        config.patient_salt()


def test_a_replaced_key_is_refused_by_its_fingerprint(written, capsys):
    config, _ = written
    (config.root / KEY_FILE).write_text("0" * 32)
    refused_everywhere(config.root, capsys)
    with pytest.raises(ConfigError, match="not the key the tables .* were written with"):
        config.patient_salt()


def test_a_configured_key_other_than_the_tables_is_refused(written, capsys):
    config, _ = written
    refused_everywhere(config.root, capsys, "--config", str(_toml(config.root.parent, "other-key")))


def test_the_restored_key_works_again(written):
    config, patient = written
    key = (config.root / KEY_FILE).read_text()
    (config.root / KEY_FILE).unlink()
    with pytest.raises(ConfigError):
        load_config(environ={}, lakehouse=str(config.root))
    (config.root / KEY_FILE).write_text(key)  # restored from the backup
    assert patient_ref("person123", load_config(environ={}, lakehouse=str(config.root)).patient_salt()) == patient


def test_a_lakehouse_from_before_the_fingerprint_adopts_its_key(written):
    config, _ = written
    (config.root / FINGERPRINT_FILE).unlink()
    key = config.patient_salt()
    assert (config.root / FINGERPRINT_FILE).read_text() == fingerprint(key)


def test_a_lakehouse_without_tables_gets_a_new_key(config):
    first = config.patient_salt()
    (config.root / "tables").mkdir()
    assert config.patient_salt() == first
    assert (config.root / FINGERPRINT_FILE).read_text() == fingerprint(first)
    (config.root / KEY_FILE).unlink()  # lost before any data: nothing joins by it yet
    second = config.patient_salt()
    assert second != first and (config.root / FINGERPRINT_FILE).read_text() == fingerprint(second)


def _toml(folder, salt: str):
    path = folder / "other.toml"
    path.write_text(f'patient_id_salt = "{salt}"\n')
    return path


def test_a_lakehouse_from_before_the_fingerprint_refuses_a_deleted_key(written, capsys):
    config, _ = written
    (config.root / FINGERPRINT_FILE).unlink()
    (config.root / KEY_FILE).unlink()  # its folder stays: a key was made here
    refused_everywhere(config.root, capsys)
    assert not (config.root / KEY_FILE).exists()


def test_threads_asking_for_the_key_at_once_all_get_the_one_key(config):
    """Concurrent C-STORE handlers of `xray receive` each ask for the key on a new lakehouse (CI: one thread's
    link of the fingerprint failed with ENOENT, its temporary file removed by another thread)."""
    import threading

    (config.root / "tables").mkdir(parents=True)
    start, keys, errors = threading.Barrier(16), [], []

    def ask() -> None:
        start.wait()
        for _ in range(20):
            try:
                keys.append(config.patient_salt())
            except Exception as error:  # any failure of a thread is the finding
                errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(keys)) == 1 and len(keys) == 320
    assert (config.root / FINGERPRINT_FILE).read_text() == fingerprint(keys[0])
    assert not [p.name for p in config.root.rglob("*.tmp")]

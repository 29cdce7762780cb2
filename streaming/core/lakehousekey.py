"""The lakehouse key (HMAC key of every pseudonym, `streaming.core.pseudonym`): made for a new lakehouse only.

A key made again for a lakehouse that holds tables would silently give the same patient a second
``patient_id`` (and every file a second ``path_ref``): joins by patient, the patient-grouped split and
``xray forget`` would miss rows. So once tables exist a missing or different key is an error naming the
file to restore, never a new identity.

"Different" is told by the key's fingerprint, a keyed hash of a constant (it reveals nothing of the key),
written beside the tables (``<root>/_key_fingerprint``) when the key is first used where tables are. A
lakehouse made before the fingerprint gets it on the first use of its key. "Tables exist" means a table holds a data file:
a first start creates every table empty, before anything needs the key.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from streaming.core.errors import ConfigError
from streaming.core.pseudonym import keyed_hash

__all__ = ["FINGERPRINT_FILE", "KEY_FILE", "check_key", "fingerprint", "lakehouse_key"]

KEY_FILE = Path("_secrets") / "patient_id_salt"
FINGERPRINT_FILE = Path("_key_fingerprint")  # at the root: the tables folder holds tables only


def fingerprint(key: str) -> str:
    """What tells one key from another without revealing it: the key's HMAC of a fixed text."""
    return keyed_hash(key, "fingerprint", "xray-lakehouse key")


def lakehouse_key(root: Path, configured: str = "") -> str:
    """The key (``configured``: the ``patient_id_salt`` setting, else the key file), checked against the
    tables' fingerprint; a new key is made only while no table holds data."""
    key_file = root / KEY_FILE
    key = configured or _read(key_file)
    if not key and key_file.exists():
        key = _read(key_file)  # made whole by another process or thread since the read above
        if not key:  # what a full disk once left behind: never replaced silently
            raise ConfigError(f"the lakehouse key {key_file} is empty; restore it from a backup of the lakehouse "
                              "(without it, pseudonyms no longer join); if the lakehouse holds no data yet, "
                              "delete the file and a new key is made")
    if not key:
        if _key_was_made(root) and _holds_data(root):
            raise _missing(root, key_file)
        from streaming.core.permissions import SECRETS_MODE, secure_directory

        secure_directory(key_file.parent, SECRETS_MODE, "lakehouse key folder")
        _create_file(key_file, secrets.token_hex(16))
        key = _read(key_file)
    stored_file = root / FINGERPRINT_FILE
    stored = _read(stored_file)
    if stored != fingerprint(key):
        if stored and _holds_data(root):
            raise _changed(root, configured)
        if (root / "tables").is_dir():  # where tables are made: the key they are written with from now on
            stored_file.unlink(missing_ok=True)
            _create_file(stored_file, fingerprint(key))
    return key


def check_key(root: Path, configured: str = "") -> None:
    """At every command's start: a lakehouse whose tables hold data refuses a missing or different key
    (one line). Creates and writes nothing; a key this user may not read (a group reader) is not checked
    here (the commands that need it say so)."""
    if not _holds_data(root):
        return
    key_file = root / KEY_FILE
    if not configured and not _key_was_made(root):
        return  # rows written without a key (by hand, a test): nothing pseudonymised to protect
    key = configured
    if not key:
        try:
            key = key_file.read_text().strip()
        except FileNotFoundError:
            raise _missing(root, key_file) from None
        except OSError:  # PermissionError: the key is the owner's
            return
        if not key:
            raise _missing(root, key_file, "empty")
    stored = _read(root / FINGERPRINT_FILE)
    if stored and stored != fingerprint(key):
        raise _changed(root, configured)


def _changed(root: Path, configured: str) -> ConfigError:
    where = "the configured patient_id_salt" if configured else f"the lakehouse key {root / KEY_FILE}"
    return ConfigError(
        f"{where} is not the key the tables under {root / 'tables'} were written with (its fingerprint differs "
        f"from {root / FINGERPRINT_FILE}); restore {root / KEY_FILE} from a backup of the lakehouse"
        + (" and remove patient_id_salt from the configuration" if configured else "")
        + " (a new key would give every patient a second patient_id)")


def _missing(root: Path, key_file: Path, state: str = "missing") -> ConfigError:
    return ConfigError(
        f"the lakehouse key {key_file} is {state} but the tables under {root / 'tables'} hold data written with "
        f"it; restore {key_file} from a backup of the lakehouse (a new key would give every patient a second "
        "patient_id)")


def _key_was_made(root: Path) -> bool:
    """A key was made here once: its fingerprint, or its folder (deleting the key file leaves the folder)."""
    return (root / FINGERPRINT_FILE).exists() or (root / KEY_FILE).parent.is_dir()


def _holds_data(root: Path) -> bool:
    """Whether any table holds a data file: tables created empty (a first start) pseudonymised nothing yet."""
    try:
        tables = [entry for entry in (root / "tables").iterdir() if (entry / "_delta_log").is_dir()]
    except OSError:  # no tables folder yet (or not ours to list)
        return False
    return any(next((f for f in table.rglob("*.parquet") if "_delta_log" not in f.parts), None) is not None
               for table in tables)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _create_file(path: Path, text: str) -> None:
    """Write a new file whole or not at all: written and synced under a temporary name, then linked to its
    name (a full disk never leaves an empty key; of two processes or threads creating it, the first link
    wins). The temporary name is the caller's own: threads of one process (concurrent C-STORE handlers of
    `xray receive`) once shared one, and a thread's link found it removed by another."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process made it first: every process uses that one
    finally:
        temporary.unlink(missing_ok=True)

"""The lakehouse key (HMAC key of every pseudonym, `streaming.core.pseudonym`): made for a new lakehouse only.

A key made again for a lakehouse that holds tables would silently give the same patient a second
``patient_id`` (and every file a second ``path_ref``): joins by patient, the patient-grouped split and
``xray forget`` would miss rows. So once tables exist a missing or different key is an error naming the
file to restore, never a new identity.

"Different" is told by the key's fingerprint, a keyed hash of a constant (it reveals nothing of the key),
written beside the tables (``tables/_key_fingerprint``) when the key is first used there. A lakehouse made
before the fingerprint gets it on the first use of its key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from streaming.core.errors import ConfigError
from streaming.core.pseudonym import keyed_hash

__all__ = ["FINGERPRINT_FILE", "KEY_FILE", "check_key", "fingerprint", "lakehouse_key"]

KEY_FILE = Path("_secrets") / "patient_id_salt"
FINGERPRINT_FILE = Path("tables") / "_key_fingerprint"


def fingerprint(key: str) -> str:
    """What tells one key from another without revealing it: the key's HMAC of a fixed text."""
    return keyed_hash(key, "fingerprint", "xray-lakehouse key")


def lakehouse_key(root: Path, configured: str = "") -> str:
    """The key (``configured``: the ``patient_id_salt`` setting, else the key file), checked against the
    tables' fingerprint; a new key is made only when the lakehouse holds no table yet."""
    key_file = root / KEY_FILE
    key = configured or _read(key_file)
    if not key:
        if key_file.exists():  # what a full disk once left behind: never replaced silently
            raise ConfigError(f"the lakehouse key {key_file} is empty; restore it from a backup of the lakehouse "
                              "(without it, pseudonyms no longer join); if the lakehouse holds no data yet, "
                              "delete the file and a new key is made")
        if _holds_tables(root):
            raise _missing(root, key_file)
        from streaming.core.permissions import SECRETS_MODE, secure_directory

        secure_directory(key_file.parent, SECRETS_MODE, "lakehouse key folder")
        _create_file(key_file, secrets.token_hex(16))
        key = _read(key_file)
        # A fingerprint without tables (a key made, then lost, before any data): the new key is the key.
        (root / FINGERPRINT_FILE).unlink(missing_ok=True)
    _check_fingerprint(root, key, configured, create=True)
    return key


def check_key(root: Path, configured: str = "") -> None:
    """At every command's start: a lakehouse holding tables refuses a missing or different key (one line).
    Creates and writes nothing; a key this user may not read (a group reader) is not checked here."""
    if not _holds_tables(root):
        return
    key_file = root / KEY_FILE
    if not configured:
        try:
            key = key_file.read_text().strip()
        except FileNotFoundError:
            raise _missing(root, key_file) from None
        except OSError:  # PermissionError: the key is the owner's; commands that need it will say so
            return
        if not key:
            raise _missing(root, key_file, "empty")
    _check_fingerprint(root, configured or key, configured, create=False)


def _check_fingerprint(root: Path, key: str, configured: str, create: bool) -> None:
    stored_file = root / FINGERPRINT_FILE
    stored = _read(stored_file)
    if not stored:
        if create and stored_file.parent.is_dir():  # the first use of the key where tables are made
            _create_file(stored_file, fingerprint(key))
        return
    if stored != fingerprint(key):
        where = ("the configured patient_id_salt" if configured else f"the lakehouse key {root / KEY_FILE}")
        raise ConfigError(
            f"{where} is not the key the tables under {root / 'tables'} were written with (its fingerprint "
            f"differs from {stored_file}); restore {root / KEY_FILE} from a backup of the lakehouse"
            + (" and remove patient_id_salt from the configuration" if configured else "")
            + " (a new key would give every patient a second patient_id)")


def _missing(root: Path, key_file: Path, state: str = "missing") -> ConfigError:
    return ConfigError(
        f"the lakehouse key {key_file} is {state} but {root / 'tables'} holds tables written with it; "
        f"restore {key_file} from a backup of the lakehouse (a new key would give every patient a second "
        "patient_id)")


def _holds_tables(root: Path) -> bool:
    try:
        return any((entry / "_delta_log").is_dir() for entry in (root / "tables").iterdir())
    except OSError:  # no tables folder yet (or not ours to list)
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _create_file(path: Path, text: str) -> None:
    """Write a new file whole or not at all: written and synced under a temporary name, then linked to its
    name (a full disk never leaves an empty key; of two processes creating it, the first link wins)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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

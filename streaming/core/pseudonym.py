"""Pseudonymous references: keyed hashes of paths, patient identifiers and radiologists (readers).

Landing file names encode patient identifiers (``person123_bacteria_456.jpeg``, ``IM-0115-0001.jpeg``).
Bronze, the raw layer, keeps the path; every other table, event and INFO log line carries ``path_ref``
instead. A plain SHA-256 of a path would not protect it (identifiers are short and guessable: hash every
candidate name and compare), so the hashes are HMAC-SHA256 keyed with the lakehouse's secret
(`XrayConfig.patient_salt`, kept under ``<root>/_secrets/``). Each kind of value has its own domain prefix
so a path and a patient identifier never hash alike.

Runs on executors too: pure functions of (key, value), no state.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SHORT_REF_LENGTH", "keyed_hash", "path_ref", "patient_ref", "reader_ref", "short_ref"]

SHORT_REF_LENGTH = 12  # enough to tell a handful of files apart in a message; the full ref joins tables


def keyed_hash(key: str, domain: str, value: str) -> str:
    """HMAC-SHA256, hex, of ``value`` under ``key``, prefixed by ``domain`` (``"path"``, ``"patient"``)."""
    if not key:
        raise ValueError("keyed_hash needs a non-empty key (XrayConfig.patient_salt())")
    return hmac.new(key.encode(), f"{domain}:{value}".encode(), hashlib.sha256).hexdigest()


def path_ref(path: str | None, key: str) -> str | None:
    """The pseudonymous reference of a landing path (bronze's ``path`` column, as stored there)."""
    return None if path is None else keyed_hash(key, "path", path)


def patient_ref(patient_key: str | None, key: str) -> str | None:
    """The pseudonymous patient id (silver's ``patient_id``): stable within a lakehouse, None without one."""
    return keyed_hash(key, "patient", patient_key) if patient_key else None


def reader_ref(reader: str, key: str) -> str:
    """The pseudonymous radiologist (``gold_radiologist_feedback.reader_id``). Case and runs of blanks do
    not count ("Dr  Smith" is "dr smith"): the same reader typed twice is one reader."""
    name = " ".join(reader.split()).casefold()
    if not name:
        raise ValueError("reader_ref needs a non-empty reader name")
    return keyed_hash(key, "reader", name)


def short_ref(ref: str | None) -> str:
    """A path ref shortened for messages and logs (look the full one up with ``path_ref LIKE 'abc%'``)."""
    return (ref or "?")[:SHORT_REF_LENGTH]

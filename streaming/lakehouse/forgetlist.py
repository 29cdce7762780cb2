"""The forget list (``forget_list``): keyed hashes of the patients `xray forget` erased, and the content
SHA-256 of their erased files (from the erasure journals, `streaming.lakehouse.erasures`).

The stream reads both at every micro-batch, so a file of an erased patient that arrives later, or a copy of
an erased file under any name, is refused: it is never written to bronze and is quarantined under
``patient_not_forgotten`` (see `streaming.silver.expectations`). Only keyed hashes are kept: the list cannot
be read back into names without the lakehouse's key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streaming.core.config import XrayConfig
from streaming.lakehouse.catalog import FORGET_LIST
from streaming.lakehouse.erasures import erased_contents

__all__ = ["KEYED_HASH", "Forgotten", "forgotten_patients", "is_keyed_hash", "read_forget_list"]

KEYED_HASH = re.compile(r"[0-9a-f]{64}")  # HMAC-SHA256, hex: what silver's patient_id holds


def is_keyed_hash(value: str) -> bool:
    """Whether a value is already a keyed hash (``patient_id`` as silver shows it) rather than a raw identifier."""
    return bool(KEYED_HASH.fullmatch(value))


def forgotten_patients(config: XrayConfig) -> frozenset[str]:
    """The patient refs on the forget list (empty when nobody was ever forgotten: no table yet)."""
    from deltalake import DeltaTable

    path = str(config.table_path(FORGET_LIST.name))
    if not DeltaTable.is_deltatable(path):
        return frozenset()
    refs = DeltaTable(path).to_pyarrow_table(columns=["patient_ref"]).column("patient_ref").to_pylist()
    return frozenset(ref for ref in refs if ref and is_keyed_hash(ref))  # the rule quotes them in SQL


@dataclass(frozen=True)
class Forgotten:
    """What a micro-batch refuses: files of these patients (keyed hashes) and files with these contents."""

    patients: frozenset[str] = frozenset()
    contents: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.patients or self.contents)


def read_forget_list(config: XrayConfig) -> Forgotten:
    """The forget list as a micro-batch reads it (before it reads any file)."""
    return Forgotten(forgotten_patients(config), erased_contents(config))

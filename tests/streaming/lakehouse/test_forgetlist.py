"""The forget list as the stream reads it (streaming/lakehouse/forgetlist.py)."""

from __future__ import annotations

import datetime as dt

from streaming.core.pseudonym import patient_ref
from streaming.lakehouse.direct import append_rows
from streaming.lakehouse.forgetlist import forgotten_patients, is_keyed_hash


def test_no_table_means_nobody_is_forgotten(config):
    assert forgotten_patients(config) == frozenset()


def test_only_keyed_hashes_are_read_back(config):
    ref = patient_ref("person1", "k")
    now = dt.datetime.now(dt.timezone.utc)
    append_rows(config, "forget_list", [{"patient_ref": ref, "requested_time": now},
                                        {"patient_ref": "x' OR 'a'='a", "requested_time": now},
                                        {"patient_ref": None, "requested_time": now}])
    # Anything else in the table (written by hand) never reaches the stream's SQL rule.
    assert forgotten_patients(config) == frozenset({ref})
    assert is_keyed_hash(ref) and not is_keyed_hash(ref.upper()) and not is_keyed_hash("person1")

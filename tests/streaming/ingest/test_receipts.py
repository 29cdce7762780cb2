"""``dicom_receipts`` and the RECEIVED section of `xray status`: what the receiver was sent, keyed hashes only."""

from __future__ import annotations

import dataclasses
import datetime as dt

from deltalake import DeltaTable
from dicomfiles import radiograph
from dicomscu import dataset, scu, send

from streaming.core.pseudonym import keyed_hash
from streaming.imaging.dicomwrite import DicomSpec, dicom_bytes
from streaming.ingest.receive import SUCCESS, DicomReceiver, receive_address
from streaming.ops.receipts import receipts_lines, receipts_status


def test_receipts_record_instances_and_refusals_as_keyed_hashes(config):
    config = dataclasses.replace(config, receive_calling_aes=("PACS",), receive_host="127.0.0.1")
    study_a, study_b = "1.2.826.0.1.3680043.10.77.1", "1.2.826.0.1.3680043.10.77.2"
    datasets = [dataset(dicom_bytes(radiograph(i), DicomSpec(extra={"StudyInstanceUID": study})))
                for i, study in enumerate((study_a, study_a, study_b))]
    receiver = DicomReceiver(config, receive_address(config, port=0))
    receiver.start()
    try:
        assert send(receiver.port, [*datasets, datasets[0]], calling_ae="PACS") == [SUCCESS] * 4
        assert scu("STRANGER").associate("127.0.0.1", receiver.port, ae_title="XRAY").is_rejected
    finally:
        receiver.stop()  # flushes the receipts
    rows = DeltaTable(str(config.table_path("dicom_receipts"))).to_pyarrow_table().to_pylist()
    assert sorted(row["outcome"] for row in rows) == ["duplicates", "refused", "stored", "stored", "stored"]
    salt = config.patient_salt()
    instances = [row for row in rows if row["outcome"] != "refused"]
    assert {row["study_ref"] for row in instances} == {keyed_hash(salt, "study", study_a),
                                                       keyed_hash(salt, "study", study_b)}
    assert {row["calling_ae_ref"] for row in rows} >= {keyed_hash(salt, "calling_ae", "PACS")}
    assert len({row["association_id"] for row in instances}) == 1
    assert all(row["size_bytes"] > 1000 and row["status"] == SUCCESS for row in instances)
    raw = {study_a, study_b, "PACS", "STRANGER", *(ds.SOPInstanceUID for ds in datasets)}
    assert not raw & {str(value) for row in rows for value in row.values()}

    last = max(row["receipt_time"] for row in rows)
    arriving = receipts_status(config, last + dt.timedelta(seconds=1))
    assert (arriving["studies_received"], arriving["studies_arriving"]) == (0, 2)
    idle = last + dt.timedelta(seconds=config.study_idle_seconds + 1)
    received = receipts_status(config, idle)
    assert (received["studies_received"], received["studies_arriving"]) == (2, 0)
    assert (received["associations"], received["refused"], received["stored"], received["duplicates"]) == (1, 1, 3, 1)
    lines = receipts_lines({"received": received, "study_idle_seconds": config.study_idle_seconds})
    assert lines[0].startswith("RECEIVED") and "3 stored, 1 already held" in lines[1]
    assert "2 received, 0 still arriving" in lines[2]
    assert receipts_lines({"received": None}) == []
    assert receipts_status(config, idle + dt.timedelta(days=2))["stored"] == 0  # outside the last 24 h


def test_no_section_before_anything_was_received(config):
    from streaming.lakehouse.catalog import DICOM_RECEIPTS
    from streaming.lakehouse.direct import create_table

    now = dt.datetime.now(dt.timezone.utc)
    assert receipts_status(config, now) is None  # no table
    create_table(str(config.table_path("dicom_receipts")), DICOM_RECEIPTS)  # as the stream creates it: empty
    assert receipts_status(config, now) is None

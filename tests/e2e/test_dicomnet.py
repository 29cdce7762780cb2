"""DICOM both ways, end to end: radiographs pushed by C-STORE (two labelled modalities, with resends) and by
STOW-RS (dicomweb-client) reach bronze, silver and gold exactly once each; then `send-results` files one
Structured Report per scored image at a checking SCP, and a second run sends none."""

from __future__ import annotations

import dataclasses
import io

import pydicom
import pytest
from dicomfiles import radiograph
from dicomscu import dataset, send
from dicomweb_client.api import DICOMwebClient
from support import table_rows

from streaming.core.config import load_config
from streaming.imaging.dicomwrite import DicomSpec, dicom_bytes
from streaming.ingest.dicomland import LabelRules
from streaming.ingest.receive import STORAGE_SOP_CLASSES, SUCCESS, DicomReceiver, receive_address
from streaming.ingest.stow import start_stow
from streaming.pipeline.service import run_stream

PER_CLASS = 16


def _radiographs(label: str, offset: int) -> list[pydicom.Dataset]:
    return [dataset(dicom_bytes(radiograph(offset + i, label=label), DicomSpec(patient_id=f"P{offset + i}")))
            for i in range(PER_CLASS)]


@pytest.fixture(scope="module")
def received(spark, tmp_path_factory):
    from batch.training.retrain import retrain

    root = tmp_path_factory.mktemp("dicomnet")
    config = load_config(environ={}, lakehouse=str(root / "lakehouse"), spark_master="local[2]", shuffle_partitions=2,
                         receive_port=0, receive_labels={"WARD_N": "train/NORMAL", "WARD_P": "train/PNEUMONIA"},
                         stow_token="token")
    normal, sick = _radiographs("NORMAL", 0), _radiographs("PNEUMONIA", 100)
    unlabelled = [dataset(dicom_bytes(radiograph(200 + i), DicomSpec(patient_id=f"U{i}"))) for i in range(6)]
    receiver = DicomReceiver(config, receive_address(config))
    receiver.start()
    stow = start_stow(config, LabelRules(config), set(STORAGE_SOP_CLASSES))
    try:
        assert send(receiver.port, normal + normal[:4], calling_ae="WARD_N") == [SUCCESS] * (PER_CLASS + 4)
        assert send(receiver.port, sick, calling_ae="WARD_P") == [SUCCESS] * PER_CLASS
        client = DICOMwebClient(url=f"http://127.0.0.1:{stow.server_address[1]}",
                                headers={"Authorization": "Bearer token"})
        assert len(client.store_instances(unlabelled).ReferencedSOPSequence) == 6
        run_stream(spark, config, once=True)
        # More arrive (and are resent) while the stream has already run once.
        assert send(receiver.port, sick[:5], calling_ae="WARD_P") == [SUCCESS] * 5
        assert len(client.store_instances(unlabelled[:2]).ReferencedSOPSequence) == 2
    finally:
        receiver.stop()
        stow.shutdown()
        stow.server_close()
    retrain(spark, config)
    run_stream(spark, config, once=True)  # gold scores what waited for a champion
    return config, {ds.SOPInstanceUID: ds for ds in normal + sick + unlabelled}


def test_each_instance_is_in_bronze_silver_and_gold_exactly_once(received):
    config, instances = received
    bronze = table_rows(config, "bronze_xray_images", ["file_name", "content", "label"])
    assert sorted(row["file_name"] for row in bronze) == sorted(f"{uid}.dcm" for uid in instances)
    uids = [pydicom.dcmread(io.BytesIO(row["content"]), stop_before_pixels=True).SOPInstanceUID for row in bronze]
    assert sorted(uids) == sorted(instances)
    assert sum(row["label"] == "PNEUMONIA" for row in bronze) == PER_CLASS
    silver = table_rows(config, "silver_xray_metadata", ["image_id", "instance_ref"])
    assert len(silver) == len(instances) == len({row["instance_ref"] for row in silver})
    gold = table_rows(config, "gold_pneumonia_predictions", ["image_id", "model_version"])
    assert sorted(row["image_id"] for row in gold) == sorted(row["image_id"] for row in silver)


def test_one_report_per_scored_image_reaches_the_pacs_once(received):
    from pynetdicom import AE, evt

    from streaming.gold.srdocument import NOT_FOR_DIAGNOSIS, SR_SOP_CLASS
    from streaming.ops.sendresults import send_results

    config, instances = received
    reports: list[pydicom.Dataset] = []
    pacs = AE(ae_title="PACS")
    pacs.add_supported_context(SR_SOP_CLASS)
    server = pacs.start_server(("127.0.0.1", 0), block=False,
                               evt_handlers=[(evt.EVT_C_STORE, lambda event: reports.append(event.dataset) or 0)])
    destination = f"PACS@127.0.0.1:{server.server_address[1]}"
    try:
        assert send_results(config, destination).sent == len(instances)
        assert send_results(dataclasses.replace(config, results_destination=destination)).sent == 0
    finally:
        server.shutdown()
    assert len(reports) == len(instances)
    for sr in reports:
        items = {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in sr.ContentSequence}
        original = instances[items["Source"].ReferencedSOPSequence[0].ReferencedSOPInstanceUID]
        assert (sr.SOPClassUID, sr.StudyInstanceUID, sr.PatientID) == (
            SR_SOP_CLASS, original.StudyInstanceUID, original.PatientID)
        assert items["Comment"].TextValue == NOT_FOR_DIAGNOSIS
        assert items["Finding"].ConceptCodeSequence[0].CodeMeaning in ("Pneumonia", "Normal")
        assert 0 <= float(items["Decision threshold"].MeasuredValueSequence[0].NumericValue) <= 1
    assert len({sr.SOPInstanceUID for sr in reports}) == len(instances)


pytestmark = pytest.mark.slow

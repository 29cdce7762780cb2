"""`xray send-results`: gold predictions of DICOM images go to a real pynetdicom SCP on 127.0.0.1 as
Structured Reports that the SCP checks one by one; each prediction is sent once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import threading

import pydicom
import pytest
from dicomfiles import dicom_of, jpeg_of, radiograph

from streaming.core.errors import ConfigError, DicomSendError
from streaming.core.pseudonym import path_ref
from streaming.core.registry import configure_mlflow
from streaming.gold.srdocument import NOT_FOR_DIAGNOSIS, SR_SOP_CLASS
from streaming.lakehouse.direct import append_rows
from streaming.ops.sendresults import parse_destination, send_results

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone.utc)
MODEL = "xray_pneumonia_classifier"


def _items(sr: pydicom.Dataset) -> dict:
    return {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in sr.ContentSequence}


def _source(sr: pydicom.Dataset) -> str:
    return _items(sr)["Source"].ReferencedSOPSequence[0].ReferencedSOPInstanceUID


class CheckingSCP:
    """A PACS stand-in: stores every SR it is sent after checking it against the originals; answers the
    statuses it is told to (then success)."""

    def __init__(self, originals: dict[str, pydicom.Dataset], statuses: list[int] | None = None):
        from pynetdicom import AE, evt

        self.originals, self.statuses = originals, list(statuses or [])
        self.received: list[pydicom.Dataset] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        ae = AE(ae_title="PACS")
        ae.add_supported_context(SR_SOP_CLASS)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)])
        self.port = self.server.server_address[1]

    def store(self, event) -> int:
        sr = event.dataset
        with self.lock:
            if self.statuses:
                return self.statuses.pop(0)
            self.problems.extend(self.check(sr))
            self.received.append(sr)
        return 0x0000

    def check(self, sr: pydicom.Dataset) -> list[str]:
        items = _items(sr)
        source = _source(sr)
        original = self.originals.get(source)
        if original is None:
            return [f"SR references an unknown instance {source}"]
        expected = {
            "SOP class": (sr.SOPClassUID, SR_SOP_CLASS),
            "study": (sr.StudyInstanceUID, original.StudyInstanceUID),
            "patient": (sr.PatientID, original.PatientID),
            "evidence": (sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
                         .ReferencedSOPSequence[0].ReferencedSOPInstanceUID, original.SOPInstanceUID),
            "finding": (items["Finding"].ConceptCodeSequence[0].CodeMeaning,
                        "Pneumonia" if original.ImageComments.startswith("PNEUMONIA") else "Normal"),
            "version": (items["Algorithm Version"].TextValue, "3"),
            "threshold": (float(items["Decision threshold"].MeasuredValueSequence[0].NumericValue), 0.42),
            "disclaimer": (items["Comment"].TextValue, NOT_FOR_DIAGNOSIS),
            "complete": (sr.CompletionFlag, "COMPLETE"),
        }
        probability = float(items["Probability of pneumonia"].MeasuredValueSequence[0].NumericValue)
        problems = [f"{what}: {got!r} != {want!r}" for what, (got, want) in expected.items() if got != want]
        if not 0.0 <= probability <= 1.0:
            problems.append(f"probability {probability}")
        return problems

    def stop(self) -> None:
        self.server.shutdown()


def _populate(config, count: int = 5) -> dict[str, pydicom.Dataset]:
    """Bronze, silver and gold rows of ``count`` DICOM images and one JPEG, and model version 3 in the
    registry with its threshold; returns the originals by SOP Instance UID."""
    salt = config.patient_salt()
    bronze, silver, gold, originals = [], [], [], {}
    for index in range(count + 1):
        label = "PNEUMONIA" if index % 2 else "NORMAL"
        is_dicom = index < count
        content = dicom_of(radiograph(index)) if is_dicom else jpeg_of(radiograph(index))
        if is_dicom:
            ds = pydicom.dcmread(io.BytesIO(content))
            ds.ImageComments = f"{label} case {index}"
            out = io.BytesIO()
            ds.save_as(out)
            content = out.getvalue()
            originals[ds.SOPInstanceUID] = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
        path = f"file:///landing/unlabelled/{index}.{'dcm' if is_dicom else 'jpeg'}"
        image_id = hashlib.sha256(content).hexdigest()
        bronze.append({"path": path, "path_ref": path_ref(path, salt), "content": content,
                       "content_sha256": image_id, "content_status": "ok"})
        silver.append({"image_id": image_id, "path_ref": path_ref(path, salt),
                       "image_format": "DICOM" if is_dicom else "JPEG"})
        gold.append({"prediction_id": hashlib.sha256(f"{image_id}{MODEL}3".encode()).hexdigest(),
                     "image_id": image_id, "predicted_label": label,
                     "probability_pneumonia": 0.9 if label == "PNEUMONIA" else 0.1, "model_name": MODEL,
                     "model_version": "3", "predicted_time": T0 + dt.timedelta(minutes=index)})
    append_rows(config, "bronze_xray_images", bronze)
    append_rows(config, "silver_xray_metadata", silver)
    append_rows(config, "gold_pneumonia_predictions", gold)
    client = configure_mlflow(config)
    client.create_registered_model(MODEL)
    for _ in range(3):
        version = client.create_model_version(MODEL, source=str(config.root / "model"))
    client.set_model_version_tag(MODEL, version.version, "threshold", "0.42")
    return originals


def _sent_rows(config):
    from deltalake import DeltaTable

    return DeltaTable(str(config.table_path("dicom_results_sent"))).to_pyarrow_table().to_pylist()


def test_each_prediction_goes_once_as_a_checked_sr(config):
    originals = _populate(config)
    scp = CheckingSCP(originals, statuses=[0xA700])  # the PACS refuses the first report once
    try:
        first = send_results(config, f"PACS@127.0.0.1:{scp.port}")
        assert (first.sent, first.refused, first.not_dicom) == (4, 1, 1)
        second = send_results(dataclasses.replace(config, results_destination=f"PACS@127.0.0.1:{scp.port}"))
        assert (second.sent, second.already_sent, second.refused) == (1, 4, 0)
        third = send_results(config, f"PACS@127.0.0.1:{scp.port}")
        assert (third.sent, third.already_sent) == (0, 5)
    finally:
        scp.stop()
    assert scp.problems == []
    assert sorted(_source(sr) for sr in scp.received) == sorted(originals)
    assert len({sr.SOPInstanceUID for sr in scp.received}) == 5
    rows = _sent_rows(config)
    assert len(rows) == 5 and len({row["prediction_id"] for row in rows}) == 5
    raw = {str(uid) for ds in originals.values() for uid in (ds.StudyInstanceUID, ds.SOPInstanceUID, ds.PatientID)}
    assert not raw & {str(value) for row in rows for value in row.values()}  # keyed hashes only


def test_the_same_prediction_rebuilt_is_the_same_report(config):
    from streaming.gold.srdocument import ScoredImage, structured_report

    original = pydicom.dcmread(io.BytesIO(dicom_of(radiograph(1))), stop_before_pixels=True)
    image = ScoredImage("p1", "i1", "NORMAL", 0.2, None, MODEL, "3", T0, original)
    first, again = structured_report(image), structured_report(image)
    assert first.SOPInstanceUID == again.SOPInstanceUID and first.SeriesInstanceUID == again.SeriesInstanceUID
    texts = [item.TextValue for item in first.ContentSequence if "TextValue" in item]
    assert "The model version records no decision threshold." in texts
    with pytest.raises(ValueError, match="neither NORMAL nor PNEUMONIA"):
        structured_report(dataclasses.replace(image, predicted_label="MAYBE"))


def test_destinations_and_an_unreachable_node_are_one_line(config):
    assert parse_destination("PACS@10.1.2.3:104").port == 104
    for bad in ("PACS", "PACS@host", "@host:104", "PACS@host:x", "A" * 17 + "@h:1"):
        with pytest.raises(ConfigError, match="AE@host:port"):
            parse_destination(bad)
    with pytest.raises(ConfigError, match="no destination"):
        send_results(config)
    _populate(config, count=1)
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with pytest.raises(DicomSendError, match="no association"):
        send_results(config, f"PACS@127.0.0.1:{free}")


def test_the_stream_task_sends_new_results_until_stopped(config):
    from support import wait_until

    from streaming.ops.sendresults import results_task

    assert results_task(config) is None  # no results_destination: no task
    with pytest.raises(ConfigError, match="AE@host:port"):
        results_task(dataclasses.replace(config, results_destination="PACS"))
    originals = _populate(config, count=3)
    scp = CheckingSCP(originals)
    stop = threading.Event()
    try:
        task = results_task(dataclasses.replace(config, results_destination=f"PACS@127.0.0.1:{scp.port}"), every=0.2)
        thread = task(None, stop)
        thread.start()
        assert wait_until(lambda: len(_sent_rows(config)) == 3 if config.table_path("dicom_results_sent").exists()
                          else False, timeout=120)
        stop.set()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        stop.set()
        scp.stop()
    assert scp.problems == [] and len(scp.received) == 3

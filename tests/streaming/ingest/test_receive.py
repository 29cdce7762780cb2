"""`xray receive`: a real pynetdicom Storage SCU sends to the receiver on 127.0.0.1; every instance is in
landing once, whole, under its SOP Instance UID, before success is answered."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
from dicomfiles import dicom_of, radiograph
from dicomscu import dataset, scu, send

from streaming.core.errors import ConfigError
from streaming.imaging.dicomwrite import DicomSpec, dicom_bytes
from streaming.ingest.dicomland import LabelRules, land_instance
from streaming.ingest.receive import (
    CANNOT_UNDERSTAND,
    SUCCESS,
    DicomReceiver,
    receive,
    receive_address,
)

SENDER = Path(__file__).parents[2] / "dicomsend.py"  # a modality in its own process


@pytest.fixture
def receiver_of():
    started = []

    def start(config):
        receiver = DicomReceiver(config, receive_address(config, port=0))
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def _landed(config):
    return sorted(str(p.relative_to(config.landing_dir)) for p in config.landing_dir.rglob("*") if p.is_file())


def test_echo_and_store_land_each_instance_once_under_its_uid(config, receiver_of):
    receiver = receiver_of(config)
    assoc = scu().associate("127.0.0.1", receiver.port, ae_title="XRAY")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == SUCCESS
    assoc.release()
    first = dataset(dicom_of(radiograph(1)))
    assert send(receiver.port, [first, first]) == [SUCCESS, SUCCESS]  # the same bytes again: nothing added
    uid = first.SOPInstanceUID
    assert _landed(config) == [f"unlabelled/{uid}.dcm"]
    stored = pydicom.dcmread(config.landing_dir / "unlabelled" / f"{uid}.dcm")
    assert stored.SOPInstanceUID == uid and stored.PixelData == first.PixelData
    # The same UID with other bytes (a corrected image) is a new version beside the first, as for files.
    changed = dataset(dicom_bytes(radiograph(2), DicomSpec(sop_instance_uid=uid)))
    assert send(receiver.port, [changed]) == [SUCCESS]
    assert _landed(config) == [f"unlabelled/{uid}-1.dcm", f"unlabelled/{uid}.dcm"]
    assert receiver.counts["stored"] == 1 and receiver.counts["duplicates"] == 1
    assert receiver.counts["versions"] == 1


@pytest.mark.parametrize("compression", ["rle", "jpeg2000", "jpeg", "implicit"])
def test_compressed_transfer_syntaxes_land_as_sent(config, receiver_of, compression):
    receiver = receiver_of(config)
    ds = dataset(dicom_bytes(radiograph(3), DicomSpec(compression=compression)))
    assert send(receiver.port, [ds]) == [SUCCESS]
    stored = pydicom.dcmread(config.landing_dir / "unlabelled" / f"{ds.SOPInstanceUID}.dcm")
    assert stored.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert stored.pixel_array.shape == ds.pixel_array.shape


def test_labels_come_from_the_calling_ae_then_a_labels_file(config, receiver_of, tmp_path):
    by_file = dataset(dicom_of(radiograph(4)))
    labels = tmp_path / "labels.csv"
    labels.write_text(f"sop_instance_uid,label,split\n{by_file.SOPInstanceUID},PNEUMONIA,test\n")
    config = dataclasses.replace(config, receive_labels={"WARD": "train/NORMAL", "ER": "PNEUMONIA"},
                                 receive_labels_file=str(labels))
    receiver = receiver_of(config)
    ward, er, other = (dataset(dicom_of(radiograph(seed))) for seed in (5, 6, 7))
    assert send(receiver.port, [ward, by_file], calling_ae="WARD") == [SUCCESS, SUCCESS]
    assert send(receiver.port, [er], calling_ae="ER") == [SUCCESS]
    assert send(receiver.port, [other], calling_ae="ELSEWHERE") == [SUCCESS]
    assert _landed(config) == sorted([
        f"train/NORMAL/{ward.SOPInstanceUID}.dcm", f"test/PNEUMONIA/{by_file.SOPInstanceUID}.dcm",
        f"unsplit/PNEUMONIA/{er.SOPInstanceUID}.dcm", f"unlabelled/{other.SOPInstanceUID}.dcm",
    ])


def test_a_bad_label_rule_is_one_line(config):
    with pytest.raises(ConfigError, match="receive_labels entry for 'WARD'"):
        LabelRules(dataclasses.replace(config, receive_labels={"WARD": "train/COVID"}))


def test_an_unknown_calling_ae_or_address_is_refused(config, receiver_of):
    receiver = receiver_of(dataclasses.replace(config, receive_calling_aes=("PACS",), receive_host="127.0.0.1"))
    refused = scu("INTRUDER").associate("127.0.0.1", receiver.port, ae_title="XRAY")
    assert refused.is_rejected
    assert refused.acceptor.primitive.result_source == 0x01 and refused.acceptor.primitive.diagnostic == 0x03
    assert send(receiver.port, [dataset(dicom_of(radiograph(8)))], calling_ae="PACS") == [SUCCESS]
    walled = receiver_of(dataclasses.replace(config, receive_peer_addresses=("10.9.0.0/16",)))
    assert scu("PACS").associate("127.0.0.1", walled.port, ae_title="XRAY").is_rejected
    assert receiver.counts["refused"] == 1 and walled.counts["refused"] == 1
    assert len(_landed(config)) == 1


def test_any_calling_ae_is_let_in_on_loopback_only_unless_allowed(config):
    assert receive_address(config).host == "127.0.0.1"
    with pytest.raises(ConfigError, match="receive_calling_aes is empty"):
        receive_address(dataclasses.replace(config, receive_host="0.0.0.0"))
    assert receive_address(config, allow_remote=True).host == "0.0.0.0"
    assert receive_address(dataclasses.replace(config, receive_calling_aes=("PACS",))).host == "0.0.0.0"
    with pytest.raises(ConfigError, match="AE title"):
        receive_address(config, ae_title="A" * 17)
    with pytest.raises(ConfigError, match="not an address"):
        receive_address(dataclasses.replace(config, receive_peer_addresses=("pacs.example",)))


def test_a_malformed_uid_is_refused_and_never_becomes_a_path(config, receiver_of):
    for uid in ("../../etc/passwd", "1.2.abc", "", "1." * 40):
        with pytest.raises(ValueError):
            land_instance(config.landing_dir, "unlabelled", uid, b"DICM")
    assert not config.landing_dir.exists() or _landed(config) == []
    receiver = receiver_of(config)
    bad = dataset(dicom_of(radiograph(9)))
    bad.SOPInstanceUID = "1.2.3.x9"
    bad.file_meta.MediaStorageSOPInstanceUID = bad.SOPInstanceUID
    assert send(receiver.port, [bad]) == [CANNOT_UNDERSTAND]
    assert _landed(config) == []


@pytest.mark.slow
def test_concurrent_senders_land_every_instance_exactly_once(spark, config, receiver_of, tmp_path):
    """4 modalities (processes) x 250 instances at once, each also resending 60 of another's: 1000 files, once
    in landing, then once in bronze, silver and gold."""
    receiver = receiver_of(config)
    files = []
    for sender in range(4):
        folder = tmp_path / f"scu{sender}"
        folder.mkdir()
        files.append([folder / f"{i}.dcm" for i in range(250)])
        for i, path in enumerate(files[sender]):
            path.write_bytes(dicom_of(radiograph(sender * 1000 + i, size=(64, 64))))
    senders = [subprocess.Popen([sys.executable, str(SENDER), str(receiver.port), f"SCU{n}",
                                 *map(str, files[n] + files[(n + 1) % 4][:60])], stdout=subprocess.PIPE, text=True)
               for n in range(4)]
    for process in senders:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0 and json.loads(out) == [SUCCESS] * 310
    uids = {dataset(path.read_bytes()).SOPInstanceUID for batch in files for path in batch}
    assert _landed(config) == sorted(f"unlabelled/{uid}.dcm" for uid in uids)
    assert receiver.counts["stored"] == 1000 and receiver.counts["versions"] == 0
    assert receiver.counts["stored"] + receiver.counts["duplicates"] == 1240
    _through_the_layers(spark, config.with_overrides(min_image_side=32), uids)  # 64 px test radiographs


def _through_the_layers(spark, config, uids: set[str]) -> None:
    """The received instances (and a small labelled set to train a champion on) through the stream: every
    instance once in bronze, once in silver, one prediction each in gold."""
    from imagefiles import stage_labelled_dataset
    from support import table_rows

    from batch.training.retrain import retrain
    from streaming.pipeline.service import run_stream

    stage_labelled_dataset(config.landing_dir, per_class=10, split="train", seed=3)
    run_stream(spark, config, once=True)
    retrain(spark, config)
    run_stream(spark, config, once=True)  # gold scores the images that waited for a champion
    received = [r["file_name"] for r in table_rows(config, "bronze_xray_images", ["file_name"])
                if r["file_name"].endswith(".dcm")]
    assert sorted(received) == sorted(f"{uid}.dcm" for uid in uids)
    silver = table_rows(config, "silver_xray_metadata", ["image_id", "instance_ref"])
    refs = [row["instance_ref"] for row in silver if row["instance_ref"]]
    assert len(refs) == len(set(refs)) == len(uids)
    predicted = [row["image_id"] for row in table_rows(config, "gold_pneumonia_predictions", ["image_id"])]
    assert len(predicted) == len(set(predicted)) and set(predicted) == {row["image_id"] for row in silver}


def test_receive_stops_on_its_event_and_reports(config):
    stop = threading.Event()
    lines: list[str] = []
    worker = threading.Thread(target=receive, args=(dataclasses.replace(config, receive_port=0),),
                              kwargs={"announce": lines.append, "stop_event": stop})
    worker.start()
    try:
        for _ in range(100):
            if lines:
                break
            stop.wait(0.1)
        assert lines and "AE title XRAY on 127.0.0.1:" in lines[0]
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()


def _certificate(folder, name):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / f"{name}.key"),
                    "-out", str(folder / f"{name}.pem")], check=True, capture_output=True)
    return folder / f"{name}.pem", folder / f"{name}.key"


def test_tls_with_client_certificates(config, receiver_of, tmp_path):
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificates")
    server_cert, server_key = _certificate(tmp_path, "server")
    client_cert, client_key = _certificate(tmp_path, "client")
    receiver = receiver_of(dataclasses.replace(config, receive_tls_cert=str(server_cert),
                                               receive_tls_key=str(server_key), receive_tls_ca=str(client_cert)))
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(server_cert))
    client.load_cert_chain(str(client_cert), str(client_key))
    ds = dataset(dicom_of(radiograph(10)))
    assert send(receiver.port, [ds], tls=(client, "localhost")) == [SUCCESS]
    assert _landed(config) == [f"unlabelled/{ds.SOPInstanceUID}.dcm"]
    anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(server_cert))
    assert send(receiver.port, [ds], tls=(anonymous, "localhost")) in ([], [None])  # no client certificate
    with pytest.raises(ConfigError, match="go together"):
        DicomReceiver(dataclasses.replace(config, receive_tls_cert=str(server_cert)), receive_address(config))


def test_a_port_in_use_is_one_line(config, receiver_of):
    first = receiver_of(config)
    second = DicomReceiver(config, receive_address(config, port=first.port))
    with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
        second.start()
    second.stop()

"""The receiver under faults: `kill -9` mid-association then the sender resends what was not acknowledged;
a full disk. Either way each instance is in landing exactly once and whole, and only what is on disk was
acknowledged."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import pydicom
import pytest
from dicomfiles import dicom_of, radiograph
from dicomscu import dataset, send

from streaming.ingest.receive import OUT_OF_RESOURCES, SUCCESS, DicomReceiver, receive_address


def _visible(config):
    """Landing's files as the stream sees them (hidden temporaries are never read)."""
    return {p.name: p for p in config.landing_dir.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _start_receiver(config) -> tuple[subprocess.Popen, int]:
    environment = {**os.environ, "XRAY_LAKEHOUSE": str(config.root)}
    # Its log in a file beside the lakehouse: a failed assertion below says what the receiver said.
    with open(config.root.parent / "receiver.log", "a") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([sys.executable, "-m", "streaming.cli", "receive", "--port", "0"],
                                   env=environment, stdout=subprocess.PIPE, stderr=log, text=True)
    line = process.stdout.readline()
    found = re.search(r"127\.0\.0\.1:(\d+)", line)
    assert found, f"no address announced: {line!r}"
    return process, int(found.group(1))


@pytest.mark.slow
def test_kill_9_mid_association_then_resending_the_unacknowledged_lands_each_once(config):
    datasets = [dataset(dicom_of(radiograph(i, size=(96, 96)))) for i in range(120)]
    process, port = _start_receiver(config)
    statuses: list = []
    sender = threading.Thread(target=lambda: statuses.extend(send(port, datasets)))
    sender.start()
    try:
        for _ in range(1200):  # kill once a few dozen are in, while the association is sending
            if len(_visible(config)) >= 30:
                break
            threading.Event().wait(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        sender.join(120)
    finally:
        if process.poll() is None:
            process.kill()
    acknowledged = [ds for ds, status in zip(datasets, statuses, strict=False) if status == SUCCESS]
    assert 30 <= len(acknowledged) < len(datasets)
    landed = _visible(config)
    assert all(f"{ds.SOPInstanceUID}.dcm" in landed for ds in acknowledged)  # acknowledged: on disk
    unacknowledged = [ds for ds in datasets if ds not in acknowledged]
    process, port = _start_receiver(config)
    try:
        statuses = send(port, unacknowledged)
        said = (config.root.parent / "receiver.log").read_text()[-3000:]
        assert statuses == [SUCCESS] * len(unacknowledged), f"the receiver's log ends:\n{said}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    landed = _visible(config)
    assert sorted(landed) == sorted(f"{ds.SOPInstanceUID}.dcm" for ds in datasets)  # once each, no versions
    for ds in datasets:
        assert pydicom.dcmread(landed[f"{ds.SOPInstanceUID}.dcm"]).PixelData == ds.PixelData


@pytest.fixture
def small_disk(config):
    """Landing on a 1 MB tmpfs: the disk fills after a few dozen instances."""
    landing = config.landing_dir
    landing.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(landing)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    yield landing
    subprocess.run(["umount", str(landing)], check=False)


def test_a_full_disk_answers_out_of_resources_and_leaves_nothing_half_written(config, small_disk):
    receiver = DicomReceiver(config, receive_address(config, port=0))
    receiver.start()
    try:
        datasets = [dataset(dicom_of(radiograph(i, size=(160, 160)))) for i in range(60)]  # ~26 KB each
        statuses = send(receiver.port, datasets)
    finally:
        receiver.stop()
    assert SUCCESS in statuses and OUT_OF_RESOURCES in statuses
    assert set(statuses) == {SUCCESS, OUT_OF_RESOURCES}
    landed = _visible(config)
    for ds, status in zip(datasets, statuses, strict=True):
        name = f"{ds.SOPInstanceUID}.dcm"
        if status == SUCCESS:
            assert pydicom.dcmread(landed[name]).PixelData == ds.PixelData
        else:
            assert name not in landed
    assert len(landed) == statuses.count(SUCCESS)
    assert [p.name for p in small_disk.rglob(".*")] == []  # no temporary left behind
    assert receiver.counts["failed"] == statuses.count(OUT_OF_RESOURCES)

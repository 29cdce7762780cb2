"""An erasure is a resumable transaction (streaming/ops/forget.py, streaming/lakehouse/erasures.py): a real
`xray forget` process killed with SIGKILL after its first delete is finished by running the same command
again, and nothing of the patient is left: no row in any table, no row in any older version still
readable, no byte of their files in any file under the lakehouse, no raw path in the landing log."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from dicomfiles import dicom_of, radiograph
from imagefiles import jpeg_bytes, write, xray_like
from support import REPO, table_rows

from streaming.bronze.source import landing_log_dir
from streaming.core.pseudonym import path_ref, patient_ref
from streaming.lakehouse.erasures import pending_erasures
from streaming.landing.log import LandingLog
from streaming.landing.scan import Found
from streaming.ops.status import print_status

PATIENT = "person41"
TABLES = ("bronze_xray_images", "silver_xray_metadata", "silver_image_features", "silver_quarantine",
          "gold_pneumonia_predictions", "gold_radiologist_feedback")


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def house(lakehouse):
    """person41 (two images, a copy of one under a name that names nobody, a quarantined DICOM whose header
    names them) beside person42, in every table, committed in several versions; their files in landing and
    their paths in the landing log."""
    config, key = lakehouse.config, lakehouse.config.patient_salt()
    own = [jpeg_bytes(xray_like(41)), jpeg_bytes(xray_like(43))]
    dicom, other = dicom_of(radiograph(41), patient_id=PATIENT), jpeg_bytes(xray_like(42))
    entries = [("train/PNEUMONIA/person41_virus_1.jpeg", own[0]), ("copies/scan-1.jpeg", own[0]),
               ("train/NORMAL/person41_virus_2.jpeg", own[1]), ("pacs/IM000041", dicom),
               ("train/PNEUMONIA/person42_virus_1.jpeg", other)]
    bronze = []
    for name, content in entries:
        path = str(write(config.landing_dir / name, content))
        bronze.append({"path": path, "file_name": Path(path).name, "path_ref": path_ref(path, key),
                       "size_bytes": len(content), "content": content, "content_sha256": sha(content),
                       "content_status": "ok", "batch_id": 0})
    for row in bronze:  # one commit each: older versions hold the bytes too
        lakehouse.append_rows("bronze_xray_images", [row])
    images = [(sha(own[0]), patient_ref(PATIENT, key), bronze[0]["path_ref"]),
              (sha(own[1]), patient_ref(PATIENT, key), bronze[2]["path_ref"]),
              (sha(other), patient_ref("person42", key), bronze[4]["path_ref"])]
    for image_id, patient, ref in images:
        lakehouse.append_rows("silver_xray_metadata", [{"image_id": image_id, "patient_id": patient, "path_ref": ref}])
        lakehouse.append_rows("silver_image_features", [{"image_id": image_id, "features": [1.0]}])
        lakehouse.append_rows("gold_pneumonia_predictions", [{"image_id": image_id}])
        lakehouse.append_rows("gold_radiologist_feedback", [{"image_id": image_id, "comment": "a reader's note"}])
    lakehouse.append_rows("silver_quarantine", [{"rule": "dicom_radiograph", "path_ref": bronze[3]["path_ref"],
                                                 "content_sha256": sha(dicom)}])
    LandingLog(landing_log_dir(config)).add_new([Found(r["path"], 1, r["size_bytes"], "file") for r in bronze])
    return config, [*own, dicom], {image_id for image_id, _, _ in images[:2]} | {sha(dicom)}


def forget_process(config) -> list[str]:
    return [sys.executable, "-m", "streaming.cli", "forget", "--lakehouse", str(config.root), "--patient", PATIENT,
            "--yes"]


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("XRAY_")}


def bronze_version(config) -> int:
    """The newest commit of bronze, from its log folder (no Delta read: it is polled every few ms)."""
    log = config.table_path("bronze_xray_images") / "_delta_log"
    return max(int(name[:20]) for name in os.listdir(log) if name.endswith(".json") and name[:20].isdigit())


def rows_of_patient(config, name: str, erased: set[str], version: int | None = None) -> list[dict]:
    rows = DeltaTable(str(config.table_path(name)), version=version).to_pyarrow_table().to_pylist()
    ref = patient_ref(PATIENT, config.patient_salt())
    return [r for r in rows if {r.get("content_sha256"), r.get("image_id")} & erased or r.get("patient_id") == ref]


def files_holding(root: Path, needles: list[bytes]) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and any(n in p.read_bytes() for n in needles)]


@pytest.mark.slow
def test_forget_killed_after_its_first_delete_is_finished_by_the_same_command(house, capsys):
    config, contents, erased = house
    version = bronze_version(config)
    # At the lowest priority, so that on a busy machine the watcher below still sees the first delete
    # long before the erasure could end.
    process = subprocess.Popen(["nice", "-n", "19", *forget_process(config)], cwd=REPO, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while bronze_version(config) == version and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)  # bronze's delete is committed: killed mid-erasure
    finally:
        process.wait(timeout=60)
    assert bronze_version(config) > version, "the erasure deleted from bronze before it was killed"
    assert rows_of_patient(config, "bronze_xray_images", erased) == []
    pending = pending_erasures(config)
    assert [j.patient for j in pending] == [patient_ref(PATIENT, config.patient_salt())], "killed before the end"
    assert set(pending[0].contents) == erased, "the journal names every content to erase, as keyed hashes"
    capsys.readouterr()
    status = print_status(None, config)
    assert status["erasures"]["pending"] == 1 and "ERASURE  1 interrupted" in capsys.readouterr().out

    again = subprocess.run(forget_process(config), cwd=REPO, env=environment(), capture_output=True, text=True,
                           timeout=300)
    assert "finished the interrupted erasure of 2 image(s)" in again.stdout, again.stdout + again.stderr[-2000:]
    assert pending_erasures(config) == []
    for name in TABLES:
        assert rows_of_patient(config, name, erased) == [], name
        current = DeltaTable(str(config.table_path(name))).version()
        for version in range(current):  # every older version still readable holds none of them
            try:
                old = rows_of_patient(config, name, erased, version)
            except Exception:  # removed by the erasure: nothing to read
                continue
            assert old == [], f"{name} at version {version}"
    assert [r["patient_id"] for r in table_rows(config, "silver_xray_metadata")] == [
        patient_ref("person42", config.patient_salt())], "the other patient is untouched"
    assert files_holding(config.root, contents) == [], "no byte of the patient's files on disk"
    assert files_holding(config.root, [PATIENT.encode(), b"scan-1.jpeg"]) == [], "no raw path anywhere"
    assert not list(config.landing_dir.rglob("person41*")) and not (config.landing_dir / "copies/scan-1.jpeg").exists()

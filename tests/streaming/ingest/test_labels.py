"""DICOM staging (by extension and, for PACS exports, by content) and labels from a CSV file."""

from __future__ import annotations

import logging
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from streaming.core.errors import IngestError
from streaming.imaging.dicomwrite import DicomSpec, dicom_bytes
from streaming.ingest import archive_images, ingest_folder, is_complete_image, watch_inbox

STABLE = 0.3


def dicom(seed: int, uid: str | None = None, compression: str = "none") -> bytes:
    """A small noise-free chest-X-ray-sized DICOM (160 px a side: above the 128 px minimum)."""
    y, x = np.mgrid[0:160, 0:160]
    pixels = ((x + 2 * y + 7 * seed) % 256).astype(np.uint8)
    return dicom_bytes(pixels, DicomSpec(patient_id=f"P{seed:04d}", sop_instance_uid=uid,
                                         compression=compression))


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def no_record(monkeypatch):
    """Staging without Spark: the run's bronze row is another test's subject (test_staging.py)."""
    monkeypatch.setattr("streaming.ingest.folder.record_run", lambda *args: None)


def landing_files(config) -> list[str]:
    landing = config.landing_dir
    return sorted(p.relative_to(landing).as_posix() for p in landing.rglob("*") if p.is_file())


# ---- DICOM pickup ----------------------------------------------------------------------------------------
def test_extensionless_dicom_is_staged_and_other_extensionless_files_are_not(config, tmp_path, no_record):
    source = tmp_path / "export" / "train"
    first = write(source / "NORMAL" / "IM000001", dicom(1))
    write(source / "PNEUMONIA" / "1.2.826.0.1.3680043.8.498.1", dicom(2))  # a UID as name
    write(source / "PNEUMONIA" / "scan.dcm", dicom(3))
    write(source / "README", b"exported by the PACS; " * 20)  # no extension, not DICOM
    write(source / "DICOMDIR.txt", b"index")

    report = ingest_folder(None, config, source)
    assert landing_files(config) == [
        "train/NORMAL/IM000001",
        "train/PNEUMONIA/1.2.826.0.1.3680043.8.498.1",
        "train/PNEUMONIA/scan.dcm",
    ]
    assert report.files_staged == 3
    assert (config.landing_dir / "train" / "NORMAL" / "IM000001").read_bytes() == first.read_bytes()


def test_folder_of_only_non_dicom_extensionless_files_is_refused(config, tmp_path, no_record):
    write(tmp_path / "export" / "README", b"x" * 400)
    with pytest.raises(IngestError, match="no X-ray images"):
        ingest_folder(None, config, tmp_path / "export")


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_dicom_in_an_archive_is_staged(config, tmp_path, no_record, kind):
    members = {  # made once: every DICOM made gets new study and series UIDs
        "export/test/PNEUMONIA/IM000007": dicom(7, compression="rle"),
        "export/test/NORMAL/scan.DCM": dicom(8),
        "export/test/NORMAL/README": b"not an image at all " * 20,
    }
    archive = tmp_path / f"export.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as handle:
            for name, data in members.items():
                handle.writestr(name, data)
    else:
        with tarfile.open(archive, "w:gz") as handle:
            for name, data in members.items():
                write(tmp_path / "tar-src" / name, data)
                handle.add(tmp_path / "tar-src" / name, arcname=name)

    assert sorted((i.source, i.dicom) for i in archive_images(archive)) == [
        ("export/test/NORMAL/scan.DCM", True), ("export/test/PNEUMONIA/IM000007", True)]
    ingest_folder(None, config, archive)
    assert landing_files(config) == ["test/NORMAL/scan.DCM", "test/PNEUMONIA/IM000007"]
    assert (config.landing_dir / "test" / "PNEUMONIA" / "IM000007").read_bytes() == members[
        "export/test/PNEUMONIA/IM000007"]


# ---- the inbox watcher -----------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["none", "rle"])
def test_dicom_is_complete_only_when_whole(tmp_path, compression):
    data = dicom(4, compression=compression)
    whole = write(tmp_path / "whole", data)
    assert is_complete_image(whole)
    for cut in (len(data) - 10, len(data) // 2, 300, 140):
        assert not is_complete_image(write(tmp_path / f"cut-{cut}", data[:cut])), cut


def test_watcher_moves_dcm_and_extensionless_dicom(config, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="streaming.ingest.watch")
    fast = config.with_overrides(watch_stable_seconds=STABLE)
    inbox = tmp_path / "inbox"
    write(inbox / "val" / "NORMAL" / "scan.dcm", dicom(11))
    write(inbox / "val" / "PNEUMONIA" / "IM000012", dicom(12))
    write(inbox / "README", b"what this export holds " * 20)
    write(inbox / "IM000013", dicom(13)[:-500])  # a copy cut short: stays in the inbox

    watch_inbox(fast, inbox, timeout=STABLE * 6, poll=True)
    assert landing_files(fast) == ["val/NORMAL/scan.dcm", "val/PNEUMONIA/IM000012"]
    assert sorted(p.name for p in inbox.rglob("*") if p.is_file()) == ["IM000013", "README"]
    other = [r for r in caplog.records if "not a .jpeg/.jpg/.png/.dcm or DICOM X-ray" in r.getMessage()]
    assert [r.levelno for r in other] == [logging.WARNING, logging.DEBUG], "reported once; named at DEBUG"
    assert "README" not in other[0].getMessage()

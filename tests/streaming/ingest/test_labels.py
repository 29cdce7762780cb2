"""DICOM staging (by extension and, for PACS exports, by content) and labels from a CSV file."""

from __future__ import annotations

import logging
import re
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


# ---- labels from a CSV file ------------------------------------------------------------------------------
def csv_file(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    return write(tmp_path / name, text.encode())


def test_labels_by_file_name_give_split_and_label(config, tmp_path, no_record, caplog):
    caplog.set_level(logging.INFO)
    export = tmp_path / "export"
    write(export / "2024" / "IM000001", dicom(21))
    write(export / "2024" / "IM000002", dicom(22))
    write(export / "scan.png", b"\x89PNG not checked at staging")
    write(export / "IM000003", dicom(23))  # no row: unlabelled
    labels = csv_file(tmp_path, "\ufeffFile_Name,Label,Split\n"  # a spreadsheet's BOM and capitals
                                "IM000001,normal,train\n"
                                "C:\\export\\2024\\IM000002,PNEUMONIA,validation\n"
                                "scan.png,Pneumonia,\n"
                                "\n"
                                "IM999999,NORMAL,test\n")

    report = ingest_folder(None, config, export, labels=labels)
    assert landing_files(config) == ["train/NORMAL/IM000001", "unlabelled/IM000003",
                                     "unsplit/PNEUMONIA/scan.png", "val/PNEUMONIA/IM000002"]
    assert (report.labelled_from_file, report.unmatched_label_rows) == (3, 1)
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("staged ")]
    assert summary and "3 files labelled, 1 labelled rows matched no file" in summary[0]
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [m for m in info if "IM0000" in m or "IM999999" in m], "names only at DEBUG"


def test_labels_by_sop_instance_uid_and_a_path_split_kept(config, tmp_path, no_record, caplog):
    caplog.set_level(logging.INFO)
    export = tmp_path / "export" / "test"
    uid_a, uid_b = "1.2.826.0.1.3680043.8.498.101", "1.2.826.0.1.3680043.8.498.102"
    write(export / "a" / "IM000001", dicom(31, uid=uid_a))
    write(export / "b" / "IM000001", dicom(32, uid=uid_b))  # the same name in two series folders
    write(export / "b" / "IM000002", dicom(33, uid="1.2.3.4"))
    labels = csv_file(tmp_path, f"sop_instance_uid,file_name,label\n"
                                f"{uid_a},,NORMAL\n"
                                f"{uid_b},IM000001x,PNEUMONIA\n"
                                f"1.2.3.999,,NORMAL\n")

    report = ingest_folder(None, config, export, labels=labels)
    assert landing_files(config) == ["test/NORMAL/IM000001", "test/PNEUMONIA/IM000001", "unlabelled/IM000002"]
    assert (report.labelled_from_file, report.unmatched_label_rows) == (2, 1)
    assert not [r for r in caplog.records if uid_a in r.getMessage() or uid_b in r.getMessage()]


def test_labels_for_dicom_in_a_zip(config, tmp_path, no_record):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("export/IM000001", dicom(41, uid="1.2.840.1.41"))
        handle.writestr("export/IM000002", dicom(42, uid="1.2.840.1.42"))
    labels = csv_file(tmp_path, "sop_instance_uid,label,split\n1.2.840.1.41,NORMAL,train\n"
                                "1.2.840.1.42,PNEUMONIA,train\n")
    report = ingest_folder(None, config, archive, labels=labels)
    assert landing_files(config) == ["train/NORMAL/IM000001", "train/PNEUMONIA/IM000002"]
    assert report.labelled_from_file == 2


def test_name_and_uid_rows_that_disagree_on_one_file_are_refused(config, tmp_path, no_record):
    write(tmp_path / "export" / "IM000001", dicom(51, uid="1.2.840.1.51"))
    labels = csv_file(tmp_path, "sop_instance_uid,file_name,label\n1.2.840.1.51,,NORMAL\n,IM000001,PNEUMONIA\n")
    with pytest.raises(IngestError, match=r"lines 3 \(by file_name\) and 2 \(by sop_instance_uid\)"):
        ingest_folder(None, config, tmp_path / "export", labels=labels)
    assert not config.landing_dir.exists() or landing_files(config) == []


@pytest.mark.parametrize(("text", "message"), [
    ("name,label\nIM1,NORMAL\n", "no sop_instance_uid or file_name column"),
    ("file_name,diagnosis\nIM1,NORMAL\n", "no label column"),
    ("file_name,label\nIM1,NORMAL\nIM2,pneumonia?\n", "line 3: label 'pneumonia?' is neither NORMAL nor"),
    ("file_name,label\nIM1,\n", "line 2: label empty is neither"),
    ("file_name,label,split\nIM1,NORMAL,holdout\n", "line 2: split 'holdout' is not train, test, val"),
    ("file_name,sop_instance_uid,label\n,,NORMAL\n", "line 2 gives neither sop_instance_uid nor file_name"),
    ("file_name,label\nIM1,NORMAL\nIM2,NORMAL\nIM1,normal\nIM1,PNEUMONIA\n",
     "lines 2 and 5 give the same file_name different labels"),
    ("sop_instance_uid,label\n1.2.3,NORMAL\n1.2.3,NORMAL,\n1.2.3,NORMAL,x\n", None),  # repeats that agree
    ("file_name,label\n", "has no rows under its header"),
    ("", "no sop_instance_uid or file_name column (header: none)"),
])
def test_bad_labels_files_are_one_line_each(tmp_path, text, message):
    from streaming.ingest.labels import read_labels

    path = csv_file(tmp_path, text)
    if message is None:
        assert read_labels(path).rows == 3
        return
    with pytest.raises(IngestError, match=re.escape(message)) as error:
        read_labels(path)
    assert "\n" not in str(error.value) and "labels file labels.csv" in str(error.value)


def test_unreadable_labels_files(tmp_path):
    from streaming.ingest.labels import read_labels

    with pytest.raises(IngestError, match="does not exist; pass the CSV"):
        read_labels(tmp_path / "missing.csv")
    with pytest.raises(IngestError, match="is a folder"):
        read_labels(tmp_path)
    with pytest.raises(IngestError, match="is not UTF-8 text"):
        read_labels(write(tmp_path / "latin1.csv", "file_name,label\nPatièntA,NORMAL\n".encode("latin-1")))


def test_ingest_folder_command_checks_labels_before_anything(tmp_path, capsys):
    from streaming.cli.commands import main

    write(tmp_path / "export" / "IM000001", dicom(61))
    labels = csv_file(tmp_path, "file_name,label\nIM000001,MAYBE\n")
    lakehouse = tmp_path / "lakehouse"
    assert main(["ingest-folder", str(tmp_path / "export"), "--labels", str(labels),
                 "--lakehouse", str(lakehouse)]) == 2
    err = capsys.readouterr().err
    assert "line 2: label 'MAYBE' is neither NORMAL nor PNEUMONIA" in err
    assert not lakehouse.exists(), "a wrong labels file leaves no lakehouse behind"


def test_backlog_counts_extensionless_dicom_by_content(tmp_path):
    from streaming.landing.backlog import landing_backlog

    landing = tmp_path / "landing"
    data = dicom(71)
    write(landing / "train" / "NORMAL" / "IM000001", data)
    write(landing / "train" / "NORMAL" / "scan.dcm", data)
    write(landing / "README", b"not an image " * 20)
    assert landing_backlog(landing, None) == (2, 2 * len(data))

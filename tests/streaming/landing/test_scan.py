"""The landing scan, its log and the executor-side read (streaming/landing.py, images.read_file): no Spark."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from imagefiles import AWKWARD_NAMES, jpeg_bytes, write, xray_like
from support import REPO

from streaming.bronze.read import read_file
from streaming.core.names import is_image_name
from streaming.landing.scan import scan_landing


def found_by_name(landing: Path, **options) -> dict[str, object]:
    found, _ = scan_landing(landing, **options)
    return {os.path.relpath(f.path, landing): f for f in found}


def test_every_name_is_listed_and_read_as_the_path_it_is(tmp_path):
    landing = tmp_path / "landing"
    contents = {name: jpeg_bytes(xray_like(i)) for i, name in enumerate(AWKWARD_NAMES)}
    for name, content in contents.items():
        write(landing / "train" / "NORMAL" / name, content)
    found = found_by_name(landing)
    assert sorted(found) == sorted(f"train/NORMAL/{name}" for name in AWKWARD_NAMES)
    for name, content in contents.items():
        item = found[f"train/NORMAL/{name}"]
        assert item.status == "file" and item.size == len(content)
        read = read_file(item.path, item.size, 10**7, item.status, item.target, (str(landing),))
        assert read.status == "ok" and read.content == content, name  # its own bytes, never a neighbour's


def test_hidden_temporary_and_other_names_are_left_alone(tmp_path):
    landing = tmp_path / "landing"
    for name in (".hidden.jpeg", "_tmp.jpeg", "copy.jpeg.tmp", "x.jpeg.part", "y.jpeg._COPYING_", "notes.txt"):
        write(landing / name, b"x")
    write(landing / ".cache" / "a.jpeg", b"x")
    write(landing / "ok.JPG", b"x")
    assert list(found_by_name(landing)) == ["ok.JPG"]
    assert is_image_name("A.PNG") and not is_image_name("a.gif")


def test_symlinks_out_of_landing_are_listed_but_never_opened(tmp_path):
    landing, secret = tmp_path / "landing", write(tmp_path / "outside" / "shadow", b"root:SECRET:19000")
    write(landing / "in.jpeg", b"inside")
    (landing / "train").mkdir()
    os.symlink(secret, landing / "train" / "shadow.jpeg")
    os.symlink(tmp_path / "outside", landing / "train" / "outside-folder")
    os.symlink(landing / "in.jpeg", landing / "train" / "alias.jpeg")
    os.symlink(tmp_path / "nowhere.jpeg", landing / "train" / "dangling.jpeg")
    found = found_by_name(landing)
    assert found["train/shadow.jpeg"].status == "outside_landing"
    assert found["train/outside-folder"].status == "outside_landing"
    assert found["train/dangling.jpeg"].status == "broken_link"
    alias = found["train/alias.jpeg"]
    assert (alias.status, alias.target) == ("link", str(landing / "in.jpeg"))
    assert read_file(alias.path, None, 100, alias.status, alias.target, (str(landing),)).content == b"inside"
    outside = found["train/shadow.jpeg"]
    assert read_file(outside.path, None, 100, outside.status, None, (str(landing),)).content is None
    # A file swapped for such a link after the scan is not followed either.
    assert read_file(str(landing / "train" / "shadow.jpeg"), None, 100, "file", None, (str(landing),)).status \
        == "outside_landing"


def test_allowed_roots_are_followed_once_even_through_loops(tmp_path):
    landing, staged = tmp_path / "landing", tmp_path / "pacs-export"
    write(staged / "study" / "IM-0001-0001.jpeg", b"staged")
    os.symlink(staged, staged / "study" / "again")  # a loop inside the allowed root
    landing.mkdir()
    os.symlink(staged, landing / "export")
    found = found_by_name(landing, allowed_roots=(str(staged),))
    assert list(found) == ["export/study/IM-0001-0001.jpeg"]
    item = found["export/study/IM-0001-0001.jpeg"]
    assert (item.status, item.target) == ("link", str(staged / "study" / "IM-0001-0001.jpeg"))
    assert read_file(item.path, None, 100, item.status, item.target, (str(landing), str(staged))).content == b"staged"
    assert found_by_name(landing)["export"].status == "outside_landing"  # not allowed: one quarantine row


def test_a_folder_loop_never_repeats_a_file(tmp_path):
    landing = tmp_path / "landing"
    for i in range(3):
        write(landing / "train" / "NORMAL" / f"IM-000{i}-0001.jpeg", b"x")
    os.symlink("..", landing / "train" / "NORMAL" / "loop")
    os.symlink(landing / "train", landing / "train-again")
    found, problems = scan_landing(landing)
    assert len(found) == 3
    assert sorted(p.kind for p in problems) == ["folder_link_inside", "folder_link_inside"]


def test_fifos_are_listed_as_fifos_and_reading_one_never_blocks(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    os.mkfifo(landing / "pipe.jpeg")
    found = found_by_name(landing)
    assert found["pipe.jpeg"].status == "fifo"
    # Even when the scan thought it a regular file (swapped since), the read neither blocks nor opens it.
    result = {}
    reader = threading.Thread(target=lambda: result.update(r=read_file(str(landing / "pipe.jpeg"), None, 100)))
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert result["r"].status == "fifo" and result["r"].content is None
    assert read_file(str(landing / "pipe.jpeg"), None, 100, "fifo").content is None


def test_modified_after_and_names_that_are_not_utf8(tmp_path):
    landing = tmp_path / "landing"
    old = write(landing / "old.jpeg", b"x")
    write(landing / "new.jpeg", b"x")
    os.utime(old, (1_000_000, 1_000_000))
    assert list(found_by_name(landing, modified_after_ms=2_000_000_000)) == ["new.jpeg"]
    bad = os.fsencode(str(landing)) + b"/bad-\xff.jpeg"
    with open(bad, "wb") as handle:
        handle.write(b"x")
    found, problems = scan_landing(landing)
    assert [p.kind for p in problems] == ["name_not_utf8"]
    assert len(found) == 2


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed to drop root's "
                    "file-access capabilities")
def test_an_unreadable_folder_is_skipped_and_reported_the_rest_flows(tmp_path):
    landing = tmp_path / "landing"
    write(landing / "ok" / "IM-0001-0001.jpeg", b"x")
    write(landing / "locked" / "IM-0002-0001.jpeg", b"x")
    os.chmod(landing / "locked", 0)
    script = ("import sys; from streaming.landing.scan import scan_landing; f, p = scan_landing(sys.argv[1]); "
              "print([x.path.rsplit('/', 2)[-2] for x in f], [(x.kind, x.path) for x in p])")
    try:
        # As root the folder would still be readable: drop the capabilities that bypass permissions.
        out = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                              sys.executable, "-c", script, str(landing)],
                             capture_output=True, text=True, check=True, cwd=REPO).stdout
    finally:
        os.chmod(landing / "locked", 0o755)
    assert out.strip() == "['ok'] [('unreadable_folder', 'locked')]"




def test_dicom_is_found_by_extension_and_extensionless_dicom_by_content(tmp_path):
    from dicomfiles import dicom_of, radiograph

    landing = tmp_path / "landing"
    dicom = dicom_of(radiograph(1))
    write(landing / "a.dcm", b"named .dcm: listed whatever it holds")
    write(landing / "b.DICOM", dicom)
    write(landing / "IM000001", dicom)  # a PACS export without extension
    write(landing / "1.2.840.113619.2.55.3.7", dicom)  # named by its SOP instance UID
    write(landing / "README", b"notes\n" * 40)  # no extension, not DICOM: left alone
    write(landing / "notes.txt", dicom)  # another extension: not looked into
    growing = write(landing / "IM000002", dicom[:100])  # still being copied: not yet DICOM
    os.mkfifo(landing / "IM000003")  # never opened (the scan must not block on it)
    assert sorted(found_by_name(landing)) == ["1.2.840.113619.2.55.3.7", "IM000001", "a.dcm", "b.DICOM"]
    growing.write_bytes(dicom)
    assert "IM000002" in found_by_name(landing)

"""`streaming.core.csvfile.read_csv_file`: every way a user's CSV cannot be read is one line naming the
file's kind and the option that passes it, in the caller's error class."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest
from support import REPO

from streaming.core.csvfile import read_csv_file
from streaming.core.errors import FeedbackError


def first_rows(path, handle):
    return [row for row in csv.reader(handle, strict=True)]


def read(path):
    return read_csv_file(path, "feedback", "--csv", FeedbackError, first_rows)


def test_a_spreadsheet_export_with_its_bom_reads_as_text(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes("\ufeffimage_id,label\r\nabc,NORMAL\r\n".encode())
    assert read(path) == [["image_id", "label"], ["abc", "NORMAL"]]


def test_each_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(FeedbackError, match=r"^feedback file .*missing.csv does not exist; pass the CSV with --csv FILE$"):
        read(tmp_path / "missing.csv")
    with pytest.raises(FeedbackError, match="is a folder; pass the CSV file itself$"):
        read(tmp_path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("image_id,comment\nabc,r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(FeedbackError, match=r"is not UTF-8 text; save it as CSV \(UTF-8\)$"):
        read(latin)
    broken = tmp_path / "broken.csv"
    broken.write_text('image_id,label\n"abc,NORMAL\n')
    with pytest.raises(FeedbackError, match=r"is not valid CSV \(.*\); save it as CSV$"):
        read(broken)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed to drop root's "
                    "file-access capabilities")
def test_a_file_without_read_permission(tmp_path):
    path = tmp_path / "locked.csv"
    path.write_text("image_id,label\n")
    path.chmod(0)
    script = ("import sys\nfrom streaming.core.csvfile import read_csv_file\nfrom streaming.core.errors import "
              "FeedbackError\ntry:\n    read_csv_file(sys.argv[1], 'feedback', '--csv', FeedbackError, lambda p, h: h.read())\n"
              "except FeedbackError as error:\n    print(error)\n")
    # As root the file would still be readable: drop the capabilities that bypass permissions.
    out = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                          sys.executable, "-c", script, str(path)],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == f"cannot read feedback file {path} (Permission denied); check its permissions"

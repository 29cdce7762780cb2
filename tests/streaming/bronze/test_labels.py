"""Files outside a label folder of landing: found by their folders, said with path refs only."""

from __future__ import annotations

from streaming.bronze.labels import outside_label_folders, unlabelled_note


def test_files_outside_a_label_folder(tmp_path):
    landing = tmp_path / "landing"
    paths = [landing / "train" / "NORMAL" / "IM-0001-0001.jpeg",  # labelled
             landing / "PNEUMONIA" / "person1_virus_1.jpeg",  # a label folder without a split: labelled
             landing / "scan.jpeg",  # at the root: a mistake
             landing / "ward7" / "x.dcm",  # another folder: a mistake
             landing / "unlabelled" / "to-classify.png",  # meant: images to classify
             landing / "Unlabelled" / "deeper" / "y.jpeg"]
    assert outside_label_folders(landing, [str(p) for p in paths]) == [2, 3]
    # The lakehouse's own path does not count: a lakehouse under /data/NORMAL still needs the folders.
    under_label = tmp_path / "NORMAL" / "landing"
    assert outside_label_folders(under_label, [str(under_label / "scan.jpeg")]) == [0]


def test_the_note_names_refs_never_paths():
    refs = [f"{i:02d}" + "ab" * 31 for i in range(7)]
    note = unlabelled_note(refs)
    assert note.startswith("7 file(s) outside a label folder of landing, so without a label (path_ref 00abab")
    assert " ..." in note and "landing/<split>/<LABEL>/ (e.g. landing/train/PNEUMONIA/)" in note
    assert "landing/unlabelled/" in note and "06abab" not in note

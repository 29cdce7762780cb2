"""Radiologist feedback (streaming/gold/feedback.py, streaming/ops/feedback.py): rows checked one by one,
recorded exactly once by (image, reader), readers only as keyed hashes; the majority rule and agreement.
Delta tables written with delta-rs: no Spark."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
from deltalake import DeltaTable
from support import strings_in, table_rows

from streaming.core.errors import FeedbackError
from streaming.core.pseudonym import reader_ref
from streaming.gold.feedback import (
    BAD_LABEL,
    COMMENT_MAX_CHARS,
    LONG_COMMENT,
    NO_READER,
    NOT_AN_IMAGE_ID,
    UNKNOWN_IMAGE,
    FeedbackInput,
    agreement,
    check_feedback,
    cohen_kappa,
    decide_labels,
)
from streaming.lakehouse.direct import append_rows
from streaming.ops.feedback import feedback_command

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone.utc)
KEY = "k" * 32
IDS = [hashlib.sha256(f"image-{i}".encode()).hexdigest() for i in range(4)]
TABLE = "gold_radiologist_feedback"


def test_each_row_is_checked_and_the_later_row_for_an_image_and_reader_wins():
    given = [
        FeedbackInput(2, IDS[0], "pneumonia", "Dr Ann Lee", "  consolidation, right lower lobe "),
        FeedbackInput(3, IDS[1].upper(), "NORMAL", "Dr Ann Lee"),
        FeedbackInput(4, "person123_bacteria_1.jpeg", "NORMAL", "Dr Ann Lee"),
        FeedbackInput(5, IDS[3], "NORMAL", "Dr Ann Lee"),  # well-formed, but not in silver
        FeedbackInput(6, IDS[2], "maybe", "Dr Ann Lee"),
        FeedbackInput(7, IDS[2], "NORMAL", "  "),
        FeedbackInput(8, IDS[2], "NORMAL", "Dr Ann Lee", "x" * (COMMENT_MAX_CHARS + 1)),
        FeedbackInput(9, IDS[1], "PNEUMONIA", "dr  ann LEE"),  # the same reader again: replaces line 3
        FeedbackInput(10, IDS[1], "NORMAL", "Dr Bo Kim"),
    ]
    batch = check_feedback(given, set(IDS[:3]), KEY, T0, run_id="run1")
    assert batch.rejected == {NOT_AN_IMAGE_ID: [4], UNKNOWN_IMAGE: [5], BAD_LABEL: [6], NO_READER: [7],
                              LONG_COMMENT: [8]}
    assert batch.superseded == [(3, 9)]
    rows = {(r["image_id"], r["reader_id"]): r for r in batch.rows}
    ann, bo = reader_ref("Dr Ann Lee", KEY), reader_ref("Dr Bo Kim", KEY)
    assert set(rows) == {(IDS[0], ann), (IDS[1], ann), (IDS[1], bo)}
    assert rows[(IDS[1], ann)]["reader_label"] == "PNEUMONIA"
    assert rows[(IDS[0], ann)]["comment"] == "consolidation, right lower lobe"
    assert rows[(IDS[1], bo)]["comment"] is None
    assert all(r["feedback_time"] == T0 and r["run_id"] == "run1" for r in rows.values())
    assert len({r["feedback_key"] for r in rows.values()}) == 3
    assert not any("Ann" in s or "Bo Kim" in s for s in strings_in(batch.rows))


def test_the_majority_of_readers_decides_and_a_tie_decides_nothing():
    rows = [{"image_id": "a", "reader_label": "PNEUMONIA"},
            {"image_id": "b", "reader_label": "NORMAL"}, {"image_id": "b", "reader_label": "PNEUMONIA"},
            {"image_id": "c", "reader_label": "NORMAL"}, {"image_id": "c", "reader_label": "PNEUMONIA"},
            {"image_id": "c", "reader_label": "NORMAL"}]
    decided = decide_labels(rows)
    assert decided.confirmed == {"a": "PNEUMONIA", "c": "NORMAL"}
    assert decided.disputed == {"b"} and decided.readers == {"a": 1, "b": 2, "c": 3}


def test_agreement_and_kappa_match_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    readers = rng.choice(["NORMAL", "PNEUMONIA"], 60).tolist()
    model = [r if rng.random() < 0.8 else ("NORMAL" if r == "PNEUMONIA" else "PNEUMONIA") for r in readers]
    measured = agreement(model, readers)
    assert measured["images"] == 60
    assert measured["agreeing"] == sum(m == r for m, r in zip(model, readers, strict=True))
    assert measured["agreement"] == pytest.approx(measured["agreeing"] / 60)
    assert measured["cohen_kappa"] == pytest.approx(cohen_kappa_score(model, readers))
    # Both always said the same one label: agreement is total, kappa undefined.
    assert agreement(["NORMAL"] * 3, ["NORMAL"] * 3)["cohen_kappa"] is None
    assert agreement([], [])["agreement"] is None and cohen_kappa([[0, 0], [0, 0]]) is None


@pytest.fixture
def silver(config):
    """A lakehouse whose silver holds three images (delta-rs only)."""
    config.root.mkdir(parents=True)
    append_rows(config, "silver_xray_metadata", [{"image_id": i, "label": 0, "split": "train"} for i in IDS[:3]])
    return config


def write_csv(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n")
    return path


def version(config) -> int:
    return DeltaTable(str(config.table_path(TABLE))).version()


def test_the_same_csv_twice_adds_nothing_and_a_correction_replaces(silver, tmp_path):
    labels = write_csv(tmp_path / "labels.csv", [
        "Image_ID,label,reader,comment",
        f"{IDS[0]},PNEUMONIA,Dr Ann Lee,patchy opacity",
        f"{IDS[1]},NORMAL,Dr Ann Lee,",
        f"{IDS[1]},NORMAL,Dr Bo Kim,",
        "",
    ])
    first = feedback_command(silver, csv_path=str(labels))
    first.check()
    assert first.counts == {"added": 3, "replaced": 0, "unchanged": 0}
    recorded, after_first = table_rows(silver, TABLE), version(silver)

    again = feedback_command(silver, csv_path=str(labels))
    assert again.counts == {"added": 0, "replaced": 0, "unchanged": 3}
    assert version(silver) == after_first  # not even an empty commit
    assert sorted(table_rows(silver, TABLE), key=str) == sorted(recorded, key=str)

    correction = write_csv(tmp_path / "correction.csv", ["image_id,label,reader", f"{IDS[1]},PNEUMONIA,DR ANN LEE"])
    assert feedback_command(silver, csv_path=str(correction)).counts == {"added": 0, "replaced": 1, "unchanged": 0}
    rows = table_rows(silver, TABLE)
    assert len(rows) == 3
    ann = next(r for r in rows if r["image_id"] == IDS[1] and r["reader_id"] == reader_ref("Dr Ann Lee", silver.patient_salt()))
    assert ann["reader_label"] == "PNEUMONIA" and ann["feedback_time"] > recorded[0]["feedback_time"]
    assert ann["comment"] is None
    # Only keyed hashes of the readers reach the table.
    assert not any("Ann" in s or "ANN" in s or "Kim" in s for s in strings_in(rows))


def test_refused_rows_are_named_by_line_and_reason_and_the_rest_recorded(silver, tmp_path):
    labels = write_csv(tmp_path / "labels.csv", [
        "image_id,label,reader",
        f"{IDS[0]},NORMAL,",  # no reader: --reader fills it
        "IM-0001-0001.jpeg,NORMAL,Dr Ann Lee",
        f"{IDS[2]},MAYBE,Dr Ann Lee",
    ])
    report = feedback_command(silver, csv_path=str(labels), reader="Dr Cy Ng")
    with pytest.raises(FeedbackError) as raised:
        report.check()
    message = str(raised.value)
    assert message.startswith("2 of 3 row(s) refused (line 3: not an image id")
    assert f"line 4: {BAD_LABEL}" in message and "the other 1 were taken" in message
    assert "IM-0001" not in message and "MAYBE" not in message  # lines, never values
    (row,) = table_rows(silver, TABLE)
    assert row["reader_id"] == reader_ref("Dr Cy Ng", silver.patient_salt())


@pytest.mark.parametrize(("lines", "expected"), [
    (["image_id,diagnosis", "x,NORMAL"], "has the columns image_id, diagnosis; expected a header with"),
    (["image_id,label,reader,coment", "x,NORMAL,a,b"], "has the columns image_id, label, reader, coment"),
    (["image_id,label", "x,NORMAL"], "has no reader column; add one"),
    (["image_id,label,reader"], "has no rows under its header"),
])
def test_a_csv_with_wrong_columns_is_one_error_and_records_nothing(silver, tmp_path, lines, expected):
    with pytest.raises(FeedbackError, match=expected):
        feedback_command(silver, csv_path=str(write_csv(tmp_path / "bad.csv", lines)))
    assert not DeltaTable.is_deltatable(str(silver.table_path(TABLE)))

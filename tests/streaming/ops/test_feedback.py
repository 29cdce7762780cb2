"""``xray feedback`` as a command (errors: exit 2, one line, nothing raw in the audit trail) and what
``xray status`` says of the feedback: readers, confirmed and disputed images, the champion's agreement.
In-process, delta-rs only: no Spark."""

from __future__ import annotations

import hashlib
import json

import pytest
from support import strings_in, table_rows

from streaming.cli.commands import main
from streaming.core.pseudonym import reader_ref
from streaming.gold.feedback import agreement, feedback_row
from streaming.lakehouse.direct import append_rows
from streaming.ops.feedback import feedback_lines, feedback_status

IDS = [hashlib.sha256(f"image-{i}".encode()).hexdigest() for i in range(6)]


@pytest.fixture
def root(config):
    """An existing lakehouse whose silver holds six images."""
    config.root.mkdir(parents=True)
    append_rows(config, "silver_xray_metadata", [{"image_id": i, "label": 1, "split": "train"} for i in IDS])
    return config.root


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xray feedback: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_user_errors_exit_2_with_one_line(root, tmp_path, capsys):
    base = ["feedback", "--lakehouse", str(root)]
    bad = tmp_path / "bad.csv"
    bad.write_text("image,label,reader\nx,NORMAL,a\n")
    assert main([*base, "--csv", str(bad)]) == 2
    assert "expected a header with image_id, label" in one_error_line(capsys)
    assert main([*base, "--image-id", IDS[0]]) == 2
    assert "needs --label" in one_error_line(capsys)
    assert main([*base, "--image-id", "person77_virus_1.jpeg", "--label", "NORMAL"]) == 2
    line = one_error_line(capsys)
    assert "not an image id" in line and "person77" not in line
    assert main(["feedback", "--lakehouse", str(tmp_path / "typo"), "--image-id", IDS[0], "--label", "NORMAL"]) == 2
    assert "no lakehouse at" in one_error_line(capsys)
    assert not (tmp_path / "typo").exists()
    assert not (root / "tables" / "gold_radiologist_feedback").exists()


@pytest.mark.engine_dependent
def test_a_label_is_recorded_and_audited_without_the_readers_name_or_note(config, root, capsys):
    command = ["feedback", "--lakehouse", str(root), "--image-id", IDS[0], "--label", "pneumonia",
               "--reader", "Dr Ann Lee", "--comment", "left lower lobe"]
    assert main(command) == 0
    assert "1 added" in capsys.readouterr().out
    assert main(command) == 0  # the same label again: recorded once
    out = capsys.readouterr().out
    assert "0 added, 0 replaced" in out and "1 unchanged" in out
    (row,) = table_rows(config, "gold_radiologist_feedback")
    assert row["reader_id"] == reader_ref("Dr Ann Lee", config.patient_salt()) and row["reader_label"] == "PNEUMONIA"
    audit = table_rows(config, "audit_log")
    finished = [r for r in audit if r["event"] == "finished"]
    assert [r["outcome"] for r in finished] == ["ok", "ok"]
    options = json.loads(finished[0]["options"])
    assert options["reader"] == f"reader:{row['reader_id']}" and options["comment"] == "<free text, 15 characters>"
    assert row["run_id"] in {r["run_id"] for r in finished}
    for value in strings_in(audit):
        assert "Ann" not in value and "lobe" not in value


def test_status_counts_readers_and_the_champions_agreement(config):
    config.root.mkdir(parents=True)
    key = config.patient_salt()
    labels = {IDS[0]: ["PNEUMONIA"], IDS[1]: ["NORMAL", "NORMAL", "PNEUMONIA"], IDS[2]: ["NORMAL", "PNEUMONIA"],
              IDS[3]: ["PNEUMONIA"], IDS[4]: ["NORMAL"]}
    rows = [feedback_row(image, label, reader_ref(f"reader {n}", key), None, None)
            for image, given in labels.items() for n, label in enumerate(given)]
    append_rows(config, "gold_radiologist_feedback", rows)
    champion = {"name": "m", "version": "2"}
    predicted = {IDS[0]: "PNEUMONIA", IDS[1]: "PNEUMONIA", IDS[2]: "NORMAL", IDS[3]: "PNEUMONIA"}
    append_rows(config, "gold_pneumonia_predictions", [
        *({"image_id": i, "predicted_label": p, "model_name": "m", "model_version": "2"} for i, p in predicted.items()),
        {"image_id": IDS[4], "predicted_label": "PNEUMONIA", "model_name": "m", "model_version": "1"},  # not the champion
    ])

    status = {"feedback": feedback_status(config, champion)}

    fb = status["feedback"]
    assert (fb["labels"], fb["images"], fb["readers"], fb["confirmed"], fb["disputed"]) == (8, 5, 3, 4, 1)
    # Confirmed images the champion scored: IDS[0], IDS[1] (majority NORMAL), IDS[3]; IDS[2] is disputed.
    expected = agreement([predicted[i] for i in (IDS[0], IDS[1], IDS[3])], ["PNEUMONIA", "NORMAL", "PNEUMONIA"])
    assert fb["champion"] == {"model_version": "2", **expected} and expected["images"] == 3
    text = "\n".join(feedback_lines(status))
    assert "8 label(s), 3 reader(s), 5 image(s): 4 confirmed, 1 disputed" in text
    assert f"version 2 agrees with readers on {expected['agreeing']} of 3 (" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert feedback_status(config, {"name": "m", "version": None})["champion"] is None


@pytest.mark.engine_dependent
def test_status_and_the_page_read_gold_after_a_rescore_merge(spark, config, capsys):
    """`xray feedback`, `xray rescore` (a delta-rs MERGE into gold: its files hold `string_view` columns),
    then `xray status` and the page: the champion's agreement is read, never an ArrowNotImplementedError."""
    import numpy as np
    from populated import synthetic_silver

    from batch.bench.champion import register_champion
    from batch.retraining import stale_predictions
    from batch.training.rescore import rescore
    from streaming.imaging.features import FEATURE_VERSION
    from streaming.lakehouse.engine import Lakehouse
    from streaming.ops.livestatus import page_status

    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    metadata = [r for r in synthetic_silver(lakehouse) if r["label"] is not None]
    features = {r["image_id"]: r["features"] for r in table_rows(config, "silver_image_features")}
    register_champion(config.root, np.asarray([features[r["image_id"]] for r in metadata], dtype=np.float32),
                      np.asarray([r["label"] for r in metadata]), FEATURE_VERSION)
    lakehouse.append_rows("gold_pneumonia_predictions", [  # an older model's predictions: rescore replaces them
        {"prediction_id": f"old-{n}", "image_id": r["image_id"], "predicted_label": "NORMAL", "model_name": "old",
         "model_version": "1"} for n, r in enumerate(metadata)])
    for row in metadata[:4]:
        assert main(["feedback", "--lakehouse", str(config.root), "--image-id", row["image_id"], "--label",
                     row["label_name"], "--reader", "Dr A"]) == 0
    assert rescore(spark, config).updated_rows == len(metadata)
    capsys.readouterr()

    assert main(["status", "--json", "--lakehouse", str(config.root)]) == 0
    champion = json.loads(capsys.readouterr().out)["feedback"]["champion"]
    assert champion["images"] == 4 and champion["model_version"] == "1"
    assert stale_predictions(config) == 0  # the retrain cycle's "gold lags the champion" count, same files
    assert page_status(lakehouse)["feedback"]["champion"]["images"] == 4

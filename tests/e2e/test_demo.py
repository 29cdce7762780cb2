"""`xray demo` end to end on the embedded default (synthetic images, offline), run twice like a new user."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
from deltalake import DeltaTable

from batch.demo import BAD_EXAMPLES, DICOM_VARIANTS, command_line, run_demo, xray_command


def printed_command(output: str, prefix: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith(prefix))
    return shlex.split(line.split(": ", 1)[1].split("  (")[0]) if prefix != "Quarantined" else \
        shlex.split(line.rsplit("with: ", 1)[1])


def runs_as_printed(words: list[str], tmp_path) -> None:
    """The command's program and module resolve from another folder, without the caller's environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"  # no venv on the PATH: the printed words must carry it
    done = subprocess.run([*words, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (words, done.stderr[-2000:])


def test_xray_command_runs_as_typed(tmp_path):
    script = tmp_path / "venv" / "bin" / "xray"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    assert xray_command(str(script), environ={}) == [str(script)]
    module = xray_command("/src/streaming/cli/commands.py", executable="/v/bin/python", environ={})
    assert module == ["/v/bin/python", "-m", "streaming.cli"]
    kept = xray_command("main.py", executable="/v/bin/python", environ={"PYTHONPATH": "."})
    assert kept[:2] == ["env", f"PYTHONPATH={os.getcwd()}"]
    assert command_line(["/a b/xray", "status"]) == "'/a b/xray' status"


@pytest.mark.slow
def test_demo_runs_end_to_end_twice(spark, config, monkeypatch, capsys, caplog, tmp_path):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config.root / "no-kaggle"))

    summary = run_demo(spark, config, per_class=12)

    counts = summary["counts"]
    dicom = len(DICOM_VARIANTS) * 2  # DICOM files of synthetic images, per class
    images = 12 * 2 * 2 + dicom  # per class x classes x splits (train, test), plus the DICOM files
    bad = len(BAD_EXAMPLES)
    assert counts["bronze_xray_images"] == images + bad
    assert counts["silver_xray_metadata"] == counts["gold_pneumonia_predictions"] == images
    assert counts["silver_quarantine"] == bad
    quarantined = DeltaTable(str(config.table_path("silver_quarantine"))).to_pyarrow_table(
        columns=["rule", "reason"]).to_pylist()
    assert {row["rule"] for row in quarantined} == {"decodes", "is_image", "not_empty", "dicom_radiograph"}
    ct = next(row for row in quarantined if row["rule"] == "dicom_radiograph")
    assert "modality CT" in ct["reason"]
    metadata = DeltaTable(str(config.table_path("silver_xray_metadata"))).to_pyarrow_table().to_pylist()
    as_dicom = [row for row in metadata if row["image_format"] == "DICOM"]
    assert len(as_dicom) == dicom and {row["label"] for row in as_dicom} == {0, 1}
    assert {row["photometric_interpretation"] for row in as_dicom} == {"MONOCHROME1", "MONOCHROME2"}
    assert {row["bits_stored"] for row in as_dicom} == {8, 12}
    assert "DEMO" not in str(metadata)  # de-identified: no fake name, ID or institution reached silver
    assert counts["gold_model_performance"] >= 2
    assert summary["report"] and (config.reports_dir / "index.html").exists()
    page = (config.reports_dir / "index.html").read_text()
    assert "Synthetic data" in page and "Hold-out performance per model version" in page
    output = capsys.readouterr().out
    assert "Report:" in output and "MLflow UI:" in output
    assert "4 deliberately bad files" in output and "plus 10 DICOM files" in output
    assert re.search(r"Quarantined on purpose: 4 file\(s\) by rule: .*decodes 1 \(a truncated JPEG\)", output)
    assert "dicom_radiograph 1 (a CT DICOM, not a radiograph)" in output
    assert f"Champion model: {config.model_name} version 1 (validation accuracy" in output
    status = printed_command(output, "Quarantined")
    program = next(word for word in status if word != "env" and not word.startswith("PYTHONPATH="))
    assert status[-3:] == ["status", "--lakehouse", str(config.root)] and os.path.isabs(program)
    runs_as_printed(status[:-3], tmp_path)
    keep = printed_command(output, "Keep streaming")
    assert keep[-3:] == ["stream", "--lakehouse", str(config.root)]
    mlflow = printed_command(output, "MLflow UI")
    assert mlflow[-3:] == ["mlflow-ui", "--lakehouse", str(config.root)] and os.path.isabs(mlflow[0])
    assert "landing/<split>/<LABEL>/" in output  # where to drop files: the label folders

    # The second run registers version 2 on the same images; a tie keeps version 1 as champion.
    again = run_demo(spark, config, per_class=12)
    output = capsys.readouterr().out
    assert again["model_version"] == "2" and not again["promoted"] and again["champion_version"] == "1"
    assert f"Champion model: {config.model_name} version 1 (" in output
    assert "this run's version 2 was not promoted" in output
    assert "version 2 (" not in output.split("Champion model:", 1)[1].split(";")[0]
    assert not any("batch -1" in record.getMessage() for record in caplog.records)

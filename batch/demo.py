"""``xray demo``: the whole service once, offline, on a sample — what a newcomer runs first.

Stages a sample into landing (synthetic X-ray-like images generated here, with DICOM files of such images and
a few deliberately bad files; or a Kaggle download when credentials exist and ``--source kaggle``/``auto``),
streams it to bronze and silver, trains and registers a model, scores gold, writes metrics and the report,
and prints where to look.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from streaming.core.config import XrayConfig
from streaming.core.names import UNLABELLED
from streaming.lakehouse.catalog import ALL_TABLES
from streaming.lakehouse.engine import Lakehouse
from streaming.pipeline.service import run_stream

if TYPE_CHECKING:
    from batch.training.retrain import RetrainResult
    from streaming.imaging.dicomwrite import DicomSpec

log = logging.getLogger(__name__)

DEFAULT_PER_CLASS = 60
SYNTHETIC_SEED = 0
# What each deliberately bad file is, by the rule silver quarantines it under.
BAD_EXAMPLES = {"decodes": "a truncated JPEG", "is_image": "a text file named .jpeg", "not_empty": "an empty file",
                "dicom_radiograph": "a CT DICOM, not a radiograph"}
# The DICOM files of the demo, per class: (photometric interpretation, bits stored, compression).
DICOM_VARIANTS = (("MONOCHROME2", 8, "none"), ("MONOCHROME1", 8, "none"), ("MONOCHROME2", 12, "none"),
                  ("MONOCHROME1", 12, "none"), ("MONOCHROME2", 12, "rle"))
DICOM_SEED = 424242
# Obviously fake identifying tags: silver keeps none of them (the patient only as a keyed hash).
FAKE_PATIENT_NAME = "DEMO^PATIENT"


def xray_command(argv0: str | None = None, executable: str | None = None,
                 environ: dict[str, str] | None = None) -> list[str]:
    """The words that run this very ``xray`` again when typed in a shell, from any folder.

    The absolute path of the running ``xray`` script when started as one (``.venv/bin/xray``, no venv
    activation needed), else this interpreter with ``-m streaming.cli``; a ``PYTHONPATH`` the run
    depends on is kept in front (``env PYTHONPATH=...``), made absolute.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    environ = os.environ if environ is None else environ
    script = Path(argv0)
    if script.name.startswith("xray") and script.suffix != ".py" and script.is_file():
        return [os.path.abspath(script)]
    words = [os.path.abspath(executable or sys.executable), "-m", "streaming.cli"]
    pythonpath = environ.get("PYTHONPATH")
    if pythonpath:
        absolute = os.pathsep.join(os.path.abspath(part) for part in pythonpath.split(os.pathsep) if part)
        words = ["env", f"PYTHONPATH={absolute}", *words]
    return words


def command_line(words: Sequence[str]) -> str:
    """Words joined for a POSIX shell, quoted where needed."""
    return " ".join(shlex.quote(str(word)) for word in words)


def kaggle_credentials_present() -> bool:
    """Whether the kaggle client would find credentials (environment or kaggle.json)."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    return (folder / "kaggle.json").is_file()


def _place(landing: Path, examples: dict[str, bytes]) -> list[Path]:
    """Write each file under landing atomically (hidden temporary name, then rename)."""
    written = []
    for relative, content in examples.items():
        path = landing / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(content)
        os.replace(temporary, path)
        written.append(path)
    return written


def _fake_spec(number: int, **kwargs: object) -> DicomSpec:
    """Fake identifiers, and UIDs derived from ``number``: a second demo run stages the same contents."""
    from pydicom.uid import generate_uid

    from streaming.imaging.dicomwrite import DicomSpec

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=["xray-demo", kind, str(number)])

    return DicomSpec(patient_id=f"DEMO-{number:04d}", patient_name=FAKE_PATIENT_NAME,
                     sop_instance_uid=uid("instance"),
                     extra={"StudyInstanceUID": uid("study"), "SeriesInstanceUID": uid("series"),
                            "InstitutionName": "DEMO HOSPITAL", "ReferringPhysicianName": "DEMO^DOCTOR",
                            "AccessionNumber": f"DEMO{number:06d}"}, **kwargs)


def stage_dicom_examples(landing: Path) -> list[Path]:
    """DICOM files of synthetic images in the train split, ``DICOM_VARIANTS`` per class (MONOCHROME1,
    12-bit, RLE), with fake identifying tags (PatientName ``DEMO^PATIENT``, ...): silver decodes them like
    the JPEGs and keeps de-identified attributes only."""
    from streaming.core.names import LABELS
    from streaming.imaging.synthetic import make_xray_dicom

    examples = {}
    for label_index, label in enumerate(LABELS):
        for index, (photometric, bits, compression) in enumerate(DICOM_VARIANTS):
            number = label_index * len(DICOM_VARIANTS) + index + 1
            spec = _fake_spec(number, photometric=photometric, bits_stored=bits, compression=compression,
                              window=(2048, 4096) if bits == 12 else None)
            examples[f"train/{label}/DEMO-{number:04d}.dcm"] = make_xray_dicom(label, DICOM_SEED + number, spec)
    return _place(landing, examples)


def stage_bad_examples(landing: Path) -> list[Path]:
    """A few files a real user drops by mistake, so the demo shows quarantine at work."""
    from streaming.imaging.synthetic import make_xray_dicom, make_xray_jpeg

    valid = make_xray_jpeg("NORMAL", seed=987654)
    return _place(landing, {
        "train/NORMAL/IM-9990-0001.jpeg": valid[: len(valid) // 2],  # truncated copy
        "train/NORMAL/IM-9991-0001.jpeg": b"scanner export failed\n" * 10,  # text named .jpeg
        "train/PNEUMONIA/person9992_virus_1.jpeg": b"",  # zero-byte file
        "train/NORMAL/DEMO-9993.dcm": make_xray_dicom("NORMAL", 987655, _fake_spec(9993, modality="CT")),
    })


def _step(title: str) -> float:
    print(f"==> {title}", flush=True)
    return time.monotonic()


def _stage(spark: SparkSession, config: XrayConfig, per_class: int, use_kaggle: bool) -> None:
    from streaming.imaging.synthetic import write_synthetic_dataset
    from streaming.ingest import ingest_folder, ingest_kaggle
    from streaming.ops.provenance import mark_synthetic

    _step(f"staging a sample into {config.landing_dir}")
    if use_kaggle:
        ingest_kaggle(spark, config, sample_per_class=per_class, splits=("train", "test"))
        return
    with tempfile.TemporaryDirectory(prefix="xray-demo-") as folder:
        written = write_synthetic_dataset(Path(folder), per_class=per_class, splits=("train", "test"),
                                          seed=SYNTHETIC_SEED)
        dicom_count = len(DICOM_VARIANTS) * 2
        # Before any of them is ingested; the DICOM files are synthetic images too.
        mark_synthetic(config, images=len(written) + dicom_count, seed=SYNTHETIC_SEED)
        ingest_folder(spark, config, folder, splits=("train", "test"))
    print(f"    synthetic X-ray-like images ({per_class} per class per split), not patient data: the report "
          "says so", flush=True)
    dicom = stage_dicom_examples(config.landing_dir)
    print(f"    plus {len(dicom)} DICOM files of such images (MONOCHROME1, 12-bit, RLE) with fake identifying "
          f"tags (PatientName {FAKE_PATIENT_NAME}): silver keeps de-identified attributes only", flush=True)
    bad = stage_bad_examples(config.landing_dir)
    print(f"    plus {len(bad)} deliberately bad files ({', '.join(BAD_EXAMPLES.values())}): silver quarantines "
          "them instead of failing", flush=True)


def _champion_line(config: XrayConfig, trained: RetrainResult) -> str:
    """Which version serves now: the alias holder in the registry, whatever this run's retrain decided."""
    from streaming.core.registry import champion, version_tags

    current = champion(config)
    if current is None:
        return f"Champion model: none (this run registered {trained.version.name} version " \
               f"{trained.version.version}, not promoted: {trained.reason})"
    accuracy = version_tags(config, current).get("validation_accuracy")
    detail = f"validation accuracy {float(accuracy):.3f}" if accuracy else "no validation accuracy recorded"
    line = f"Champion model: {current.name} version {current.version} ({detail})"
    if current.version != trained.version.version:
        line += f"; this run's version {trained.version.version} was not promoted ({trained.reason})"
    return line


def _quarantine_line(quarantine_by_rule: dict[str, int], status: str) -> str:
    """What quarantine holds by rule, the deliberately bad files named, and where to see them."""
    if not quarantine_by_rule:
        return f"Quarantine: empty. Progress: {status}"
    ranked = sorted(quarantine_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = [f"{rule} {count}" + (f" ({BAD_EXAMPLES[rule]})" if rule in BAD_EXAMPLES else "")
             for rule, count in ranked]
    total = sum(quarantine_by_rule.values())
    return (f"Quarantined on purpose: {total} file(s) by rule: {', '.join(parts)}. See them in the report's "
            f"'Quarantine by rule' and with: {status}")


def _look_next(config: XrayConfig, report: Path | None, quarantine_by_rule: dict[str, int]) -> None:
    """Where to look, as commands that run as printed (absolute paths, the lakehouse used)."""
    xray = xray_command()
    lakehouse = ["--lakehouse", str(config.root)]
    if report:
        print(f"Report: {report}")
    print(_quarantine_line(quarantine_by_rule, command_line([*xray, "status", *lakehouse])))
    # Not `mlflow ui`: SIGTERM leaves its worker processes running; `xray mlflow-ui` stops them all.
    print(f"MLflow UI: {command_line([*xray, 'mlflow-ui', *lakehouse])}  (Ctrl-C stops it)")
    print(f"Keep streaming: {command_line([*xray, 'stream', *lakehouse])}")
    # The folders say the label: a file at the landing root has none (scored, never trained on).
    print(f"  drop labelled images into {config.landing_dir}/<split>/<LABEL>/ (e.g. "
          f"{config.landing_dir / 'train' / 'PNEUMONIA'}/), images to classify into "
          f"{config.landing_dir / UNLABELLED}/")


def run_demo(spark: SparkSession, config: XrayConfig, per_class: int | None = None, source: str = "auto") -> dict:
    """Run the demo end to end; returns a summary (counts, metrics, paths, seconds)."""
    from batch.evaluation.metrics import run_metrics
    from batch.training.retrain import retrain

    started = time.monotonic()
    per_class = per_class or DEFAULT_PER_CLASS
    use_kaggle = source == "kaggle" or (source == "auto" and kaggle_credentials_present())
    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    print(f"xray demo: lakehouse {config.root} (Delta engine: {lakehouse.format})")

    _stage(spark, config, per_class, use_kaggle)

    _step("streaming landing -> bronze -> silver (xray stream --once)")
    run_stream(spark, config, layers=("bronze", "silver"), once=True)

    _step("training and registering a model (xray retrain)")
    trained = retrain(spark, config)

    _step("scoring silver features into gold (xray stream --once --layer gold)")
    run_stream(spark, config, layers=("gold",), once=True)

    _step("evaluating and writing the report (xray metrics)")
    metrics = run_metrics(spark, config)

    counts = {spec.name: lakehouse.row_count(spec.name) for spec in ALL_TABLES}
    seconds = time.monotonic() - started
    print()
    print(f"Done in {seconds:.0f} s. Tables under {config.tables_dir}:")
    for name, count in counts.items():
        print(f"  {name:<28} {count:>7} rows")
    from streaming.core.registry import champion

    print(_champion_line(config, trained))
    current = champion(config)
    report = getattr(metrics, "report_path", None)
    _look_next(config, report, metrics.quarantine_by_rule)
    return {"seconds": seconds, "counts": counts, "model_version": trained.version.version,
            "promoted": trained.promoted, "champion_version": current.version if current else None,
            "report": str(report) if report else None}

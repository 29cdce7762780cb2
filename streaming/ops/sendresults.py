"""`xray send-results`: each scored DICOM image's prediction back to the PACS as a Structured Report, once.

For every gold prediction (image and model version) not yet in ``dicom_results_sent`` whose image came in
as DICOM, the original's header is read back from bronze (the only layer holding its UIDs and patient
module: re-identification happens here, at send time, and nowhere else), `streaming.gold.srdocument` builds
the SR and pynetdicom C-STOREs it to ``results_destination`` (``AE@host:port``). A prediction is recorded as
sent only after the destination acknowledged it; the rows are committed every few dozen reports and when the
run ends, however it ends. A run killed between an acknowledgement and that commit sends those reports again
on the next run with the same SOP Instance UIDs (they derive from the prediction), so the PACS holds each
report once. One run at a time per lakehouse (a lock).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError, DicomSendError, XrayError, first_line
from streaming.core.locks import held_lock
from streaming.core.pseudonym import keyed_hash
from streaming.core.registry import ModelRef, version_tags
from streaming.gold.srdocument import SR_SOP_CLASS, ScoredImage, structured_report
from streaming.lakehouse.catalog import BRONZE_IMAGES, DICOM_RESULTS_SENT, GOLD_PREDICTIONS, SILVER_METADATA
from streaming.lakehouse.direct import append_rows

log = logging.getLogger(__name__)

__all__ = ["RESULTS_EVERY_SECONDS", "Destination", "SendReport", "parse_destination", "results_task", "send_results"]

COMMIT_EVERY = 50
RESULTS_EVERY_SECONDS = 60.0  # `xray stream` with results_destination: a pass this often
SCAN_BATCH_ROWS = 64


@dataclass(frozen=True)
class Destination:
    """A DICOM node: its AE title, host and port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass
class SendReport:
    """What a run did: reports sent (acknowledged), already sent before, not DICOM (no instance to refer
    to), without their original in bronze, and refused by the destination."""

    sent: int = 0
    already_sent: int = 0
    not_dicom: int = 0
    missing_original: int = 0
    refused: int = 0


def parse_destination(text: str) -> Destination:
    """``AE@host:port`` → `Destination`; `ConfigError` saying the form otherwise."""
    title, at, address = text.strip().partition("@")
    host, colon, port = address.rpartition(":")
    if not (at and colon and title and host and port.isdigit() and 0 < int(port) <= 65535) or len(title) > 16:
        raise ConfigError(f"invalid results destination {text!r}: give AE@host:port (e.g. PACS@10.1.2.3:104), "
                          "in --to or results_destination")
    return Destination(title, host.strip("[]"), int(port))


def _table(config: XrayConfig, name: str):
    from streaming.lakehouse.tables import open_table

    return open_table(config, name)


def _rows(config: XrayConfig, name: str, columns: list[str]) -> list[dict]:
    table = _table(config, name)
    return [] if table is None else table.to_pyarrow_table(columns=columns).to_pylist()


def _originals(config: XrayConfig, path_refs: set[str]) -> dict[str, object]:
    """The DICOM headers (pixels not read) of bronze's files by ``path_ref``, scanned a few rows at a time
    (filtered after reading: a filtered read of a string column without statistics can lose rows)."""
    import pydicom

    bronze, headers = _table(config, BRONZE_IMAGES.name), {}
    if bronze is None or not path_refs:
        return headers
    for batch in bronze.to_pyarrow_dataset().to_batches(columns=["path_ref", "content"], batch_size=SCAN_BATCH_ROWS):
        for row in batch.to_pylist():
            if row["path_ref"] in path_refs and row["content"] and row["path_ref"] not in headers:
                try:
                    headers[row["path_ref"]] = pydicom.dcmread(io.BytesIO(row["content"]), stop_before_pixels=True)
                except Exception as error:  # silver read it once; a damaged copy is skipped
                    log.debug("bronze file %s has no readable DICOM header (%s)", row["path_ref"][:12], error)
    return headers


def _threshold(config: XrayConfig, name: str, version: str, cache: dict) -> float | None:
    if (name, version) not in cache:
        try:
            value = version_tags(config, ModelRef(name, version)).get("threshold")
            cache[(name, version)] = float(value) if value is not None else None
        except Exception as error:  # a version gone from the registry: said in the report
            log.warning("model %s version %s: no threshold in the registry (%s)", name, version, type(error).__name__)
            cache[(name, version)] = None
    return cache[(name, version)]


def _scored_images(config: XrayConfig, report: SendReport) -> Iterator[ScoredImage]:
    """The predictions still to send, each with its original's header; counts what cannot be sent."""
    sent = {row["prediction_id"] for row in _rows(config, DICOM_RESULTS_SENT.name, ["prediction_id"])}
    predictions = _rows(config, GOLD_PREDICTIONS.name, ["prediction_id", "image_id", "predicted_label",
                                                        "probability_pneumonia", "model_name", "model_version",
                                                        "predicted_time"])
    pending = [p for p in predictions if p["prediction_id"] not in sent]
    report.already_sent = len(predictions) - len(pending)
    silver = {row["image_id"]: row for row in _rows(config, SILVER_METADATA.name,
                                                    ["image_id", "path_ref", "image_format"])}
    dicom = [p for p in pending if (silver.get(p["image_id"]) or {}).get("image_format") == "DICOM"]
    report.not_dicom = len(pending) - len(dicom)
    headers = _originals(config, {silver[p["image_id"]]["path_ref"] for p in dicom})
    thresholds: dict = {}
    for prediction in sorted(dicom, key=lambda p: (p["predicted_time"], p["prediction_id"])):
        original = headers.get(silver[prediction["image_id"]]["path_ref"])
        if original is None or "StudyInstanceUID" not in original or "SOPInstanceUID" not in original:
            report.missing_original += 1
            continue
        yield ScoredImage(prediction["prediction_id"], prediction["image_id"], prediction["predicted_label"],
                          prediction["probability_pneumonia"],
                          _threshold(config, prediction["model_name"], prediction["model_version"], thresholds),
                          prediction["model_name"], prediction["model_version"], prediction["predicted_time"],
                          original)


def _associate(destination: Destination, calling_ae: str):  # pynetdicom's Association
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(SR_SOP_CLASS, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise DicomSendError(f"no association with {destination} ({'rejected' if assoc.is_rejected else 'no answer'}); "
                             "check the AE title, host and port, and that it lets our AE title "
                             f"{calling_ae} in; nothing was sent")
    return assoc


def _sent_row(config: XrayConfig, image: ScoredImage, sr, destination: Destination) -> dict:
    salt = config.patient_salt()
    return {"prediction_id": image.prediction_id, "image_id": image.image_id, "model_name": image.model_name,
            "model_version": image.model_version,
            "study_ref": keyed_hash(salt, "study", str(image.original.StudyInstanceUID)),
            "report_ref": keyed_hash(salt, "instance", str(sr.SOPInstanceUID)),
            "destination": str(destination), "sent_time": datetime.now(timezone.utc)}


def send_results(config: XrayConfig, to: str | None = None, limit: int | None = None,
                 stop_event: threading.Event | None = None) -> SendReport:
    """Send every unsent prediction of a DICOM image as an SR (at most ``limit``; until ``stop_event`` is
    set); returns the counts."""
    text = to or config.results_destination
    if not text:
        raise ConfigError("no destination: set results_destination = \"AE@host:port\" or pass --to AE@host:port")
    destination = parse_destination(text)
    report = SendReport()
    busy = "another 'xray send-results' is running on {} ({}); wait for it to finish".format
    with held_lock(config.root / "_locks" / "send-results.lock", lambda holder: busy(config.root, holder)):
        _send(config, destination, limit, report, stop_event)
    log.info("sent %d report(s) to %s; %d sent before, %d not DICOM, %d without their original in bronze, "
             "%d refused", report.sent, destination, report.already_sent, report.not_dicom,
             report.missing_original, report.refused)
    return report


def _send(config: XrayConfig, destination: Destination, limit: int | None, report: SendReport,
          stop_event: threading.Event | None) -> None:
    assoc, done = None, []
    try:
        for image in _scored_images(config, report):
            if (limit is not None and report.sent + report.refused >= limit) or (stop_event and stop_event.is_set()):
                break
            sr = structured_report(image)
            if assoc is None:
                assoc = _associate(destination, config.receive_ae_title)
            answer = assoc.send_c_store(sr)
            status = int(answer.Status) if "Status" in answer else None
            if status is None:
                raise DicomSendError(f"{destination} ended the association; {report.sent} report(s) were "
                                     "acknowledged and recorded; run the command again to send the rest")
            if status == 0 or 0xB000 <= status <= 0xBFFF:  # success, or stored with a warning
                done.append(_sent_row(config, image, sr, destination))
                report.sent += 1
                if len(done) >= COMMIT_EVERY:
                    append_rows(config, DICOM_RESULTS_SENT.name, done)
                    done = []
            else:
                report.refused += 1
                log.warning("%s refused a report (status 0x%04X); it stays unsent and is tried on the next run",
                            destination, status)
    finally:
        if done:
            append_rows(config, DICOM_RESULTS_SENT.name, done)  # what was acknowledged, however the run ends
        if assoc is not None and assoc.is_established:
            assoc.release()


def results_task(config: XrayConfig, every: float = RESULTS_EVERY_SECONDS
                 ) -> Callable[[object, threading.Event], threading.Thread] | None:
    """`xray stream`'s background task (`run_stream`'s ``background``) when ``results_destination`` is set:
    a daemon thread sending the new results every ``every`` seconds, stopping with the stream; None when
    no destination is set. A failed pass is said in the log and tried again at the next."""
    if not config.results_destination:
        return None
    parse_destination(config.results_destination)  # a bad destination is said before the stream starts

    def run(stop_event: threading.Event) -> None:
        while not stop_event.wait(every):
            try:
                send_results(config, stop_event=stop_event)
            except XrayError as error:
                log.warning("sending results: %s", first_line(error))
            except Exception as error:  # the stream goes on; the next pass tries again
                log.error("sending results failed (%s); tried again in %.0f s", first_line(error), every)

    def start(lakehouse: object, stop_event: threading.Event) -> threading.Thread:
        return threading.Thread(target=run, args=(stop_event,), name="xray-send-results", daemon=True)

    return start

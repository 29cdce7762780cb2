"""``dicom_receipts``: what the network receivers were sent and answered, keyed hashes only.

The receivers call `ReceiptLog.instance` after answering (the instance is in landing by then) and
`ReceiptLog.refused` for a refused association; a thread appends the rows with delta-rs every
``FLUSH_SECONDS`` (one Delta commit per flush, not per instance) and at the stop. The table is a record for
the status page and the PACS administrator, not the path of the data: a receiver killed between two flushes
loses at most those seconds of receipts, never an instance (landing holds it, and bronze records it).
"""

from __future__ import annotations

import io
import logging
import threading
from datetime import datetime, timezone

from streaming.core.config import XrayConfig
from streaming.core.errors import first_line
from streaming.core.pseudonym import keyed_hash
from streaming.lakehouse.catalog import DICOM_RECEIPTS
from streaming.lakehouse.direct import append_rows

log = logging.getLogger(__name__)

__all__ = ["FLUSH_SECONDS", "ReceiptLog"]

FLUSH_SECONDS = 2.0
_UIDS = (("study", "StudyInstanceUID"), ("series", "SeriesInstanceUID"), ("instance", "SOPInstanceUID"))


class ReceiptLog:
    """Buffered receipts of one receiver process; `start` its flushing thread, `stop` flushes the rest."""

    def __init__(self, config: XrayConfig):
        self.config = config
        self.salt = config.patient_salt()
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def _ref(self, domain: str, value: str | None) -> str | None:
        return keyed_hash(self.salt, domain, value.strip()) if value else None

    def instance(self, protocol: str, association: str, calling_ae: str | None, data: bytes, outcome: str,
                 status: int) -> None:
        """Record one answered instance (its UIDs read from ``data``'s header, kept as keyed hashes)."""
        import pydicom

        refs: dict[str, str | None] = {f"{kind}_ref": None for kind, _ in _UIDS}
        sop_class = None
        try:
            header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            refs = {f"{kind}_ref": self._ref(kind, str(header.get(keyword) or "")) for kind, keyword in _UIDS}
            sop_class = str(header.get("SOPClassUID") or "") or None
        except Exception:  # an unreadable instance is still a receipt (outcome failed)
            pass
        self._add({"protocol": protocol, "association_id": association,
                   "calling_ae_ref": self._ref("calling_ae", calling_ae), **refs, "sop_class_uid": sop_class,
                   "size_bytes": len(data), "outcome": outcome, "status": status})

    def refused(self, association: str, calling_ae: str) -> None:
        """Record a refused association."""
        self._add({"protocol": "c-store", "association_id": association,
                   "calling_ae_ref": self._ref("calling_ae", calling_ae), "outcome": "refused"})

    def _add(self, row: dict) -> None:
        row["receipt_time"] = datetime.now(timezone.utc)
        with self._lock:
            self._rows.append(row)

    def flush(self) -> int:
        """Append the buffered rows; returns how many. A failure keeps them for the next flush (said once)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            append_rows(self.config, DICOM_RECEIPTS.name, rows)
        except Exception as error:  # receipts must never stop receiving
            with self._lock:
                self._rows[:0] = rows
            if not self._warned:
                self._warned = True
                log.warning("cannot write dicom_receipts (%s); instances are still received, receipts kept "
                            "in memory and retried", first_line(error))
            return 0
        self._warned = False
        return len(rows)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xray-receipts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.flush()

"""``xray forget --patient ID``: erase a patient (GDPR Art. 17, a withdrawn research consent).

In order, each step safe to run again after a crash (running the same command again completes it):
1. the patient's keyed hash goes on the forget list (``forget_list``): from the stream's next micro-batch on,
   a file of the patient is refused (never stored, quarantined with its reason, deleted from landing);
2. micro-batches a running stream had already planned are waited for (they read the list before it);
3. every row of the patient goes from every table (`streaming.ops.erase`), then the replaced files and the
   log history before the erasure (time travel to before it is gone, by design);
4. the patient's files go from landing and archive, and their paths from the landing log.
Only keyed hashes are printed, logged or recorded. Without ``--yes`` nothing is changed: it says what
would be erased.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import time
import uuid
from dataclasses import dataclass, field

from streaming.core.checkpoints import newest_batch
from streaming.core.config import XrayConfig
from streaming.core.errors import ErasureError
from streaming.core.locks import lock_path
from streaming.core.names import LAYERS
from streaming.core.pseudonym import patient_ref, short_ref
from streaming.lakehouse.catalog import FORGET_LIST
from streaming.lakehouse.direct import append_rows
from streaming.lakehouse.forgetlist import forgotten_patients, is_keyed_hash
from streaming.lakehouse.maintenance import maintenance_lock
from streaming.ops.erase import Erasure, erase_files, erase_rows, find_erasure, purge_history

log = logging.getLogger(__name__)

__all__ = ["ForgetReport", "forget_patient", "patient_key_ref"]

BATCH_WAIT_SECONDS = 600.0  # the longest a planned micro-batch may take before the erasure gives up


@dataclass
class ForgetReport:
    """What one `xray forget` did (or, without ``yes``, would do)."""

    patient: str  # the keyed hash
    erased: bool
    images: int = 0  # distinct images silver held
    contents: int = 0  # distinct file contents (images, duplicates' originals, quarantined files)
    rows: dict[str, int] = field(default_factory=dict)
    data_files_removed: int = 0
    files_deleted: int = 0
    landing_log_entries: int = 0

    def lines(self) -> list[str]:
        ref = short_ref(self.patient)
        if not self.erased:
            return [f"patient {ref}: {self.images} image(s) in silver, {self.contents} distinct file content(s) in "
                    f"{len(self.rows)} table(s); nothing was changed: run again with --yes to erase them"]
        rows = ", ".join(f"{table} {count}" for table, count in self.rows.items()) or "none"
        return [f"patient {ref}: erased {self.images} image(s) ({self.contents} distinct file content(s)); "
                f"rows deleted: {rows}",
                f"files: {self.files_deleted} deleted from landing and archive; {self.data_files_removed} "
                f"replaced table file(s) removed; {self.landing_log_entries} landing log entr(ies) scrubbed",
                "time travel to before this erasure is gone (by design); the patient is on the forget list: "
                "their files arriving later are refused"]


def patient_key_ref(config: XrayConfig, patient: str) -> str:
    """The keyed hash of a raw patient identifier (as in file names or DICOM PatientID), or the value itself
    when it already is one (silver's ``patient_id``, 64 hex digits)."""
    value = patient.strip()
    if not value:
        raise ErasureError("--patient is empty; give the identifier as in file names or DICOM, or its hash")
    return value.lower() if is_keyed_hash(value.lower()) else patient_ref(value, config.patient_salt())


def forget_patient(config: XrayConfig, patient: str, yes: bool = False, run_id: str | None = None) -> ForgetReport:
    """Erase one patient (see the module docstring); ``yes`` False only reports what would be erased."""
    ref = patient_key_ref(config, patient)
    if not yes:
        found = find_erasure(config, ref)
        return ForgetReport(ref, False, images=len(found.silver_images), contents=len(found.image_ids),
                            rows={table: 0 for table in found.predicates()} if found.image_ids else {})
    if ref not in forgotten_patients(config):
        append_rows(config, FORGET_LIST.name, [{"patient_ref": ref, "requested_time": _now(),
                                                "run_id": run_id or str(uuid.uuid4())}])
    wait_for_planned_batches(config)
    erasure = find_erasure(config, ref)
    report = ForgetReport(ref, True, images=len(erasure.silver_images), contents=len(erasure.image_ids))
    # No maintenance pass meanwhile: a compaction would make the deletes retry, and its vacuum is ours.
    with maintenance_lock(config.root, wait_seconds=BATCH_WAIT_SECONDS):
        report.rows = erase_rows(config, erasure)
        report.data_files_removed = sum(purge_history(config, table) for table, n in report.rows.items() if n)
    report.files_deleted = erase_files(config, erasure)
    report.landing_log_entries = _scrub_landing_log(config, erasure)
    log.info("forget: patient %s erased (%d image(s))", short_ref(ref), report.images)
    return report


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def wait_for_planned_batches(config: XrayConfig, timeout: float = BATCH_WAIT_SECONDS) -> None:
    """Wait until every micro-batch a running stream planned before now is committed. Batches planned
    later read the forget list after it holds the patient. No stream running: nothing to wait for (a
    batch planned before a crash is replayed, and the replay reads the list)."""
    planned = {query: newest_batch(config.checkpoint_path(query) / "offsets") for query in LAYERS}
    deadline = time.monotonic() + timeout
    while _stream_running(config):
        pending = [q for q, batch in planned.items()
                   if batch is not None and (newest_batch(config.checkpoint_path(q) / "commits") or -1) < batch]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ErasureError(f"the running stream has not finished its planned batch of {', '.join(pending)} "
                               f"in {timeout:.0f} s; nothing was erased yet (the patient is on the forget "
                               f"list); run the same 'xray forget' again")
        time.sleep(0.2)


def _stream_running(config: XrayConfig) -> bool:
    """Whether a stream holds the lakehouse's lock (a shared lock is refused while it does). The probe
    holds nothing: it is released at once."""
    path = lock_path(config.root)
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # closing releases a shared lock taken above
    return False


def _scrub_landing_log(config: XrayConfig, erasure: Erasure) -> int:
    """Remove the patient's paths from the landing log (they are raw identifiers). Returns entries changed."""
    from streaming.bronze.source import landing_log_dir
    from streaming.landing.log import erase_paths

    return erase_paths(landing_log_dir(config), erasure.landing_paths, config.landing_dir)

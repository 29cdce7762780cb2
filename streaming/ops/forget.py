"""``xray forget --patient ID``: erase a patient (GDPR Art. 17, a withdrawn research consent).

An erasure is a transaction recorded in its journal (`streaming.lakehouse.erasures`, keyed hashes only),
written before the forget list and before anything is deleted; each step is recorded once done:
1. ``listed``: the patient's keyed hash goes on the forget list (``forget_list``): from the stream's next
   micro-batch on, a file of the patient is refused (never stored, quarantined with its reason, deleted);
2. ``found``: once the micro-batches a running stream had planned are committed (they read the list before
   it), what the tables hold of the patient (content hashes, path hashes, sizes) goes into the journal; a
   copy of those bytes under any name is refused from then on;
3. ``rows``: every row of the patient goes from every table (`streaming.ops.erase`);
4. ``history``: the replaced files and the log history before the erasure of every such table (time
   travel to before it is gone, by design);
5. ``files`` and ``landing_log``: the patient's files go from landing and archive, their paths from the
   landing log.
An erasure interrupted at any point (``kill -9`` included) is finished by the next `xray forget` (any
patient), `xray stream` start or `xray maintain` (`finish_pending_erasures`), from the journal: the rows
already deleted cannot be found again, the journal still names them. Only keyed hashes are printed, logged
or recorded. Without ``--yes`` nothing is changed: it says what would be erased.
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
from streaming.lakehouse.erasures import (
    ErasureJournal,
    journals,
    new_journal,
    pending_erasures,
    write_journal,
)
from streaming.lakehouse.forgetlist import forgotten_patients, is_keyed_hash
from streaming.lakehouse.maintenance import maintenance_lock
from streaming.ops.erase import Erasure, erase_files, erase_rows, find_erasure, purge_history

log = logging.getLogger(__name__)

__all__ = ["ForgetReport", "finish_pending_erasures", "forget_patient", "patient_key_ref"]

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
    resumed: bool = False  # an interrupted erasure, finished by this run
    others: list[ForgetReport] = field(default_factory=list)  # other patients' interrupted erasures, finished
    pending: int = 0  # without ``yes``: interrupted erasures waiting to be finished

    def lines(self) -> list[str]:
        ref = short_ref(self.patient)
        if not self.erased:
            waiting = ([f"{self.pending} interrupted erasure(s) pending: any 'xray forget --yes', 'xray stream' "
                        "or 'xray maintain' finishes them"] if self.pending else [])
            return [f"patient {ref}: {self.images} image(s) in silver, {self.contents} distinct file content(s) in "
                    f"{len(self.rows)} table(s); nothing was changed: run again with --yes to erase them", *waiting]
        rows = ", ".join(f"{table} {count}" for table, count in self.rows.items()) or "none"
        verb = "finished the interrupted erasure of" if self.resumed else "erased"
        return [*(line for other in self.others for line in other.lines()),
                f"patient {ref}: {verb} {self.images} image(s) ({self.contents} distinct file content(s)); "
                f"rows deleted: {rows}",
                f"files: {self.files_deleted} deleted from landing and archive; {self.data_files_removed} "
                f"replaced table file(s) removed; {self.landing_log_entries} landing log entr(ies) scrubbed",
                "time travel to before this erasure is gone (by design); the patient is on the forget list: "
                "their files, and copies of their images under any name, arriving later are refused"]


def patient_key_ref(config: XrayConfig, patient: str) -> str:
    """The keyed hash of a raw patient identifier (as in file names or DICOM PatientID), or the value itself
    when it already is one (silver's ``patient_id``, 64 hex digits)."""
    value = patient.strip()
    if not value:
        raise ErasureError("--patient is empty; give the identifier as in file names or DICOM, or its hash")
    return value.lower() if is_keyed_hash(value.lower()) else patient_ref(value, config.patient_salt())


def forget_patient(config: XrayConfig, patient: str, yes: bool = False, run_id: str | None = None) -> ForgetReport:
    """Erase one patient (see the module docstring); ``yes`` False only reports what would be erased.
    Other patients' interrupted erasures are finished first, and this patient's, when interrupted, is
    finished rather than begun again."""
    ref = patient_key_ref(config, patient)
    if not yes:
        found = find_erasure(config, ref)
        return ForgetReport(ref, False, images=len(found.silver_images), contents=len(found.image_ids),
                            rows={table: 0 for table in found.predicates()} if found.image_ids else {},
                            pending=len(pending_erasures(config)))
    others = finish_pending_erasures(config, but=ref)
    journal = next((j for j in pending_erasures(config) if j.patient == ref), None)
    resumed = journal is not None
    if journal is None:
        journal = new_journal(ref, run_id or str(uuid.uuid4()))
        # A new erasure of a patient erased before: the contents refused so far stay refused.
        journal.contents, journal.path_refs, journal.sizes = _recorded(config, ref)
        write_journal(config, journal)  # before the forget list: an erasure begun is always known
    report = _erase(config, journal, resumed)
    report.others = others
    return report


def finish_pending_erasures(config: XrayConfig, but: str | None = None) -> list[ForgetReport]:
    """Finish every interrupted erasure (but patient ``but``'s): run by `xray forget`, at `xray stream`
    start and by `xray maintain`. Returns what each did (none pending: an empty list, at the cost of
    listing one folder)."""
    reports = [_erase(config, journal, resumed=True) for journal in pending_erasures(config) if journal.patient != but]
    for report in reports:
        log.info("forget: finished the interrupted erasure of patient %s", short_ref(report.patient))
    return reports


def _recorded(config: XrayConfig, ref: str) -> tuple[list[str], list[str], list[int]]:
    old = next((j for j in journals(config) if j.patient == ref), None)
    return ([], [], []) if old is None else (old.contents, old.path_refs, old.sizes)


def _erase(config: XrayConfig, journal: ErasureJournal, resumed: bool) -> ForgetReport:
    """The steps of an erasure not done yet, in order, each recorded in the journal once done (``resumed``:
    begun by an earlier, interrupted run)."""
    ref = journal.patient
    report = ForgetReport(ref, True, resumed=resumed)
    if "listed" not in journal.done:
        if ref not in forgotten_patients(config):
            append_rows(config, FORGET_LIST.name, [{"patient_ref": ref, "requested_time": _now(),
                                                    "run_id": journal.run_id}])
        _done(config, journal, "listed")
    erasure = Erasure(ref)
    erasure.add_recorded(journal.contents, journal.path_refs, journal.sizes)
    before = set(journal.contents) if not report.resumed else set()  # erased by an earlier, finished run
    if "rows" not in journal.done:
        erasure = _find(config, journal)
        # Batches planned before the journal held the contents may bring a copy under another name:
        # once they are committed the deletes below find it by its bytes.
        wait_for_planned_batches(config)
        # No maintenance pass meanwhile: a compaction would make the deletes retry, and its vacuum is ours.
        with maintenance_lock(config.root, wait_seconds=BATCH_WAIT_SECONDS):
            report.rows = erase_rows(config, erasure)
        _done(config, journal, "rows")
    report.images, report.contents = journal.images, len(erasure.image_ids - before)
    if "history" not in journal.done:
        with maintenance_lock(config.root, wait_seconds=BATCH_WAIT_SECONDS):
            # Every table that may have held rows, not only those this run deleted from: a run killed after
            # its deletes left their replaced files and old log behind.
            report.data_files_removed = sum(purge_history(config, table) for table in erasure.predicates()
                                            if config.table_path(table).joinpath("_delta_log").is_dir())
        _done(config, journal, "history")
    if "files" not in journal.done:
        report.files_deleted = erase_files(config, erasure)
        _done(config, journal, "files")
    if "landing_log" not in journal.done:
        report.landing_log_entries = _scrub_landing_log(config, erasure)
        _done(config, journal, "landing_log")
    log.info("forget: patient %s erased (%d image(s))", short_ref(ref), report.images)
    return report


def _find(config: XrayConfig, journal: ErasureJournal) -> Erasure:
    """Everything of the patient the tables hold, with what an interrupted run recorded, written to the
    journal before anything is deleted. The planned batches are waited for first: they read the forget
    list before it named the patient."""
    wait_for_planned_batches(config)
    erasure = find_erasure(config, journal.patient)
    if "found" not in journal.done:
        journal.images = len(erasure.silver_images)
    erasure.add_recorded(journal.contents, journal.path_refs, journal.sizes)
    journal.contents, journal.path_refs = sorted(erasure.image_ids), sorted(erasure.path_refs)
    journal.sizes = sorted(erasure.sizes)
    _done(config, journal, "found")
    return erasure


def _done(config: XrayConfig, journal: ErasureJournal, step: str) -> None:
    if step not in journal.done:
        journal.done.append(step)
    write_journal(config, journal)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def wait_for_planned_batches(config: XrayConfig, timeout: float = BATCH_WAIT_SECONDS) -> None:
    """Wait until every micro-batch a running stream planned before now is committed. Batches planned
    later read the forget list after it holds the patient. No stream running: nothing to wait for (a
    batch planned before a crash is replayed, and the replay reads the list)."""
    planned = {query: newest_batch(config.checkpoint_path(query) / "offsets") for query in LAYERS}
    deadline = time.monotonic() + timeout
    while _stream_running(config):
        pending = [q for q, batch in planned.items() if batch is not None and _committed(config, q) < batch]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ErasureError(f"the running stream has not finished its planned batch of {', '.join(pending)} "
                               f"in {timeout:.0f} s; nothing was erased yet (the patient is on the forget "
                               f"list); run the same 'xray forget' again")
        time.sleep(0.2)


def _committed(config: XrayConfig, query: str) -> int:
    """The newest batch the query committed; -1 for none (batch 0 is a batch, not a missing one)."""
    batch = newest_batch(config.checkpoint_path(query) / "commits")
    return -1 if batch is None else batch


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
    from streaming.landing.erase import erase_paths

    key = config.patient_salt()
    return erase_paths(landing_log_dir(config), lambda path: erasure.names_patient(path, key), config.landing_dir)


def erasure_status(config: XrayConfig) -> dict:
    """For `xray status`: the interrupted erasures (keyed hashes shortened) and the step each stopped before."""
    pending = [{"patient": short_ref(j.patient), "next_step": j.next_step(), "requested_time": j.requested_time}
               for j in pending_erasures(config)]
    return {"pending": len(pending), "erasures": pending}


def erasure_lines(status: dict) -> list[str]:
    """The status screen's lines on interrupted erasures (none when none is pending)."""
    erasures = status.get("erasures") or {}
    if not erasures.get("pending"):
        return []
    steps = ", ".join(f"{e['patient']} before {e['next_step']}" for e in erasures["erasures"])
    return ["", f"ERASURE  {erasures['pending']} interrupted 'xray forget' pending ({steps})",
            "  the next 'xray forget --yes' (any patient), 'xray stream' or 'xray maintain' finishes it"]

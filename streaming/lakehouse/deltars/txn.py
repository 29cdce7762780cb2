"""Application transactions (Delta's ``txn`` action: an app id and a version): the names of their files, the
marker their commit carries in its custom metadata, and finding that commit again through delta-rs."""

from __future__ import annotations

import hashlib

# The key of the commit's custom metadata (Delta's commitInfo) naming the application transaction it
# carries; delta-rs's history shows it among the entry's top-level keys.
TXN_METADATA_KEY = "xray_txn"
HISTORY_WINDOW = 20  # newest commits searched: a replayed batch's commit is among the last few


def txn_file_prefix(app_id: str | None, version: int | None) -> str:
    """The name prefix of the files written for application transaction (app_id, version), so a redo of
    the transaction can find the files a killed attempt left behind (see `remove_orphans`)."""
    if app_id is None or version is None:
        return "part-"
    slug = "".join(c if c.isalnum() else "-" for c in app_id)[:24]
    # The hash keeps apps whose slugs coincide ("bronze:events", "bronze-events") apart.
    digest = hashlib.sha1(app_id.encode()).hexdigest()[:8]
    return f"part-txn-{slug}-{digest}-v{version}-"


def txn_metadata(app_id: str, version: int) -> dict[str, str]:
    """The custom commit metadata naming application transaction (app_id, version)."""
    return {TXN_METADATA_KEY: f"{app_id}:{version}"}


def txn_commit_version(table_path: str, app_id: str, version: int) -> int | None:
    """Table version of the commit that carried application transaction (app_id, version), among the
    newest `HISTORY_WINDOW` commits; None when that transaction was never committed (or is older).

    A damaged (e.g. truncated) commit raises delta-rs's JSON error, which the lakehouse layer turns into
    a `DamagedTableError` naming table and file.
    """
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(table_path):
        return None
    table = DeltaTable(table_path)
    reached = table.transaction_version(app_id)
    if reached is None or reached < version:
        return None  # the application never got this far
    marker = txn_metadata(app_id, version)[TXN_METADATA_KEY]
    history = table.history(limit=HISTORY_WINDOW)
    for entry in history:
        if entry.get(TXN_METADATA_KEY) == marker:
            return int(entry["version"])
    # Fallback for commits without the marker: written before `commit_files` recorded it, or by the
    # native Delta engine (delta-spark writes the txn action but not our commit metadata).
    oldest = min((int(entry["version"]) for entry in history), default=table.version())
    return _first_commit_reaching(table_path, app_id, version, oldest, table.version())


def _first_commit_reaching(table_path: str, app_id: str, version: int, low: int, high: int) -> int | None:
    """The commit carrying (app_id, version) among table versions low..high, by time travel and halving.

    An application's transaction version only grows, so that commit is the first table version whose
    snapshot has reached ``version``, provided it carried exactly ``version`` (an application may skip
    versions: a batch with nothing to write commits nothing). The snapshot at ``high`` has reached it.
    Costs a few snapshot loads (about log2 of the window), only for commits without the marker.
    """
    from deltalake import DeltaTable

    def reached(at: int) -> int:
        try:
            found = DeltaTable(table_path, version=at).transaction_version(app_id) if at >= 0 else None
        except Exception:  # a version whose log an erasure or log cleanup removed: unknown
            return -1
        return -1 if found is None else int(found)

    low -= 1  # the version before the window: the commit must come after it
    if reached(low) >= version:
        return None  # committed before the newest HISTORY_WINDOW commits
    while high - low > 1:  # reached(low) < version <= reached(high)
        middle = (low + high) // 2
        if reached(middle) >= version:
            high = middle
        else:
            low = middle
    return high if reached(high) == version else None


"""The audit trail: who ran which command that changes the lakehouse, when, with what, and how it ended.

`xray` (streaming/cli/commands.py) wraps every command that changes the lakehouse in a `CommandAudit`
(which commands: the command table, ``streaming.cli.table.AUDITED``, every command not declared read-only): a
``started`` row in `audit_log` before the command runs (so a run killed with SIGKILL, a lost machine,
leaves a started row without a finished one) and a ``finished`` row after it, with the outcome, the exit
code, the one-line error and the Delta versions of the tables the run changed.

The rows are written with delta-rs from the driver (`streaming.lakehouse.direct.append_rows`): no Spark,
since `xray recover` and `xray forget` may never start one. Auditing never changes what a command does or
its exit code: a row that cannot be written costs one warning line on stderr.

Like every table but bronze, `audit_log` holds no raw identifier (README: Patient identifiers): paths on
the command line (and in error messages) are keyed hashes (``path:<path_ref>``), a patient identifier is
its `patient_ref`, a reader's name its `reader_ref`, a free-text comment only its length, and an option
whose name says secret (token, password, key, ...) is ``<redacted>``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import socket
import sys
import time
import uuid
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import XrayError, first_line
from streaming.core.pseudonym import path_ref, patient_ref, reader_ref
from streaming.lakehouse.catalog import ALL_TABLES, AUDIT_LOG

__all__ = ["PATH_OPTIONS", "CommandAudit", "audit_options", "current_run_id", "scrub"]

# Options (argparse dests) whose value is a file, folder or URI: it may name a patient (a landing-style
# file name, a folder per patient), so only its keyed hash is kept.
PATH_OPTIONS = frozenset({
    "path", "inbox", "watch", "labels", "download_dir", "data", "output", "config", "lakehouse",
    "mlflow_tracking_uri", "csv",
})
# A radiologist's name is recorded as its keyed hash (gold_radiologist_feedback.reader_id), a free-text
# note only by its length: neither may sit in the audit trail in clear.
READER_OPTIONS, FREE_TEXT_OPTIONS = frozenset({"reader"}), frozenset({"comment"})
# Options whose value may hold a "/" without being a path (a Kaggle owner/slug, a Spark master URL); any
# other option's string holding a "/" is hashed as a path, so a new path option is never kept raw.
PLAIN_OPTIONS = frozenset({"dataset", "master"})
SECRET_WORDS = ("token", "secret", "password", "credential", "key", "salt")
REDACTED = "<redacted>"
MESSAGE_LENGTH = 1000
_KEYED_HASH = re.compile(r"[0-9a-f]{64}")
# Paths and file names left in an error message once the known values are replaced: absolute, home or
# explicitly relative paths, and names of the files the service takes in.
_PATH_TOKEN = re.compile(r"(?<![\w:/.~])(?:~|\.{1,2})?/[^\s'\",;()\[\]]*")
_FILE_TOKEN = re.compile(r"[\w.-]*\w\.(?:jpe?g|png|dcm|dicom|zip|tar|tgz|gz|csv|txt|json|toml|ya?ml)\b",
                         re.IGNORECASE)
_NOT_AFTER_VALUE = r"(?![\w/-]|\.\w)"

_current_run: str | None = None


def current_run_id() -> str | None:
    """The run id of the audited command running in this process (`forget_list.run_id`), else None."""
    return _current_run


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid still says who
        return str(os.getuid())


def _path_value(value: str, salt: str) -> str:
    # A URI is hashed as written; a file path as the absolute path, so the same folder has one hash
    # whatever the working directory (compute it: streaming.core.pseudonym.path_ref(abspath, key)).
    location = value if "://" in value else os.path.abspath(os.path.expanduser(value))
    return f"path:{path_ref(location, salt)}"


def _patient_value(value: str, salt: str) -> str:
    return value if _KEYED_HASH.fullmatch(value) else patient_ref(value, salt) or value


def _option_value(name: str, value: Any, salt: str) -> Any:
    """One option as recorded: redacted, hashed or as given (lists element by element)."""
    if any(word in name.lower() for word in SECRET_WORDS):
        return REDACTED
    if isinstance(value, (list, tuple)):
        return [_option_value(name, item, salt) for item in value]
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        return value if isinstance(value, (bool, int, float)) or value is None else str(value)
    if name in PATH_OPTIONS:
        return _path_value(value, salt)
    if name in READER_OPTIONS and value.strip():
        return f"reader:{reader_ref(value, salt)}"
    if name in FREE_TEXT_OPTIONS:
        return f"<free text, {len(value)} characters>"
    if "patient" in name.lower():
        return _patient_value(value, salt)
    if name not in PLAIN_OPTIONS and ("/" in value or "\\" in value):
        return _path_value(value, salt)
    return value


def audit_options(options: dict[str, Any], salt: str) -> dict[str, Any]:
    """The command's options as recorded: no ``command``, no None, no secret, no raw path or patient."""
    return {name: _option_value(name, value, salt) for name, value in sorted(options.items())
            if value is not None and name != "command"}


def _replacements(options: dict[str, Any], salt: str) -> list[tuple[str, str]]:
    """(text, what replaces it) for every option value recorded otherwise than given, as an error message
    may quote it (as given, with ``~`` expanded, made absolute); longest first."""
    pairs: dict[str, str] = {}
    for name, value in options.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            item = os.fspath(item) if isinstance(item, os.PathLike) else item
            if name == "command" or not isinstance(item, str) or not item:
                continue
            recorded = _option_value(name, item, salt)
            if recorded == item:
                continue
            pairs[item] = recorded
            if recorded.startswith("path:") and "://" not in item:
                pairs.setdefault(os.path.expanduser(item), recorded)
                pairs.setdefault(os.path.abspath(os.path.expanduser(item)), recorded)
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))


def scrub(message: str, options: dict[str, Any], salt: str) -> str:
    """An error message without raw identifiers: the values of hashed options, then any remaining path or
    input file name, replaced by their keyed hashes; a secret option's value by ``<redacted>``."""
    for raw, replacement in _replacements(options, salt):
        message = re.sub(rf"(?<![\w/.~-]){re.escape(raw)}{_NOT_AFTER_VALUE}", lambda _, r=replacement: r, message)
    message = _PATH_TOKEN.sub(lambda m: _path_value(m.group(0), salt) if len(m.group(0)) > 1 else m.group(0),
                              message)
    return _FILE_TOKEN.sub(lambda m: _path_value(m.group(0), salt), message)


def _changed(before: dict[str, int | None], after: dict[str, int | None]) -> list[dict[str, Any]]:
    return [{"table": name, "version_before": before.get(name), "version_after": version}
            for name, version in after.items() if version != before.get(name)]


class CommandAudit:
    """The audit of one command run: `bind` the config, `started` before it runs, `finish` after it.

    Inactive (every method a no-op) when not ``audited`` (a read-only command, see the command table). Rows are written only into
    an existing lakehouse folder: a mistaken command (a typo in --lakehouse) must not create one. A run
    whose started row could not be written yet (refused before it began, the lakehouse made by the command
    itself, a failed write) gets it with its finished row, in the same commit.
    """

    def __init__(self, command: str, options: dict[str, Any], package_version: str, audited: bool):
        self.command = command
        self.options = dict(options)
        self.package_version = package_version
        self.active = audited
        self.run_id = uuid.uuid4().hex
        self.config: XrayConfig | None = None
        self.error: BaseException | None = None
        self._start_time = dt.datetime.now(dt.timezone.utc)
        self._start_clock = time.monotonic()
        self._before: dict[str, int | None] = {}
        self._started_written = False
        self._warned = False

    def bind(self, config: XrayConfig) -> None:
        """The run's lakehouse is known: note every table's Delta version before the command touches it."""
        if not self.active:
            return
        self.config = config
        self._before = self._versions()

    def started(self) -> None:
        """Write the ``started`` row, unless the lakehouse folder does not exist yet."""
        global _current_run  # one command per process: its run id, for forget_list
        if not self.active or self.config is None:
            return
        _current_run = self.run_id
        self._started_written = self._write([self._started_row()])

    def failed(self, error: BaseException) -> None:
        """The error the command ended with (said as one line by `xray`): its message goes in the row."""
        self.error = error

    def finish(self, exit_code: int) -> None:
        """Write the ``finished`` row: outcome from the exit code and the error noted by `failed`."""
        global _current_run
        if not self.active or self.config is None:
            return
        _current_run = None
        outcome = {0: "ok", 130: "interrupted", 143: "terminated"}.get(exit_code, "error")
        if isinstance(self.error, KeyboardInterrupt):
            outcome = "interrupted"
        message = None
        if outcome == "error" and self.error is not None:
            text = first_line(str(self.error))
            if not isinstance(self.error, XrayError):  # a bug or a library's error: its class tells most
                text = f"{type(self.error).__name__}: {text}".rstrip(": ")
            message = text
        finished = self._row("finished", dt.datetime.now(dt.timezone.utc), outcome=outcome,
                             exit_code=exit_code, message=message,
                             tables=_changed(self._before, self._versions()),
                             duration_ms=int((time.monotonic() - self._start_clock) * 1000))
        self._write([*([] if self._started_written else [self._started_row()]), finished])

    # -- rows ---------------------------------------------------------------------------------------
    def _versions(self) -> dict[str, int | None]:
        assert self.config is not None
        try:
            from streaming.lakehouse.direct import table_versions

            return table_versions(self.config, [spec.name for spec in ALL_TABLES if spec is not AUDIT_LOG])
        except Exception:  # the audit never stops a command (a failed write will say so)
            return dict(self._before)

    def _started_row(self) -> dict[str, Any]:
        return self._row("started", self._start_time, outcome="started")

    def _row(self, event: str, when: dt.datetime, **values: Any) -> dict[str, Any]:
        return {"run_id": self.run_id, "event": event, "event_time": when, "command": self.command,
                "package_version": self.package_version, "user": _user(), "host": socket.gethostname(),
                "pid": os.getpid(), **values}

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        """Append the rows, options and message without identifiers, when the lakehouse exists; True when
        written. A failure is one warning line: the command's own result and exit code stand."""
        assert self.config is not None
        if not self.config.root.is_dir():
            return False
        try:
            salt = self.config.patient_salt()
            options = json.dumps(audit_options(self.options, salt), sort_keys=True, default=str)
            for row in rows:
                row["options"] = options
                if row.get("message"):
                    row["message"] = scrub(row["message"], self.options, salt)[:MESSAGE_LENGTH]
            from streaming.lakehouse.direct import append_rows

            append_rows(self.config, AUDIT_LOG.name, rows)
            return True
        except (Exception, KeyboardInterrupt) as error:  # never hides the command's result
            self._warn(error)
            return False

    def _warn(self, error: BaseException) -> None:
        if self._warned:  # one line per run
            return
        self._warned = True
        from streaming.lakehouse.failures import disk_full

        reason = ("the disk is full" if disk_full(error) else
                  f"{type(error).__name__}: {first_line(str(error))}".rstrip(": ")[:300])
        print(f"xray {self.command}: warning: {AUDIT_LOG.name} not recorded ({reason})", file=sys.stderr)

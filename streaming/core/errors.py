"""Named errors for what a user can get wrong.

Every message says what went wrong and what to do about it, in one line, so the CLI can print it without a
stack trace. Internal bugs stay ordinary exceptions.
"""

from __future__ import annotations

import re


class XrayError(Exception):
    """Base class of every error the `xray` command reports as a one-line message (exit code 2)."""

    exit_code = 2


class ConfigError(XrayError):
    """A configuration value (file, environment variable or option) is invalid."""


class JavaMissingError(XrayError):
    """Spark needs a Java 17+ runtime and none was found."""


class SchemaMismatchError(XrayError):
    """Rows appended to a Delta table do not match its schema."""


class TableNotFoundError(XrayError):
    """A Delta table that should exist does not."""


class DeltaStreamChangeError(XrayError):
    """A streamed Delta table had rows deleted or rewritten, which an append-only stream cannot follow."""


class DataQualityFailure(XrayError):
    """A data-quality expectation with action `fail` was violated."""


class InsufficientDataError(XrayError):
    """A batch job has too little input to do its work."""


class NoChampionModelError(XrayError):
    """No registered model carries the `champion` alias yet."""


class IngestError(XrayError):
    """Getting data into the landing folder failed (credentials, network, archive, paths)."""


class LakehouseBusyError(XrayError):
    """Another `xray stream` already holds the lakehouse (one stream per lakehouse)."""


class DiskFullError(XrayError):
    """A write failed because the filesystem is full (ENOSPC)."""


class DamagedTableError(XrayError):
    """A table's Delta log cannot be read (a truncated or corrupt commit file)."""


class CheckpointAheadError(XrayError):
    """A streaming query's checkpoint committed a batch that a table it writes does not hold."""


class CheckpointDamagedError(XrayError):
    """A streaming query's checkpoint lost a file Spark needs (its newest ``offsets/N``)."""


class InputPathError(XrayError):
    """A path given on the command line (a folder to stage, an inbox) does not exist or cannot be read."""


class NothingToDoError(XrayError):
    """A command has no input yet (an empty lakehouse, no champion model): the message names the step first."""


class LandingLogCompactedError(XrayError):
    """A bronze batch asks for landing entries the landing log no longer keeps (compacted once Spark's
    checkpoint stopped retaining their batches)."""


class ErasureError(XrayError):
    """`xray forget` could not finish an erasure (a stream batch that does not end, rows still found after
    the delete): the message says what is left and that running the same command again completes it."""


class FeedbackError(XrayError):
    """`xray feedback` was given what it cannot record (a CSV without its columns, rows that name no image
    in silver or no known label): the message counts the rows and names their lines, never their values."""



class DicomSendError(XrayError):
    """`xray send-results` could not deliver to the DICOM destination (no association, refused, aborted):
    what was acknowledged is recorded; running the same command again sends the rest."""


# ---- carrying a named error across the JVM --------------------------------------------------------------
# An error raised in a Spark Python worker, or in a foreachBatch function, reaches the driver as a JVM
# exception whose text contains the original message. One form, ``XRAY_ERROR[ClassName]: message``, lets the
# lakehouse layer raise the named error again (see `received`).
_TRANSPORT = re.compile(r"XRAY_ERROR\[(\w+)\]: ([^\n]*)")


def transported(error_class: type[XrayError], message: str) -> str:
    """The text that carries ``error_class(message)`` across the JVM."""
    return f"XRAY_ERROR[{error_class.__name__}]: {message}"


def is_transported(text: str) -> bool:
    return _TRANSPORT.search(text) is not None


def received(text: str) -> XrayError | None:
    """The named error a text carries (the first one), or None."""
    match = _TRANSPORT.search(text)
    if match is None:
        return None
    found = globals().get(match.group(1))
    error_class = found if isinstance(found, type) and issubclass(found, XrayError) else XrayError
    return error_class(match.group(2).strip())


def first_line(error: BaseException | str) -> str:
    """The first non-blank line of an error's text, for one-line messages (a long Spark or MLflow error is
    many lines); an exception with no text gives its type's name."""
    text = str(error)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line or ("" if isinstance(error, str) else type(error).__name__)

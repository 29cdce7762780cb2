"""Named errors for what a user can get wrong.

Every message says what went wrong and what to do about it, in one line, so the CLI can print it without a
stack trace. Internal bugs stay ordinary exceptions.
"""

from __future__ import annotations


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


class InputPathError(XrayError):
    """A path given on the command line (a folder to stage, an inbox) does not exist or cannot be read."""


class NothingToDoError(XrayError):
    """A command has no input yet (an empty lakehouse, no champion model): the message names the step first."""

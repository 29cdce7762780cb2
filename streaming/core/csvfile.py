"""Reading a CSV a user hands the CLI (a labels file, radiologists' feedback): one place that opens it as
a spreadsheet exports it and turns every way it cannot be read into one line saying what to do."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from streaming.core.errors import XrayError

__all__ = ["read_csv_file"]

T = TypeVar("T")


def read_csv_file(path: str | Path, kind: str, option: str, error: type[XrayError],
                  parse: Callable[[Path, IO[str]], T]) -> T:
    """``parse(path, handle)`` on the CSV at ``path`` (UTF-8, a spreadsheet's BOM allowed). A missing file,
    a folder, another encoding, broken CSV or an unreadable file is ``error`` naming the ``kind`` of file
    and the ``option`` that passes it."""
    path = Path(path).expanduser()
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's BOM
            return parse(path, handle)
    except FileNotFoundError:
        raise error(f"{kind} file {path} does not exist; pass the CSV with {option} FILE") from None
    except IsADirectoryError:
        raise error(f"{kind} file {path} is a folder; pass the CSV file itself") from None
    except UnicodeDecodeError:
        raise error(f"{kind} file {path} is not UTF-8 text; save it as CSV (UTF-8)") from None
    except csv.Error as failure:
        raise error(f"{kind} file {path} is not valid CSV ({failure}); save it as CSV") from None
    except OSError as failure:
        raise error(f"cannot read {kind} file {path} ({failure.strerror}); check its permissions") from None

"""Progress of long work: a tqdm bar on a terminal, plain periodic INFO lines anywhere else.

Every long step (staging files, a download, a backlog drain, retrain, rescore) reports through `progress`,
so the rule lives here once: when stderr is a terminal, a bar that disappears when done; when it is not (CI,
a log file, a scheduler), one INFO line at most every `LINE_SECONDS`, none at all for work shorter than
that, and a closing line when periodic lines were written.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

__all__ = ["LINE_SECONDS", "Progress", "attached_to_terminal", "progress"]

log = logging.getLogger(__name__)

LINE_SECONDS = 5.0


def attached_to_terminal(stream: IO[str] | None = None) -> bool:
    """Whether progress is drawn as a bar: stderr (or ``stream``) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _amount(value: float, unit: str) -> str:
    if unit != "B":
        return f"{int(value):,}"
    for suffix in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or suffix == "GiB":
            return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop returns


class Progress:
    """Counts work done towards ``total`` (None: unknown) and shows it the way the output allows.

    ``terminal`` forces the decision (tests; None asks `attached_to_terminal`). Use as a context manager,
    or call `close`. ``tick`` (seconds): for work of a few long steps (retrain's fit, a JVM starting), the bar
    is redrawn that often (its clock runs) and, off a terminal, the periodic line is written even when no
    step ended: long steps are never silent.
    """

    def __init__(self, total: float | None, desc: str, unit: str = "file", *, terminal: bool | None = None,
                 stream: IO[str] | None = None, interval: float = LINE_SECONDS,
                 logger: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic,
                 tick: float | None = None):
        self.total, self.desc, self.unit = total, desc, unit
        self.done: float = 0
        self.step: str | None = None
        self.lines = 0  # periodic lines written (non-terminal)
        self._stream = sys.stderr if stream is None else stream
        self.terminal = attached_to_terminal(self._stream) if terminal is None else terminal
        self._interval, self._log, self._clock = interval, logger or log, clock
        self._started = self._last_line = clock()
        self._bar: Any = None
        self._closed = False
        if self.terminal:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            scale = unit == "B"
            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=scale,
                             unit_divisor=1024 if scale else 1000, file=self._stream, leave=False,
                             dynamic_ncols=True)
            # Log lines written while the bar is shown go above it instead of breaking it.
            self._redirect = contextlib.ExitStack()
            self._redirect.enter_context(logging_redirect_tqdm(tqdm_class=tqdm))
        self._lock = threading.Lock()  # the ticker and the caller's updates draw one at a time
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if tick:
            self._ticker = threading.Thread(target=self._tick_every, args=(tick,), name="xray-progress",
                                            daemon=True)
            self._ticker.start()

    def _tick_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            with self._lock:
                if self._bar is not None:
                    self._bar.refresh()
                elif not self._closed:
                    self._line_if_due()

    def _line_if_due(self) -> None:
        now = self._clock()
        if now - self._last_line >= self._interval:
            self._last_line = now
            self.lines += 1
            self._log.info("%s", self.describe(now))

    # -- reporting -------------------------------------------------------------------------------------
    def update(self, n: float = 1, step: str | None = None) -> None:
        """``n`` more units done; ``step`` names what runs now (e.g. retrain's "fit")."""
        with self._lock:
            self.done += n
            if step is not None:
                self.step = step
            if self._bar is not None:
                if step is not None:
                    self._bar.set_postfix_str(step, refresh=False)
                self._bar.update(n)
                return
            self._line_if_due()

    def set_total(self, total: float | None) -> None:
        """The total once known (e.g. a backlog measured after the first micro-batch)."""
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def describe(self, now: float | None = None) -> str:
        """One line: what, how far, how long (``stage: 1,200 of 5,216 files (23%), 12 s``)."""
        elapsed = (self._clock() if now is None else now) - self._started
        unit = "" if self.unit == "B" else f" {self.unit}s"
        amount = _amount(self.done, self.unit)
        if self.total:
            amount += f" of {_amount(self.total, self.unit)}{unit} ({100 * self.done / self.total:.0f}%)"
        else:
            amount += unit
        step = f" [{self.step}]" if self.step else ""
        return f"{self.desc}: {amount}{step}, {elapsed:.0f} s"

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._redirect.close()
        elif self.lines and not self._closed:  # long work said how it went along: say it ended too
            self.lines += 1
            self._log.info("%s (done)", self.describe())
        self._closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(total: float | None, desc: str, unit: str = "file", **options: Any) -> Progress:
    """A `Progress` (see there): ``with progress(len(files), "stage") as bar: ... bar.update(1)``."""
    return Progress(total, desc, unit, **options)

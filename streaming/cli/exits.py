"""Exit codes of ``xray``, its version, and how a signal ends a command.

* 0: success, and `xray stream`, `xray serve` or `xray retrain --every` stopped by SIGTERM: for a service
  manager (systemd, Kubernetes, a Databricks job cancel) SIGTERM is the normal stop; the stream finishes its
  micro-batch (the retrain loop its running cycle) and exits cleanly, which is not a failure to report or
  restart on.
* 1: internal error (a bug): Python prints the traceback.
* 2: user error: one line saying what to do.
* 130: interrupted by Ctrl-C (SIGINT). `xray stream` first finishes its micro-batch, `xray retrain --every`
  its running cycle (a second Ctrl-C aborts at once), `xray serve` closes its socket; the shell convention
  128 + 2 tells a script its command did not run to its end.
* 143: any other command (`xray retrain` without --every too) ended by SIGTERM (128 + 15) before it finished; its work stops where it was
  (Spark is stopped in order) and running the command again resumes.
* A stop of `xray stream` that has not ended 85 s after the request (something it waits for never returns)
  ends the process with 128 + the signal (143, 130; 1 after --timeout or --once) once every thread's stack
  is printed (`streaming.pipeline.stopping`): the next start replays the unfinished micro-batch.
"""

from __future__ import annotations

import configparser
import signal
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

__all__ = [
    "EXIT_CODES_HELP", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USER_ERROR",
    "Terminated", "package_version", "terminate_on_sigterm",
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

EXIT_CODES_HELP = """\
exit codes:
  0    success; also 'xray stream' stopped by SIGTERM (systemd stop, kill) at a micro-batch boundary,
       'xray serve' stopped by SIGTERM, and 'xray retrain --every' stopped by SIGTERM once its running
       cycle, if any, ended
  1    internal error (a bug: the traceback is printed)
  2    user error, printed as one line saying what to do
  130  interrupted by Ctrl-C (SIGINT); 'xray stream' first ends its micro-batch, a second Ctrl-C aborts
  143  a command other than 'xray stream', 'xray serve' or 'xray retrain --every' terminated by SIGTERM
       before it finished; also 'xray stream' whose stop did not end within 85 s (130 after Ctrl-C)
"""

PACKAGE = "xray-lakehouse"


def package_version() -> str:
    """The installed package's version; from setup.cfg when running from a source tree not installed."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        pass
    setup_cfg = Path(__file__).resolve().parents[2] / "setup.cfg"
    parser = configparser.ConfigParser()
    if parser.read(setup_cfg) and parser.has_option("metadata", "version"):
        return parser.get("metadata", "version")
    return "unknown"


class Terminated(BaseException):  # like KeyboardInterrupt: not an error, a request to end
    """Raised in the main thread when SIGTERM arrives during a command other than `xray stream`."""


def terminate_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into `Terminated` (so ``finally`` blocks stop Spark in order); returns the restorer."""
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum, frame):
        raise Terminated

    try:
        signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread (a caller embedding main()): keep the default
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)

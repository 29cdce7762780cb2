"""``xray mlflow-ui``: the MLflow UI over the lakehouse's model store, stopped whole by Ctrl-C or SIGTERM.

``mlflow ui`` (and ``mlflow server``) start uvicorn with worker processes as children; SIGTERM to ``mlflow``
ends the parent and leaves the workers running, listening and holding the SQLite store. Here the server runs
in a process group of its own; a stop signal goes to the whole group, which is waited for (SIGKILL after
`STOP_SECONDS`), so nothing is left behind. One worker: a person browsing the registry needs no more.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError, NothingToDoError
from streaming.core.registry import local_store_exists

__all__ = ["MLFLOW_UI_HELP", "add_mlflow_ui_arguments", "mlflow_ui_command", "run_mlflow_ui", "stop_group"]

MLFLOW_UI_HELP = ("Run the MLflow UI on the lakehouse's model store (runs, registered versions, the champion "
                  "alias) on 127.0.0.1; Ctrl-C or SIGTERM stops it with all its worker processes.")
DEFAULT_PORT = 5000
STOP_SECONDS = 10.0


def add_mlflow_ui_arguments(command: argparse.ArgumentParser) -> None:
    """The options of ``xray mlflow-ui`` (its parser entry in streaming/cli/parser.py)."""
    command.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="N",
                         help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")


def mlflow_ui_command(args: argparse.Namespace, config: XrayConfig) -> int:
    """``xray mlflow-ui``: serve until a stop signal; 0 after SIGTERM, 130 after Ctrl-C."""
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 1 to 65535, got {args.port}")
    if not local_store_exists(config):
        raise NothingToDoError(f"no model store under {config.root} yet: run xray retrain (or xray demo) first, "
                               "or pass --mlflow-tracking-uri")
    return run_mlflow_ui(config, args.port)


def server_command(config: XrayConfig, port: int) -> list[str]:
    """``mlflow server`` on loopback over the lakehouse's store (this interpreter's MLflow)."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", config.tracking_uri,
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def run_mlflow_ui(config: XrayConfig, port: int) -> int:
    """Run the server in its own process group until it ends or a stop signal comes; stop the whole group."""
    stop = threading.Event()
    received: list[int] = []

    def handle(signum, frame) -> None:  # noqa: ANN001, ARG001
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Without MLflow's job runner (GenAI evaluation jobs, a dozen consumer processes): browsing needs none.
        server = subprocess.Popen(server_command(config, port), start_new_session=True,
                                  env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        print(f"xray mlflow-ui: http://127.0.0.1:{port}/ (MLflow UI of {config.tracking_uri}; Ctrl-C or SIGTERM "
              "stops it)", flush=True)
        while server.poll() is None and not stop.wait(0.5):
            pass
        stop_group(server)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not received:
        raise ConfigError(f"the MLflow UI ended by itself (exit {server.returncode}; see its lines above): is "
                          f"port {port} taken? choose another --port")
    # As `xray serve` (streaming/cli/exits.py): SIGTERM is a service's normal stop (0), Ctrl-C 128 + 2.
    return 128 + signal.SIGINT if received[0] == signal.SIGINT else 0


def stop_group(leader: subprocess.Popen, seconds: float = STOP_SECONDS) -> None:
    """SIGTERM to the leader's process group, SIGKILL to what is left after ``seconds``; returns once the
    leader is reaped and the group is empty (its members, reparented, are reaped by init)."""
    group = leader.pid  # start_new_session: the leader's pid is the group's id
    for sig, wait in ((signal.SIGTERM, seconds), (signal.SIGKILL, seconds)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            leader.poll()
            if leader.returncode is not None and not _group_alive(group):
                return
            time.sleep(0.1)
    leader.wait()


def _group_alive(group: int) -> bool:
    """Whether a live (not zombie) process is still in the group."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # fields after the name: state, ppid, pgrp
            return True
    return not os.path.isdir("/proc")  # elsewhere killpg's answer is all there is

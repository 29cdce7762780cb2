"""Running xray, and the bench's own child functions, in subprocesses (each with its own Spark session)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.bench.host import TreeSampler
from batch.bench.settings import REPO_ROOT

CHILD_RESULT_MARKER = "XRAY_BENCH_RESULT "


def child_env(master: str) -> dict[str, str]:
    """The environment of a measured subprocess: none of the user's XRAY_* settings but the master, the
    driver's memory, whether the JVM class-data archive is used (the test suite turns it off) and the Delta
    engine (the ``engines`` part sets it)."""
    kept = ("XRAY_DRIVER_MEMORY", "XRAY_JVM_CLASS_CACHE", "XRAY_DELTA_ENGINE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRAY_") or k in kept}
    env["XRAY_SPARK_MASTER"] = master
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def xray_args(command: Sequence[str], lakehouse: Path, master: str, tracking_uri: str | None) -> list[str]:
    args = [sys.executable, "-m", "streaming.cli", *command, "--lakehouse", str(lakehouse), "--master", master,
            "--log-level", "INFO"]
    if tracking_uri:
        args += ["--mlflow-tracking-uri", tracking_uri]
    return args


@dataclass
class ChildRun:
    returncode: int
    started: float  # wall clock (time.time) just before the process was started
    seconds: float
    memory: dict[str, Any] = field(default_factory=dict)
    log: Path | None = None

    def check(self, what: str) -> None:
        if self.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""
            last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
            raise RuntimeError(f"{what} exited with {self.returncode} ({last.strip()}):\n{tail}")


def run_xray(command: Sequence[str], lakehouse: Path, master: str, log: Path, tracking_uri: str | None = None,
             timeout: float = 1800.0, extra_env: dict[str, str] | None = None) -> ChildRun:
    """Run one ``xray`` command in a subprocess, sampling its process tree's memory; ``extra_env`` is added
    to its environment (e.g. the profile file)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        started = time.time()
        clock = time.perf_counter()
        process = subprocess.Popen(xray_args(command, lakehouse, master, tracking_uri), env={**child_env(master), **(extra_env or {})},
                                   cwd=log.parent, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        sampler = TreeSampler(process.pid).start()
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            returncode = -9
        seconds = time.perf_counter() - clock
        memory = sampler.stop()
    return ChildRun(returncode, started, seconds, memory, log)


def kill_group(process: subprocess.Popen) -> None:
    """Kill a subprocess we started and everything it started (its own session)."""
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def run_child(function: str, arguments: dict, log: Path, master: str, timeout: float = 1800.0) -> dict:
    """Run a child function (``batch.bench.children.CHILD_FUNCTIONS``) as ``function(**arguments)`` in a fresh
    Python (``python -m batch.bench``, its own Spark session); its result."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        process = subprocess.run(
            [sys.executable, "-m", "batch.bench", function, json.dumps(arguments)], env=child_env(master),
            cwd=log.parent, stdout=subprocess.PIPE, stderr=output, timeout=timeout, check=False,
        )
    lines = [line for line in process.stdout.decode(errors="replace").splitlines()
             if line.startswith(CHILD_RESULT_MARKER)]
    if process.returncode != 0 or not lines:
        tail = log.read_text(errors="replace")[-3000:]
        last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
        raise RuntimeError(f"bench child {function} exited with {process.returncode} ({last.strip()}):\n{tail}")
    return json.loads(lines[-1][len(CHILD_RESULT_MARKER):])

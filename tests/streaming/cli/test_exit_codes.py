"""Exit codes of a real `xray stream` (continuous mode) stopped by a signal: SIGTERM is the service's
normal stop (0), Ctrl-C is an interruption (130). Both end at a micro-batch boundary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
STOP_LIMIT_SECONDS = 150


def start_stream(tmp_path: Path, **popen: object) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable,
                   "XRAY_SHUFFLE_PARTITIONS": "1", "XRAY_DRIVER_MEMORY": "1g"}
    return subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", "stream", "--lakehouse", str(tmp_path / "lh"),
         "--master", "local[1]", "--trigger-seconds", "0.5"],
        cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )


def wait_until_streaming(process: subprocess.Popen, timeout: float = 300) -> list[str]:
    """Lines until the bronze query (with the layers it carries) streams, so the signal meets a running
    service."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "bronze: streaming" in line:
            return lines
    process.kill()
    pytest.fail("the stream did not start:\n" + "".join(lines[-30:]))


def finish(process: subprocess.Popen) -> str:
    """The rest of the output once the process ended. The stream's own watchdog ends a stop stuck past
    85 s (`streaming.pipeline.stopping`), so a wait far past that means the process or its JVM hangs:
    fail with what is still running and what they printed."""
    try:
        return process.communicate(timeout=STOP_LIMIT_SECONDS)[0]
    except subprocess.TimeoutExpired as timeout:
        ps = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,args"], capture_output=True, text=True).stdout
        tree = [line for line in ps.splitlines() if str(process.pid) in line.split()[:2]]
        state = "still running" if process.poll() is None else f"exited with {process.returncode}"
        process.kill()
        printed = timeout.output.decode() if isinstance(timeout.output, bytes) else (timeout.output or "")
        pytest.fail(f"no end of output {STOP_LIMIT_SECONDS} s after the signal; xray {state}; processes:\n"
                    + "\n".join(tree) + "\nprinted:\n" + printed[-6000:])


@pytest.mark.slow
@pytest.mark.parametrize(("stop_signal", "expected"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_running_stream_stops_cleanly_with_the_documented_exit_code(tmp_path, stop_signal, expected):
    process = start_stream(tmp_path)
    started = wait_until_streaming(process)
    process.send_signal(stop_signal)
    rest = finish(process)
    output = "".join(started) + rest
    assert process.returncode == expected, output[-3000:]
    assert "stopping at the next micro-batch boundary" in output
    assert "Traceback" not in output
    # Quiet by default: none of Spark's start-up warnings.
    for noise in ("NativeCodeLoader", "resolves to a loopback address", "Using Spark's default log4j profile",
                  "Setting default log level"):
        assert noise not in output, output[-3000:]


@pytest.mark.slow
def test_sigterm_to_the_streams_process_group_is_the_same_clean_stop(tmp_path):
    """`kill -TERM -PGID` (a supervisor, a shell's job control) reaches every process of the stream's group:
    the JVM and its Python workers are not in it and ignore SIGTERM, so the driver's stop finishes the
    micro-batch and stops the query: exit 0, no py4j traceback, no false "did not stop within 15 s"."""
    process = start_stream(tmp_path, start_new_session=True)  # its own group, as under a supervisor
    started = wait_until_streaming(process)
    os.killpg(process.pid, signal.SIGTERM)
    rest = finish(process)
    output = "".join(started) + rest
    assert process.returncode == 0, output[-3000:]
    assert "stopping at the next micro-batch boundary" in output and "bronze: stopped" in output, output[-3000:]
    for wrong in ("Traceback", "did not stop within", "could not be stopped", "Py4J", "py4j"):
        assert wrong not in output, output[-3000:]

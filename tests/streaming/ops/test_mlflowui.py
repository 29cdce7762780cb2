"""``xray mlflow-ui``: the real MLflow server in a process group of its own, stopped whole by SIGTERM; the
group stop on a real process tree; the mistakes answered in one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from support import REPO

from streaming.cli.commands import main
from streaming.ops.mlflowui import stop_group


def _descendants(root: int) -> set[int]:
    """Every process below ``root`` (by parent id, from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_group_stop_leaves_no_process_of_the_tree():
    tree = subprocess.Popen(["sh", "-c", "sleep 600 & sleep 600 & (sleep 600 &) ; wait"], start_new_session=True)
    deadline = time.monotonic() + 30
    while len(_descendants(tree.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = _descendants(tree.pid)
    assert len(members) >= 2
    stop_group(tree, seconds=10)
    assert tree.returncode is not None and not [pid for pid in members if _alive(pid)]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the process tree is read from /proc")
def test_sigterm_stops_the_mlflow_ui_with_all_its_workers(tmp_path):
    lakehouse = tmp_path / "lh"
    (lakehouse / "mlflow").mkdir(parents=True)
    import sqlite3

    sqlite3.connect(lakehouse / "mlflow" / "mlflow.db").close()  # an empty store: MLflow makes its tables
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", "mlflow-ui", "--lakehouse", str(lakehouse), "--port", str(port)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    try:
        assert process.stdout.readline().startswith(f"xray mlflow-ui: http://127.0.0.1:{port}/")
        deadline, answered = time.monotonic() + 240, False
        while not answered and time.monotonic() < deadline and process.poll() is None:
            try:
                answered = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status == 200
            except OSError:
                time.sleep(1)
        assert answered, process.stderr.read() if process.poll() is not None else "no answer"
        workers = _descendants(process.pid)
        assert len(workers) >= 2  # mlflow server and its uvicorn worker (at least)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err
    assert not [pid for pid in workers if _alive(pid)], "MLflow processes left after SIGTERM"
    assert "Traceback" not in err


def test_without_a_model_store_it_is_one_line(tmp_path, capsys):
    assert main(["mlflow-ui", "--lakehouse", str(tmp_path / "lh")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no model store under" in err[0] and "xray retrain" in err[0]

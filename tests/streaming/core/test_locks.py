"""One stream per lakehouse: a second stream is refused with who holds it; a killed holder blocks nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import REPO

from streaming.cli.commands import main
from streaming.core.errors import LakehouseBusyError
from streaming.core.locks import stream_lock
from streaming.pipeline.service import run_stream


def hold_lock_in_another_process(root: Path) -> subprocess.Popen:
    """A process that takes the stream lock the way `xray stream` does, says so, and sleeps."""
    code = textwrap.dedent(f"""
        import sys, time
        from streaming.core.locks import stream_lock
        with stream_lock(__import__("pathlib").Path({str(root)!r})):
            print("locked", flush=True)
            time.sleep(300)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    return process


def test_second_stream_is_refused_with_the_holder_and_exit_2(spark, config, capsys, monkeypatch):
    # The CLI would stop the session it was handed; the test run shares one.
    monkeypatch.setattr("streaming.lakehouse.session.stop_owned_sessions", lambda: None)
    holder = hold_lock_in_another_process(config.root)
    try:
        with pytest.raises(LakehouseBusyError, match=rf"pid {holder.pid}, user \S+, host \S+, since \d{{4}}-"):
            run_stream(spark, config, once=True)

        code = main(["stream", "--once", "--lakehouse", str(config.root)])
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert err.count("\n") == 0 and "Traceback" not in err
        assert f"pid {holder.pid}" in err and "already being streamed" in err
        # A refused stream starts nothing; its attempt is in the audit trail (README: Audit trail).
        assert [p.name for p in (config.root / "tables").iterdir()] == ["audit_log"]
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_process_does_not_block_a_restart(spark, config):
    holder = hold_lock_in_another_process(config.root)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    # The killed holder's details are still in the file; the lock itself died with it.
    assert str(holder.pid) in (config.root / "_locks" / "stream.lock").read_text()

    service = run_stream(spark, config, layers=("bronze",), once=True)

    assert service.queries["bronze"] is not None
    with stream_lock(config.root):  # released at the end of the run
        pass


def test_lock_is_released_when_the_stream_fails(tmp_path):
    with pytest.raises(RuntimeError), stream_lock(tmp_path):
        raise RuntimeError("boom")
    with stream_lock(tmp_path):
        with pytest.raises(LakehouseBusyError):  # flock is per open file: a second open is refused
            with stream_lock(tmp_path):
                pass

"""``xray stream`` running continuously in a subprocess, watched: its memory sampled, and the moment each
image becomes visible in gold recorded; how it is warmed up."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from batch.bench.champion import ensure_champion
from batch.bench.context import BenchContext, BenchFile, drop
from batch.bench.dicomcopy import fresh_copy, is_dicom
from batch.bench.host import PollingThread, TreeSampler
from batch.bench.processes import child_env, kill_group, xray_args
from batch.bench.settings import LATENCY_POLL_SECONDS, LATENCY_WARMUP_FILES
from batch.bench.tables import epoch


class GoldWatcher(PollingThread):
    """Polls the gold table in a thread; records when each expected image id first becomes visible."""

    def __init__(self, lakehouse: Path):
        super().__init__(LATENCY_POLL_SECONDS, "bench-gold-watcher")
        self.path = lakehouse / "tables" / "gold_pneumonia_predictions"
        self.visible: dict[str, float] = {}
        self.predicted: dict[str, float] = {}

    def start(self) -> GoldWatcher:
        self._thread.start()
        return self

    def poll(self) -> None:
        from deltalake import DeltaTable

        began = time.time()
        try:
            rows = DeltaTable(str(self.path)).to_pyarrow_table(columns=["image_id", "predicted_time"]).to_pylist()
        except Exception:  # the table may not exist yet or be mid-commit
            return
        for row in rows:
            if row["image_id"] not in self.visible:
                # Visible at the latest when this read began (upper bound, at most one poll late).
                self.visible[row["image_id"]] = began
                self.predicted[row["image_id"]] = epoch(row["predicted_time"])

    def wait_for(self, image_ids: Iterable[str], timeout: float, alive: Callable[[], bool]) -> bool:
        wanted = set(image_ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            if wanted <= self.visible.keys():
                return True
            time.sleep(0.1)
        return wanted <= self.visible.keys()

    def stop(self) -> None:
        self._halt(timeout=10)


def warmup_images(ctx: BenchContext) -> list[BenchFile]:
    """Two images re-encoded from the bench files: new contents (so the measured files are not duplicates
    of them in silver) of the same kind, to warm a running stream up (a DICOM: new UIDs)."""
    from PIL import Image

    folder = ctx.work / "warmup-images"
    made = []
    for item in ctx.files[:LATENCY_WARMUP_FILES]:
        if is_dicom(item):
            made.append(fresh_copy(item, folder, "warm"))
            continue
        relative = item.relative.parent / f"warm-{item.relative.name}"
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(item.path) as image:
            gray = image.convert("L")
        gray.save(target, "PNG" if target.suffix.lower() == ".png" else "JPEG", quality=85)
        content = target.read_bytes()
        made.append(BenchFile(target, relative, len(content), hashlib.sha256(content).hexdigest()))
    return made


class RunningStream:
    """``xray stream`` (continuous) in a subprocess with its memory sampler and a gold watcher."""

    def __init__(self, ctx: BenchContext, lakehouse: Path, master: str, log: Path,
                 extra: Sequence[str] = (), extra_env: dict[str, str] | None = None):
        self.lakehouse = lakehouse
        self.landing = lakehouse / "landing"
        self.landing.mkdir(parents=True, exist_ok=True)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                xray_args(["stream", *extra], lakehouse, master, ensure_champion(ctx)), env={**child_env(master), **(extra_env or {})},
                cwd=log.parent, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.started = time.perf_counter()
        self.sampler = TreeSampler(self.process.pid).start()
        self.watcher = GoldWatcher(lakehouse).start()
        self.memory: dict[str, Any] = {}
        self.exited_early: int | None = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def warm_up(self, files: list[BenchFile]) -> float:
        """Drop files and wait until they are in gold: every query started, workers and model loaded."""
        for item in files:
            drop(item, self.landing)
        if not self.watcher.wait_for([f.sha256 for f in files], 600, self.alive):
            raise RuntimeError(f"the warm-up files never reached gold; see {self.log}")
        return time.perf_counter() - self.started

    def stop(self) -> None:
        self.watcher.stop()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # stops at a micro-batch boundary
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                kill_group(self.process)
        else:
            self.exited_early = self.process.returncode
        self.memory = self.sampler.stop()

"""``xray bench``: throughput, latency, memory, idle cost, scaling, sink speed and checkpoint growth, measured
in one run on the same files, printed as a table and written as JSON.

Parts (``--only`` takes a comma-separated subset; ``memory`` and ``idle`` are measured by ``latency``):

* ``baseline``: a plain Python loop doing the essential work per file (read the bytes, SHA-256, Pillow
  draft-mode decode + resize to the feature size, i.e. ``features.fixed_size_gray``) in a process pool of
  as many processes as cores. Also reported with the feature vector added (what silver computes).
* ``pipeline``: images/s from landing to gold, with a champion model trained first in a separate *model*
  lakehouse (a few of the same files: ``xray stream --once`` bronze+silver, then ``xray retrain``; not
  timed). Two measurements on all the files, each in a fresh lakehouse and a subprocess with
  ``XRAY_SPARK_MASTER=local[2]``:

  - *cold*: the whole backlog waiting in landing and ``xray stream --once`` (as after a restart or in a
    scheduled job): wall seconds and images/s, start-up overhead (process start to the first bronze batch:
    JVM, session, tables, query start, listing), images/s from the first bronze batch to the last gold
    commit (``pipeline_events``), seconds spent in and between each layer's batches, peak memory;
  - *warm* (steady state): ``xray stream`` already running and warmed up (two re-encoded images through to
    gold), then every file appears at once (one rename of a hidden folder in landing); seconds until the
    last one is visible in gold (polled every 0.2 s) and images/s. Its ratio to the baseline is the target.
* ``scaling``: the warm measurement with ``local[1]`` and ``local[2]`` on the same files (ratio 2 cores / 1).
* ``latency``: ``xray stream`` running continuously (trigger 0.5 s); after a warm-up, files are dropped one
  at a time (hidden temporary name, then rename) every 2 s; for each, seconds from the rename to its row
  being visible in ``gold_pneumonia_predictions`` (polled every 0.2 s, so figures are upper bounds by at
  most that), with each layer's batch durations. Then memory: the other distinct images arrive in bursts
  in two rounds, and the driver's RSS (JVM, Python) and the JVM's live heap after a full GC (``jcmd``)
  are compared after N files and after 2N (flat: RSS growth at most 10 %). Peak memory of the process tree is sampled throughout (VmRSS
  every 0.25 s by role, PSS so forked workers' shared pages count once, VmHWM). Between the two, the idle
  cost: CPU of the whole process tree over 20 s with no files arriving, in % of one core (per process, so
  workers that start or exit meanwhile are counted).
* ``sink``: the ``deltars`` streaming sink (``Lakehouse.write_stream``, availableNow) copying a Delta table
  of 16 KB binary rows, against ``deltalake.write_deltalake`` of the same Arrow data from the driver; the
  source alone (same stream into Spark's ``noop`` sink) is measured too, so the sink's own cost is the
  difference.
* ``checkpoint``: restart cost of the bronze landing source as its landing log grows. Checkpoints are
  crafted (a landing log with 1k or 100k entries admitted in batch 0, Spark's offsets and commits for it,
  the offsets metadata copied from a real checkpoint made first) and a restart ingesting a few new files is
  timed, each in a fresh process (a restart is a new JVM; two interleaved rounds, the faster reported):
  fresh, 1k, 100k, and 100k whose files are still in landing (``clean_source = off``: every trigger scans
  them; with ``archive`` landing keeps only new files).

Every part works in a fresh temporary lakehouse under ``<lakehouse>/bench/`` and removes it. Timings on a
shared machine are noisy: the load average is recorded at the start and end of every part.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError, XrayError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "chest_xray_originals"
PARTS = ("baseline", "pipeline", "scaling", "latency", "sink", "checkpoint")
PART_ALIASES = {"memory": "latency", "idle": "latency", "throughput": "pipeline"}
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
LABELS = ("NORMAL", "PNEUMONIA")

DEFAULT_GENERATED_FILES = 120
GENERATED_SIZE = (1800, 1500)
BASELINE_REPEATS = 3
MODEL_IMAGES_PER_CLASS = 20
MEASURED_MASTER = "local[2]"
LATENCY_WARMUP_FILES = 2
LATENCY_DROPS = 20
LATENCY_INTERVAL_SECONDS = 2.0
LATENCY_TRIGGER_SECONDS = 0.5
LATENCY_POLL_SECONDS = 0.2
IDLE_SECONDS = 20.0
MEMORY_ROUND_MAX = 120
MEMORY_BURST = 5
SAMPLE_SECONDS = 0.25
SINK_ROWS = 8192
SINK_ROW_BYTES = 16 * 1024
CHECKPOINT_NEW_FILES = 5
CHECKPOINT_ROUNDS = 2
CHILD_RESULT_MARKER = "XRAY_BENCH_RESULT "

TARGETS = {
    "pipeline_vs_baseline": 0.8,
    "latency_p95_seconds": 3.0,
    "idle_cpu_percent": 5.0,
    "driver_memory_growth": 0.10,
    "scaling_2_vs_1": 1.7,
}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def _say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Files to measure on
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchFile:
    """One image of the bench set: where it is, its path relative to the data root (kept in landing so the
    label folders survive), size and content hash (the image id in silver and gold)."""

    path: Path
    relative: Path
    size: int
    sha256: str


def _label_of(relative: Path) -> str:
    upper = [part.upper() for part in relative.parts[:-1]]
    return next((label for label in LABELS if label in upper), "")


def _interleave_by_label(paths: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Sorted files, classes alternating, so any prefix holds both classes (the model needs both)."""
    groups: dict[str, list[tuple[Path, Path]]] = {}
    for item in sorted(paths, key=lambda p: str(p[1])):
        groups.setdefault(_label_of(item[1]), []).append(item)
    ordered: list[tuple[Path, Path]] = []
    queues = [groups[key] for key in sorted(groups)]
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def _write_noisy_jpegs(root: Path, count: int, size: tuple[int, int]) -> None:
    """Full-size noisy grayscale JPEGs in the Kaggle layout (used when streaming.synthetic is missing)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    body = 110 + 60 * np.cos((x / width - 0.5) * 3) * np.cos((y / height - 0.55) * 2.5)
    for index in range(count):
        label = LABELS[index % 2]
        pixels = body + rng.normal(0, 18, size=(height, width))
        if label == "PNEUMONIA":
            cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.55, 0.8) * height
            pixels += 90 * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (0.02 * width * height)))
        name = (f"IM-{index + 1:04d}-0001.jpeg" if label == "NORMAL"
                else f"person{index + 1}_bacteria_{index + 1}.jpeg")
        path = root / "train" / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(path, "JPEG", quality=90)


def resolve_dataset(data: str | Path | None, max_files: int | None, work: Path,
                    copies: int = 1) -> tuple[list[BenchFile], dict]:
    """The images to measure on, and a description of where they come from.

    ``copies`` > 1 adds variants of every file that differ only by bytes after the image's end marker:
    decoders ignore them, so each copy costs the same work but is a new content (not a duplicate in
    silver). A larger backlog measures steady-state throughput and scaling rather than per-batch costs.
    """
    source: str
    if data is not None:
        root = Path(data).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"bench data folder {root} does not exist; pass --data DIR holding images")
        source = "folder"
    elif DEFAULT_DATA.is_dir():
        root, source = DEFAULT_DATA.resolve(), "chest_xray_originals"
    else:
        root = work / "generated"
        count = max_files or DEFAULT_GENERATED_FILES
        try:
            from streaming.imaging.synthetic import write_synthetic_dataset
        except ImportError:
            _write_noisy_jpegs(root, count, GENERATED_SIZE)
            source = "generated (noisy JPEGs)"
        else:
            write_synthetic_dataset(root, per_class=math.ceil(count / 2), splits=("train",), seed=0,
                                    size=GENERATED_SIZE)
            source = "generated (streaming.synthetic)"
    found = [(p, p.relative_to(root)) for p in root.rglob("*")
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith((".", "_"))]
    ordered = _interleave_by_label(found)
    if max_files:
        ordered = ordered[:max_files]
    if not ordered:
        raise ConfigError(f"no .jpeg/.jpg/.png images under {root}; pass --data DIR holding images")
    files = []
    for path, relative in ordered:
        content = path.read_bytes()  # also brings every file into the page cache before anything is timed
        files.append(BenchFile(path, relative, len(content), hashlib.sha256(content).hexdigest()))
    originals = list(files)
    for copy in range(1, copies):
        for item in originals:
            relative = item.relative.parent / f"copy{copy}-{item.relative.name}"
            target = work / "copies" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            content = item.path.read_bytes() + f"xray-bench copy {copy}".encode()
            target.write_bytes(content)
            files.append(BenchFile(target, relative, len(content), hashlib.sha256(content).hexdigest()))
    sizes = [f.size for f in files]
    described = {
        "source": source,
        "root": str(root),
        "files": len(files),
        "copies": copies,
        "unique_contents": len({f.sha256 for f in files}),
        "labels": {label or "none": sum(1 for f in files if _label_of(f.relative) == label)
                   for label in {_label_of(f.relative) for f in files}},
        "total_mb": round(sum(sizes) / 1e6, 1),
        "mean_kb": round(statistics.mean(sizes) / 1e3, 1),
    }
    return files, described


def _stage(files: Iterable[BenchFile], landing: Path, prefix: str = "") -> None:
    """Copy files into landing keeping their relative folders (fresh modification times, like staging)."""
    for item in files:
        target = landing / item.relative.parent / (prefix + item.relative.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, target)


# ---------------------------------------------------------------------------------------------------------
# Process trees: memory and CPU from /proc (Linux)
# ---------------------------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, command name, utime+stime ticks) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    name = text[text.index("(") + 1: text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), name, int(fields[11]) + int(fields[12])


def process_tree(root: int) -> dict[int, tuple[str, int]]:
    """Every live process in the tree of ``root`` (itself included): pid -> (name, CPU ticks).

    A child forked by a thread of its parent that has not yet called exec (the JVM starting a Python worker,
    Python starting a subprocess) shares or copies its parent's memory and carries the thread's name: it is
    left out, so memory is not counted twice.
    """
    table: dict[int, tuple[int, str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    tree, stack = {}, [root]
    while stack:
        pid = stack.pop()
        if pid not in table:
            continue
        parent, name, ticks = table[pid]
        if pid != root and parent in table and name != table[parent][1] and _exe(pid) == _exe(parent):
            continue  # forked, not yet exec'd
        tree[pid] = (name, ticks)
        stack.extend(children.get(pid, []))
    return tree


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _status_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB (0 when it is gone)."""
    rss = hwm = 0.0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, hwm


def _pss_mb(pid: int) -> float:
    """Proportional set size in MB: shared pages (forked Python workers) counted once across processes."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _role(pid: int, root: int, name: str) -> str:
    if pid == root:
        return "driver_python"
    if name == "java":
        return "jvm"
    return "python_workers" if name.startswith("python") else "other"


class TreeSampler:
    """Samples the memory of a process tree every SAMPLE_SECONDS in a thread (peaks per role)."""

    def __init__(self, root: int):
        self.root = root
        self.available = os.path.isdir("/proc")
        self.peak: dict[str, float] = {}
        self.hwm: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> TreeSampler:
        if self.available:
            self._thread.start()
        return self

    def snapshot(self) -> dict[str, float]:
        """Current RSS in MB by role (jvm, driver_python, python_workers, other), in total (``tree``) and as
        PSS (``tree_pss``: shared pages of forked workers counted once); ``processes`` alive."""
        if not self.available:
            return {}
        totals = {"jvm": 0.0, "driver_python": 0.0, "python_workers": 0.0, "other": 0.0}
        pss = 0.0
        tree = process_tree(self.root)
        workers = 0
        for pid, (name, _) in tree.items():
            role = _role(pid, self.root, name)
            rss, hwm = _status_mb(pid)
            totals[role] += rss
            pss += _pss_mb(pid)
            workers += role == "python_workers"
            if hwm > self.hwm.get(pid, ("", 0.0))[1]:
                self.hwm[pid] = (role, hwm)
        totals["tree"] = sum(totals.values())
        totals["tree_pss"] = pss
        totals["processes"] = float(len(tree))
        totals["python_worker_processes"] = float(workers)
        for key, value in totals.items():
            self.peak[key] = max(self.peak.get(key, 0.0), value)
        return {key: round(value, 1) for key, value in totals.items()}

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            if not self._paused.is_set():
                self.snapshot()

    def pause(self, paused: bool = True) -> None:
        (self._paused.set if paused else self._paused.clear)()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        hwm: dict[str, float] = {}
        for role, value in self.hwm.values():
            hwm[role] = hwm.get(role, 0.0) + value
        return {
            "peak_rss_mb": {key: round(value, 1) for key, value in self.peak.items()},
            "sum_vmhwm_mb": {key: round(value, 1) for key, value in sorted(hwm.items())},
        }


def _cmdline_kind(pid: int) -> str:
    """A short name for a process of the tree: the Python module it runs (and its argument), else its name."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = [a for a in handle.read().decode(errors="replace").split("\0") if a]
    except OSError:
        return "?"
    if "-m" in argv[:-1]:
        at = argv.index("-m")
        return " ".join(a.rsplit(".", 1)[-1] for a in argv[at + 1: at + 3] if not a.startswith("-"))
    return os.path.basename(argv[0]) if argv else "?"


def process_kinds(root: int) -> dict[str, int]:
    """How many processes of each kind the tree holds now (e.g. ``daemon worker``: forked Python workers)."""
    kinds: dict[str, int] = {}
    for pid in process_tree(root):
        kind = _cmdline_kind(pid)
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


def measure_tree_cpu(root: int, seconds: float, every: float = 0.5) -> dict[str, float]:
    """CPU used by a process tree over ``seconds``, in % of one core, by role and in total.

    Every process is followed by pid (sampled every ``every`` s), so processes that start during the window
    count fully and processes that exit lose at most one sampling interval.
    """
    first: dict[int, float] = {}
    last: dict[int, tuple[str, float]] = {}
    clock = time.perf_counter()
    deadline = clock + seconds
    initial = True
    while True:
        for pid, (name, ticks) in process_tree(root).items():
            if initial:
                first[pid] = ticks / CLOCK_TICKS
            last[pid] = (_role(pid, root, name), ticks / CLOCK_TICKS)
        initial = False
        if time.perf_counter() >= deadline:
            break
        time.sleep(min(every, max(0.0, deadline - time.perf_counter())))
    elapsed = time.perf_counter() - clock
    totals: dict[str, float] = {}
    for pid, (role, used) in last.items():
        totals[role] = totals.get(role, 0.0) + used - first.get(pid, 0.0)
    percent = {role: round(100 * used / elapsed, 2) for role, used in sorted(totals.items())}
    percent["tree"] = round(100 * sum(totals.values()) / elapsed, 2)
    percent["seconds"] = round(elapsed, 1)
    return percent


def jvm_heap_used_mb(root: int, full_gc: bool) -> float | None:
    """Java heap in use by the tree's JVM (after a full GC when asked: the live data), via jcmd."""
    jvm = next((pid for pid, (name, _) in process_tree(root).items() if name == "java"), None)
    if jvm is None:
        return None
    try:
        jcmd = os.path.join(os.path.dirname(os.readlink(f"/proc/{jvm}/exe")), "jcmd")
        if not os.path.exists(jcmd):
            jcmd = shutil.which("jcmd") or ""
        if not jcmd:
            return None
        if full_gc:
            subprocess.run([jcmd, str(jvm), "GC.run"], capture_output=True, timeout=60, check=False)
        info = subprocess.run([jcmd, str(jvm), "GC.heap_info"], capture_output=True, text=True, timeout=60,
                              check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    import re

    match = re.search(r"total \d+K, used (\d+)K", info)
    return round(int(match.group(1)) / 1024, 1) if match else None


# ---------------------------------------------------------------------------------------------------------
# Running xray in subprocesses
# ---------------------------------------------------------------------------------------------------------


def _child_env(master: str) -> dict[str, str]:
    """The environment of a measured subprocess: none of the user's XRAY_* settings but the master."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRAY_") or k == "XRAY_DRIVER_MEMORY"}
    env["XRAY_SPARK_MASTER"] = master
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _xray_args(command: Sequence[str], lakehouse: Path, master: str, tracking_uri: str | None) -> list[str]:
    args = [sys.executable, "-m", "streaming.cli.main", *command, "--lakehouse", str(lakehouse), "--master", master,
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
             timeout: float = 1800.0) -> ChildRun:
    """Run one ``xray`` command in a subprocess, sampling its process tree's memory."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        started = time.time()
        clock = time.perf_counter()
        process = subprocess.Popen(_xray_args(command, lakehouse, master, tracking_uri), env=_child_env(master),
                                   cwd=log.parent, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        sampler = TreeSampler(process.pid).start()
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            returncode = -9
        seconds = time.perf_counter() - clock
        memory = sampler.stop()
    return ChildRun(returncode, started, seconds, memory, log)


def _kill_group(process: subprocess.Popen) -> None:
    """Kill a subprocess we started and everything it started (its own session)."""
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def _run_child(function: str, arguments: dict, log: Path, master: str, timeout: float = 1800.0) -> dict:
    """Run ``batch.bench.<function>(**arguments)`` in a fresh Python (its own Spark session); its result."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        process = subprocess.run(
            [sys.executable, "-m", "batch.bench.main", function, json.dumps(arguments)], env=_child_env(master),
            cwd=log.parent, stdout=subprocess.PIPE, stderr=output, timeout=timeout, check=False,
        )
    lines = [line for line in process.stdout.decode(errors="replace").splitlines()
             if line.startswith(CHILD_RESULT_MARKER)]
    if process.returncode != 0 or not lines:
        tail = log.read_text(errors="replace")[-3000:]
        last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
        raise RuntimeError(f"bench child {function} exited with {process.returncode} ({last.strip()}):\n{tail}")
    return json.loads(lines[-1][len(CHILD_RESULT_MARKER):])


# ---------------------------------------------------------------------------------------------------------
# Tables read with delta-rs (no Spark in the bench process)
# ---------------------------------------------------------------------------------------------------------


def _table_rows(lakehouse: Path, table: str, columns: list[str] | None = None) -> list[dict]:
    from deltalake import DeltaTable

    path = lakehouse / "tables" / table
    if not DeltaTable.is_deltatable(str(path)):
        return []
    return DeltaTable(str(path)).to_pyarrow_table(columns=columns).to_pylist()


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    return float(value)


def events_summary(lakehouse: Path, started: float, finished: float, images: int) -> dict[str, Any]:
    """Start-up overhead, steady-state throughput and per-layer seconds from ``pipeline_events``."""
    events = _table_rows(lakehouse, "pipeline_events",
                         ["query", "batch_id", "event_time", "duration_ms", "input_rows", "output_rows"])
    layers: dict[str, dict[str, Any]] = {}
    for event in events:
        layer = layers.setdefault(event["query"], {"batches": 0, "seconds": 0.0, "input_rows": 0,
                                                   "first_start": math.inf, "last_end": 0.0})
        end = _epoch(event["event_time"])
        begin = end - (event["duration_ms"] or 0) / 1000
        layer["batches"] += 1
        layer["seconds"] += (event["duration_ms"] or 0) / 1000
        layer["input_rows"] += event["input_rows"] or 0
        layer["first_start"] = min(layer["first_start"], begin)
        layer["last_end"] = max(layer["last_end"], end)
    summary: dict[str, Any] = {"layers": {}}
    for name, layer in layers.items():
        summary["layers"][name] = {
            "batches": layer["batches"],
            "rows": layer["input_rows"],
            "batch_seconds": round(layer["seconds"], 2),
            "images_per_second": round(layer["input_rows"] / layer["seconds"], 1) if layer["seconds"] else None,
        }
    if "bronze" in layers:
        first = layers["bronze"]["first_start"]
        last = max(layer["last_end"] for layer in layers.values())
        summary["startup_seconds"] = round(first - started, 2)
        summary["processing_seconds"] = round(last - first, 2)
        summary["shutdown_seconds"] = round(finished - last, 2)
        summary["steady_images_per_second"] = round(images / (last - first), 2) if last > first else None
        # Between batches: query starts, listing, planning, Delta log reads (wall minus batch bodies).
        summary["between_batches_seconds"] = round(
            (last - first) - sum(layer["seconds"] for layer in layers.values()), 2)
    return summary


# ---------------------------------------------------------------------------------------------------------
# baseline
# ---------------------------------------------------------------------------------------------------------


def _essential_work(path: str) -> int:
    from PIL import Image

    from streaming.imaging.features import fixed_size_gray

    with open(path, "rb") as handle:
        content = handle.read()
    hashlib.sha256(content).hexdigest()
    with Image.open(io.BytesIO(content)) as image:
        gray = fixed_size_gray(image)
    return int(gray.shape[0])


def _essential_work_with_features(path: str) -> int:
    from PIL import Image

    from streaming.imaging.features import extract_features, fixed_size_gray

    with open(path, "rb") as handle:
        content = handle.read()
    hashlib.sha256(content).hexdigest()
    with Image.open(io.BytesIO(content)) as image:
        vector = extract_features(fixed_size_gray(image))
    return int(vector.shape[0])


def _pool_rate(pool: Any, work: Callable[[str], int], paths: list[str], processes: int) -> list[float]:
    rates = []
    for _ in range(BASELINE_REPEATS):
        clock = time.perf_counter()
        pool.map(work, paths, chunksize=max(1, len(paths) // (processes * 8)))
        rates.append(len(paths) / (time.perf_counter() - clock))
    return rates


def bench_baseline(files: list[BenchFile]) -> dict[str, Any]:
    processes = os.cpu_count() or 1
    paths = [str(f.path) for f in files]
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with context.Pool(processes) as pool:
        pool.map(_essential_work, paths[: processes * 2])  # imports and first decode out of the timing
        decode = _pool_rate(pool, _essential_work, paths, processes)
        features = _pool_rate(pool, _essential_work_with_features, paths, processes)
    clock = time.perf_counter()
    for path in paths:
        _essential_work(path)
    single_ms = (time.perf_counter() - clock) * 1000 / len(paths)
    return {
        "processes": processes,
        "images_per_second": round(statistics.median(decode), 1),
        "images_per_second_runs": [round(r, 1) for r in decode],
        "with_features_images_per_second": round(statistics.median(features), 1),
        "single_process_ms_per_image": round(single_ms, 2),
        "work": "read + SHA-256 + Image.open + fixed_size_gray (draft decode, resize to 128x128); "
                "with_features adds extract_features",
    }


# ---------------------------------------------------------------------------------------------------------
# the champion model used by pipeline, scaling and latency
# ---------------------------------------------------------------------------------------------------------


def _model_files(files: list[BenchFile]) -> list[BenchFile]:
    chosen: list[BenchFile] = []
    for label in (*LABELS, ""):
        same = [f for f in files if _label_of(f.relative) == label]
        chosen += same[:MODEL_IMAGES_PER_CLASS]
    return chosen


def _fallback_champion(lakehouse: Path) -> str:
    """Register a plain logistic regression as champion when ``xray retrain`` cannot (e.g. unlabelled
    images). Only throughput is measured, not model quality. Returns a description."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from streaming.core.config import load_config
    from streaming.core.registry import CHAMPION_ALIAS, configure_mlflow, ensure_experiment

    config = load_config(environ={}, lakehouse=str(lakehouse))
    features = {r["image_id"]: r for r in _table_rows(lakehouse, "silver_image_features",
                                                      ["image_id", "features", "feature_version"])}
    labels = {r["image_id"]: r["label"] for r in _table_rows(lakehouse, "silver_xray_metadata",
                                                           ["image_id", "label"])}
    if not features:
        raise RuntimeError("no silver features in the model lakehouse; cannot register a champion")
    ids = sorted(features)
    X = np.asarray([features[i]["features"] for i in ids], dtype=np.float32)
    y = np.asarray([labels.get(i) if labels.get(i) is not None else int(i, 16) % 2 for i in ids])
    if len(set(y.tolist())) < 2:
        y = np.arange(len(ids)) % 2
    model = LogisticRegression(max_iter=500).fit(X, y)
    experiment = ensure_experiment(config)
    with mlflow.start_run(experiment_id=experiment, run_name="bench-fallback"):
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=config.model_name)
    client = configure_mlflow(config)
    version = str(info.registered_model_version)
    client.set_model_version_tag(config.model_name, version, "feature_version",
                                 features[ids[0]]["feature_version"])
    client.set_registered_model_alias(config.model_name, CHAMPION_ALIAS, version)
    return f"bench fallback (LogisticRegression on {len(ids)} images)"


@dataclass
class BenchContext:
    config: XrayConfig
    work: Path
    files: list[BenchFile]
    results: dict[str, Any]
    tracking_uri: str | None = None
    pipeline_runs: dict[str, dict] = field(default_factory=dict)


def ensure_champion(ctx: BenchContext) -> str:
    """Train and register a champion once, in a separate lakehouse; the tracking URI to use."""
    if ctx.tracking_uri:
        return ctx.tracking_uri
    lakehouse = ctx.work / "model"
    _say(f"    training a champion model in {lakehouse} (not timed)")
    clock = time.perf_counter()
    _stage(_model_files(ctx.files), lakehouse / "landing")
    logs = ctx.work / "logs"
    run_xray(["stream", "--once", "--layer", "bronze", "--layer", "silver"], lakehouse, MEASURED_MASTER,
             logs / "model-stream.log").check("xray stream (model lakehouse)")
    retrained = run_xray(["retrain"], lakehouse, MEASURED_MASTER, logs / "model-retrain.log")
    source = "xray retrain"
    if retrained.returncode != 0:
        source = _fallback_champion(lakehouse)
    ctx.results["champion"] = {"source": source, "setup_seconds": round(time.perf_counter() - clock, 1),
                               "images": len(_model_files(ctx.files))}
    ctx.tracking_uri = f"sqlite:///{lakehouse / 'mlflow' / 'mlflow.db'}"
    return ctx.tracking_uri


# ---------------------------------------------------------------------------------------------------------
# pipeline and scaling
# ---------------------------------------------------------------------------------------------------------


def _tag(master: str) -> str:
    return master.replace("[", "").replace("]", "").replace("*", "all")


def cold_run(ctx: BenchContext, master: str) -> dict[str, Any]:
    """Landing → gold for all files with a champion registered: one ``xray stream --once`` subprocess, as
    after a (re)start: cold JVM, cold Python workers, the whole backlog waiting."""
    key = f"cold {master}"
    if key in ctx.pipeline_runs:
        return ctx.pipeline_runs[key]
    tracking_uri = ensure_champion(ctx)
    name = f"cold-{_tag(master)}"
    lakehouse = ctx.work / name
    _stage(ctx.files, lakehouse / "landing")
    _say(f"    xray stream --once, {len(ctx.files)} files, master {master} (cold start)")
    loadavg = _loadavg()
    run = run_xray(["stream", "--once"], lakehouse, master, ctx.work / "logs" / f"{name}.log", tracking_uri,
                   timeout=max(900.0, len(ctx.files) * 10.0))
    run.check(f"xray stream --once ({master})")
    images = len(ctx.files)
    result: dict[str, Any] = {
        "master": master,
        "images": images,
        "wall_seconds": round(run.seconds, 2),
        "images_per_second": round(images / run.seconds, 2),
        **events_summary(lakehouse, run.started, run.started + run.seconds, images),
        "gold_rows": len(_table_rows(lakehouse, "gold_pneumonia_predictions", ["image_id"])),
        "silver_rows": len(_table_rows(lakehouse, "silver_xray_metadata", ["image_id"])),
        "quarantined": len(_table_rows(lakehouse, "silver_quarantine", ["rule"])),
        "memory": run.memory,
        "loadavg": {"start": loadavg, "end": _loadavg()},
    }
    shutil.rmtree(lakehouse, ignore_errors=True)
    ctx.pipeline_runs[key] = result
    return result


def _warmup_images(ctx: BenchContext) -> list[BenchFile]:
    """Two images re-encoded from the bench files: new contents (so the measured files are not duplicates
    of them in silver) of the same kind, to warm a running stream up."""
    from PIL import Image

    folder = ctx.work / "warmup-images"
    made = []
    for item in ctx.files[:LATENCY_WARMUP_FILES]:
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
                 extra: Sequence[str] = ()):
        self.lakehouse = lakehouse
        self.landing = lakehouse / "landing"
        self.landing.mkdir(parents=True, exist_ok=True)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                _xray_args(["stream", *extra], lakehouse, master, ensure_champion(ctx)), env=_child_env(master),
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
            _drop(item, self.landing)
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
                _kill_group(self.process)
        else:
            self.exited_early = self.process.returncode
        self.memory = self.sampler.stop()


def warm_run(ctx: BenchContext, master: str) -> dict[str, Any]:
    """Steady-state landing → gold: ``xray stream`` already running and warm (default trigger), then the
    whole backlog appears at once (one rename of a hidden folder); seconds until every image is in gold."""
    key = f"warm {master}"
    if key in ctx.pipeline_runs:
        return ctx.pipeline_runs[key]
    name = f"warm-{_tag(master)}"
    lakehouse = ctx.work / name
    _say(f"    xray stream (running, warm), {len(ctx.files)} files at once, master {master}")
    stream = RunningStream(ctx, lakehouse, master, ctx.work / "logs" / f"{name}.log")
    result: dict[str, Any] = {"master": master, "images": len(ctx.files)}
    try:
        result["ready_seconds"] = round(stream.warm_up(_warmup_images(ctx)), 1)
        time.sleep(2)
        hidden = stream.landing / f".backlog-{uuid.uuid4().hex}"
        _stage(ctx.files, hidden)
        loadavg = _loadavg()
        exposed = time.time()
        os.rename(hidden, stream.landing / "backlog")
        wanted = {f.sha256 for f in ctx.files}
        result["complete"] = stream.watcher.wait_for(wanted, max(900.0, len(ctx.files) * 10.0), stream.alive)
        seen = [stream.watcher.visible[i] for i in wanted if i in stream.watcher.visible]
        seconds = max(seen) - exposed if seen else None
        _wait_for_events(lakehouse, "gold", exposed)
        result.update({
            "seconds": _round(seconds),
            "images_per_second": _round(len(ctx.files) / seconds if seconds else None),
            "first_in_gold_seconds": _round(min(seen) - exposed if seen else None),
            "layers": _batch_durations(lakehouse, since=exposed),
            "loadavg": {"start": loadavg, "end": _loadavg()},
        })
    finally:
        stream.stop()
        result["memory"] = stream.memory
        if stream.exited_early is not None:
            result["exited_early"] = stream.exited_early
    shutil.rmtree(lakehouse, ignore_errors=True)
    ctx.pipeline_runs[key] = result
    return result


def bench_pipeline(ctx: BenchContext) -> dict[str, Any]:
    result: dict[str, Any] = {"cold": cold_run(ctx, MEASURED_MASTER), "warm": warm_run(ctx, MEASURED_MASTER)}
    baseline = ctx.results.get("baseline", {}).get("images_per_second")
    if baseline:
        for kind in ("cold", "warm"):
            rate = result[kind].get("images_per_second")
            result[f"{kind}_ratio_to_baseline"] = round(rate / baseline, 4) if rate else None
        steady = result["cold"].get("steady_images_per_second")
        result["cold_steady_ratio_to_baseline"] = round(steady / baseline, 4) if steady else None
    return result


def bench_scaling(ctx: BenchContext) -> dict[str, Any]:
    one = warm_run(ctx, "local[1]")
    two = warm_run(ctx, "local[2]")
    rate_one, rate_two = one.get("images_per_second"), two.get("images_per_second")
    return {
        "local[1]": {k: one.get(k) for k in ("seconds", "images_per_second", "layers", "loadavg")},
        "local[2]": {k: two.get(k) for k in ("seconds", "images_per_second", "layers", "loadavg")},
        "ratio": round(rate_two / rate_one, 2) if rate_one and rate_two else None,
    }


# ---------------------------------------------------------------------------------------------------------
# latency, memory, idle
# ---------------------------------------------------------------------------------------------------------


class GoldWatcher:
    """Polls the gold table in a thread; records when each expected image id first becomes visible."""

    def __init__(self, lakehouse: Path):
        self.path = lakehouse / "tables" / "gold_pneumonia_predictions"
        self.visible: dict[str, float] = {}
        self.predicted: dict[str, float] = {}
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-gold-watcher", daemon=True)

    def start(self) -> GoldWatcher:
        self._thread.start()
        return self

    def _poll(self) -> None:
        from deltalake import DeltaTable

        began = time.time()
        try:
            rows = DeltaTable(str(self.path)).to_pyarrow_table(columns=["image_id", "predicted_time"]).to_pylist()
        except Exception:  # noqa: BLE001 - the table may not exist yet or be mid-commit
            return
        for row in rows:
            if row["image_id"] not in self.visible:
                # Visible at the latest when this read began (upper bound, at most one poll late).
                self.visible[row["image_id"]] = began
                self.predicted[row["image_id"]] = _epoch(row["predicted_time"])

    def _run(self) -> None:
        while not self._stop.wait(LATENCY_POLL_SECONDS):
            if not self._paused.is_set():
                self._poll()

    def pause(self, paused: bool = True) -> None:
        (self._paused.set if paused else self._paused.clear)()

    def wait_for(self, image_ids: Iterable[str], timeout: float, alive: Callable[[], bool]) -> bool:
        wanted = set(image_ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            if wanted <= self.visible.keys():
                return True
            time.sleep(0.1)
        return wanted <= self.visible.keys()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _drop(item: BenchFile, landing: Path) -> float:
    """Place a file in landing atomically: hidden temporary name in the target folder, then rename."""
    folder = landing / item.relative.parent
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".bench-{uuid.uuid4().hex}.tmp"
    shutil.copyfile(item.path, temporary)
    os.rename(temporary, folder / item.relative.name)
    return time.time()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bench_latency(ctx: BenchContext) -> dict[str, Any]:
    """Drop-to-gold latency, then memory after N and 2N files, then the idle cost, in one running stream."""
    unique: dict[str, BenchFile] = {}
    for item in ctx.files:
        unique.setdefault(item.sha256, item)
    candidates = list(unique.values())
    drops = min(LATENCY_DROPS, len(candidates))
    if drops < 4:
        raise RuntimeError("latency needs at least 4 distinct images")
    measured = candidates[:drops]
    # Memory after N and after 2N files: the rest of the distinct images in two rounds, the second as large
    # as everything before it (at most MEMORY_ROUND_MAX files in the first round).
    rest = candidates[drops:]
    first_round = max(0, min(MEMORY_ROUND_MAX, (len(rest) - LATENCY_WARMUP_FILES - drops) // 2))
    seen_so_far = LATENCY_WARMUP_FILES + drops
    rounds = [rest[:first_round], rest[first_round:][: seen_so_far + first_round]]
    more = rounds[0] + rounds[1]
    loadavg = _loadavg()
    _say(f"    xray stream (running, trigger {LATENCY_TRIGGER_SECONDS} s): {drops} drops every "
         f"{LATENCY_INTERVAL_SECONDS} s after a warm-up, {len(more)} more for memory (N -> 2N files), "
         f"{IDLE_SECONDS:.0f} s idle")
    stream = RunningStream(ctx, ctx.work / "latency", MEASURED_MASTER, ctx.work / "logs" / "latency.log",
                           ["--trigger-seconds", str(LATENCY_TRIGGER_SECONDS)])
    watcher, sampler, pid = stream.watcher, stream.sampler, stream.process.pid
    result: dict[str, Any] = {"trigger_seconds": LATENCY_TRIGGER_SECONDS, "drops": drops,
                              "interval_seconds": LATENCY_INTERVAL_SECONDS}
    try:
        result["ready_seconds"] = round(stream.warm_up(_warmup_images(ctx)), 1)
        time.sleep(2)
        dropped: dict[str, float] = {}
        begin = time.monotonic()
        for index, item in enumerate(measured):
            dropped[item.sha256] = _drop(item, stream.landing)
            time.sleep(max(0.0, begin + (index + 1) * LATENCY_INTERVAL_SECONDS - time.monotonic()))
        result["complete"] = watcher.wait_for(dropped, 180, stream.alive)
        _wait_for_events(stream.lakehouse, "gold", max(dropped.values()))
        latencies = [watcher.visible[i] - t for i, t in dropped.items() if i in watcher.visible]
        to_gold_batch = [watcher.predicted[i] - t for i, t in dropped.items() if i in watcher.predicted]
        result.update({
            "visible": len(latencies),
            "p50_seconds": _round(_percentile(latencies, 0.5)),
            "p95_seconds": _round(_percentile(latencies, 0.95)),
            "max_seconds": _round(max(latencies) if latencies else None),
            "mean_seconds": _round(statistics.mean(latencies) if latencies else None),
            "drop_to_gold_batch_start_p50_seconds": _round(_percentile(to_gold_batch, 0.5)),
            "latencies_seconds": [round(v, 2) for v in latencies],
            "layers": _batch_durations(stream.lakehouse, since=begin_wall(dropped)),
            "processes": process_kinds(pid),
        })
        # Idle: nothing arrives; the whole tree's CPU over IDLE_SECONDS, in % of one core (before the memory
        # phase, whose forced full GCs would leave the JVM busy for a while).
        watcher.pause()
        sampler.pause()
        time.sleep(3)
        result["idle"] = measure_tree_cpu(pid, IDLE_SECONDS)
        sampler.pause(False)
        watcher.pause(False)
        result["memory_flat"] = _memory_phase(pid, sampler, watcher, stream.landing, seen_so_far, rounds,
                                              stream.alive)
    finally:
        stream.stop()
        result["memory"] = stream.memory
        if stream.exited_early is not None:
            result["exited_early"] = stream.exited_early
        result["loadavg"] = {"start": loadavg, "end": _loadavg()}
    shutil.rmtree(stream.lakehouse, ignore_errors=True)
    return result


def _wait_for_events(lakehouse: Path, layer: str, since: float, timeout: float = 10.0) -> None:
    """The event row of a batch is committed just after its data: wait for the layer's latest event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = _table_rows(lakehouse, "pipeline_events", ["query", "event_time", "input_rows"])
        if any(e["query"] == layer and e["input_rows"] and _epoch(e["event_time"]) >= since for e in events):
            return
        time.sleep(0.2)


def begin_wall(dropped: dict[str, float]) -> float | None:
    return min(dropped.values()) if dropped else None


def _memory_phase(root: int, sampler: TreeSampler, watcher: GoldWatcher, landing: Path, files_so_far: int,
                  rounds: list[list[BenchFile]], alive: Callable[[], bool]) -> dict[str, Any]:
    """RSS and live Java heap (after a full GC) after N files, then after as many again (2N).

    Files arrive in bursts of MEMORY_BURST every second, so the stream runs many ordinary micro-batches."""

    def feed(files: list[BenchFile]) -> bool:
        for start in range(0, len(files), MEMORY_BURST):
            for item in files[start: start + MEMORY_BURST]:
                _drop(item, landing)
            time.sleep(1.0)
        return watcher.wait_for([f.sha256 for f in files], 300, alive)

    complete = feed(rounds[0])
    time.sleep(1)
    files_n = files_so_far + len(rounds[0])
    first = {"files": files_n, **sampler.snapshot(), "jvm_live_heap": jvm_heap_used_mb(root, True)}
    if len(rounds[1]) < max(4, files_n // 2):
        return {"after_n": first, "note": "not enough distinct images for a second round"}
    complete = feed(rounds[1]) and complete
    time.sleep(1)
    second = {"files": files_n + len(rounds[1]), **sampler.snapshot(),
              "jvm_live_heap": jvm_heap_used_mb(root, True)}

    def growth(key: str) -> float | None:
        before, after = first.get(key), second.get(key)
        return round(after / before - 1, 3) if before and after is not None else None

    return {
        "after_n": first,
        "after_2n": second,
        "complete": complete,
        "driver_jvm_rss_growth": growth("jvm"),
        "driver_python_rss_growth": growth("driver_python"),
        "jvm_live_heap_growth": growth("jvm_live_heap"),
        "tree_pss_growth": growth("tree_pss"),
    }


def _batch_durations(lakehouse: Path, since: float | None = None) -> dict[str, dict[str, float]]:
    """Micro-batches per layer with rows, since a wall-clock time (from pipeline_events): where time goes."""
    by_layer: dict[str, list[tuple[float, int]]] = {}
    for event in _table_rows(lakehouse, "pipeline_events", ["query", "event_time", "duration_ms", "input_rows"]):
        began = _epoch(event["event_time"]) - (event["duration_ms"] or 0) / 1000
        if event["input_rows"] and (since is None or began >= since - 1.0):
            by_layer.setdefault(event["query"], []).append(((event["duration_ms"] or 0) / 1000, event["input_rows"]))
    return {
        layer: {
            "batches": len(values),
            "rows": sum(rows for _, rows in values),
            "total_seconds": round(sum(seconds for seconds, _ in values), 2),
            "mean_seconds": round(statistics.mean(seconds for seconds, _ in values), 2),
            "max_seconds": round(max(seconds for seconds, _ in values), 2),
        }
        for layer, values in sorted(by_layer.items())
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------------------------------------------------
# sink (runs in a child process with its own Spark session)
# ---------------------------------------------------------------------------------------------------------


def _payload_table(rows: int, row_bytes: int) -> Any:
    import numpy as np
    import pyarrow as pa

    data = np.random.default_rng(0).bytes(rows * row_bytes)  # incompressible, like JPEG bytes
    offsets = np.arange(0, (rows + 1) * row_bytes, row_bytes, dtype=np.int32)
    payload = pa.Array.from_buffers(pa.binary(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pa.table({"id": pa.array(range(rows), pa.int64()), "payload": payload})


def _timed_query(start: Callable[[], Any]) -> float:
    from streaming.lakehouse.engine import await_termination

    clock = time.perf_counter()
    query = start()
    await_termination(query)
    return time.perf_counter() - clock


def sink_child(work: str, rows: int, row_bytes: int, master: str) -> dict[str, Any]:
    from deltalake import DeltaTable, write_deltalake

    from streaming.core.config import load_config
    from streaming.lakehouse.engine import Lakehouse
    from streaming.lakehouse.session import get_spark

    root = Path(work)
    config = load_config(environ={}, lakehouse=str(root), spark_master=master, shuffle_partitions=2)
    spark = get_spark(config)
    try:
        lakehouse = Lakehouse(spark, config)
        data = _payload_table(rows, row_bytes)
        megabytes = rows * row_bytes / 1e6
        clock = time.perf_counter()
        write_deltalake(lakehouse.path("bench_sink_source"), data, mode="append")
        driver_seconds = time.perf_counter() - clock
        write_deltalake(lakehouse.path("bench_warm_source"), data.slice(0, 64), mode="append")

        def copy(source: str, target: str) -> float:
            frame = lakehouse.read_stream(source)
            return _timed_query(lambda: lakehouse.write_stream(frame, target, f"copy_{target}", availableNow=True))

        def source_only(source: str) -> float:
            frame = lakehouse.read_stream(source)
            checkpoint = str(root / "checkpoints" / f"noop_{source}")
            return _timed_query(lambda: frame.writeStream.format("noop").option("checkpointLocation", checkpoint)
                                .trigger(availableNow=True).start())

        # JVM, Python workers and data source planning warm; 64 rows: the fixed cost of a query.
        warm_copy, warm_source = copy("bench_warm_source", "bench_warm_target"), source_only("bench_warm_source")
        source_seconds = source_only("bench_sink_source")
        stream_seconds = copy("bench_sink_source", "bench_sink_target")
        target = DeltaTable(lakehouse.path("bench_sink_target"))
        copied = target.to_pyarrow_table(columns=["id"]).num_rows
        sink_seconds = stream_seconds - source_seconds
        return {
            "format": lakehouse.format,
            "rows": rows,
            "row_bytes": row_bytes,
            "megabytes": round(megabytes, 1),
            "copied_rows": copied,
            "target_files": len(target.file_uris()),
            "write_deltalake_seconds": round(driver_seconds, 2),
            "write_deltalake_rows_per_second": round(rows / driver_seconds, 1),
            "write_deltalake_mb_per_second": round(megabytes / driver_seconds, 1),
            "stream_seconds": round(stream_seconds, 2),
            "stream_rows_per_second": round(rows / stream_seconds, 1),
            "stream_mb_per_second": round(megabytes / stream_seconds, 1),
            "source_only_seconds": round(source_seconds, 2),
            "fixed_cost_64_rows_seconds": {"copy": round(warm_copy, 2), "source_only": round(warm_source, 2)},
            "sink_only_seconds": round(sink_seconds, 2),
            "sink_only_mb_per_second": round(megabytes / sink_seconds, 1) if sink_seconds > 0 else None,
            "ratio_stream_to_write_deltalake": round(driver_seconds / stream_seconds, 3),
            "ratio_sink_only_to_write_deltalake": round(driver_seconds / sink_seconds, 3)
            if sink_seconds > 0 else None,
        }
    finally:
        spark.stop()


def bench_sink(ctx: BenchContext) -> dict[str, Any]:
    folder = ctx.work / "sink"
    _say(f"    {SINK_ROWS} rows of {SINK_ROW_BYTES // 1024} KB: write_deltalake vs deltars streaming sink")
    loadavg = _loadavg()
    result = _run_child("sink_child", {"work": str(folder), "rows": SINK_ROWS, "row_bytes": SINK_ROW_BYTES,
                                       "master": MEASURED_MASTER}, ctx.work / "logs" / "sink.log", MEASURED_MASTER)
    result["loadavg"] = {"start": loadavg, "end": _loadavg()}
    shutil.rmtree(folder, ignore_errors=True)
    return result


# ---------------------------------------------------------------------------------------------------------
# checkpoint growth (runs in a child process with its own Spark session)
# ---------------------------------------------------------------------------------------------------------

def _write_log_file(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.write("v1")
        for line in lines:
            handle.write("\n")
            handle.write(line)


def craft_checkpoint(lakehouse: Path, offsets_metadata: str, entries: list[tuple[str, int]]) -> None:
    """A bronze checkpoint whose landing log already holds ``entries`` (path, mtime ms), all admitted and
    committed in batch 0 (an empty batch as far as the tables know: its events transaction marks it done)."""
    from streaming.lakehouse.catalog import PIPELINE_EVENTS
    from streaming.lakehouse.deltars import DeltaRsCommitMessage, commit_files

    checkpoint = lakehouse / "checkpoints" / "bronze"
    log = checkpoint / "landing"
    (log / "files").mkdir(parents=True, exist_ok=True)
    with open(log / "files" / f"{0:012d}.jsonl", "w") as handle:
        for seq, (path, stamp) in enumerate(entries):
            handle.write(json.dumps({"path": path, "mtime_ms": stamp, "size": 0, "status": "file",
                                     "target": None, "seq": seq}) + "\n")
    (log / "plan.jsonl").write_text(json.dumps({"start": 0, "end": len(entries)}) + "\n")
    metadata = json.loads(offsets_metadata)
    metadata["batchTimestampMs"] = int(time.time() * 1000) - 1000
    _write_log_file(checkpoint / "offsets" / "0", [json.dumps(metadata, separators=(",", ":")),
                                                   json.dumps({"seq": len(entries)})])
    _write_log_file(checkpoint / "commits" / "0", ['{"nextBatchWatermarkMs":0}'])
    (checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}))
    commit_files(str(lakehouse / "tables" / PIPELINE_EVENTS.name), PIPELINE_EVENTS.schema, [DeltaRsCommitMessage()],
                 "append", "bronze:events", 0)


def _make_seen_files(landing: Path, count: int, newest_ms: int, age_ms: int, create: bool) -> list[tuple[str, int]]:
    """``count`` landing paths (created as empty files when ``create``) with mtimes spread over ``age_ms``
    before ``newest_ms``; (path, mtime ms) each."""
    entries = []
    for index in range(count):
        path = landing / "seen" / f"d{index // 1000:04d}" / f"IM-{index:06d}-0001.jpeg"
        stamp = newest_ms - (age_ms * (count - index)) // max(1, count)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb"):
                pass
            os.utime(path, ns=(stamp * 1_000_000, stamp * 1_000_000))
            stamp = os.stat(path).st_mtime_ns // 1_000_000
        entries.append((str(path), stamp))
    return entries


def restart_child(lakehouse: str, master: str) -> dict[str, Any]:
    """One bronze restart (``xray stream --once --layer bronze``) in this fresh process, timed in parts."""
    from streaming.core.config import load_config
    from streaming.lakehouse.engine import Lakehouse
    from streaming.lakehouse.session import get_spark
    from streaming.pipeline.service import run_stream

    clock = time.perf_counter()
    config = load_config(environ={}, lakehouse=lakehouse, spark_master=master, shuffle_partitions=2)
    spark = get_spark(config)
    session_seconds = time.perf_counter() - clock
    try:
        clock = time.perf_counter()
        service = run_stream(spark, config, layers=("bronze",), once=True)
        seconds = time.perf_counter() - clock
        query = service.queries.get("bronze")
        durations: dict[str, float] = {}
        for progress in (query.recentProgress if query is not None else []):
            for key, value in (progress.get("durationMs") or {}).items():
                durations[key] = durations.get(key, 0) + value / 1000
        return {
            "session_seconds": round(session_seconds, 2),
            "query_seconds": round(seconds, 2),
            "batch_body_seconds": round(durations.get("addBatch", 0.0), 2),
            "plan_offsets_seconds": round(durations.get("latestOffset", 0.0), 2),
            # Query start: loading the landing log, the availableNow scan of landing, ...
            "outside_triggers_seconds": round(seconds - durations.get("triggerExecution", 0.0), 2),
            "ingested": Lakehouse(spark, config).row_count("bronze_xray_images"),
        }
    finally:
        spark.stop()


CHECKPOINT_SCENARIOS = (
    # name, seen files, options
    ("fresh", 0, {}),
    ("seen_1k", 1_000, {}),
    ("seen_100k", 100_000, {}),
    ("seen_100k_files_still_in_landing", 100_000, {"in_landing": True}),
)


def _checkpoint_restart(ctx: BenchContext, name: str, seen: int, options: dict[str, Any], template: str | None,
                        news: list[BenchFile], round_: int) -> tuple[dict[str, Any], str | None]:
    """Craft one checkpoint scenario, restart bronze on it in a fresh process; (figures, offsets template)."""
    day = 86_400_000
    lakehouse = ctx.work / f"checkpoint-{name}-{round_}"
    landing = lakehouse / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    if seen:
        if template is None:
            raise RuntimeError("the fresh scenario must run first (it gives the offsets format)")
        entries = _make_seen_files(landing, seen, int(time.time() * 1000) - 60_000,
                                   options.get("ages_days", 1) * day, options.get("in_landing", False))
        craft_checkpoint(lakehouse, template, entries)
    crafting = time.perf_counter() - clock
    for index, item in enumerate(news):
        target = landing / "train" / "NORMAL" / f"IM-9{index:03d}-0001.jpeg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, target)
    clock = time.perf_counter()
    figures = _run_child("restart_child", {"lakehouse": str(lakehouse), "master": MEASURED_MASTER},
                         ctx.work / "logs" / f"checkpoint-{name}-{round_}.log", MEASURED_MASTER)
    wall = time.perf_counter() - clock
    logs = (lakehouse / "checkpoints" / "bronze" / "landing" / "files").glob("*.jsonl")
    figures.update({
        "process_seconds": round(wall, 2),
        "landing_log_mb": round(sum(p.stat().st_size for p in logs) / 1e6, 2),
        "crafting_seconds": round(crafting, 1),
        "loadavg": _loadavg(),
    })
    if template is None:
        template = (lakehouse / "checkpoints" / "bronze" / "offsets" / "0").read_text().splitlines()[1]
    shutil.rmtree(lakehouse, ignore_errors=True)
    return figures, template


def bench_checkpoint(ctx: BenchContext) -> dict[str, Any]:
    """Restart cost of the bronze file source with a growing seen-files log; one fresh process per restart
    (a restart is a new JVM, so the log is parsed by cold code). Scenarios run in interleaved rounds and
    the fastest round is reported (timings on a shared machine are noisy)."""
    news = ctx.files[:CHECKPOINT_NEW_FILES]
    _say(f"    bronze restarts (fresh JVM each) with 0 to 100k seen files, +{len(news)} new files each, "
         f"{CHECKPOINT_ROUNDS} rounds")
    loadavg = _loadavg()
    result: dict[str, Any] = {"new_files_per_restart": len(news), "rounds": CHECKPOINT_ROUNDS, "scenarios": {}}
    template: str | None = None
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(CHECKPOINT_ROUNDS):
        for name, seen, options in CHECKPOINT_SCENARIOS:
            figures, template = _checkpoint_restart(ctx, name, seen, options, template, news, round_)
            runs.setdefault(name, []).append(figures)
    for name, seen, options in CHECKPOINT_SCENARIOS:
        best = min(runs[name], key=lambda r: r["process_seconds"])
        result["scenarios"][name] = {
            "seen_files": seen,
            "seen_files_in_landing": options.get("in_landing", False),
            **best,
            "process_seconds_all_rounds": [r["process_seconds"] for r in runs[name]],
            "query_seconds_all_rounds": [r["query_seconds"] for r in runs[name]],
        }
    result["landing_log_load_seconds_100k"] = _time_landing_log_load(ctx.work / "parse", 100_000)
    result["loadavg"] = {"start": loadavg, "end": _loadavg()}
    return result


def _time_landing_log_load(folder: Path, size: int) -> float:
    """What loading a landing log of ``size`` entries costs the source at a restart (in Python)."""
    from streaming.landing.scan import LandingLog

    craft = folder / "files"
    craft.mkdir(parents=True, exist_ok=True)
    with open(craft / f"{0:012d}.jsonl", "w") as handle:
        for seq in range(size):
            handle.write(json.dumps({"path": f"/landing/IM-{seq:06d}-0001.jpeg", "mtime_ms": seq, "size": 1,
                                     "status": "file", "target": None, "seq": seq}) + "\n")
    clock = time.perf_counter()
    LandingLog(folder)
    seconds = time.perf_counter() - clock
    shutil.rmtree(folder, ignore_errors=True)
    return round(seconds, 3)


# ---------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------


def _memory_text(part: dict[str, Any]) -> str:
    peak = (part.get("memory") or {}).get("peak_rss_mb") or {}
    if not peak:
        return "n/a"
    return (f"{peak.get('tree_pss', 0):.0f} / {peak.get('tree', 0):.0f} / {peak.get('jvm', 0):.0f} "
            f"({peak.get('python_worker_processes', 0):.0f} Python workers)")


def _fmt(value: float | None, digits: int) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "n/a"
    return "met" if (value >= target if higher_is_better else value <= target) else "NOT met"


def report_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, verdict) rows of the printed table."""
    rows: list[tuple[str, str, str, str]] = []

    def add(name: str, value: Any, unit: str = "", target: str = "", verdict: str = "") -> None:
        text = "n/a" if value is None else (f"{value:,.2f}" if isinstance(value, float) else f"{value}")
        rows.append((name, f"{text} {unit}".strip(), target, verdict))

    base = results.get("baseline")
    if base:
        add(f"baseline images/s (pool of {base['processes']})", base["images_per_second"], "img/s")
        add("baseline + features images/s", base["with_features_images_per_second"], "img/s")
        add("baseline single-process ms/image", base["single_process_ms_per_image"], "ms")
    pipe = results.get("pipeline")
    if pipe:
        cold, warm = pipe.get("cold") or {}, pipe.get("warm") or {}
        add("cold `xray stream --once`: files / wall", f"{cold.get('images')} / {cold.get('wall_seconds')}", "s",
            "", "")
        add("  images/s (wall, landing->gold)", cold.get("images_per_second"), "img/s")
        add("  start-up: process start -> first bronze batch", cold.get("startup_seconds"), "s")
        add("  images/s first bronze batch -> last gold commit", cold.get("steady_images_per_second"), "img/s")
        for layer, figures in (cold.get("layers") or {}).items():
            add(f"  {layer}: batches / seconds in batches", f"{figures['batches']} / {figures['batch_seconds']}", "s")
        add("  between batches (query starts, planning)", cold.get("between_batches_seconds"), "s")
        add("  peak memory: tree PSS / RSS / JVM", _memory_text(cold), "MB")
        add("warm running stream: all files at once", warm.get("seconds"), "s to the last in gold")
        add("  images/s (steady state, landing->gold)", warm.get("images_per_second"), "img/s")
        for layer, figures in (warm.get("layers") or {}).items():
            add(f"  {layer}: batches / seconds in batches", f"{figures['batches']} / {figures['total_seconds']}", "s")
        add("  peak memory: tree PSS / RSS / JVM", _memory_text(warm), "MB")
        ratio = pipe.get("warm_ratio_to_baseline")
        add("pipeline / baseline (warm, steady)", _fmt(ratio, 4), "x", f">= {TARGETS['pipeline_vs_baseline']}",
            _verdict(ratio, TARGETS["pipeline_vs_baseline"], True))
        add("pipeline / baseline (cold, wall)", _fmt(pipe.get("cold_ratio_to_baseline"), 4), "x")
    scale = results.get("scaling")
    if scale:
        add("local[1] warm images/s", scale["local[1]"].get("images_per_second"), "img/s")
        add("local[2] warm images/s", scale["local[2]"].get("images_per_second"), "img/s")
        add("2 cores / 1 core (warm)", scale.get("ratio"), "x", f">= {TARGETS['scaling_2_vs_1']}",
            _verdict(scale.get("ratio"), TARGETS["scaling_2_vs_1"], True))
    lat = results.get("latency")
    if lat:
        add("latency drops visible in gold", f"{lat.get('visible')}/{lat.get('drops')}", "")
        add("latency p50 drop->gold", lat.get("p50_seconds"), "s")
        add("latency p95 drop->gold", lat.get("p95_seconds"), "s", f"<= {TARGETS['latency_p95_seconds']}",
            _verdict(lat.get("p95_seconds"), TARGETS["latency_p95_seconds"], False))
        for layer, figures in (lat.get("layers") or {}).items():
            add(f"  {layer} batch mean / max", f"{figures['mean_seconds']} / {figures['max_seconds']}",
                f"s ({figures['batches']} batches)")
        flat = lat.get("memory_flat") or {}
        first, second = flat.get("after_n") or {}, flat.get("after_2n") or {}
        growth = flat.get("driver_jvm_rss_growth")
        if flat.get("note"):
            rows.append(("driver memory N -> 2N", flat["note"], "", "n/a"))
        add(f"driver JVM RSS after {first.get('files')} -> {second.get('files', '?')} files",
            f"{first.get('jvm')} -> {second.get('jvm')}", "MB", f"growth <= {TARGETS['driver_memory_growth']:.0%}",
            _verdict(growth, TARGETS["driver_memory_growth"], False))
        add("driver Python RSS after N -> 2N files", f"{first.get('driver_python')} -> {second.get('driver_python')}",
            "MB")
        add("JVM live heap after full GC, N -> 2N", f"{first.get('jvm_live_heap')} -> {second.get('jvm_live_heap')}",
            "MB")
        add("stream peak memory: tree PSS / RSS / JVM", _memory_text(lat), "MB")
        idle = (lat.get("idle") or {}).get("tree")
        add("idle CPU (whole tree, % of one core)", idle, "%", f"< {TARGETS['idle_cpu_percent']}",
            "n/a" if idle is None else ("met" if idle < TARGETS["idle_cpu_percent"] else "NOT met"))
    sink = results.get("sink")
    if sink:
        add("write_deltalake (driver)", sink["write_deltalake_mb_per_second"],
            f"MB/s ({sink['write_deltalake_rows_per_second']:,.0f} rows/s)")
        add("deltars stream source->sink", sink["stream_mb_per_second"],
            f"MB/s ({sink['stream_rows_per_second']:,.0f} rows/s)")
        add("deltars sink alone (minus source)", sink.get("sink_only_mb_per_second"), "MB/s")
        add("sink / write_deltalake (stream, sink alone)",
            f"{sink['ratio_stream_to_write_deltalake']} / {sink.get('ratio_sink_only_to_write_deltalake')}", "x")
    check = results.get("checkpoint")
    if check:
        for name, scenario in check.get("scenarios", {}).items():
            add(f"restart {name}: process / query", f"{scenario['process_seconds']} / {scenario['query_seconds']}",
                f"s (query start {scenario['outside_triggers_seconds']} s, landing log "
                f"{scenario['landing_log_mb']} MB)")
        add("landing log load, 100k entries", check.get("landing_log_load_seconds_100k"), "s")
    for part, error in results.get("errors", {}).items():
        rows.append((f"{part}: FAILED", error.splitlines()[0][:80], "", ""))
    return rows


def print_report(results: dict[str, Any]) -> None:
    rows = report_rows(results)
    header = ("figure", "value", "target", "met?")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(4)]
    line = "  ".join("-" * w for w in widths if w)
    print()
    print(f"xray bench: {results['data']['files']} files ({results['data']['source']}, "
          f"{results['data']['total_mb']} MB), {results['host']['cpus']} CPUs, load average "
          f"{results['host']['loadavg_start']} -> {results['host'].get('loadavg_end')}")
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print(line)
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(line)


# ---------------------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------------------


def parse_parts(only: str | Sequence[str] | None) -> list[str]:
    if not only:
        return list(PARTS)
    names = only.split(",") if isinstance(only, str) else list(only)
    wanted = []
    for name in (n.strip().lower() for n in names):
        if not name:
            continue
        name = PART_ALIASES.get(name, name)
        if name not in PARTS:
            raise ConfigError(f"unknown bench part {name!r}; choose from {', '.join(PARTS)} (memory and idle "
                              "are measured by latency)")
        if name not in wanted:
            wanted.append(name)
    return [part for part in PARTS if part in wanted]


def run_bench(config: XrayConfig, data: str | Path | None = None, output: str | Path | None = None,
              only: str | Sequence[str] | None = None, max_files: int | None = None,
              copies: int = 1) -> dict[str, Any]:
    """Run the selected parts, print the table, write the JSON; returns the results."""
    parts = parse_parts(only)
    if max_files is not None and max_files < 1:
        raise ConfigError("--files must be at least 1")
    if copies < 1:
        raise ConfigError("--copies must be at least 1")
    bench_dir = config.root / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    output_path = Path(output).expanduser() if output else bench_dir / "results.json"
    work = Path(tempfile.mkdtemp(prefix="run-", dir=bench_dir))
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "parts": parts,
        "host": {"cpus": os.cpu_count(), "loadavg_start": _loadavg(), "python": sys.version.split()[0]},
        "targets": TARGETS,
        "errors": {},
    }
    try:
        _say(f"xray bench: parts {', '.join(parts)}; work folder {work}")
        files, results["data"] = resolve_dataset(data, max_files, work, copies)
        _say(f"==> data: {results['data']['files']} files from {results['data']['root']}")
        ctx = BenchContext(config, work, files, results)
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "baseline": lambda: bench_baseline(files),
            "pipeline": lambda: bench_pipeline(ctx),
            "scaling": lambda: bench_scaling(ctx),
            "latency": lambda: bench_latency(ctx),
            "sink": lambda: bench_sink(ctx),
            "checkpoint": lambda: bench_checkpoint(ctx),
        }
        if "pipeline" in parts and "baseline" not in parts:
            parts_run = ["baseline", *parts]  # the ratio needs the baseline; cheap
        else:
            parts_run = parts
        for part in parts_run:
            _say(f"==> {part}")
            clock = time.perf_counter()
            loadavg = _loadavg()
            try:
                results[part] = steps[part]()
            except XrayError:
                raise
            except Exception as error:  # noqa: BLE001 - one failed part must not lose the others' figures
                results["errors"][part] = f"{type(error).__name__}: {error}"
                _say(f"    {part} failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
                continue
            results[part].setdefault("loadavg", {"start": loadavg, "end": _loadavg()})
            results[part]["part_seconds"] = round(time.perf_counter() - clock, 1)
    finally:
        results["host"]["loadavg_end"] = _loadavg()
        results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if results["errors"]:
            kept = bench_dir / f"failed-{work.name}"
            if (work / "logs").exists():
                shutil.move(str(work / "logs"), kept)
            results["logs"] = str(kept)
        shutil.rmtree(work, ignore_errors=True)
    if "data" in results:
        print_report(results)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(results, indent=2, default=str))
    print(f"results written to {output_path}")
    return results


def _child_main(argv: list[str]) -> int:
    """``python -m batch.bench FUNCTION JSON-ARGS``: run a part that needs its own Spark session."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    functions = {"sink_child": sink_child, "restart_child": restart_child}
    result = functions[argv[0]](**json.loads(argv[1]))
    print(CHILD_RESULT_MARKER + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - used by run_bench's child processes
    sys.exit(_child_main(sys.argv[1:]))

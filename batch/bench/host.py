"""The machine and process trees: load average, and memory and CPU of a process tree from /proc (Linux)."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from batch.bench.settings import SAMPLE_SECONDS

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _default_signals() -> None:
    """In a pool worker: SIGTERM ends it quietly (the pool's exit terminates its workers; the ``xray``
    command's own SIGTERM handler, inherited by fork, would print a traceback for each)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def worker_pool(processes: int) -> Any:
    """A process pool (fork on Linux) whose workers end quietly when the pool closes."""
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return context.Pool(processes, initializer=_default_signals)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


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


class PollingThread:
    """Calls ``poll`` every ``every`` seconds in a daemon thread until stopped, skipping while paused."""

    def __init__(self, every: float, name: str):
        self._every = every
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def poll(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            if not self._paused.is_set():
                self.poll()

    def pause(self, paused: bool = True) -> None:
        (self._paused.set if paused else self._paused.clear)()

    def _halt(self, timeout: float) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)


class TreeSampler(PollingThread):
    """Samples the memory of a process tree every SAMPLE_SECONDS in a thread (peaks per role)."""

    def __init__(self, root: int):
        super().__init__(SAMPLE_SECONDS, "bench-sampler")
        self.root = root
        self.available = os.path.isdir("/proc")
        self.peak: dict[str, float] = {}
        self.hwm: dict[int, tuple[str, float]] = {}

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

    def poll(self) -> None:
        self.snapshot()

    def stop(self) -> dict[str, Any]:
        self._halt(timeout=5)
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
    match = re.search(r"total \d+K, used (\d+)K", info)
    return round(int(match.group(1)) / 1024, 1) if match else None

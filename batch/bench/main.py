"""``xray bench``'s entry point: run the selected parts on the same files, print the table, write the JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from batch.bench.baseline import bench_baseline
from batch.bench.checkpoint import bench_checkpoint
from batch.bench.cnnscore import bench_cnn
from batch.bench.context import BenchContext, BenchFile, resolve_dataset
from batch.bench.dicomcopy import dicom_copies, summary
from batch.bench.engines import bench_engines
from batch.bench.formats import bench_dicom
from batch.bench.host import load_average
from batch.bench.latency import bench_latency
from batch.bench.maintenance import bench_maintenance
from batch.bench.pipeline import bench_pipeline, bench_scaling
from batch.bench.profile import bench_profile
from batch.bench.receive import bench_receive
from batch.bench.report import print_report, say
from batch.bench.settings import FORMATS, PART_ALIASES, PARTS, TARGETS
from batch.bench.sink import bench_sink
from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError, XrayError, first_line

PART_FUNCTIONS: dict[str, Callable[[BenchContext], dict[str, Any]]] = {
    "baseline": lambda ctx: bench_baseline(ctx.files),
    "pipeline": bench_pipeline,
    "dicom": bench_dicom,
    "scaling": bench_scaling,
    "latency": bench_latency,
    "sink": bench_sink,
    "checkpoint": bench_checkpoint,
    "maintenance": bench_maintenance,
    "profile": bench_profile,
    "receive": bench_receive,
    "engines": bench_engines,
    "cnn": bench_cnn,
}


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


def _run_parts(ctx: BenchContext, parts: list[str]) -> None:
    """Run each part into ``ctx.results``; a failed part is recorded in ``errors`` and the others go on."""
    results = ctx.results
    if "pipeline" in parts and "baseline" not in parts:
        parts = ["baseline", *parts]  # the ratio needs the baseline; cheap
    for part in parts:
        say(f"==> {part}")
        clock = time.perf_counter()
        loadavg = load_average()
        try:
            results[part] = PART_FUNCTIONS[part](ctx)
        except XrayError:
            raise
        except Exception as error:  # one failed part must not lose the others' figures
            results["errors"][part] = f"{type(error).__name__}: {error}"
            say(f"    {part} failed: {first_line(error)}")
            continue
        results[part].setdefault("loadavg", {"start": loadavg, "end": load_average()})
        results[part]["part_seconds"] = round(time.perf_counter() - clock, 1)


def _finish(results: dict[str, Any], work: Path, bench_dir: Path) -> None:
    """Close the results; keep the logs of a run with failed parts; remove the work folder."""
    results["host"]["loadavg_end"] = load_average()
    results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    if results["errors"]:
        kept = bench_dir / f"failed-{work.name}"
        if (work / "logs").exists():
            shutil.move(str(work / "logs"), kept)
        results["logs"] = str(kept)
    shutil.rmtree(work, ignore_errors=True)


def _context(config: XrayConfig, work: Path, files: list[BenchFile], results: dict[str, Any],
             image_format: str) -> BenchContext:
    """The parts' context; with ``--format dicom`` every file is replaced by its DICOM copy first."""
    if image_format != "dicom":
        return BenchContext(config, work, files, results)
    say(f"==> DICOM copies of the {len(files)} files (8-bit, uncompressed explicit little endian)")
    copies = dicom_copies(files, work / "dicom")
    results["data"]["dicom_copies"] = summary(copies)
    return BenchContext(config, work, copies, results, source_files=files, dicom_files=copies)


def run_bench(config: XrayConfig, data: str | Path | None = None, output: str | Path | None = None,
              only: str | Sequence[str] | None = None, max_files: int | None = None,
              copies: int = 1, image_format: str = "original") -> dict[str, Any]:
    """Run the selected parts, print the table, write the JSON; returns the results.

    ``image_format`` ``dicom`` measures every part on DICOM copies of the images (``batch.bench.dicomcopy``).
    """
    parts = parse_parts(only)
    if max_files is not None and max_files < 1:
        raise ConfigError("--files must be at least 1")
    if copies < 1:
        raise ConfigError("--copies must be at least 1")
    if image_format not in FORMATS:
        raise ConfigError(f"unknown bench format {image_format!r}; choose from {', '.join(FORMATS)}")
    bench_dir = config.root / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    output_path = Path(output).expanduser() if output else bench_dir / "results.json"
    work = Path(tempfile.mkdtemp(prefix="run-", dir=bench_dir))
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "parts": parts,
        "format": image_format,
        "host": {"cpus": os.cpu_count(), "loadavg_start": load_average(), "python": sys.version.split()[0]},
        "targets": TARGETS,
        "errors": {},
    }
    try:
        say(f"xray bench: parts {', '.join(parts)}; work folder {work}")
        files, results["data"] = resolve_dataset(data, max_files, work, copies)
        say(f"==> data: {results['data']['files']} files from {results['data']['root']}")
        _run_parts(_context(config, work, files, results, image_format), parts)
    finally:
        _finish(results, work, bench_dir)
    if "data" in results:
        print_report(results)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(results, indent=2, default=str))
    print(f"results written to {output_path}")
    return results

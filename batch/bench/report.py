"""What the bench prints: progress lines, and the table of figures against their targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batch.bench.phases import profile_rows
from batch.bench.settings import TARGETS
from streaming.core.errors import first_line


def say(text: str) -> None:
    print(text, flush=True)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


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


class _Rows(list):
    """(figure, value, target, verdict) rows of the printed table."""

    def add(self, name: str, value: Any, unit: str = "", target: str = "", verdict: str = "") -> None:
        text = "n/a" if value is None else (f"{value:,.2f}" if isinstance(value, float) else f"{value}")
        self.append((name, f"{text} {unit}".strip(), target, verdict))


def _cnn_rows(rows: _Rows, part: dict[str, Any]) -> None:
    if "skipped" in part:
        rows.add("cnn family scoring", "skipped", "", "", part["skipped"][:60])
        return
    from batch.bench.settings import CNN_MS_PER_IMAGE_PER_CORE, CNN_STREAM_RATIO

    per_core = part["ms_per_image_per_core"]
    rows.add(f"cnn family scoring ms/image ({part['cores']} cores)", part["ms_per_image"], "ms")
    rows.add("cnn family scoring ms/image on one core", per_core, "ms", f"<= {CNN_MS_PER_IMAGE_PER_CORE}",
             _verdict(per_core, CNN_MS_PER_IMAGE_PER_CORE, False))
    stream = part.get("landing_to_gold") or {}
    if stream:
        rates = [stream[family].get("images_per_second") for family in ("sklearn", "cnn")]
        rows.add(f"landing -> gold, warm, {stream['images']} images: sklearn / cnn champion",
                 " / ".join("n/a" if r is None else f"{r}" for r in rates), "img/s")
        rows.add("  cnn / sklearn landing -> gold", stream["ratio"], "", f">= {CNN_STREAM_RATIO}",
                 _verdict(stream["ratio"], CNN_STREAM_RATIO, True) if stream["ratio"] is not None else "")


def _baseline_rows(rows: _Rows, base: dict[str, Any]) -> None:
    add = rows.add
    add(f"baseline images/s (pool of {base['processes']})", base["images_per_second"], "img/s")
    add("baseline + features images/s", base["with_features_images_per_second"], "img/s")
    add("baseline single-process ms/image", base["single_process_ms_per_image"], "ms")


def _pipeline_rows(rows: _Rows, pipe: dict[str, Any]) -> None:
    add = rows.add
    cold, warm = pipe.get("cold") or {}, pipe.get("warm") or {}
    add("cold `xray stream --once`: files / wall", f"{cold.get('images')} / {cold.get('wall_seconds')}", "s",
        "", "")
    add("  images/s (wall, landing->gold)", cold.get("images_per_second"), "img/s")
    add("  start-up: process start -> first bronze batch", cold.get("startup_seconds"), "s",
        f"<= {TARGETS['cold_startup_seconds']}", _verdict(cold.get("startup_seconds"), TARGETS["cold_startup_seconds"],
                                                         False))
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
    marginal = pipe.get("marginal") or {}
    if marginal.get("small_files"):
        add(f"marginal rate, warm {marginal['small_files']} -> {marginal['files']} files",
            marginal.get("images_per_second"), f"img/s ({marginal['small_seconds']} s -> {marginal['seconds']} s)")
        ratio = pipe.get("marginal_ratio_to_baseline")
        add("pipeline / baseline (marginal)", _fmt(ratio, 4), "x", f">= {TARGETS['pipeline_vs_baseline']}",
            _verdict(ratio, TARGETS["pipeline_vs_baseline"], True))


def _dicom_rows(rows: _Rows, fmt: dict[str, Any]) -> None:
    add = rows.add
    jpeg, dicom = fmt.get("jpeg_files") or {}, fmt.get("dicom_files") or {}
    add("JPEG vs DICOM copies: files / mean size", f"{jpeg.get('files')} / {jpeg.get('mean_kb')} vs "
        f"{dicom.get('mean_kb')}", "KB")
    for name, figures in (("silver's work per file, pool", fmt.get("decode") or {}),
                          ("warm stream landing->gold", fmt.get("pipeline") or {})):
        add(f"{name}: JPEG / DICOM", f"{figures.get('jpeg_images_per_second')} / "
            f"{figures.get('dicom_images_per_second')}", "img/s (best of rounds)")
        add("  DICOM / JPEG (same run): bests, median of rounds",
            f"{_fmt(figures.get('dicom_to_jpeg'), 3)} / {_fmt(figures.get('median_round_ratio'), 3)}", "x")


def _scaling_rows(rows: _Rows, scale: dict[str, Any]) -> None:
    add = rows.add
    add("local[1] warm images/s", scale["local[1]"].get("images_per_second"), "img/s")
    add("local[2] warm images/s", scale["local[2]"].get("images_per_second"), "img/s")
    add("2 cores / 1 core (warm)", scale.get("ratio"), "x", f">= {TARGETS['scaling_2_vs_1']}",
        _verdict(scale.get("ratio"), TARGETS["scaling_2_vs_1"], True))


def _latency_rows(rows: _Rows, lat: dict[str, Any]) -> None:
    add = rows.add
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


def _sink_rows(rows: _Rows, sink: dict[str, Any]) -> None:
    add = rows.add
    add("write_deltalake (driver)", sink["write_deltalake_mb_per_second"],
        f"MB/s ({sink['write_deltalake_rows_per_second']:,.0f} rows/s)")
    add("deltars stream source->sink", sink["stream_mb_per_second"],
        f"MB/s ({sink['stream_rows_per_second']:,.0f} rows/s)")
    add("deltars sink alone (minus source)", sink.get("sink_only_mb_per_second"), "MB/s")
    add("sink / write_deltalake (stream, sink alone)",
        f"{sink['ratio_stream_to_write_deltalake']} / {sink.get('ratio_sink_only_to_write_deltalake')}", "x")


def _checkpoint_rows(rows: _Rows, check: dict[str, Any]) -> None:
    add = rows.add
    for name, scenario in check.get("scenarios", {}).items():
        add(f"restart {name}: process / query", f"{scenario['process_seconds']} / {scenario['query_seconds']}",
            f"s (query start {scenario['outside_triggers_seconds']} s, landing log "
            f"{scenario['landing_log_mb']} MB)")
    add("landing log load, 100k entries", check.get("landing_log_load_seconds_100k"), "s")


def _maintenance_rows(rows: _Rows, upkeep: dict[str, Any]) -> None:
    add = rows.add
    add(f"maintain after {upkeep['micro_batches']} micro-batches: data files",
        f"{upkeep['data_files_before']} -> {upkeep['data_files_after']}",
        f"({upkeep['data_mb_before']} -> {upkeep['data_mb_after']} MB, freed {upkeep['mb_freed']} MB)")
    add("maintain: Delta log files", f"{upkeep['log_files_before']} -> {upkeep['log_files_after']}")
    add("maintain: pass / a second pass", f"{upkeep['maintain_seconds']} / {upkeep['second_pass_seconds']}", "s")


def _receive_rows(rows: _Rows, received: dict[str, Any]) -> None:
    add = rows.add
    plain, ours = received["plain"], received["receive"]
    add(f"receive: {received['instances']} instances ({received['megabytes']} MB), plain SCP writing files",
        f"{plain['instances_per_second']} inst/s, {plain['mb_per_second']}", "MB/s")
    add("  xray receive (atomic, fsynced, exactly once)",
        f"{ours['instances_per_second']} inst/s, {ours['mb_per_second']}", "MB/s")
    add("  xray receive / plain", received["ratio_to_plain"])
    pipeline = received.get("pipeline_images_per_second")
    if pipeline:
        add("  receive / landing->gold rate (must be > 1)", round(ours["instances_per_second"] / pipeline, 2), "",
            "> 1", _verdict(ours["instances_per_second"] / pipeline, 1.0, True))


def _engines_rows(rows: _Rows, engines: dict[str, Any]) -> None:
    """Both Delta engines side by side: one row per figure, ``delta-rs / delta-spark``."""
    pairs = [engines.get(engine, {}) for engine in ("delta-rs", "delta-spark")]

    def both(name: str, unit: str, pick: Callable[[dict[str, Any]], Any]) -> None:
        values = ["n/a" if pick(p) is None else f"{pick(p)}" for p in pairs]
        rows.append((f"{name} (delta-rs / delta-spark)", f"{values[0]} / {values[1]} {unit}".strip(), "", ""))

    both("engines: cold start-up", "s", lambda p: p.get("cold_startup_seconds"))
    both("engines: cold stream --once", "img/s", lambda p: p.get("cold_images_per_second"))
    both("engines: marginal (warm)", "img/s", lambda p: p.get("marginal_images_per_second"))
    both("engines: latency p50", "s", lambda p: p.get("latency", {}).get("p50_seconds"))
    both("engines: latency p95", "s", lambda p: p.get("latency", {}).get("p95_seconds"))
    for table in sorted(set(pairs[0].get("commit_ms", {})) - {"format"}):
        both(f"engines: commit {table}", "ms", lambda p, t=table: p.get("commit_ms", {}).get(t))


_SECTIONS: tuple[tuple[str, Callable[[_Rows, dict[str, Any]], None]], ...] = (
    ("baseline", _baseline_rows),
    ("pipeline", _pipeline_rows),
    ("dicom", _dicom_rows),
    ("scaling", _scaling_rows),
    ("latency", _latency_rows),
    ("sink", _sink_rows),
    ("checkpoint", _checkpoint_rows),
    ("maintenance", _maintenance_rows),
    ("profile", lambda rows, profile: [rows.add(*row) for row in profile_rows(profile)]),
    ("receive", _receive_rows),
    ("engines", _engines_rows),
    ("cnn", _cnn_rows),
)


def report_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, verdict) rows of the printed table."""
    rows = _Rows()
    for part, add_rows in _SECTIONS:
        figures = results.get(part)
        if figures:
            add_rows(rows, figures)
    for part, error in results.get("errors", {}).items():
        rows.append((f"{part}: FAILED", first_line(error)[:80], "", ""))
    return list(rows)


def print_report(results: dict[str, Any]) -> None:
    rows = report_rows(results)
    header = ("figure", "value", "target", "met?")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(4)]
    line = "  ".join("-" * w for w in widths if w)
    print()
    copies = results["data"].get("dicom_copies")
    as_dicom = f", measured as DICOM copies ({copies['total_mb']} MB)" if copies else ""
    print(f"xray bench: {results['data']['files']} files ({results['data']['source']}, "
          f"{results['data']['total_mb']} MB{as_dicom}), {results['host']['cpus']} CPUs, load average "
          f"{results['host']['loadavg_start']} -> {results['host'].get('loadavg_end')}")
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print(line)
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(line)

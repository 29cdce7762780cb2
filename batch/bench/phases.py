"""The ``profile`` part's figures: one batch's profile summarised (executor ms per image per phase, driver ms
per phase and per commit) and the rows printed for it."""

from __future__ import annotations

from typing import Any

import numpy as np

TASK_REST = "rest of the task (writer set-up, untimed)"
SPARK_JOB = "Spark job (plan, executors, result to driver)"  # the driver phase `streaming.pipeline.fused` names


def summarise(batch: dict[str, Any], cores: int) -> dict[str, Any]:
    """One batch's profile → executor ms per image per phase (and share), driver ms per phase, and the time
    the ``cores`` executor slots spent outside the Python tasks during the Spark job (scheduling, worker
    start, the JVM's side, waiting for the slowest task)."""
    images = max(int(batch.get("images") or 0), 1)
    tasks = batch.get("tasks") or []
    executor: dict[str, float] = {}
    for task in tasks:
        for name, seconds in task["phases"].items():
            executor[name] = executor.get(name, 0.0) + seconds
    task_seconds = sum(task["task_seconds"] for task in tasks)
    executor[TASK_REST] = max(task_seconds - sum(executor.values()), 0.0)
    driver = dict(batch.get("driver") or {})
    wall = float(batch.get("wall_seconds") or 0.0)
    outside = max(driver.get(SPARK_JOB, 0.0) * cores - task_seconds, 0.0)
    job = {}
    if tasks:  # wall clock (time.time) of the job on the driver and of each task in its worker
        start, end = tasks[0]["job_started_at"], tasks[0]["job_ended_at"]
        job = {"until_first_task_seconds": round(min(t["started_at"] for t in tasks) - start, 3),
               # of which the driver's Python building the DataFrame (the rest: Spark's planning,
               # scheduling, the Python workers receiving the task)
               "building_plan_seconds": round(tasks[0].get("plan_built_at", start) - start, 3),
               "tasks_running_seconds": round(max(t["ended_at"] for t in tasks)
                                              - min(t["started_at"] for t in tasks), 3),
               "after_last_task_seconds": round(end - max(t["ended_at"] for t in tasks), 3),
               "task_start_offsets_seconds": sorted(round(t["started_at"] - start, 3) for t in tasks)}
    return {
        "spark_job": job,
        "task_seconds": [round(task["task_seconds"], 3) for task in tasks],
        "slots_outside_tasks_ms_per_image": round(outside * 1000 / images, 3),
        "images": int(batch.get("images") or 0),
        "executor_tasks": len(tasks),
        "executor_ms_per_image": round(task_seconds * 1000 / images, 3),
        "executor": {name: {"ms_per_image": round(seconds * 1000 / images, 3),
                            "share": round(seconds / task_seconds, 4) if task_seconds else 0.0}
                     for name, seconds in sorted(executor.items(), key=lambda item: -item[1])},
        "driver_seconds": round(wall, 3),
        "driver_ms_per_image": round(wall * 1000 / images, 3),
        "driver": {name: {"ms": round(seconds * 1000, 1), "share": round(seconds / wall, 4) if wall else 0.0}
                   for name, seconds in sorted(driver.items(), key=lambda item: -item[1])},
    }


def serial_seconds(batch: dict[str, Any]) -> float:
    """A batch's time on the driver outside its Spark job: what no number of executors shortens."""
    return float(batch.get("wall_seconds") or 0.0) - float((batch.get("driver") or {}).get(SPARK_JOB, 0.0))


def driver_serial(batches: list[dict[str, Any]], least_images: int = 10) -> dict[str, Any]:
    """The driver's serial cost per image and per batch from a run's batches of at least ``least_images``
    images, of different sizes, and the bound it puts on one stream (Amdahl).

    Per image: the slope of the driver thread's CPU seconds against the batch's images (least squares; CPU
    time, unlike wall time, is not inflated by a busy machine). Per batch: the serial wall time (the batch's
    wall less its Spark job) less that per-image part. One stream then passes at most 1 / slope images a
    second with batches large enough, and B / (fixed + slope x B) with batches of B images, however fast
    the executors."""
    points = [b for b in batches if (b.get("images") or 0) >= least_images]
    result: dict[str, Any] = {"batches": [{"images": int(b["images"]), "serial_ms": round(serial_seconds(b) * 1000, 1),
                                           "cpu_ms": round(float(b.get("cpu_seconds") or 0.0) * 1000, 1)}
                                          for b in points]}
    if len({int(b["images"]) for b in points}) < 2 or not all("cpu_seconds" in b for b in points):
        return result
    images = np.asarray([float(b["images"]) for b in points])
    slope, cpu_fixed = np.polyfit(images, np.asarray([float(b["cpu_seconds"]) for b in points]), 1)
    slope = max(float(slope), 0.0)
    fixed = max(float(np.mean([serial_seconds(b) - slope * int(b["images"]) for b in points])), 0.0)
    result.update({
        "ms_per_image": round(slope * 1000, 4),
        "cpu_fixed_ms_per_batch": round(float(cpu_fixed) * 1000, 1),
        "fixed_ms_per_batch": round(fixed * 1000, 1),
        "amdahl_images_per_second": round(1.0 / slope) if slope > 0 else None,
        "bound_images_per_second": {str(b): round(b / (fixed + slope * b)) if fixed + slope * b > 0 else None
                                    for b in (max(int(b["images"]) for b in points), 4000, 20000)},
    })
    return result


def profile_rows(profile: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(figure, value, unit) rows for the printed table: the warm batch, then the cold one."""
    rows: list[tuple[str, Any, str]] = []
    for kind in ("warm", "cold"):
        if profile.get(kind):
            rows += _kind_rows(kind, profile[kind])
    return rows


def _kind_rows(kind: str, profile: dict[str, Any]) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = [
        (f"profile, {kind}: largest batch, images / tasks", f"{profile['images']} / {profile['executor_tasks']}",
         f"(load {profile['loadavg']['start'][0]} -> {profile['loadavg']['end'][0]})"),
        ("  executor time per image (all tasks)", profile["executor_ms_per_image"], "ms"),
    ]
    rows += [(f"    {name}", phase["ms_per_image"], f"ms/image ({phase['share']:.0%})")
             for name, phase in profile["executor"].items()]
    rows.append(("  executor slots outside Python tasks", profile["slots_outside_tasks_ms_per_image"],
                 "ms/image (Spark job wall x cores - task time)"))
    job = profile.get("spark_job") or {}
    if job:
        rows.append(("  Spark job: until the first task / tasks / after the last",
                     f"{job['until_first_task_seconds']} / {job['tasks_running_seconds']} / "
                     f"{job['after_last_task_seconds']}", "s"))
        rows.append(("    until the first task: building the DataFrame (driver)",
                     job.get("building_plan_seconds", ""), "s"))
    rows.append(("  driver: batch wall time", profile["driver_seconds"] * 1000,
                 f"ms ({profile['driver_ms_per_image']} ms/image)"))
    rows += [(f"    {name}", phase["ms"], f"ms ({phase['share']:.0%})") for name, phase in profile["driver"].items()]
    return rows + _serial_rows(profile.get("driver_serial") or {})


def _serial_rows(serial: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The driver's serial cost (per image, per batch) and one stream's bound (`driver_serial`)."""
    if "ms_per_image" not in serial:
        return []
    sizes = " / ".join(f"{b['images']}: {b['serial_ms']}, {b['cpu_ms']}" for b in serial["batches"])
    bounds = ", ".join(f"{v:,} at {k}" for k, v in serial["bound_images_per_second"].items() if v)
    return [("  driver by batch size: serial wall (wall - Spark job), thread CPU", sizes, "images: ms, ms"),
            ("  driver serial time per image (CPU slope)", serial["ms_per_image"], "ms (target <= 0.03)"),
            ("  driver serial time per batch (wall less the per-image part)", serial["fixed_ms_per_batch"], "ms"),
            ("  one stream's bound (Amdahl): 1 / serial per image", serial["amdahl_images_per_second"],
             f"images/s ({bounds} images a batch)")]

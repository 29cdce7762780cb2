"""The ``profile`` part's figures: one batch's profile summarised (executor ms per image per phase, driver ms
per phase and per commit) and the rows printed for it."""

from __future__ import annotations

from typing import Any

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
    return rows

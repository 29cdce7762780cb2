"""Spark's Python worker daemon (``spark.python.daemon.module``), with the executors' modules imported
before it forks its workers.

Spark forks every Python worker from one daemon per worker module, and a fresh worker imports what its
task needs (pyspark's worker, pyarrow, numpy, Pillow, the pipeline: about a second of CPU on this 2-core
machine) before its first row. A micro-batch task runs two workers (the landing source's read and the
recording ``mapInArrow``), and a reused worker may be handed either role, so the first batches paid that
import again and again (`xray bench --only profile`: "until the first task"). Imported once here, every
worker starts with them. Only the daemon of plain ``pyspark.worker`` tasks preloads: the planning
daemons (data source lookup and planning) start at session start and need none of it.

The modules are named, not imported by this module (it sits below the pipeline): an import that fails
here is skipped, and the worker then imports as it would have anyway.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["PRELOADED", "preload"]

PRELOADED = ("pyspark.worker", "pyarrow.compute", "numpy", "PIL.Image", "streaming.pipeline.fused")


def preload(worker_module: str | None) -> None:
    """Import `PRELOADED` when the daemon serves plain tasks (``worker_module`` None or ``pyspark.worker``)."""
    if worker_module not in (None, "pyspark.worker"):
        return
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except Exception:  # an optimisation only: the worker imports it itself
            pass


if __name__ == "__main__":
    preload(sys.argv[1] if len(sys.argv) > 1 else None)
    from pyspark import daemon

    daemon.manager()

"""The ``cnn`` part: what scoring with the cnn model family costs per image (issue 28's bound: about 5 ms an
image a core), beside the features the sklearn family reads. The network's cost does not depend on its
weights, so it is measured with freshly initialised ones on the bench files' frames, batched as gold scores
(`streaming.imaging.cnn.probabilities`): once on one core (a child process pinned to it before JAX starts its
threads: the per-core figure), once on all cores (the wall time gold sees). Skipped, saying why, without
the ``[cnn]`` extra. Then landing → gold in a warm stream with the sklearn champion and with a cnn one,
back to back (`landing_to_gold`). ``python -m batch.bench.cnnscore FRAMES.npy`` is the measurement itself (JSON out)."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from batch.bench.baseline import _gray
from batch.bench.context import BenchContext
from batch.bench.settings import BASELINE_REPEATS, CNN_STREAM_RATIO, MEASURED_MASTER

MIN_FRAMES = 512  # the bench's few files are repeated up to this many frames: batches as large as gold's


def measure(frames: np.ndarray) -> dict[str, Any]:
    """Median ms an image of `cnn.probabilities` over ``BASELINE_REPEATS`` runs, after a compiling run."""
    from streaming.imaging import cnn

    params = cnn.init_params(0)
    cnn.probabilities(params, frames)  # compiles each batch shape once, as the first gold batch does
    runs = []
    for _ in range(BASELINE_REPEATS):
        clock = time.perf_counter()
        cnn.probabilities(params, frames)
        runs.append(1000.0 * (time.perf_counter() - clock) / len(frames))
    return {"ms_per_image": round(statistics.median(runs), 3), "runs_ms_per_image": [round(r, 3) for r in runs]}


def _one_core(frames: np.ndarray) -> dict[str, Any]:
    """`measure` in a child process pinned to one core (JAX's threads inherit the pinning)."""
    core = min(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frames.npy"
        np.save(path, frames)
        done = subprocess.run([sys.executable, "-m", "batch.bench.cnnscore", str(path)], capture_output=True,
                              text=True, check=True, timeout=600,
                              preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_cnn(ctx: BenchContext, stream: bool = True) -> dict[str, Any]:
    """The per-image cost, then (``stream``) landing → gold with each family's champion (`landing_to_gold`)."""
    from streaming.imaging import cnn
    from streaming.imaging.features import frame_bytes, frames_array

    reason = cnn.missing_reason()
    if reason is not None:
        return {"skipped": reason}
    frames = frames_array([frame_bytes(_gray(str(f.path))) for f in ctx.files])
    frames = np.resize(frames, (max(MIN_FRAMES, len(frames)), *frames.shape[1:]))
    one_core = _one_core(frames)
    every_core = measure(frames)
    figures = {"landing_to_gold": landing_to_gold(ctx)} if stream else {}
    return {**figures, "frames": len(frames), "cores": len(os.sched_getaffinity(0)),
            "ms_per_image": every_core["ms_per_image"], "runs_ms_per_image": every_core["runs_ms_per_image"],
            "ms_per_image_per_core": one_core["ms_per_image"], "one_core_runs_ms_per_image": one_core["runs_ms_per_image"],
            "work": f"cnn.probabilities: {cnn.INPUT_SIZE}px input, batches of {cnn.INFERENCE_BATCH}; per core: a "
                    "process pinned to one core"}


def landing_to_gold(ctx: BenchContext) -> dict[str, Any]:
    """Landing → gold of the bench files in a warm stream (`pipeline.warm_run`) with the sklearn champion,
    then with a cnn-family champion (scored on the executors, `streaming.gold.inline`), back to back; the
    ratio of the two rates (issue 28: the network may cost at most 20 %)."""
    from batch.bench.champion import ensure_champion, register_cnn_champion
    from batch.bench.pipeline import warm_run
    from streaming.imaging.features import FEATURE_VERSION

    ensure_champion(ctx)
    sklearn = warm_run(ctx, MEASURED_MASTER)
    with_cnn = dataclasses.replace(ctx, pipeline_runs={},
                                   tracking_uri=register_cnn_champion(ctx.work / "model-cnn", FEATURE_VERSION))
    cnn = warm_run(with_cnn, MEASURED_MASTER)
    rates = sklearn.get("images_per_second"), cnn.get("images_per_second")
    return {"images": len(ctx.files), "sklearn": sklearn, "cnn": cnn,
            "ratio": round(rates[1] / rates[0], 4) if all(rates) else None, "target_ratio": CNN_STREAM_RATIO}


if __name__ == "__main__":
    print(json.dumps(measure(np.load(sys.argv[1]))))

"""The ``cnn`` part: what scoring with the cnn model family costs per image (issue 28's bound: about 5 ms an
image a core), beside the features the sklearn family reads. The network's cost does not depend on its
weights, so it is measured with freshly initialised ones on the bench files' frames, batched as gold scores
(`streaming.imaging.cnn.probabilities`). Skipped, saying why, without the ``[cnn]`` extra."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np

from batch.bench.baseline import _gray
from batch.bench.context import BenchContext
from batch.bench.settings import BASELINE_REPEATS

CNN_MS_PER_IMAGE_PER_CORE = 5.0
MIN_FRAMES = 512  # the bench's few files are repeated up to this many frames: batches as large as gold's


def bench_cnn(ctx: BenchContext) -> dict[str, Any]:
    from streaming.imaging import cnn
    from streaming.imaging.features import frame_bytes, frames_array

    reason = cnn.missing_reason()
    if reason is not None:
        return {"skipped": reason}
    frames = frames_array([frame_bytes(_gray(str(f.path))) for f in ctx.files])
    frames = np.resize(frames, (max(MIN_FRAMES, len(frames)), *frames.shape[1:]))
    params = cnn.init_params(0)
    cnn.probabilities(params, frames)  # compiles each batch shape once, as the first gold batch does
    runs = []
    for _ in range(BASELINE_REPEATS):
        clock = time.perf_counter()
        cnn.probabilities(params, frames)
        runs.append(1000.0 * (time.perf_counter() - clock) / len(frames))
    cores = os.cpu_count() or 1
    wall = statistics.median(runs)
    return {"frames": len(frames), "cores": cores, "ms_per_image": round(wall, 3),
            "ms_per_image_per_core": round(wall * cores, 3), "runs_ms_per_image": [round(r, 3) for r in runs],
            "work": f"cnn.probabilities: {cnn.INPUT_SIZE}px input, batches of {cnn.INFERENCE_BATCH}, all cores"}

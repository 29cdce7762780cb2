"""The bench's parts, sizes, timings and targets, in one place."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "chest_xray_originals"
PARTS = ("baseline", "pipeline", "dicom", "scaling", "latency", "sink", "checkpoint", "maintenance", "profile",
         "receive", "engines", "cnn")
PART_ALIASES = {"memory": "latency", "idle": "latency", "throughput": "pipeline", "formats": "dicom"}
FORMATS = ("original", "dicom")
"""``--format``: measure on the images as found, or on their DICOM copies (``batch.bench.dicomcopy``)."""

DEFAULT_GENERATED_FILES = 120
GENERATED_SIZE = (1800, 1500)
BASELINE_REPEATS = 3
MAX_PIXELS = 40_000_000  # the default max_image_pixels: what silver decodes
FORMAT_ROUNDS = 3  # the dicom part: interleaved JPEG/DICOM rounds, best of each
MODEL_IMAGES_PER_CLASS = 20
MEASURED_MASTER = "local[2]"
MARGINAL_SMALL_FILES = 300  # the marginal rate: warm runs on this many files and on all of them
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
MAINTENANCE_BATCHES = 200  # micro-batches of one tiny image each before `xray maintain`

TARGETS = {  # issue 17
    "pipeline_vs_baseline": 0.8,
    "cold_startup_seconds": 4.5,  # process start -> first bronze batch, half of the ~9 s measured before
    "latency_p95_seconds": 1.0,
    "idle_cpu_percent": 5.0,
    "driver_memory_growth": 0.10,
    "scaling_2_vs_1": 1.7,
}

# Issue 28: the cnn family's scoring at most ~5 ms an image a core, and landing → gold with a cnn champion at
# least 0.8 x the rate with the sklearn one (at most 20 % slower).
CNN_MS_PER_IMAGE_PER_CORE = 5.0
CNN_STREAM_RATIO = 0.8

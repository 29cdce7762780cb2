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
    JVM, session, tables, query start, listing; target at most 4.5 s, with the JVM's class-data archive made
    by an earlier start: ``jvm_class_cache``), images/s from the first bronze batch to the last gold
    commit (``pipeline_events``), seconds spent in and between each layer's batches, peak memory;
  - *warm* (steady state): ``xray stream`` already running and warmed up (two re-encoded images through to
    gold), then every file appears at once (one rename of a hidden folder in landing); seconds until the
    last one is visible in gold (polled every 0.2 s) and images/s. Its ratio to the baseline is the target;
  - *marginal*: the warm measurement again on the first 300 files, in a fresh stream, and the rate of the
    extra files, (N - 300) / (t_N - t_300): the per-run fixed costs (trigger wait, first batch, the gold
    poll) cancel out; its ratio to the baseline, with the same target.
* ``dicom``: the same images as JPEG (PNG) and as DICOM copies (8-bit, uncompressed explicit little endian,
  ``dicomcopy``), in the same run, rounds interleaved, best of ``FORMAT_ROUNDS``: silver's work per file
  (read, SHA-256, ``inspect_image``) in a process pool, and landing → gold in one warm running stream
  receiving the JPEG and the DICOM backlogs in turn (each round a fresh content of every image); DICOM /
  JPEG ratios: of the bests, and the median of each round's ratio. ``--format dicom`` instead measures every part on the DICOM copies.
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
* ``profile``: where one large micro-batch spends its time (``profile``, figures in ``phases``): a cold
  ``xray stream --once`` and a warm running stream with ``XRAY_PROFILE_FILE`` set
  (``streaming.core.profiling``); executor ms per image per phase (read, hash, bronze row and write,
  decode, measures, features, inspected row, Arrow in/out, waiting for Spark), executor-slot time outside
  the Python tasks, driver ms per phase and per table commit; the warm stream receives a fifth of the files,
  then the rest, so the driver's serial time (a batch's wall less its Spark job) splits into a cost per
  image and per batch, with the bound it puts on one stream (Amdahl; ``phases.driver_serial``).

Every part works in a fresh temporary lakehouse under ``<lakehouse>/bench/`` and removes it. Timings on a
shared machine are noisy: the load average is recorded at the start and end of every part.

Modules: ``main`` (``run_bench``: the parts in order), ``settings`` (sizes, timings, targets), ``context``
(the files and the context each part receives), one module per part (``baseline``, ``pipeline`` with
scaling, ``formats`` (the ``dicom`` part), ``latency`` with memory and idle, ``sink``, ``checkpoint``),
``dicomcopy`` (DICOM copies of the files, fresh contents for repeated rounds), ``champion`` (the model they score
with), ``streams`` (a running ``xray stream`` and its gold watcher), ``processes`` (subprocesses),
``children`` (what runs in a child process, by name), ``host`` (load average, /proc), ``tables``
(delta-rs reads of the results) and ``report`` (the printed table).
"""

from batch.bench.children import CHILD_FUNCTIONS, child_main
from batch.bench.context import BenchFile, resolve_dataset
from batch.bench.main import parse_parts, run_bench
from batch.bench.report import print_report, report_rows
from batch.bench.settings import PARTS, TARGETS

__all__ = [
    "CHILD_FUNCTIONS",
    "PARTS",
    "TARGETS",
    "BenchFile",
    "child_main",
    "parse_parts",
    "print_report",
    "report_rows",
    "resolve_dataset",
    "run_bench",
]

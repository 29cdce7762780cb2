"""``xray refeature``: features of the current ``FEATURE_VERSION`` for the images silver already holds.

A release that changes the feature extractor bumps ``streaming.imaging.features.FEATURE_VERSION``; new images
then get features of the new version, but the images already in silver only have old-version rows, which
`xray retrain` does not train on and a new champion cannot score. This job reads each such image's bytes
from bronze again (one copy: the one silver's metadata row names, by ``path_ref``), recomputes its features
on the executors with silver's own code (``inspect_image``) and appends one row of the current version to
``silver_image_features``, with the fixed-size frame the cnn model family reads. The old rows stay (a model
of the old version still scores with them).

Exactly once, incrementally:

- the lakehouse's stream lock is held for the whole run: the stream also writes features (of new images),
  and no second refeature can start;
- the set of images lacking current-version features is recomputed before each chunk, so a re-run (after
  a crash or Ctrl-C) does only what is left;
- each chunk is one Delta append carrying the application transaction (``refeature:<version>``, n), n = the
  transaction version the table holds for that app + 1: a crash before the commit leaves files that the
  redo of the same n removes, a crash after it leaves rows the next run no longer counts as missing.

An image with metadata but no features row at all belongs to a stream batch that did not finish (its
features commit comes when the stream replays the batch, at the current version); it is left to the stream.
Features rows written here carry the ``silver_batch_id`` of the image's metadata row (the batch that brought
the image in), so "rows a model trained on" (``trained_through_silver_batch``) keeps meaning arrival.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, FloatType, StringType, StructField, StructType

from streaming.core.config import XrayConfig
from streaming.core.locks import stream_lock
from streaming.core.progress import progress
from streaming.imaging import features as feature_lib
from streaming.imaging.images import expected_format, inspect_image
from streaming.lakehouse.catalog import BRONZE_IMAGES, SILVER_FEATURES, SILVER_METADATA
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent, record_event

log = logging.getLogger(__name__)

QUERY_NAME = "refeature"
CHUNK_IMAGES = 1000  # images per commit: what an interruption keeps (each chunk also scans bronze once)

NOT_IN_BRONZE = "no copy with content in bronze"
DECODE_FAILED = "decode failed now"
STREAM_UNFINISHED = "stream batch not finished (no features row yet): run xray stream"

_RECOMPUTED_SCHEMA = StructType([
    StructField("image_id", StringType()),
    StructField("features", ArrayType(FloatType())),
    StructField("frame", BinaryType()),
    StructField("error", StringType()),
])
_RECOMPUTED_ARROW = pa.schema([("image_id", pa.string()), ("features", pa.list_(pa.float32())), ("frame", pa.binary()),
                               ("error", pa.string())])
_RECOMPUTED_EMPTY = _RECOMPUTED_ARROW.empty_table()

def app_id(version: str) -> str:
    """The application transaction id of refeature runs for a feature version."""
    return f"{QUERY_NAME}:{version}"


@dataclass
class RefeatureResult:
    """What a run did."""

    feature_version: str
    recomputed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> images
    chunks: int = 0
    seconds: float = 0.0
    champion_version: str | None = None  # the champion's feature_version tag (None: no champion)
    champion_ref: str | None = None


@dataclass
class _Silver:
    """Silver's images as the run sees them (the lock keeps metadata and bronze still)."""

    batch_of: dict[str, int | None]  # image_id -> its metadata row's silver_batch_id
    copy_of: dict[str, str]  # image_id -> path_ref of the bronze copy to read


def missing_images(lakehouse: Lakehouse, version: str) -> tuple[list[str], list[str]]:
    """(images with features of other versions only, images with no features row at all), sorted."""
    return _missing(lakehouse.read_arrow(SILVER_METADATA.name, columns=["image_id"]),
                    lakehouse.read_arrow(SILVER_FEATURES.name, columns=["image_id", "feature_version"]), version)


def _missing(metadata: pa.Table, rows: pa.Table, version: str) -> tuple[list[str], list[str]]:
    have_any = set(rows.column("image_id").to_pylist())
    have_current = {i for i, v in zip(rows.column("image_id").to_pylist(), rows.column("feature_version").to_pylist(),
                                      strict=True) if v == version}
    ids = set(metadata.column("image_id").to_pylist())
    return sorted((ids & have_any) - have_current), sorted(ids - have_any)


def features_status(lakehouse: Lakehouse) -> dict:
    """For ``xray status`` and the stream's start: see `current_features_status`."""
    return current_features_status(lakehouse.config)


def current_features_status(config: XrayConfig) -> dict:
    """The current feature version and the silver images lacking features of it (``stale``: older versions
    only; ``unfinished``: no features row yet), for ``xray status``, the stream's start and the preflight of
    ``xray refeature``. Reads two small columns with delta-rs, without Spark; nothing is created."""
    from streaming.lakehouse.tables import read_arrow

    version = feature_lib.FEATURE_VERSION
    metadata = read_arrow(config, SILVER_METADATA.name, ["image_id"])
    rows = read_arrow(config, SILVER_FEATURES.name, ["image_id", "feature_version"])
    if metadata is None or rows is None:
        return {"feature_version": version, "stale": 0, "unfinished": 0}
    stale, unfinished = _missing(metadata, rows, version)
    return {"feature_version": version, "stale": len(stale), "unfinished": len(unfinished)}


def stale_features_message(status: dict) -> str | None:
    """One line when silver images have features of older versions only (else None)."""
    if not status["stale"]:
        return None
    return (f"{status['stale']} silver image(s) have features of an older feature version only: run xray "
            f"refeature (to {status['feature_version']}), then xray retrain and xray rescore")


def _silver_and_copies(lakehouse: Lakehouse) -> _Silver:
    """Each silver image's metadata batch and the bronze copy to read: the path silver's metadata names,
    else the first copy with content (by bronze batch, then path_ref). Small columns only, no bytes."""
    metadata = lakehouse.read_arrow(SILVER_METADATA.name, columns=["image_id", "path_ref", "silver_batch_id"])
    ids = metadata.column("image_id").to_pylist()
    batch_of = dict(zip(ids, metadata.column("silver_batch_id").to_pylist(), strict=True))
    named = dict(zip(ids, metadata.column("path_ref").to_pylist(), strict=True))
    bronze = lakehouse.read_arrow(BRONZE_IMAGES.name, columns=["content_sha256", "path_ref", "batch_id"])
    copies: dict[str, list[tuple[int, str]]] = {}
    for sha, ref, batch in zip(*(bronze.column(c).to_pylist() for c in bronze.column_names), strict=True):
        if sha is not None and ref is not None:
            copies.setdefault(sha, []).append((batch if batch is not None else -1, ref))
    copy_of = {}
    for image, found in copies.items():
        refs = {ref for _, ref in found}
        copy_of[image] = named.get(image) if named.get(image) in refs else min(found)[1]
    return _Silver(batch_of, copy_of)


def recompute_features(lakehouse: Lakehouse, images: list[str], refs: list[str]) -> pa.Table:
    """Features of the bronze rows of these images at these path refs (a path may have held other contents
    over time: only the images asked for come back), computed on the executors with silver's code.

    Returns (image_id, features, error) per row read; features null (and error set) when the decode fails.
    Bronze is filtered by Spark after the read (no pushed-down filter on a string column can lose rows).
    """
    max_pixels = lakehouse.config.max_image_pixels

    def recompute(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            out = []
            for row in batch.to_pylist():
                inspected = inspect_image(row["content"], max_pixels, expected_format(row["file_name"] or ""))
                vector = inspected.features
                out.append({"image_id": row["content_sha256"],
                            "features": None if vector is None else vector.astype("float32").tolist(),
                            "frame": inspected.frame,
                            "error": None if vector is not None else (inspected.decode_error or inspected.content_kind
                                                                      or "no features")})
            yield pa.RecordBatch.from_pylist(out, schema=_RECOMPUTED_ARROW)

    bronze = lakehouse.read(BRONZE_IMAGES.name).where(
        F.col("path_ref").isin(refs) & F.col("content_sha256").isin(images) & F.col("content").isNotNull())
    return (bronze.select("content_sha256", "file_name", "content").mapInArrow(recompute, _RECOMPUTED_SCHEMA)
            .toArrow())


def feature_rows(recomputed: pa.Table, silver: _Silver, version: str, now: dt.datetime) -> pa.Table:
    """One ``silver_image_features`` row per image that decoded (the first row of each image)."""
    seen: set[str] = set()
    keep = []
    for index, (image, vector) in enumerate(zip(recomputed.column("image_id").to_pylist(),
                                                recomputed.column("features").is_valid().to_pylist(), strict=True)):
        if vector and image not in seen:
            seen.add(image)
            keep.append(index)
    rows = recomputed.take(pa.array(keep, pa.int64()))
    ids = rows.column("image_id").to_pylist()
    return pa.table({
        "image_id": rows.column("image_id"),
        "feature_version": pa.array([version] * len(ids), pa.string()),
        "features": rows.column("features"),
        "processed_time": pa.array([now] * len(ids), pa.timestamp("us", tz="UTC")),
        "silver_batch_id": pa.array([silver.batch_of.get(i) for i in ids], pa.int64()),
        "frame": rows.column("frame"),  # the cnn family's input, kept with the features
    })


def _next_txn_version(lakehouse: Lakehouse, app: str) -> int:
    """The transaction version of the next chunk: one after the last one the table committed for ``app``."""
    committed = lakehouse.delta_table(SILVER_FEATURES.name).transaction_version(app)
    return 0 if committed is None else int(committed) + 1


def _run_chunk(lakehouse: Lakehouse, silver: _Silver, todo: list[str], version: str,
               skipped: dict[str, str]) -> int:
    """Recompute and append one chunk in one transaction; returns the rows written (reasons into ``skipped``)."""
    images = [i for i in todo if i in silver.copy_of]
    refs = sorted({silver.copy_of[i] for i in images})
    recomputed = recompute_features(lakehouse, images, refs) if images else _RECOMPUTED_EMPTY
    rows = feature_rows(recomputed, silver, version, dt.datetime.now(dt.timezone.utc))
    written = set(rows.column("image_id").to_pylist())
    errors = dict(zip(recomputed.column("image_id").to_pylist(), recomputed.column("error").to_pylist(), strict=True))
    for image in todo:
        if image in written:
            continue
        skipped[image] = DECODE_FAILED if image in errors else NOT_IN_BRONZE
        if image in errors:
            log.warning("refeature: image %s no longer decodes (%s)", image[:12], errors[image])
    if rows.num_rows:
        app = app_id(version)
        lakehouse.append_arrow(SILVER_FEATURES.name, rows, (app, _next_txn_version(lakehouse, app)))
    return rows.num_rows


def refeature(spark: SparkSession, config: XrayConfig, chunk_images: int = CHUNK_IMAGES) -> RefeatureResult:
    """Append features of the current feature version for every silver image lacking them (see module doc).

    Raises `LakehouseBusyError` while a stream (or another refeature) holds the lakehouse.
    """
    started = time.monotonic()
    version = feature_lib.FEATURE_VERSION  # read at run time: the module attribute is the truth
    with stream_lock(config.root):
        lakehouse = Lakehouse(spark, config)
        lakehouse.ensure_tables()
        event = BatchEvent(QUERY_NAME, -1)
        result = RefeatureResult(version)
        missing, unfinished = missing_images(lakehouse, version)
        event.input_rows = len(missing)
        skipped: dict[str, str] = dict.fromkeys(unfinished, STREAM_UNFINISHED)
        attempted: set[str] = set()  # by this run: an image is tried once per run
        silver = _silver_and_copies(lakehouse) if missing else _Silver({}, {})
        with progress(len(missing), "refeature", unit="image") as bar:
            while True:
                # Recomputed each time: a row committed (by this run or a crashed one) is never redone.
                todo = [i for i in missing_images(lakehouse, version)[0] if i not in attempted][:chunk_images]
                if not todo:
                    break
                attempted.update(todo)
                result.recomputed += _run_chunk(lakehouse, silver, todo, version, skipped)
                result.chunks += 1
                bar.update(len(todo))
        event.batch_id = _next_txn_version(lakehouse, app_id(version)) - 1  # the chunk counter reached
        result.skipped = dict(Counter(skipped.values()))
        result.seconds = time.monotonic() - started
        _champion(config, result)
        event.output_rows = result.recomputed
        event.message = describe(result)
        record_event(lakehouse, event, idempotent=False)
    print(describe(result))
    for line in next_steps(result):
        print(line)
    return result


def _champion(config: XrayConfig, result: RefeatureResult) -> None:
    from streaming.core.registry import champion, version_tags

    ref = champion(config)
    if ref is not None:
        result.champion_ref = f"{ref.name} version {ref.version}"
        result.champion_version = version_tags(config, ref).get("feature_version") or ""


def describe(result: RefeatureResult) -> str:
    """One line: what the run did."""
    skipped = "; ".join(f"{count} skipped: {reason}" for reason, count in sorted(result.skipped.items()))
    return (f"refeature: {result.recomputed} image(s) recomputed to feature version {result.feature_version} "
            f"in {result.chunks} chunk(s), {result.seconds:.1f} s" + (f"; {skipped}" if skipped else ""))


def next_steps(result: RefeatureResult) -> list[str]:
    """What to run next: retrain and rescore when the champion uses another feature version."""
    if result.champion_ref is None:
        return ["next: xray retrain (no champion model yet)"]
    if result.champion_version != result.feature_version:
        return [f"the champion ({result.champion_ref}) uses feature version {result.champion_version or 'unknown'}; "
                f"next: xray retrain (trains on {result.feature_version}), then xray rescore (re-scores gold "
                "with the new champion)"]
    return []

"""Every table of the lakehouse: name, layer, schema and column comments, defined once.

The streaming layers, the batch jobs, the Terraform views and the docs all read these definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyspark is imported when a schema is asked for: `xray sql` never loads it
    from pyspark.sql.types import StructType


@dataclass(frozen=True)
class TableSpec:
    """One Delta table: its name, medallion layer, description and columns (name, Spark SQL type, comment)."""

    name: str
    layer: str
    description: str
    columns: tuple[tuple[str, str, str], ...]

    @property
    def schema(self) -> StructType:
        """The Spark schema, each column's comment in its metadata (Delta keeps it in the table schema)."""
        from pyspark.sql.types import StructField, StructType, _parse_datatype_string

        return StructType(
            [
                StructField(name, _parse_datatype_string(sql_type), True, {"comment": comment})
                for name, sql_type, comment in self.columns
            ]
        )

    @property
    def column_names(self) -> list[str]:
        return [name for name, _, _ in self.columns]


# What silver keeps of a DICOM header (null for JPEG/PNG): de-identified attributes only. UIDs are keyed
# hashes (stable, so a series still groups); dates are reduced to the year (README: DICOM).
DICOM_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("modality", "string", "DICOM Modality (CR, DX, DR)"),
    ("body_part", "string", "DICOM BodyPartExamined (CHEST)"),
    ("view_position", "string", "DICOM ViewPosition (PA, AP, LATERAL, ...)"),
    ("pixel_spacing_mm", "array<double>", "DICOM PixelSpacing, else ImagerPixelSpacing: [row, column] in mm"),
    ("photometric_interpretation", "string", "DICOM PhotometricInterpretation (MONOCHROME1 is shown inverted)"),
    ("bits_stored", "int", "DICOM BitsStored"),
    ("manufacturer", "string", "DICOM Manufacturer"),
    ("manufacturer_model", "string", "DICOM ManufacturerModelName"),
    ("transfer_syntax_uid", "string", "DICOM transfer syntax of the file"),
    ("frame_count", "int", "DICOM NumberOfFrames (features come from the first frame)"),
    ("burned_in_annotation", "string", "DICOM BurnedInAnnotation (YES: the pixels may show identifying text)"),
    ("study_year", "int", "Year of the DICOM StudyDate (else series, acquisition or content date): no full date"),
    ("study_ref", "string", "Keyed hash of the DICOM StudyInstanceUID"),
    ("series_ref", "string", "Keyed hash of the DICOM SeriesInstanceUID"),
    ("instance_ref", "string", "Keyed hash of the DICOM SOPInstanceUID"),
)

BRONZE_IMAGES = TableSpec(
    "bronze_xray_images",
    "bronze",
    "Every file seen in the landing folder, as it arrived: bytes, checksum and what its path says.",
    (
        ("path", "string", "Source file URI in the landing folder (raw: may name the patient; bronze only)"),
        ("file_name", "string", "File name without folders (raw: may name the patient; bronze only)"),
        ("path_ref", "string", "Keyed hash (HMAC-SHA256) of path: the pseudonymous reference other tables carry"),
        ("size_bytes", "bigint", "File size in bytes when listed"),
        ("modification_time", "timestamp", "File modification time when listed (UTC)"),
        ("content", "binary", "File bytes; null when too large for max_file_bytes or unreadable"),
        ("content_sha256", "string", "SHA-256 of the bytes, hex; null without content"),
        ("content_status", "string", "ok, too_large, missing (deleted before it was read) or unreadable"),
        ("label", "string", "NORMAL or PNEUMONIA from the path, else null"),
        ("split", "string", "train, test or val from the path, else null"),
        ("ingest_time", "timestamp", "When the bronze stream read the file (UTC)"),
        ("batch_id", "bigint", "Bronze micro-batch that ingested the file"),
    ),
)

BRONZE_KAGGLE_DATASET_INFO = TableSpec(
    "bronze_kaggle_dataset_info",
    "bronze",
    "One row per dataset download or folder staging: what was staged into landing and how.",
    (
        ("dataset_ref", "string", "Kaggle owner/slug, or the local folder staged"),
        ("source", "string", "kaggle or folder"),
        ("title", "string", "Dataset title"),
        ("version", "int", "Dataset version number, when known"),
        ("license", "string", "Dataset license name"),
        ("file_count", "bigint", "Images staged into landing"),
        ("total_bytes", "bigint", "Bytes staged into landing"),
        ("files_per_split_label", "map<string,bigint>", "Images staged per split/LABEL"),
        ("sampling_options", "string", "Sampling and pacing options, JSON"),
        ("downloaded_time", "timestamp", "When the download or staging finished (UTC)"),
    ),
)

SILVER_METADATA = TableSpec(
    "silver_xray_metadata",
    "silver",
    "One row per distinct valid image: labels, hashed patient, decoded properties and quality measures.",
    (
        ("image_id", "string", "SHA-256 of the image bytes: the image's identity"),
        ("label", "int", "1 PNEUMONIA, 0 NORMAL, null unknown"),
        ("label_name", "string", "NORMAL, PNEUMONIA or null"),
        ("split", "string", "train, test, val or null"),
        ("patient_id", "string", "Keyed hash (HMAC-SHA256) of the DICOM PatientID, else of the patient in the file name; null if none"),
        ("pneumonia_type", "string", "bacteria, virus or null"),
        ("width", "int", "Width in pixels"),
        ("height", "int", "Height in pixels"),
        ("mode", "string", "Pillow color mode of the file (L, RGB, ...); DICOM: its photometric interpretation"),
        ("image_format", "string", "Decoded format (JPEG, PNG, DICOM)"),
        ("mean_intensity", "double", "Mean gray level at the feature size, 0-255"),
        ("std_intensity", "double", "Standard deviation of gray levels at the feature size, 0-255"),
        ("dynamic_range", "double", "Gray level range between the 1st and 99th percentile, 0-255"),
        ("path_ref", "string", "Keyed hash of the first copy's landing path (bronze path_ref; never the path)"),
        ("file_size", "bigint", "File size in bytes"),
        *DICOM_COLUMNS,
        ("processed_time", "timestamp", "When silver processed the image (UTC)"),
        ("source_batch_id", "bigint", "Bronze micro-batch of the image"),
        ("silver_batch_id", "bigint", "Silver micro-batch that wrote the row"),
    ),
)

SILVER_FEATURES = TableSpec(
    "silver_image_features",
    "silver",
    "Model features of each valid image, computed from pixels at a fixed size.",
    (
        ("image_id", "string", "SHA-256 of the image bytes"),
        ("feature_version", "string", "Version of the feature extractor"),
        ("features", "array<float>", "Fixed-length feature vector"),
        ("processed_time", "timestamp", "When the features were computed (UTC)"),
        ("silver_batch_id", "bigint", "Silver micro-batch that wrote the row (xray refeature rows: the image's metadata batch)"),
        ("frame", "binary", "The fixed-size gray image the features come from, 8-bit row-major (128x128 = 16 KB): "
                            "the cnn model family's input; null on rows written before it was kept, which that family "
                            "neither trains on nor scores (README: Model families)"),
    ),
)

SILVER_QUARANTINE = TableSpec(
    "silver_quarantine",
    "silver",
    "Files that failed a quarantine expectation, with the reason and the bronze reference (path_ref) to replay them.",
    (
        ("rule", "string", "Name of the expectation that failed"),
        ("reason", "string", "What is wrong, readable"),
        ("path_ref", "string", "Keyed hash of the landing path (bronze reference: bronze path_ref)"),
        ("size_bytes", "bigint", "File size in bytes"),
        ("content_sha256", "string", "SHA-256 of the bytes when read (bronze reference)"),
        ("label", "string", "Label from the path, if any"),
        ("split", "string", "Split from the path, if any"),
        ("source_batch_id", "bigint", "Bronze micro-batch of the file (bronze reference)"),
        ("silver_batch_id", "bigint", "Silver micro-batch that quarantined it"),
        ("quarantined_time", "timestamp", "When it was quarantined (UTC)"),
    ),
)

GOLD_PREDICTIONS = TableSpec(
    "gold_pneumonia_predictions",
    "gold",
    "Model predictions per image, with the model version that made them.",
    (
        ("prediction_id", "string", "SHA-256 of image id, model name and version"),
        ("image_id", "string", "Image scored (silver image_id)"),
        ("predicted_label", "string", "NORMAL or PNEUMONIA"),
        ("probability_pneumonia", "double", "Model probability of PNEUMONIA"),
        ("confidence", "double", "Probability of the predicted label"),
        ("true_label", "string", "Known label, if any"),
        ("is_correct", "boolean", "Prediction equals the known label; null when unknown"),
        ("model_name", "string", "Registered model name"),
        ("model_version", "string", "Registered model version"),
        ("feature_version", "string", "Feature extractor version of the input"),
        ("predicted_time", "timestamp", "When the prediction was made (UTC)"),
        ("prediction_date", "date", "UTC date of predicted_time"),
        ("model_family", "string", "Model family that made the prediction: sklearn (silver's features) or cnn "
                                   "(silver's frames); null on rows written before families existed (sklearn)"),
    ),
)

GOLD_MODEL_PERFORMANCE = TableSpec(
    "gold_model_performance",
    "gold",
    "Evaluation of each model version on each labelled split.",
    (
        ("model_name", "string", "Registered model name"),
        ("model_version", "string", "Registered model version"),
        ("split", "string", "Split evaluated (test is never used for training)"),
        ("accuracy", "double", "Share of correct predictions"),
        ("precision", "double", "PNEUMONIA precision"),
        ("recall", "double", "PNEUMONIA recall (sensitivity)"),
        ("specificity", "double", "NORMAL recall"),
        ("f1", "double", "F1 score for PNEUMONIA"),
        ("roc_auc", "double", "Area under the ROC curve; null with one class only"),
        ("confusion_matrix", "string", "JSON [[tn, fp], [fn, tp]]"),
        ("threshold", "double", "Decision threshold on P(pneumonia)"),
        ("sample_count", "bigint", "Images evaluated"),
        ("evaluated_time", "timestamp", "When the evaluation ran (UTC)"),
    ),
)

GOLD_RADIOLOGIST_FEEDBACK = TableSpec(
    "gold_radiologist_feedback",
    "gold",
    "Radiologists' labels of images (xray feedback): one row per image and reader, a correction replaces it.",
    (
        ("feedback_key", "string", "SHA-256 of image_id and reader_id: the row's key (one per image per reader)"),
        ("image_id", "string", "Image judged (silver image_id: SHA-256 of its bytes)"),
        ("reader_label", "string", "The reader's label: NORMAL or PNEUMONIA"),
        ("reader_id", "string", "Keyed hash (HMAC-SHA256) of the reader's name; never the name"),
        ("feedback_time", "timestamp", "When the label was recorded, or last changed (UTC)"),
        ("comment", "string", "The reader's free-text note, at most 500 characters; must hold no patient identifier"),
        ("content_hash", "string", "SHA-256 of label and comment: the same row sent again changes nothing"),
        ("run_id", "string", "The audit_log run that recorded it"),
    ),
)

GOLD_DATASET_SUMMARY = TableSpec(
    "gold_dataset_summary",
    "gold",
    "Counts per split and label; the row with split 'all' also counts quarantined files and duplicates.",
    (
        ("split", "string", "train, test, val, unknown, or all"),
        ("label_name", "string", "NORMAL, PNEUMONIA, unknown, or all"),
        ("images", "bigint", "Distinct valid images"),
        ("patients", "bigint", "Distinct patients"),
        ("quarantined", "bigint", "Quarantined files (split all only)"),
        ("duplicates", "bigint", "Files whose content was already seen (split all only)"),
        ("updated_time", "timestamp", "When the summary was computed (UTC)"),
    ),
)

PIPELINE_EVENTS = TableSpec(
    "pipeline_events",
    "ops",
    "One row per layer per micro-batch: volumes, data-quality counts, duration and landing backlog.",
    (
        ("event_time", "timestamp", "When the batch finished (UTC)"),
        ("query", "string", "Streaming query (layer) name"),
        ("batch_id", "bigint", "Micro-batch id of the query"),
        ("input_rows", "bigint", "Rows read by the batch"),
        ("output_rows", "bigint", "Rows written to the layer's main table"),
        ("quarantined_rows", "bigint", "Rows sent to silver_quarantine"),
        ("duplicate_rows", "bigint", "Rows skipped because their content was already seen"),
        (
            "expectations",
            "array<struct<table:string,rule:string,action:string,failed:bigint>>",
            "Rows failing each expectation, with the action taken",
        ),
        ("duration_ms", "bigint", "Wall time of the batch in milliseconds"),
        ("backlog_files", "bigint", "Landing files not yet ingested (bronze only)"),
        ("backlog_bytes", "bigint", "Bytes of landing files not yet ingested (bronze only)"),
        ("message", "string", "Anything worth knowing about the batch"),
        ("drift_psi", "double", "Gold rows: largest PSI of the image statistics of the last drift_window_images "
                                "scored images against the champion's training reference (null: no reference, "
                                "or fewer than drift_min_images)"),
        ("predicted_prevalence", "double", "Gold rows: share of those images gold predicted PNEUMONIA"),
        ("drift", "string", "Gold rows: JSON with the PSI of each statistic, the prevalence PSI, the window size "
                            "and the reference's prevalences (null when drift_psi is)"),
    ),
)

AUDIT_LOG = TableSpec(
    "audit_log",
    "ops",
    "Who ran what and when: one 'started' and one 'finished' row per run of a command that changes the lakehouse.",
    (
        ("run_id", "string", "Random id of the run: its started and finished rows share it"),
        ("event", "string", "started or finished (a started run without a finished row was killed)"),
        ("event_time", "timestamp", "When the row was written (UTC)"),
        ("command", "string", "The xray subcommand"),
        ("options", "string", "The command's options, JSON: no secrets; paths and patient identifiers as keyed hashes"),
        ("package_version", "string", "xray-lakehouse version"),
        ("user", "string", "Operating-system user who ran it"),
        ("host", "string", "Host name"),
        ("pid", "bigint", "Process id"),
        ("outcome", "string", "started, ok, error (named error or bug), interrupted (Ctrl-C) or terminated (SIGTERM)"),
        ("exit_code", "int", "Exit code of the command (finished rows)"),
        ("message", "string", "The one-line error of a failed run (paths and identifiers as keyed hashes), else null"),
        ("tables", "array<struct<table:string,version_before:bigint,version_after:bigint>>",
         "Tables whose Delta version changed during the run (finished rows; audit_log itself left out), with "
         "the versions before and after (null: no table)"),
        ("duration_ms", "bigint", "Wall time of the run in milliseconds (finished rows)"),
    ),
)

FORGET_LIST = TableSpec(
    "forget_list",
    "ops",
    "Patients erased by 'xray forget' (keyed hashes only): their images arriving later are refused.",
    (
        ("patient_ref", "string", "Keyed hash of the patient identifier (silver patient_id)"),
        ("requested_time", "timestamp", "When the erasure was requested (UTC)"),
        ("run_id", "string", "The audit_log run that erased the patient"),
        ("images_erased", "bigint", "Distinct images erased from the tables"),
        ("files_erased", "bigint", "Files deleted from landing and archive"),
    ),
)

RETRAIN_RUNS = TableSpec(
    "retrain_runs",
    "ops",
    "One row per retrain cycle (xray stream, xray retrain --every) or xray retrain run: when, why, how it ended; "
    "the schedule's memory across restarts.",
    (
        ("trigger", "string", "interval, new_labels (enough new labels or feedback) or manual (xray retrain)"),
        ("runner", "string", "What ran it: xray stream, xray retrain --every or xray retrain"),
        ("started_time", "timestamp", "When the cycle started (UTC)"),
        ("finished_time", "timestamp", "When it ended (UTC): the schedule's next interval counts from here"),
        ("outcome", "string", "ok, insufficient_data (too few labelled images: retried once new labels arrive) or error"),
        ("model_version", "string", "Model version the cycle registered, null when none"),
        ("promoted", "boolean", "Whether that version became champion"),
        ("rescored_rows", "bigint", "Gold predictions re-scored with the champion; null when no rescore ran"),
        ("labelled_rows", "bigint", "Labelled silver rows when the cycle started"),
        ("feedback_rows", "bigint", "Radiologist feedback rows when the cycle started (0: no feedback table)"),
        ("message", "string", "The promotion reason, or the one-line error (paths as keyed hashes)"),
        ("audit_run_id", "string", "The audit_log run of the command that ran the cycle"),
    ),
)

PIPELINE_ALERTS = TableSpec(
    "pipeline_alerts",
    "ops",
    "Alerts the stream raised (quarantine rate, drift, failed or stalled stream, old backlog, no champion) "
    "and whether the webhook got them.",
    (
        ("alert_id", "string", "Random id of the alert (also in the webhook's JSON)"),
        ("alert_time", "timestamp", "When the alert was raised (UTC)"),
        ("kind", "string", "quarantine_rate, drift, query_failed, stream_stopped, stream_stalled, backlog_age, "
                           "no_champion or model_unavailable"),
        ("severity", "string", "warning or critical"),
        ("status", "string", "firing, or resolved (the condition cleared)"),
        ("message", "string", "What happened, one line (no paths, no identifiers)"),
        ("details", "string", "JSON: the measures behind the alert"),
        ("delivery", "string", "delivered, failed, dropped (queue full), undelivered (the service stopped "
                               "first) or no_webhook"),
        ("attempts", "int", "Webhook POSTs tried"),
    ),
)

DICOM_RECEIPTS = TableSpec(
    "dicom_receipts",
    "ops",
    "What 'xray receive' was sent over DICOM (C-STORE) and DICOMweb (STOW-RS): one row per instance and per "
    "refused association; keyed hashes only, joinable with silver's study_ref, series_ref and instance_ref.",
    (
        ("receipt_time", "timestamp", "When the instance was answered (UTC)"),
        ("protocol", "string", "c-store or stow-rs"),
        ("association_id", "string", "Random id of the association (C-STORE) or request (STOW-RS)"),
        ("calling_ae_ref", "string", "Keyed hash of the calling AE title (null for STOW-RS)"),
        ("study_ref", "string", "Keyed hash of the StudyInstanceUID (silver study_ref); null when unreadable"),
        ("series_ref", "string", "Keyed hash of the SeriesInstanceUID (silver series_ref)"),
        ("instance_ref", "string", "Keyed hash of the SOPInstanceUID (silver instance_ref)"),
        ("sop_class_uid", "string", "SOP Class UID of the instance (a standard identifier, not a patient's)"),
        ("size_bytes", "bigint", "Bytes of the instance as written (Part 10)"),
        ("outcome", "string", "stored, duplicates (same bytes held), versions (new bytes: a new version), "
                              "failed (see status) or refused (the association)"),
        ("status", "int", "DICOM status answered (0 success, 42752 out of resources, 49152 cannot understand)"),
    ),
)

DICOM_RESULTS_SENT = TableSpec(
    "dicom_results_sent",
    "ops",
    "Predictions sent back to the PACS as DICOM Structured Reports by 'xray send-results': one row per "
    "prediction (image and model version), so each is sent once.",
    (
        ("prediction_id", "string", "The gold prediction sent (gold_pneumonia_predictions.prediction_id)"),
        ("image_id", "string", "Image of the prediction (silver image_id)"),
        ("model_name", "string", "Registered model name"),
        ("model_version", "string", "Registered model version"),
        ("study_ref", "string", "Keyed hash of the original's StudyInstanceUID (silver study_ref)"),
        ("report_ref", "string", "Keyed hash of the report's SOPInstanceUID (derived from prediction_id)"),
        ("destination", "string", "Where it went: AE title@host:port"),
        ("sent_time", "timestamp", "When the destination acknowledged the report (UTC)"),
    ),
)

ALL_TABLES: tuple[TableSpec, ...] = (
    BRONZE_IMAGES,
    BRONZE_KAGGLE_DATASET_INFO,
    SILVER_METADATA,
    SILVER_FEATURES,
    SILVER_QUARANTINE,
    GOLD_PREDICTIONS,
    GOLD_MODEL_PERFORMANCE,
    GOLD_DATASET_SUMMARY,
    GOLD_RADIOLOGIST_FEEDBACK,
    PIPELINE_EVENTS,
    PIPELINE_ALERTS,
    AUDIT_LOG,
    FORGET_LIST,
    RETRAIN_RUNS,
    DICOM_RECEIPTS,
    DICOM_RESULTS_SENT,
)
TABLES_BY_NAME = {spec.name: spec for spec in ALL_TABLES}

"""The silver rules, declared as data: which inspected rows are quarantined, dropped or only counted."""

from __future__ import annotations

from streaming.core.config import XrayConfig
from streaming.imaging.dicom import RADIOGRAPH_MODALITIES
from streaming.landing.scan import NEVER_OPENED
from streaming.quality.expectations import Expectation

# Listing statuses of entries that are not regular files (see `streaming.landing.scan.NEVER_OPENED`).
NOT_REGULAR = tuple(status for status in NEVER_OPENED if status != "outside_landing")


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def forgotten_rule(forgotten: frozenset[str]) -> tuple[Expectation, ...]:
    """``patient_not_forgotten``: a file of a patient erased by `xray forget` (``forgotten``: keyed hashes,
    `streaming.lakehouse.forgetlist`) is quarantined, and bronze does not keep it. Blamed first: whatever
    else is wrong with the file, the reason it is refused is the erasure. No rule when nobody was forgotten."""
    if not forgotten:
        return ()
    refs = ", ".join(f"'{ref}'" for ref in sorted(forgotten))  # keyed hashes: hex digits only
    return (Expectation("patient_not_forgotten", f"patient_id IS NULL OR patient_id NOT IN ({refs})", "quarantine",
                        "'the patient was erased (xray forget): the file was refused and not stored'"),)


def silver_expectations(config: XrayConfig, forgotten: frozenset[str] = frozenset()) -> tuple[Expectation, ...]:
    """The rules of the silver tables, in the order a failing file is blamed. (A file deleted before it was
    read never reaches silver: bronze's rule ``file_still_exists`` drops it.) ``forgotten``: the forget list."""
    return (
        *forgotten_rule(forgotten),
        Expectation("inside_landing", "content_status <> 'outside_landing'", "quarantine",
                    "'symbolic link leading outside the landing folder: its target was not opened (allow a "
                    "folder with landing_allowed_roots)'"),
        Expectation("regular_file", f"content_status NOT IN ({_quoted(NOT_REGULAR)})", "quarantine",
                    "concat('not a regular file (', content_status, '): it was not opened')"),
        Expectation("file_size_limit", "content_status <> 'too_large'", "quarantine",
                    f"concat('file of ', size_bytes, ' bytes exceeds max_file_bytes ({config.max_file_bytes})')"),
        Expectation("file_readable", "content_status = 'ok' OR content_status = 'too_large'", "quarantine",
                    "concat('file could not be read (', content_status, ')')"),
        Expectation("not_empty", "size_bytes > 0", "quarantine", "'zero-byte file'"),
        Expectation("is_image", "detected_format IS NOT NULL OR content_status <> 'ok'", "quarantine",
                    "concat('not an image: the content is ', content_kind)"),
        Expectation("format_matches_name", "detected_format = expected_format", "quarantine",
                    # No file name in the reason: it may name the patient (the row has path_ref).
                    "concat(detected_format, ' content disguised as ', coalesce(expected_format, 'an image'))"),
        *_dicom_file_rules(),
        Expectation("decodes", "decode_error IS NULL", "quarantine", "decode_error"),
        Expectation("pixel_limit", f"pixel_count <= {config.max_image_pixels}", "quarantine",
                    f"concat('decompression bomb guard: ', pixel_count, ' pixels exceed max_image_pixels "
                    f"({config.max_image_pixels})')"),
        Expectation("min_dimensions", f"least(width, height) >= {config.min_image_side}", "quarantine",
                    f"concat('too small to be a chest X-ray: ', width, 'x', height, ' px (minimum "
                    f"{config.min_image_side} px a side)')"),
        Expectation("not_blank", f"std_intensity >= {config.min_pixel_std}", "quarantine",
                    "concat('blank or constant image (gray level std ', round(std_intensity, 2), ')')"),
        *_dicom_content_rules(config),
        Expectation("label_known", "label_name IS NOT NULL", "warn", "'no NORMAL/PNEUMONIA folder in the path'"),
        Expectation("patient_known", "patient_id IS NOT NULL", "warn", "'no patient identifier in the file name'"),
    )


def _dicom_file_rules() -> tuple[Expectation, ...]:
    """DICOM files whose pixels cannot or must not be read (judged before decoding errors: the reason is
    the cause, not its symptom). A condition ``detected_format <> 'DICOM' OR ...`` leaves JPEG/PNG alone."""
    return (
        Expectation("dicom_readable", "detected_format <> 'DICOM' OR dicom_header_error IS NULL", "quarantine",
                    "dicom_header_error"),
        Expectation("dicom_transfer_syntax",
                    "detected_format <> 'DICOM' OR coalesce(transfer_syntax_supported, false)", "quarantine",
                    "concat('unsupported DICOM transfer syntax ', coalesce(transfer_syntax_uid, '(none)'), "
                    "': no pixel-data handler for it here (README: DICOM)')"),
        Expectation("dicom_radiograph",
                    f"detected_format <> 'DICOM' OR coalesce(modality, '') IN ({_quoted(RADIOGRAPH_MODALITIES)})",
                    "quarantine", "concat('not a radiograph: DICOM modality ', coalesce(modality, 'missing'), "
                    f"' (expected {', '.join(RADIOGRAPH_MODALITIES)})')"),
        Expectation("dicom_pixel_data", "detected_format <> 'DICOM' OR coalesce(has_pixel_data, false)",
                    "quarantine", "'DICOM file without pixel data (a report, a presentation state, or a "
                    "truncated file)'"),
    )


def _dicom_content_rules(config: XrayConfig) -> tuple[Expectation, ...]:
    """What a decoded DICOM says about itself: burned-in text (``burned_in_annotation``: warn or
    quarantine), a body part other than the chest, several frames (the first is used)."""
    return (
        Expectation("dicom_burned_in_annotation", "coalesce(burned_in_annotation, 'NO') <> 'YES'",
                    config.burned_in_annotation,
                    "'DICOM BurnedInAnnotation is YES: the pixels may show identifying text'"),
        Expectation("dicom_chest", "detected_format <> 'DICOM' OR coalesce(body_part, '') = 'CHEST'", "warn",
                    "concat('DICOM body part ', coalesce(body_part, 'not recorded'), ', not CHEST')"),
        Expectation("dicom_single_frame", "coalesce(frame_count, 1) <= 1", "warn",
                    "concat('multi-frame DICOM (', frame_count, ' frames): features from the first frame')"),
    )

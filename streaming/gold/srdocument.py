"""A gold prediction as a DICOM Structured Report, for the PACS where the radiologist reads (issue 27).

highdicom builds a Comprehensive SR in the original image's study (patient and study modules copied from the
original's header, read back from bronze: the only layer holding raw identifiers) that references the image
by its SOP Class and Instance UIDs and states the predicted class, the probability of pneumonia, the model's
operating threshold, the model name and version, and that the result is not for diagnosis. Pure: no I/O.

The SR's UIDs derive from the prediction (image, model name and version): the same prediction sent again
is the same instance to the PACS, never a second report.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

__all__ = ["NOT_FOR_DIAGNOSIS", "SR_SOP_CLASS", "ScoredImage", "structured_report"]

SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR Storage
NOT_FOR_DIAGNOSIS = ("NOT FOR DIAGNOSTIC USE. Automated research classification by xray-lakehouse; it has not "
                     "been reviewed by a radiologist and must not be used for clinical decisions.")
_SCHEME = "99XRAYLH"  # private coding scheme of the concepts DICOM and SNOMED do not name
_SERIES_NUMBER = 9901
# Type 2 attributes of the patient and study modules the report copies: present, possibly empty, in a
# conformant image; an image that lacks one is reported with it empty.
_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
           "ReferringPhysicianName", "StudyID", "AccessionNumber")


@dataclass(frozen=True)
class ScoredImage:
    """One gold prediction to report: what the model said, and the original image's header (re-identified)."""

    prediction_id: str
    image_id: str
    predicted_label: str
    probability_pneumonia: float
    threshold: float | None
    model_name: str
    model_version: str
    predicted_time: dt.datetime
    original: Any  # pydicom Dataset: the original instance's header, pixels not read


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["xray-lakehouse-sr", *parts])


def _codes() -> dict[str, Any]:
    from highdicom.sr import CodedConcept

    return {
        "root": CodedConcept("XR-AI-1", _SCHEME, "Chest radiograph pneumonia classification (automated)"),
        "finding": CodedConcept("121071", "DCM", "Finding"),
        "PNEUMONIA": CodedConcept("233604007", "SCT", "Pneumonia"),
        "NORMAL": CodedConcept("17621005", "SCT", "Normal"),
        "probability": CodedConcept("XR-AI-2", _SCHEME, "Probability of pneumonia"),
        "threshold": CodedConcept("XR-AI-3", _SCHEME, "Decision threshold"),
        "unit": CodedConcept("1", "UCUM", "no units"),
        "algorithm": CodedConcept("111001", "DCM", "Algorithm Name"),
        "version": CodedConcept("111003", "DCM", "Algorithm Version"),
        "comment": CodedConcept("121106", "DCM", "Comment"),
        "source": CodedConcept("260753009", "SCT", "Source"),
    }


def _content(image: ScoredImage) -> Any:
    from highdicom.sr import (
        CodeContentItem,
        ContainerContentItem,
        ContentSequence,
        ImageContentItem,
        NumContentItem,
        TextContentItem,
    )

    codes, contains = _codes(), "CONTAINS"
    items = [
        CodeContentItem(codes["finding"], codes[image.predicted_label], relationship_type=contains),
        NumContentItem(codes["probability"], round(float(image.probability_pneumonia), 6), codes["unit"],
                       relationship_type=contains),
        TextContentItem(codes["algorithm"], image.model_name, relationship_type=contains),
        TextContentItem(codes["version"], image.model_version, relationship_type=contains),
        TextContentItem(codes["comment"], NOT_FOR_DIAGNOSIS, relationship_type=contains),
        ImageContentItem(codes["source"], image.original.SOPClassUID, image.original.SOPInstanceUID,
                         relationship_type=contains),
    ]
    if image.threshold is not None:
        items.insert(2, NumContentItem(codes["threshold"], round(float(image.threshold), 6), codes["unit"],
                                       relationship_type=contains))
    else:
        items.insert(2, TextContentItem(codes["comment"], "The model version records no decision threshold.",
                                        relationship_type=contains))
    root = ContainerContentItem(codes["root"])
    root.ContentSequence = ContentSequence(items)
    return root


def structured_report(image: ScoredImage) -> Any:
    """The Comprehensive SR (a pydicom Dataset) of one prediction, in the original image's study."""
    from highdicom.sr import ComprehensiveSR

    if image.predicted_label not in ("NORMAL", "PNEUMONIA"):
        raise ValueError(f"predicted label {image.predicted_label!r} is neither NORMAL nor PNEUMONIA")
    original = image.original.copy()
    for keyword in _TYPE_2:
        if keyword not in original:
            setattr(original, keyword, "")
    study = str(original.StudyInstanceUID)
    report = ComprehensiveSR(
        evidence=[original],
        content=_content(image),
        series_instance_uid=_uid(study, image.model_name, image.model_version),
        series_number=_SERIES_NUMBER,
        sop_instance_uid=_uid(image.prediction_id),
        instance_number=1,
        manufacturer="xray-lakehouse",
        is_complete=True,
    )
    moment = image.predicted_time.astimezone(dt.timezone.utc)
    # The report's time is the prediction's: the same prediction rebuilt is the same document.
    report.ContentDate, report.ContentTime = moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")
    report.SeriesDescription = f"AI pneumonia classification ({image.model_name} v{image.model_version})"
    return report

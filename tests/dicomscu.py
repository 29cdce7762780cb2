"""A real DICOM sender (pynetdicom Storage SCU) for the receiver's tests: sends datasets on one association
and reports each instance's status, like a modality or a PACS would."""

from __future__ import annotations

import io

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from streaming.ingest.receive import STORAGE_SOP_CLASSES

RADIOGRAPHY_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
]


def dataset(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def scu(calling_ae: str = "MODALITY", syntaxes: list[str] | None = None) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    # One context per (class, syntax): the receiver accepts each syntax it is offered, so an instance goes
    # in the transfer syntax it is encoded in, compressed ones included.
    for sop_class in STORAGE_SOP_CLASSES:
        for syntax in syntaxes or RADIOGRAPHY_SYNTAXES:
            ae.add_requested_context(sop_class, syntax)
    ae.add_requested_context(Verification)
    return ae


def send(port: int, datasets: list[pydicom.Dataset], calling_ae: str = "MODALITY", tls=None) -> list[int | None]:
    """The status of each instance sent on one association (None: no answer, the association ended first).
    An association the receiver rejects gives an empty list."""
    assoc = scu(calling_ae).associate("127.0.0.1", port, ae_title="XRAY", tls_args=tls)
    if not assoc.is_established:
        return []
    statuses: list[int | None] = []
    try:
        for ds in datasets:
            if not assoc.is_established:
                statuses.append(None)
                continue
            answer = assoc.send_c_store(ds)
            statuses.append(int(answer.Status) if "Status" in answer else None)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses

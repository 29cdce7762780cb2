"""Getting X-rays into landing, one reader per source, each file appearing there only when complete.

- ``kaggle``: the Kaggle source (credentials, download, errors); ``folder``: a local folder or archive.
- ``options``: `StagingOptions`, how a run samples and paces its files, checked once.
- ``plan``: what to stage where (layout, sampling, copies staged once); pure.
- ``labels``: a labels CSV (``--labels``), checked whole, matched by file name or DICOM SOPInstanceUID.
- ``archive``: safe zip/tar reading and extraction; ``place``: atomic placement into landing.
- ``stage``: a plan put into landing, and the `StagingReport`; ``record``: the run's
  ``bronze_kaggle_dataset_info`` row (progress is shown by ``streaming.core.progress``).
- ``watch``: the inbox drop zone that moves completed files into landing.
- ``receive``: the DICOM Storage SCP of ``xray receive``; ``stow``: its STOW-RS endpoint; ``dicomland``: one
  received instance into landing, atomic and exactly once; ``receipts``: the ``dicom_receipts`` rows.
"""

from streaming.ingest.archive import archive_images, safe_extract
from streaming.ingest.folder import ingest_folder
from streaming.ingest.kaggle import ingest_kaggle, kaggle_config_file
from streaming.ingest.labels import LabelsFile, read_labels
from streaming.ingest.options import StagingOptions
from streaming.ingest.place import place_file
from streaming.ingest.plan import UNLABELLED, PlannedFile, SourceImage, plan_staging
from streaming.ingest.stage import StagingReport
from streaming.ingest.watch import InboxWatcher, is_complete_image, watch_inbox

__all__ = [
    "UNLABELLED",
    "InboxWatcher",
    "LabelsFile",
    "PlannedFile",
    "SourceImage",
    "StagingOptions",
    "StagingReport",
    "archive_images",
    "ingest_folder",
    "ingest_kaggle",
    "is_complete_image",
    "kaggle_config_file",
    "place_file",
    "plan_staging",
    "read_labels",
    "safe_extract",
    "watch_inbox",
]

"""The drift reference of a newly registered model (`streaming.gold.drift`): the statistics of the images
it was trained on, stored with its version in MLflow, so gold can tell when the images it scores drift away
from them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streaming.core.errors import first_line
from streaming.core.registry import ModelRef, log_version_json
from streaming.gold.drift import MEASURES, REFERENCE, build_reference, image_statistics
from streaming.lakehouse.catalog import SILVER_METADATA
from streaming.lakehouse.engine import Lakehouse

if TYPE_CHECKING:
    from batch.training.retrain import LabelledData

__all__ = ["record_reference", "training_reference"]

log = logging.getLogger(__name__)


def training_reference(lakehouse: Lakehouse, image_ids: list[str], features: np.ndarray, labels: np.ndarray,
                       model: Any, model_input: np.ndarray | None = None) -> dict[str, Any]:
    """The reference of a model trained on these images (features in the rows' order): silver's measures
    read for them, the statistics of their features, their labels and the model's predictions (on
    ``model_input`` when the model reads something else than the features: the cnn family's frames)."""
    measures = lakehouse.read_arrow(SILVER_METADATA.name, columns=["image_id", *MEASURES])
    # Each training image's silver row (null measures for an image silver lacks).
    rows = measures.take(pc.index_in(pa.array(image_ids, pa.string()), value_set=measures.column("image_id")))
    inputs = features if model_input is None else model_input
    predicted = np.asarray(model.predict(inputs), dtype=float) if len(image_ids) else np.zeros(0)
    return build_reference(image_statistics(rows, features), np.asarray(labels, dtype=float), predicted)


def record_reference(lakehouse: Lakehouse, ref: ModelRef, data: LabelledData, model: Any,
                     model_input: np.ndarray | None = None) -> None:
    """Store the reference of a version trained on ``data`` (`retrain`; ``model_input``: what the model reads
    of it, when not the features); a failure costs a WARNING only: the model serves, without drift measured."""
    try:
        reference = training_reference(lakehouse, data.image_ids, data.X, data.y, model, model_input)
        log_version_json(lakehouse.config, ref, REFERENCE, reference)
    except Exception as error:  # the model is registered; only its drift monitoring is lost
        log.warning("drift: the training reference of model %s v%s was not stored (%s); gold will not measure "
                    "drift while it serves", ref.name, ref.version, first_line(error))
        return
    log.info("drift: stored the training reference of model %s v%s (%d images, statistics: %s)", ref.name,
             ref.version, reference["images"], ", ".join(reference["statistics"]) or "none")

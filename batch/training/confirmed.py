"""Radiologists' confirmed labels for `xray retrain`: they win over the folders' labels.

From ``gold_radiologist_feedback`` (`streaming.gold.feedback.decide_labels`): an image's confirmed label is
the one most of its readers gave. Outside split ``test``:
- a confirmed label replaces the folder's label (an *override* when they differ), and makes an image
  without a folder label a labelled one (*added*);
- an image whose readers are split evenly (*disputed*) is left out of training, whatever its folder says:
  readers who disagree make the folder's label doubtful too, and a coin must not decide.
Split ``test`` keeps the dataset's labels and is never trained on: feedback on its images is only counted
(`xray metrics` still compares the champion with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming.core.names import LABEL_CODES
from streaming.gold.feedback import decide_labels, read_feedback
from streaming.lakehouse.catalog import SILVER_METADATA
from streaming.lakehouse.engine import Lakehouse

__all__ = ["ConfirmedLabels", "apply_confirmed", "confirmed_labels", "plan_confirmed"]


@dataclass
class ConfirmedLabels:
    """Readers' labels as training uses them: label codes per image outside the excluded splits, the
    disputed images left out, and which confirmed labels change or add a label."""

    labels: dict[str, int] = field(default_factory=dict)
    disputed: set[str] = field(default_factory=set)
    overrides: set[str] = field(default_factory=set)  # the folder said the other label
    added: set[str] = field(default_factory=set)  # the folder said nothing
    excluded_split_images: int = 0  # images of an excluded split (test) with feedback: not used

    def __bool__(self) -> bool:
        return bool(self.labels or self.disputed)

    def usage(self, trained: list[str]) -> dict[str, int]:
        """What a model trained on the images ``trained`` took from the readers (MLflow parameters)."""
        ids = set(trained)
        return {"n_feedback_labels": len(ids & set(self.labels)), "n_feedback_overrides": len(ids & self.overrides),
                "n_feedback_added": len(ids & self.added), "n_feedback_disputed": len(self.disputed),
                "n_feedback_test_images": self.excluded_split_images}


def plan_confirmed(feedback: list[dict], silver: list[dict], excluded_splits: tuple[str, ...]) -> ConfirmedLabels:
    """`ConfirmedLabels` from feedback rows (image_id, reader_label) and silver rows (image_id, label,
    split); images silver does not hold are ignored."""
    decided = decide_labels(feedback)
    plan = ConfirmedLabels()
    for row in silver:
        image_id = row["image_id"]
        if image_id not in decided.readers:
            continue
        if row["split"] in excluded_splits:
            plan.excluded_split_images += 1
        elif image_id in decided.disputed:
            plan.disputed.add(image_id)
        else:
            code = LABEL_CODES[decided.confirmed[image_id]]
            plan.labels[image_id] = code
            if row["label"] is None:
                plan.added.add(image_id)
            elif row["label"] != code:
                plan.overrides.add(image_id)
    return plan


def confirmed_labels(lakehouse: Lakehouse, excluded_splits: tuple[str, ...]) -> ConfirmedLabels:
    """The readers' labels as `plan_confirmed` turns them into training labels (delta-rs reads only)."""
    feedback = read_feedback(lakehouse.config, columns=("image_id", "reader_label"))
    if feedback is None or feedback.num_rows == 0:
        return ConfirmedLabels()
    silver = lakehouse.read_arrow(SILVER_METADATA.name, columns=["image_id", "label", "split"])
    return plan_confirmed(feedback.to_pylist(), silver.to_pylist(), excluded_splits)


def apply_confirmed(spark: SparkSession, metadata: DataFrame, confirmed: ConfirmedLabels,
                    excluded_splits: tuple[str, ...]) -> DataFrame:
    """Silver metadata with the confirmed labels in ``label`` and the disputed images left out; rows of
    an excluded split (test) keep their label whatever the plan holds."""
    import pyarrow as pa

    ids, codes = list(confirmed.labels), list(confirmed.labels.values())
    disputed = sorted(confirmed.disputed)
    # From Arrow: a local relation in the JVM, no Python worker to start (seconds on a fresh session).
    readers = spark.createDataFrame(pa.table({
        "image_id": pa.array(ids + disputed, pa.string()),
        "confirmed_label": pa.array(codes + [None] * len(disputed), pa.int32()),
        "disputed": pa.array([False] * len(ids) + [True] * len(disputed), pa.bool_()),
    }))
    joined = metadata.join(F.broadcast(readers), "image_id", "left")
    kept = F.coalesce(F.col("split").isin(list(excluded_splits)), F.lit(False))
    return (joined.where(kept | ~F.coalesce(F.col("disputed"), F.lit(False)))
            .withColumn("label", F.when(kept, F.col("label")).otherwise(F.coalesce("confirmed_label", "label")))
            .drop("confirmed_label", "disputed"))

"""Pure Arrow transforms of silver (streaming/silver/transform.py), no Spark."""

from __future__ import annotations

import pyarrow as pa

from streaming.silver.transform import first_copies


def test_first_copies_keeps_the_earliest_copy_of_new_content():
    valid = pa.table({
        "content_sha256": ["a", "b", "a", "c"],
        "source_batch_id": [3, 3, 2, 3],
        "path": ["x/2.jpeg", "x/1.jpeg", "x/9.jpeg", "x/3.jpeg"],
    })
    kept = first_copies(valid, known_image_ids={"c"})
    assert kept.to_pylist() == [
        {"content_sha256": "b", "source_batch_id": 3, "path": "x/1.jpeg"},
        {"content_sha256": "a", "source_batch_id": 2, "path": "x/9.jpeg"},
    ]

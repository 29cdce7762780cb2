"""The bench's data set: copies are new contents that cost the same decode work."""

from __future__ import annotations

import numpy as np
from imagefiles import jpeg_bytes, png_bytes, write, xray_like

from batch.bench import resolve_dataset
from streaming.imaging.images import inspect_image


def test_copies_are_new_contents_with_identical_pixels(tmp_path):
    write(tmp_path / "data/train/NORMAL/IM-0001-0001.jpeg", jpeg_bytes(xray_like(1)))
    write(tmp_path / "data/train/PNEUMONIA/person1_virus_1.png", png_bytes(xray_like(2)))
    files, described = resolve_dataset(tmp_path / "data", None, tmp_path / "work", copies=3)
    assert len(files) == 6 and described["unique_contents"] == 6 and described["copies"] == 3
    by_name = {f.relative.name: f for f in files}
    for name in ("IM-0001-0001.jpeg", "person1_virus_1.png"):
        original = inspect_image(by_name[name].path.read_bytes(), 10_000_000)
        for copy in (1, 2):
            item = by_name[f"copy{copy}-{name}"]
            assert item.relative.parent == by_name[name].relative.parent  # the label folder is kept
            inspected = inspect_image(item.path.read_bytes(), 10_000_000)
            assert inspected.decode_error is None
            np.testing.assert_array_equal(inspected.features, original.features)

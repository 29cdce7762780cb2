"""The model family of a loaded model is one rule in one place (`streaming.imaging.cnn.model_family`): gold,
retrain, rescore and metrics all ask it, so they cannot disagree on what a model reads. Runs without JAX
(the rule never imports it)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from streaming.imaging import cnn

REPO = Path(__file__).resolve().parents[3]


def test_the_family_and_the_input_column_of_a_model():
    network = cnn.CnnClassifier(cnn.init_params(0))
    sklearn = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    assert (cnn.model_family(network), cnn.reads_frames(network), cnn.input_column(network)) == ("cnn", True, "frame")
    assert (cnn.model_family(sklearn), cnn.reads_frames(sklearn), cnn.input_column(sklearn)) == (
        "sklearn", False, "features")

    class Odd:  # a model saying something else than cnn is read as scikit-learn's, as before
        family = "xgboost"

    assert cnn.model_family(Odd()) == "sklearn"


def test_no_module_but_the_rule_looks_at_a_model_s_family_attribute():
    asked = re.compile(r"""getattr\([^)]*["']family["']""")
    found = [str(path.relative_to(REPO)) for folder in ("streaming", "batch") for path in (REPO / folder).rglob("*.py")
             if asked.search(path.read_text())]
    assert found == ["streaming/imaging/cnn.py"]

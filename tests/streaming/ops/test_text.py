"""`streaming.ops.text`: the plain-text pieces the status screen, the feedback summary and the retrain
schedule share."""

from __future__ import annotations

import datetime as dt

from streaming.ops.text import (
    NOT_DEFINED,
    age,
    format_table,
    iso_utc,
    metric_text,
    short_time,
    undefined_metrics,
)


def test_times_are_utc_and_a_naive_time_is_taken_as_utc():
    naive = dt.datetime(2026, 12, 1, 9, 7)
    berlin = dt.datetime(2026, 12, 1, 10, 7, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert iso_utc(naive) == iso_utc(berlin) == "2026-12-01T09:07:00+00:00"
    assert iso_utc(None) is None
    assert short_time(iso_utc(naive)) == "2026-12-01 09:07:00" and short_time(None) == "-"


def test_ages_read_as_a_person_reads_them():
    assert [age(s) for s in (None, -5, 3, 125, 4 * 3600, 26 * 3600 + 60)] == ["-", "0s", "3s", "2m 5s", "4h 0m",
                                                                              "1d 2h"]


def test_table_columns_align_numbers_right():
    assert format_table(("name", "rows"), [("bronze", 5), ("silver", None)], (False, True)) == [
        "  name    rows", "  bronze     5", "  silver     -"]


def test_a_rate_without_a_denominator_is_not_defined_not_zero():
    # A reader who labelled only normal chests: no PNEUMONIA image, so no sensitivity (and no precision).
    only_normal = {"recall": 0.0, "specificity": 0.75, "precision": 0.0, "f1": 0.0,
                   "confusion_matrix": [[3, 1], [0, 0]]}
    assert undefined_metrics(only_normal["confusion_matrix"]) == {"recall": "no PNEUMONIA image"}
    assert metric_text(only_normal, "recall") == NOT_DEFINED == "n/a"
    assert metric_text(only_normal, "specificity") == "0.750"
    assert metric_text(only_normal, "precision") == "0.000"  # one image predicted PNEUMONIA, wrongly: a real 0
    none_predicted = {"precision": 0.0, "confusion_matrix": [[4, 0], [2, 0]]}
    assert undefined_metrics(none_predicted["confusion_matrix"]) == {"precision": "nothing predicted PNEUMONIA"}
    assert metric_text({"recall": None}, "recall", 5) == "    -"
    assert undefined_metrics(None) == {} and undefined_metrics([[2, 0], [0, 3]]) == {}


def test_the_status_screen_says_n_a_and_why():
    from streaming.ops.status import _champion_lines

    metrics = {"split": "feedback", "sample_count": 4, "accuracy": 0.75, "precision": 0.0, "recall": 0.0,
               "specificity": 0.75, "f1": 0.0, "roc_auc": None, "confusion_matrix": [[3, 1], [0, 0]],
               "evaluated_time": "2026-12-01T09:07:00+00:00"}
    lines = _champion_lines({"champion": {"name": "m", "version": "1", "threshold": 0.5, "feature_version": "f1",
                                          "metrics": [metrics]}})
    row = next(line for line in lines if line.strip().startswith("feedback"))
    assert row.split()[2:6] == ["0.750", "0.000", "n/a", "0.750"]  # accuracy, precision, recall, specificity
    assert "  n/a in feedback: recall (no PNEUMONIA image)" in lines

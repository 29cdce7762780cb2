"""`streaming.ops.text`: the plain-text pieces the status screen, the feedback summary and the retrain
schedule share."""

from __future__ import annotations

import datetime as dt

from streaming.ops.text import age, format_table, iso_utc, short_time


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

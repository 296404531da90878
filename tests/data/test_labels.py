import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from comp.data.labels import (LabelStats, cooccurrence, format_tags, label_stats, label_summary, parse_label_columns,
                              parse_numeric, parse_tags)
from comp.errors import CompError


def test_parse_tags_planet_and_hpa_layouts():
    names, Y = parse_tags(["clear primary", "haze  primary water ", "", np.nan, "clear"], ["a", "b", "c", "d", "e"])
    assert names == ["clear", "haze", "primary", "water"]
    assert Y.dtype == np.int8
    assert Y.tolist() == [[1, 0, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    names, Y = parse_tags(["0 5 25", "2", "10 2"], [1, 2, 3])  # HPA: numbers sort numerically
    assert names == ["0", "2", "5", "10", "25"]
    assert Y.tolist() == [[1, 0, 1, 0, 1], [0, 1, 0, 0, 0], [0, 1, 0, 1, 0]]
    names, Y = parse_tags(["a|b", "b", "a | c"], [1, 2, 3], sep="|")
    assert names == ["a", "b", "c"] and Y.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert format_tags(Y, names, sep="|") == ["a|b", "b", "a|c"]


def test_parse_tags_with_known_tags_and_round_trip():
    names, Y = parse_tags(["water", ""], ["x", "y"], tags=["primary", "water", "clear"])
    assert names == ["primary", "water", "clear"] and Y.tolist() == [[0, 1, 0], [0, 0, 0]]
    assert format_tags(Y, names) == ["water", ""]
    values = ["clear primary", "haze primary water", ""]
    names, Y = parse_tags(values, [1, 2, 3])
    assert format_tags(Y, names) == values
    with pytest.raises(CompError, match=r"row 'y': tag 'cloudy' is not one of the 2 known tags"):
        parse_tags(["water", "water cloudy"], ["x", "y"], tags=["primary", "water"])


def test_parse_tags_refuses_a_repeated_tag():
    with pytest.raises(CompError, match=r"row 'img_2': tag 'water' appears more than once in 'water clear water'"):
        parse_tags(["clear", "water clear water"], ["img_1", "img_2"])
    with pytest.raises(CompError, match=r"row 7: tag '3' .*\(2 of 2 rows are like it\)"):
        parse_tags(["3 3", "1 1"], [7, 8])


def test_parse_label_columns():
    frame = pd.DataFrame({"image_id": ["a", "b", "c"], "healthy": ["1", "0", "0"],
                          "rust": [0, 1, 1], "scab": [0.0, 1.0, 0.0], "multiple": [" 0", "1.0", "0"]})
    Y = parse_label_columns(frame, ["healthy", "rust", "scab", "multiple"], frame.image_id)
    assert Y.dtype == np.int8 and Y.tolist() == [[1, 0, 0, 0], [0, 1, 1, 1], [0, 1, 0, 0]]
    for bad, shown in (("yes", "'yes'"), ("", "''"), ("0.5", "'0.5'"), ("2", "'2'")):
        broken = frame.assign(rust=["0", bad, "1"])
        with pytest.raises(CompError, match=rf"label column 'rust': row 'b' has {shown}, not 0 or 1"):
            parse_label_columns(broken, ["healthy", "rust"], frame.image_id)
    with pytest.raises(CompError, match=r"row 'a' has nan"):
        parse_label_columns(frame.assign(scab=[np.nan, 1.0, 0.0]), ["scab"], frame.image_id)
    with pytest.raises(CompError, match=r"missing label column 'mildew'"):
        parse_label_columns(frame, ["healthy", "mildew"], frame.image_id)
    with pytest.raises(CompError, match="label_cols is empty"):
        parse_label_columns(frame, [], frame.image_id)


def test_parse_numeric():
    out = parse_numeric(["7", " 3.5", "1e2", 4, 2.5], ["a", "b", "c", "d", "e"], "Pawpularity")
    assert out.dtype == np.float64 and out.tolist() == [7.0, 3.5, 100.0, 4.0, 2.5]
    for bad, shown in (("abc", "'abc'"), ("", "''"), ("nan", "'nan'"), ("inf", "'inf'"), (np.nan, "nan"),
                       (float("inf"), "inf")):
        with pytest.raises(CompError, match=rf"label column 'Pawpularity': row 'b' has {shown}, not a number"):
            parse_numeric(["1", bad, "2"], ["a", "b", "c"], "Pawpularity")
    with pytest.raises(CompError, match=r"\(2 of 3 rows are like it\)"):
        parse_numeric(["x", "1", "y"], [1, 2, 3], "target")



# Six rows of four labels: primary on 4, clear on 3 (always with primary), haze 1, water 1, one row bare.
PLANET = np.array([[1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0], [1, 0, 1, 1], [0, 0, 0, 0]])
PLANET_NAMES = ["clear", "haze", "primary", "water"]


def test_cooccurrence():
    co = cooccurrence(PLANET)
    assert co.tolist() == [[3, 1, 3, 1], [1, 1, 1, 0], [3, 1, 4, 1], [1, 0, 1, 1]]
    assert (np.diag(co) == PLANET.sum(axis=0)).all() and (co == co.T).all()
    assert cooccurrence(np.zeros((0, 2), dtype=np.int8)).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="0/1"):
        cooccurrence(PLANET * 2)
    with pytest.raises(ValueError, match="2-D"):
        cooccurrence(np.array([0, 1]))


def test_label_stats():
    stats = label_stats(PLANET, PLANET_NAMES)
    assert stats.names == tuple(PLANET_NAMES) and stats.rows == 6
    assert stats.counts == (3, 1, 4, 1)
    assert stats.shares == pytest.approx((0.5, 1 / 6, 4 / 6, 1 / 6))
    # Most rows first, ties in column order; haze + water (never together) left out.
    assert stats.pairs == (("clear", "primary", 3), ("clear", "haze", 1), ("clear", "water", 1),
                           ("haze", "primary", 1), ("primary", "water", 1))
    assert stats.no_label == 2 and stats.no_label_share == pytest.approx(1 / 3)
    assert stats.mean_per_row == pytest.approx(9 / 6) and stats.max_per_row == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.rows = 7
    empty = label_stats(np.zeros((0, 2)), ["a", "b"])
    assert empty == LabelStats(("a", "b"), 0, (0, 0), empty.shares, (), 0, empty.mean_per_row, 0)
    assert all(math.isnan(s) for s in empty.shares) and math.isnan(empty.mean_per_row)
    assert math.isnan(empty.no_label_share)
    with pytest.raises(ValueError, match="3 names"):
        label_stats(PLANET, ["a", "b", "c"])


def test_label_summary():
    lines = label_summary(PLANET, PLANET_NAMES, top_pairs=2)
    assert lines == [
        "6 rows, 4 labels: 1.50 labels per row on average (at most 3)",
        "  primary  4 rows (66.7%)",
        "  clear    3 rows (50.0%)",
        "  haze     1 row (16.7%)",  # (ties in column order)
        "  water    1 row (16.7%)",
        "labels found together most often: clear + primary: 3 rows (100% of clear, 75% of primary); "
        "clear + haze: 1 row (33% of clear, 100% of haze)",
        "rows without a label: 2 rows (33.3%)",
    ]
    assert lines[5].count(" + ") == 2
    assert label_summary(PLANET, PLANET_NAMES)[5].count(" + ") == 5  # every pair found, when fewer than 5
    # No row with two labels: said so; a multi-digit count aligns the labels' rows.
    single = np.array([[1, 0]] * 10 + [[0, 1]])
    lines = label_summary(single, ["10", "2"], top_pairs=3)
    assert lines[1:4] == ["  10  10 rows (90.9%)", "  2    1 row (9.1%)",
                          "labels found together: none (no row has two labels)"]
    assert lines[4] == "rows without a label: 0 rows (0.0%)"
    assert not any("together" in line for line in label_summary(PLANET, PLANET_NAMES, top_pairs=0))
    assert label_summary(np.zeros((0, 1)), ["a"])[0] == "0 rows, 1 label: no row"

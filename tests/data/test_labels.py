import numpy as np
import pandas as pd
import pytest

from comp.data.labels import format_tags, parse_label_columns, parse_numeric, parse_tags
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


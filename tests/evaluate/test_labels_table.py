import math

import numpy as np
import pytest

from comp.evaluate.labels_table import per_label_markdown
from comp.metrics import per_label_table


def test_per_label_markdown():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.3], [0.3, 0.15, 0.2], [0.1, 0.1, 0.1]])
    pred = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    rows = per_label_table(y, probs, pred)
    table = per_label_markdown(rows, ["clear", "a|b", "water"], [0.5, np.float64(0.35), 0.25])
    assert table.split("\n") == [
        "| label | support | predicted | AUC | AP | F1 | threshold |",
        "|---|---:|---:|---:|---:|---:|---:|",
        "| clear | 2 | 2 | 1.0000 | 1.0000 | 1.0000 | 0.5000 |",
        "| a\\|b | 2 | 1 | 0.7500 | 0.8333 | 0.6667 | 0.3500 |",  # (a "|" escaped)
        "| water | 0 | 0 | – | – | – | 0.2500 |",  # never true nor predicted: no AUC, AP or F1
    ]
    assert math.isnan(rows[2]["auc"]) and math.isnan(rows[2]["f1"])
    # The rows' order is kept, each named by its label index.
    assert per_label_markdown(rows[::-1][:1], ["clear", "b", "water"], [0.5, 0.5, math.nan]).endswith(
        "| water | 0 | 0 | – | – | – | – |")
    with pytest.raises(ValueError, match="2 thresholds for 3 labels"):
        per_label_markdown(rows, ["clear", "b", "water"], [0.5, 0.5])

"""A multi-label run's per-label figures as the report's Markdown table."""

from __future__ import annotations

import math
from collections.abc import Sequence

_MISSING = "\u2013"  # an en dash where a figure is undefined (AUC of a label on no row, F1 of one never seen)


def _number(value: float | None, fmt: str = "{:.4f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _MISSING
    return fmt.format(value)


def per_label_markdown(rows: Sequence[dict], names: Sequence[str], thresholds: Sequence[float]) -> str:
    """The Markdown table of :func:`comp.metrics.per_label_table`'s ``rows`` (each row's ``label`` is
    its column index into ``names`` and ``thresholds``, the label's fitted decision threshold): label,
    support, predicted, AUC, AP, F1 and threshold, one line per row in their order; an undefined
    (NaN) figure shows as "–". No trailing newline."""
    if len(thresholds) != len(names):
        raise ValueError(f"{len(thresholds)} thresholds for {len(names)} labels")
    out = ["| label | support | predicted | AUC | AP | F1 | threshold |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        j = int(r["label"])
        name = str(names[j]).replace("|", "\\|")  # (a "|" in a name would split the cell)
        out.append(f"| {name} | {int(r['support'])} | {int(r['predicted'])} | {_number(r['auc'])} | "
                   f"{_number(r['ap'])} | {_number(r['f1'])} | {_number(float(thresholds[j]))} |")
    return "\n".join(out)

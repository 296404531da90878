"""How many worker processes or threads to use (torch-free, so ``comp check`` needs no torch)."""

from __future__ import annotations

import os


def resolve_workers(requested: int) -> int:
    """-1 means one worker per core this process may use."""
    if requested >= 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1

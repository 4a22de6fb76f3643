"""How many CPUs this process may use."""
from __future__ import annotations

import os


def cpu_budget() -> int:
    """CPUs this process may use (affinity-aware where the OS says so)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)

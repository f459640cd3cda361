"""Constants and helpers shared by the benchmark workers (stdlib only: imported by both venvs)."""

from __future__ import annotations

import json
import sys

# the resources of every job: one core, well inside the debug partition's limit
LOCAL_RES = {"max_time": "1h", "n": (1, "tasks")}
SLURM_RES = {"max_time": "5m", "n": (1, "tasks")}
ORIG_SLURM_RES = {"max_time": "5m", "num_cores": 1, "partitions": "debug"}
MARK = "BENCH-RESULT "


def emit(d: dict) -> None:
    """The worker's result: one JSON line, found by the orchestrator by its prefix."""
    sys.stdout.flush()
    print(MARK + json.dumps(d), flush=True)

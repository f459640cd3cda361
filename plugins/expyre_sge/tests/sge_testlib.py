"""Helpers shared by the expyre-sge tests (importable thanks to conftest.py)."""

from __future__ import annotations

from pathlib import Path

from expyre.config_model import SystemConfig, converter
from expyre.system import System
from expyre.types import JobRequest, NodeAllocation
from expyre.units import Duration


def request(**kw) -> JobRequest:
    defaults = dict(
        id="fit_model_ab12cd34ef",
        remote_dir="/home/alice/_expyre/run_fit_model_ab12cd34ef",
        script="_expyre_script.sh",
        stdout="_expyre_job.out",
        stderr="_expyre_job.err",
        partition="all.q",
        max_time=Duration.parse("1h"),
        nodes=NodeAllocation(nnodes=1, ncores_per_node=4, tot_ncores=4, tot_ntasks=4, ncores_per_task=1, ntasks_per_node=4),
        system_name="cluster",
    )
    defaults.update(kw)
    return JobRequest(**defaults)


def system(tmp_path: Path, **cfg) -> System:
    raw = {"scheduler": "sge", "host": None, "partitions": {"all.q": {"ncores": 4, "max_time": None}}}
    raw.update(cfg)
    return System("cluster", converter.structure(raw, SystemConfig), tmp_path)

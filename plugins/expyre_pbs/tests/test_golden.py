"""Golden files: the whole job script expyre writes for a PBS system, for both families.

Each case is a config.json system of the family's usual style (Torque: ``nodes=N:ppn=M``;
PBS Pro: ``select=N:ncpus=M:mpiprocs=M``) and a resources dict; the script is built by the core
(``expyre.script.build_script``) with this plugin's header and job_env lines. Regenerate after an
intended change with ``EXPYRE_UPDATE_GOLDEN=1 pytest plugins/expyre_pbs/tests/test_golden.py``
and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from expyre.testing import check_golden
from expyre.config_model import structure_config
from expyre.resources import Resources
from expyre.script import JOB_STDERR, JOB_STDOUT, SCRIPT, build_script
from expyre.system import System
from expyre.types import JobRequest

GOLDEN = Path(__file__).parent / "golden"

TORQUE_SYSTEM = {
    "host": "alice@login.torque.example.org",
    "scheduler": "pbs",
    "scheduler_options": {"flavor": "torque"},
    "commands": ["module load python/3.11"],
    "header": ["#PBS -l nodes={nnodes}:ppn={ncores_per_node}"],
    "partitions": {
        "batch": {"ncores": 16, "max_time": "48h", "max_mem": "64GB"},
        "short": {"ncores": 16, "max_time": "1h", "header": ["#PBS -W x=FLAGS:ADVRES:short"]},
    },
}
PBSPRO_SYSTEM = {
    "host": "alice@login.pbs.example.org",
    "scheduler": "pbs",
    "scheduler_options": {"flavor": "pbspro"},
    "header": ["#PBS -l select={nnodes}:ncpus={ncores_per_node}:mpiprocs={ncores_per_node}", "#PBS -A proj123"],
    "partitions": {"workq": {"ncores": 128, "max_time": "2-00:00:00"}, "debug": {"ncores": 128, "max_time": "30m"}},
}
WRAPPERS_SYSTEM = {
    "host": None,
    "scheduler": "pbs",
    "scheduler_options": {"bin_dir": "/opt/slurm-torque/bin"},
    "partitions": {"debug": {"ncores": 4, "max_time": "10m"}, "long": {"ncores": 4, "max_time": None}},
}

CASES = {
    # name: (system, resources, partial_node, header_extra)
    "torque_two_nodes": (TORQUE_SYSTEM, {"max_time": "3h", "n": (2, "nodes"), "partitions": "batch"}, False, []),
    "torque_short_partial": (TORQUE_SYSTEM, {"max_time": "20m", "n": (3, "tasks"), "ncores_per_task": 2, "partitions": "short"}, True,
                             ["#PBS -m n"]),
    "pbspro_one_node": (PBSPRO_SYSTEM, {"max_time": "1h", "n": (1, "nodes"), "partitions": "workq"}, False, []),
    "pbspro_tasks": (PBSPRO_SYSTEM, {"max_time": "90s", "n": (256, "tasks"), "partitions": "workq"}, False, []),
    "wrappers_long": (WRAPPERS_SYSTEM, {"max_time": "2h", "n": (1, "tasks"), "partitions": "long"}, True, []),
}


def _script(name: str, system_dict: dict, resources: dict, partial_node: bool, header_extra: list[str]) -> str:
    cfg = structure_config({"systems": {"golden": system_dict}}, "golden test").systems["golden"]
    system = System("golden", cfg, Path("/home/alice/_expyre"))
    partition, alloc = Resources.from_any(resources).find_nodes(system.partitions, partial_node=partial_node)
    job_id = f"{name}_0123456789"
    stage = Path("/home/alice/_expyre") / f"run_{job_id}"
    job = JobRequest(
        id=job_id,
        remote_dir=system.remote_dir(stage),
        script=SCRIPT,
        stdout=JOB_STDOUT,
        stderr=JOB_STDERR,
        partition=partition,
        max_time=Resources.from_any(resources).max_time,
        nodes=alloc,
        partial_node=partial_node,
        system_name="golden",
    )
    return build_script(system, job, header_extra=header_extra, python_cmd="python3")


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_script(name):
    text = _script(name, *CASES[name])
    check_golden(GOLDEN / f"{name}.txt", text)


def test_golden_header_lines_in_order():
    text = _script("order", *CASES["torque_two_nodes"])
    pbs = [ln for ln in text.splitlines() if ln.startswith("#PBS")]
    assert pbs == [
        "#PBS -N order_0123456789",
        "#PBS -q batch",
        "#PBS -l walltime=3:00:00",
        "#PBS -o _expyre_job.out",
        "#PBS -e _expyre_job.err",
        "#PBS -S /bin/bash",
        "#PBS -r n",
        "#PBS -l nodes=2:ppn=16",
    ]


def test_comma_partition_is_refused_with_advice():
    system = {**WRAPPERS_SYSTEM, "partitions": {"debug,long": {"ncores": 4, "max_time": "10m"}}}
    with pytest.raises(ValueError, match="one destination"):
        _script("comma", system, {"max_time": "1m", "n": (1, "tasks")}, True, [])

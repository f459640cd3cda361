"""Job scripts for a Slurm system, compared with golden files in tests/golden/.

Regenerate after an intended change with ``EXPYRE_UPDATE_GOLDEN=1 pytest plugins/expyre_slurm/tests``
and review the diff.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import attrs
import pytest
from expyre.testing import check_golden
from expyre.config_model import SystemConfig, converter
from expyre.hookspecs import JobRequest
from expyre.resources import Resources
from expyre.script import build_script
from expyre.system import System
from expyre.units import Duration
from expyre_slurm.header import default_header

GOLDEN = Path(__file__).parent / "golden"

# ExPyRe's README's config.json example (README "config.json example"), on this machine
README_SYSTEM = {
    "host": None,
    "scheduler": "slurm",
    "commands": ["module purge", "module load python/3 compilers/gnu lapack ase quip vasp"],
    "header": ["#SBATCH --nodes={nnodes}", "#SBATCH --ntasks={tot_ncores}", "#SBATCH --ntasks-per-node={ncores_per_node}"],
    "partitions": {
        "node16_old,node16_new": {"ncores": 16, "max_time": None, "max_mem": "60GB"},
        "node36": {"ncores": 36, "max_time": None, "max_mem": "180GB"},
        "node56_bigmem": {"ncores": 56, "max_time": "48:00:00", "max_mem": "1500GB",
                          "header": ["#SBATCH --constraint=bigmem", "#SBATCH --mem-per-cpu={ncores_per_task}G"]},
    },
}


def _system(tmp_path: Path, **overrides) -> System:
    cfg = converter.structure({**README_SYSTEM, **overrides}, SystemConfig)
    return System("cluster", cfg, tmp_path)


def _job(system: System, resources: dict, job_id: str = "fit_ab12cd34", **kw) -> JobRequest:
    res = Resources.from_any(resources)
    partition, alloc = res.find_nodes(system.partitions, **kw)
    return JobRequest(
        id=job_id, remote_dir="/scratch/me/_expyre/run_fit_ab12cd34", script="_expyre_script.sh",
        stdout="_expyre_job.out", stderr="_expyre_job.err", partition=partition, max_time=res.max_time,
        nodes=alloc, system_name=system.name,
    )


def _check(name: str, text: str) -> None:
    check_golden(GOLDEN / name, text)


def _script(system: System, job: JobRequest, **kw) -> str:
    return build_script(system, job, python_cmd="python3", **kw)


def test_readme_example_script(tmp_path):
    # the README's resources: 1 hour on 1 node of a bigmem partition
    system = _system(tmp_path)
    job = _job(system, {"max_time": "1h", "n": (1, "nodes"), "partitions": ".*bigmem"})
    assert job.partition == "node56_bigmem"
    text = _script(system, job, header_extra=["#SBATCH --account=e89"], env_vars=[("OMP_NUM_THREADS", "1")],
                   pre_run_commands=["echo pre"], post_run_commands=["echo post"])
    _check("readme_example.txt", text)


def test_tasks_on_partition_list(tmp_path):
    system = _system(tmp_path)
    job = _job(system, {"max_time": "90m", "n": (40, "tasks"), "ncores_per_task": 2, "partitions": "node16.*"})
    assert job.partition == "node16_old,node16_new"
    _check("tasks_partition_list.txt", _script(system, job))


def test_no_default_header(tmp_path):
    system = _system(tmp_path, no_default_header=True)
    job = _job(system, {"max_time": "2d", "n": (2, "nodes"), "partitions": "node36"})
    text = _script(system, job, header_extra=["#SBATCH --qos=long"])
    _check("no_default_header.txt", text)
    assert "--job-name" not in text and "--time" not in text
    assert "#SBATCH --nodes=2" in text and "#SBATCH --qos=long" in text


def test_header_order_and_keys(tmp_path):
    system = _system(tmp_path)
    job = _job(system, {"max_time": 3725, "n": (1, "nodes"), "partitions": "node56_bigmem", "ncores_per_task": 4})
    lines = [line for line in _script(system, job, header_extra=["#SBATCH --comment={id}"]).splitlines() if line.startswith("#SBATCH")]
    assert lines == [
        "#SBATCH --job-name=fit_ab12cd34",
        "#SBATCH --partition=node56_bigmem",
        "#SBATCH --time=1:02:05",
        "#SBATCH --output=_expyre_job.out",
        "#SBATCH --error=_expyre_job.err",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=56",
        "#SBATCH --ntasks-per-node=56",
        "#SBATCH --constraint=bigmem",
        "#SBATCH --mem-per-cpu=4G",
        "#SBATCH --comment=fit_ab12cd34",
    ]


def test_default_header_without_time_limit(tmp_path):
    system = _system(tmp_path)
    job = _job(system, {"max_time": "1h", "n": (1, "nodes"), "partitions": "node36"})
    job = attrs.evolve(job, max_time=None)
    assert default_header(job) == [
        "#SBATCH --job-name=fit_ab12cd34", "#SBATCH --partition=node36",
        "#SBATCH --output=_expyre_job.out", "#SBATCH --error=_expyre_job.err",
    ]


def test_long_time_limit_in_hours():
    # Slurm takes hours:minutes:seconds with hours beyond 24 (checked with sbatch --test-only -t 100:00:00)
    assert Duration.parse("100h").hms() == "100:00:00"


@pytest.mark.parametrize(
    "slurm_env, expected",
    [
        ({}, {"EXPYRE_NNODES": "2", "EXPYRE_TOT_NCORES": "72", "EXPYRE_TOT_NTASKS": "36",
              "EXPYRE_NCORES_PER_NODE": "36", "EXPYRE_NTASKS_PER_NODE": "18", "EXPYRE_NCORES_PER_TASK": "2"}),
        ({"SLURM_JOB_NUM_NODES": "3", "SLURM_JOB_CPUS_PER_NODE": "36(x2),4", "SLURM_NTASKS": "38",
          "SLURM_CPUS_ON_NODE": "36", "SLURM_CPUS_PER_TASK": "2", "SLURM_NTASKS_PER_NODE": "18"},
         {"EXPYRE_NNODES": "3", "EXPYRE_TOT_NCORES": "76", "EXPYRE_TOT_NTASKS": "38",
          "EXPYRE_NCORES_PER_NODE": "36", "EXPYRE_NTASKS_PER_NODE": "18", "EXPYRE_NCORES_PER_TASK": "2"}),
        ({"SLURM_NNODES": "1", "SLURM_JOB_CPUS_PER_NODE": "not(a)list"},
         {"EXPYRE_NNODES": "1", "EXPYRE_TOT_NCORES": "72"}),
    ],
)
def test_job_env_in_bash(tmp_path, slurm_env, expected):
    """The generated job_env lines, run by bash with SLURM_* as a job would have them."""
    system = _system(tmp_path)
    job = _job(system, {"max_time": "1h", "n": (36, "tasks"), "ncores_per_task": 2, "partitions": "node36"})
    text = _script(system, job)
    start = text.index("export EXPYRE_NNODES=")
    end = text.index("python3 ")
    snippet = text[start:end]
    env = {"PATH": os.environ["PATH"], **slurm_env}
    out = subprocess.run(["bash", "-c", snippet + "\nenv"], env=env, capture_output=True, text=True, check=True).stdout
    got = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("EXPYRE_"))
    for k, v in expected.items():
        assert got[k] == v, (k, got)
    assert not any(line.startswith("_expyre") for line in out.splitlines())

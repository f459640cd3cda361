"""What is removed from sbatch's environment: every variable Slurm sets in a job or step, and
nothing its clients read (SLURM_CONF, SLURM_CLUSTERS, SBATCH_*...)."""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import pytest
from expyre.builtin.local_transport import LocalTransport
from expyre_slurm import SlurmScheduler
from expyre_slurm.environment import (
    CLIENT_INPUT_NAMES,
    JOB_ENV_FAMILIES,
    JOB_ENV_NAMES,
    JOB_ENV_PREFIXES,
    SALLOC_OUTPUT,
    SBATCH_OUTPUT,
    SRUN_OUTPUT,
)

PREFIXES = SlurmScheduler.foreign_env_prefixes

#: what a login shell of a site may carry: client configuration, to be kept
KEPT = {
    **{name: "kept" for name in CLIENT_INPUT_NAMES},
    "SLURM_CONF": "/etc/slurm/other/slurm.conf",
    "SLURM_CLUSTERS": "alpha",
    "SLURM_TIME_FORMAT": "standard",
    "SBATCH_ACCOUNT": "proj1",
    "SBATCH_PARTITION": "debug",
    "SBATCH_EXPORT": "ALL",
    "SBATCH_MEM_BIND": "local",
    "SQUEUE_FORMAT": "%i",
    "SACCT_FEDERATION": "1",
    "SCANCEL_VERBOSE": "1",
    "SCONTROL_LOCAL": "1",
    "SRUN_CPUS_PER_TASK": "2",
    "SLURM_WORKING_CLUSTER": "localcluster:127.0.0.1:6817:9728:109",
}
#: what Slurm 22.05 set in a real batch job and srun step of the test cluster, plus the forms documented for
#: heterogeneous jobs and members of the families that newer releases set
JOB = {
    "SLURM_JOB_ID": "4242", "SLURM_JOBID": "4242", "SLURM_JOB_NAME": "outer", "SLURM_JOB_NODELIST": "vm",
    "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_CPUS_PER_NODE": "3", "SLURM_CPUS_ON_NODE": "3",
    "SLURM_CPUS_PER_TASK": "3", "SLURM_MEM_PER_NODE": "100", "SLURM_NTASKS": "1", "SLURM_NPROCS": "1",
    "SLURM_TASKS_PER_NODE": "1", "SLURM_NODELIST": "vm", "SLURM_NNODES": "1", "SLURM_NODEID": "0",
    "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_TASK_PID": "77", "SLURM_GTIDS": "0",
    "SLURM_SUBMIT_DIR": "/tmp", "SLURM_SUBMIT_HOST": "vm", "SLURM_CLUSTER_NAME": "xpr",
    "SLURM_JOB_PARTITION": "debug", "SLURM_JOB_ACCOUNT": "proj1", "SLURM_JOB_QOS": "normal",
    "SLURM_PRIO_PROCESS": "0", "SLURM_TOPOLOGY_ADDR": "vm", "SLURM_TOPOLOGY_ADDR_PATTERN": "node",
    "SLURM_EXPORT_ENV": "ALL", "SLURMD_NODENAME": "vm", "SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2",
    "SLURM_STEP_ID": "0", "SLURM_STEPID": "0", "SLURM_STEP_NODELIST": "vm", "SLURM_STEP_NUM_TASKS": "1",
    "SLURM_CPU_BIND_LIST": "0x1", "SLURM_MEM_BIND_TYPE": "local", "SLURM_SRUN_COMM_PORT": "4000",
    "SLURM_NTASKS_HET_GROUP_1": "2", "SLURM_JOB_ID_HET_GROUP_0": "4242", "SLURM_JOB_CPUS_PER_NODE_PACK_GROUP_0": "3",
    "SLURM_JOB_START_TIME": "1700000000", "SLURM_JOB_USER": "xprtest",
}


def removed(name: str) -> bool:
    return name.startswith(PREFIXES)


def test_every_documented_job_variable_is_removed() -> None:
    for name in (*SBATCH_OUTPUT, *SRUN_OUTPUT, *SALLOC_OUTPUT, *JOB):
        assert removed(name), name
        assert removed(f"{name}_HET_GROUP_3"), name
    assert PREFIXES == JOB_ENV_PREFIXES and PREFIXES[: len(JOB_ENV_FAMILIES)] == JOB_ENV_FAMILIES
    assert len(set(PREFIXES)) == len(PREFIXES)


def test_client_inputs_are_kept() -> None:
    for name in KEPT:
        assert not removed(name), name
    assert not set(CLIENT_INPUT_NAMES) & set(JOB_ENV_NAMES)
    # the old "SLURM_" prefix removed them all; no catch-all may come back
    assert "SLURM_" not in PREFIXES and not any(p in ("SLURM_STEP_", "SLURM_MEM_", "SLURM_CPUS_") for p in PREFIXES)


# -- the lists against the man pages of the installed Slurm -------------------------------------------

MAN = Path("/usr/share/man/man1")
_ENTRY = re.compile(r"^\.TP\n\\fB([A-Z0-9_*#]+)", re.M)


def _section(page: str, title: str) -> list[str]:
    path = MAN / f"{page}.1.gz"
    if not path.exists():
        pytest.skip(f"no man page {path} on this machine (slurm-client's man pages)")
    text = gzip.open(path, "rt", errors="replace").read()
    m = re.search(rf'^\.SH "{title}"\n(.*?)(?=^\.SH )', text, re.M | re.S)
    assert m, f"{path} has no section {title!r}"
    return _ENTRY.findall(m.group(1))


def test_lists_match_the_installed_man_pages() -> None:
    outputs = {n for page in ("sbatch", "srun", "salloc") for n in _section(page, "OUTPUT ENVIRONMENT VARIABLES")}
    assert {"SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_ID"} <= outputs  # the parse found the lists
    inputs = {n for n in _section("sbatch", "INPUT ENVIRONMENT VARIABLES") if n.startswith("SLURM_")}
    for page in ("squeue", "sacct", "scancel", "scontrol"):
        inputs |= {n for n in _section(page, "ENVIRONMENT VARIABLES") if n.startswith("SLURM_")}
    assert "SLURM_CONF" in inputs and "SLURM_CLUSTERS" in inputs
    assert inputs <= set(CLIENT_INPUT_NAMES)
    for name in outputs - inputs:
        if name.startswith("SBATCH_"):  # SBATCH_MEM_BIND*: sbatch's own inputs, never touched
            assert not removed(name), name
        elif "*" not in name:  # SLURM_*_HET_GROUP_#: covered by the names, see above
            assert removed(name), f"{name} is documented as set in a job but would reach a nested sbatch"
    for name in inputs:
        assert not removed(name), f"{name} is read by Slurm's clients but would be removed"


# -- through the transports ------------------------------------------------------------------------

def _env_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_local_transport_removes_job_variables_and_keeps_client_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {**KEPT, **JOB}.items():
        monkeypatch.setenv(k, v)
    result = LocalTransport(None).run(["env"], unset_env_prefixes=PREFIXES)
    assert result.ok, result.describe()
    env = _env_lines(result.stdout)
    assert {k: env.get(k) for k in KEPT} == KEPT
    assert not set(JOB) & set(env)

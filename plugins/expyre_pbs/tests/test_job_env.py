"""The job-side lines that correct ``EXPYRE_*`` from the PBS allocation, run by a real bash
with the variables each family sets (Torque: PBS_NUM_NODES, PBS_NUM_PPN, PBS_NP, PBS_NODEFILE
one line per core; PBS Pro: NCPUS and PBS_NODEFILE one line per MPI rank per chunk)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from expyre_pbs.header import job_env_lines

REQUESTED = {
    "EXPYRE_NNODES": "1",
    "EXPYRE_TOT_NCORES": "1",
    "EXPYRE_TOT_NTASKS": "1",
    "EXPYRE_NCORES_PER_NODE": "1",
    "EXPYRE_NTASKS_PER_NODE": "1",
    "EXPYRE_NCORES_PER_TASK": "1",
}
NAMES = ["EXPYRE_NNODES", "EXPYRE_TOT_NCORES", "EXPYRE_NCORES_PER_NODE", "EXPYRE_TOT_NTASKS", "EXPYRE_NTASKS_PER_NODE"]


def run(env: dict[str, str], per_task: str = "1") -> dict[str, str]:
    script = "\n".join(
        [f"export {k}={v}" for k, v in {**REQUESTED, "EXPYRE_NCORES_PER_TASK": per_task}.items()]
        + job_env_lines()
        + [f'printf "%s=%s\\n" {n} "${n}"' for n in NAMES]
    )
    out = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, check=True)
    assert out.stderr == ""
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def test_no_pbs_variables_keeps_the_request():
    # Slurm's Torque wrappers set none of them
    assert run({"PBS_JOBID": "26", "PBS_NODENUM": "0"}) == {n: "1" for n in NAMES}


def test_torque_variables(tmp_path: Path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\n" * 4 + "n2\n" * 4)
    got = run({"PBS_NUM_NODES": "2", "PBS_NUM_PPN": "4", "PBS_NP": "8", "PBS_NODEFILE": str(nodefile)}, per_task="2")
    assert got == {"EXPYRE_NNODES": "2", "EXPYRE_TOT_NCORES": "8", "EXPYRE_NCORES_PER_NODE": "4",
                   "EXPYRE_TOT_NTASKS": "4", "EXPYRE_NTASKS_PER_NODE": "2"}


@pytest.mark.parametrize("mpiprocs", [1, 16])
def test_pbspro_variables(tmp_path: Path, mpiprocs: int):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("".join(f"node{i}.cluster\n" * mpiprocs for i in range(3)))
    got = run({"NCPUS": "16", "PBS_NODEFILE": str(nodefile)})
    assert got == {"EXPYRE_NNODES": "3", "EXPYRE_TOT_NCORES": "48", "EXPYRE_NCORES_PER_NODE": "16",
                   "EXPYRE_TOT_NTASKS": "48", "EXPYRE_NTASKS_PER_NODE": "16"}


def test_unreadable_nodefile_keeps_the_requested_nodes():
    got = run({"NCPUS": "4", "PBS_NODEFILE": "/nonexistent/nodefile"})
    assert got["EXPYRE_NNODES"] == "1" and got["EXPYRE_TOT_NCORES"] == "4"

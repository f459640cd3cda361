"""Golden-file tests of the ``#$`` header and the whole job script, and the bash that corrects
``EXPYRE_*`` from the allocation (run for real in bash with the variables Grid Engine sets).

Regenerate the golden files after an intended change with ``EXPYRE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from expyre.testing import check_golden as _check_golden
from expyre.names import JOB_ID_RE, make_job_id, sanitize_name
from expyre.script import build_script
from expyre.types import NodeAllocation
from expyre.units import Duration
from expyre_sge.header import default_header, job_env
from sge_testlib import request, system

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    _check_golden(GOLDEN / name, text)


def test_default_header_golden() -> None:
    check_golden("header_default.txt", "\n".join(default_header(request())) + "\n")


def test_default_header_no_time_comma_queue_golden() -> None:
    job = request(partition="short.q,long.q", max_time=None)
    check_golden("header_no_time_two_queues.txt", "\n".join(default_header(job)) + "\n")


def test_h_rt_is_max_time_hms() -> None:
    job = request(max_time=Duration.parse("2-00:00:05"))
    assert "#$ -l h_rt=48:00:05" in default_header(job)
    assert "#$ -l h_rt=0:00:05" in default_header(request(max_time=Duration(5)))


def test_script_with_pe_golden(tmp_path: Path) -> None:
    sysm = system(
        tmp_path,
        header=["#$ -pe smp {tot_ncores}"],
        commands=["module load python3"],
        partitions={"all.q": {"ncores": 4, "max_time": "24h", "header": ["#$ -l h_vmem=2G"]}},
    )
    job = request(
        nodes=NodeAllocation(nnodes=1, ncores_per_node=2, tot_ncores=2, tot_ntasks=2, ncores_per_task=1, ntasks_per_node=2),
        partial_node=True,
    )
    text = build_script(sysm, job, header_extra=["#$ -P proj_{partition}"], python_cmd="/usr/bin/python3")
    check_golden("script_pe_smp.txt", text)


def test_script_no_default_header_golden(tmp_path: Path) -> None:
    sysm = system(tmp_path, no_default_header=True, header=["#$ -S /bin/bash", "#$ -N {id}", "#$ -pe mpi {tot_ncores}"])
    job = request(
        max_time=None,
        nodes=NodeAllocation(nnodes=2, ncores_per_node=4, tot_ncores=8, tot_ntasks=4, ncores_per_task=2, ntasks_per_node=None),
    )
    check_golden("script_no_default_header.txt", build_script(sysm, job, python_cmd="python3"))


def test_header_in_script_has_shell_and_cwd(tmp_path: Path) -> None:
    text = build_script(system(tmp_path), request(), python_cmd="python3")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    # posix_compliant queues ignore the shebang: the shell must be asked for
    assert "#$ -S /bin/bash" in lines and "#$ -cwd" in lines
    # qsub only reads directives before the first command line
    first_cmd = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert all(i < first_cmd for i, line in enumerate(lines) if line.startswith("#$"))


# -- job ids are valid Grid Engine job names -----------------------------------------------------

# sge_types(5) of SGE 8.1.9: "A name is an arbitrary string of ASCII printing characters, but may
# not contain "/", ":", "@", "\", "*", or "?"." and "A job name is a name as above, with the
# restriction that it cannot start with a digit". object_name (queues...) also excludes SPACE,
# "'", "[", "]", "{", "}", "|", "(", ")", "%", ",", '"': the ids avoid those too.
SGE_JOB_NAME = re.compile(r"^(?![0-9])[!-~]+$")
SGE_FORBIDDEN = set("/:@\\*?") | set(" '[]{}|()%,\"`$;&<>")


@pytest.mark.parametrize(
    "name",
    ["test_task", "a/b:c@d\\e*f?g", "123", "9lives", "ünïcödé naïve", "x" * 300, "..", "-", "a b(c)[d]{e}|f%g,h\"i'j", "", "$(rm -rf ~)"],
)
def test_job_ids_are_valid_sge_job_names(name: str) -> None:
    job_id = make_job_id(name) if name else make_job_id("j")
    assert JOB_ID_RE.match(job_id)
    assert SGE_JOB_NAME.match(job_id), job_id
    assert not (set(job_id) & SGE_FORBIDDEN), job_id
    assert not job_id[0].isdigit()
    # used verbatim: the -N line carries exactly the id, unquoted
    assert f"#$ -N {job_id}" in default_header(request(id=job_id))


def test_sanitize_keeps_readable_part() -> None:
    assert sanitize_name("fit model/v2") == "fit_model_v2"


# -- EXPYRE_* from the real allocation ----------------------------------------------------------


def run_job_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Run the job_env lines in bash after the core's exports, with Grid Engine's variables."""
    base = {
        "EXPYRE_NNODES": "1",
        "EXPYRE_TOT_NCORES": "2",
        "EXPYRE_TOT_NTASKS": "2",
        "EXPYRE_NCORES_PER_NODE": "2",
        "EXPYRE_NTASKS_PER_NODE": "2",
        "EXPYRE_NCORES_PER_TASK": "1",
    }
    base.update(env)
    script = "\n".join(["set -eu", *job_env(request()), "env | grep ^EXPYRE_ | sort"])
    proc = subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"], **base}, capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


def test_job_env_single_host_pe(tmp_path: Path) -> None:
    # a 2-slot smp job as on the real cluster: NSLOTS=2 NHOSTS=1 PE=smp (real-schedulers.md 5.3)
    hostfile = tmp_path / "pe_hostfile"
    hostfile.write_text("vm 2 all.q@vm UNDEFINED\n")  # recorded on the real SGE 8.1.9
    env = run_job_env({"NSLOTS": "3", "NHOSTS": "1", "PE": "smp", "PE_HOSTFILE": str(hostfile)}, tmp_path)
    assert env["EXPYRE_TOT_NCORES"] == "3"
    assert env["EXPYRE_NNODES"] == "1"
    assert env["EXPYRE_NCORES_PER_NODE"] == "3"
    assert env["EXPYRE_TOT_NTASKS"] == "3"
    assert env["EXPYRE_NTASKS_PER_NODE"] == "3"
    assert env["EXPYRE_NCORES_PER_TASK"] == "1"


def test_job_env_multi_host(tmp_path: Path) -> None:
    hostfile = tmp_path / "pe_hostfile"
    hostfile.write_text("node1 8 all.q@node1 UNDEFINED\nnode2 8 all.q@node2 UNDEFINED\n")
    env = run_job_env(
        {"NSLOTS": "16", "NHOSTS": "2", "PE_HOSTFILE": str(hostfile), "EXPYRE_NCORES_PER_TASK": "4", "EXPYRE_NTASKS_PER_NODE": "1"}, tmp_path
    )
    assert (env["EXPYRE_TOT_NCORES"], env["EXPYRE_NNODES"], env["EXPYRE_NCORES_PER_NODE"]) == ("16", "2", "8")
    assert (env["EXPYRE_TOT_NTASKS"], env["EXPYRE_NTASKS_PER_NODE"]) == ("4", "2")


def test_job_env_no_pe_ignores_leaked_hostfile(tmp_path: Path) -> None:
    # without a PE Grid Engine sets NSLOTS=1 NHOSTS=1; a PE_HOSTFILE leaked by -V is not read
    hostfile = tmp_path / "pe_hostfile"
    hostfile.write_text("vm 4 all.q@vm UNDEFINED\n")
    env = run_job_env({"NSLOTS": "1", "NHOSTS": "1", "PE_HOSTFILE": str(hostfile)}, tmp_path)
    assert (env["EXPYRE_TOT_NCORES"], env["EXPYRE_NCORES_PER_NODE"], env["EXPYRE_TOT_NTASKS"]) == ("1", "1", "1")


def test_job_env_outside_grid_engine_changes_nothing(tmp_path: Path) -> None:
    env = run_job_env({}, tmp_path)
    assert env["EXPYRE_TOT_NCORES"] == "2" and env["EXPYRE_NNODES"] == "1"


def test_job_env_empty_ntasks_per_node_stays_empty(tmp_path: Path) -> None:
    env = run_job_env({"NSLOTS": "4", "NHOSTS": "1", "EXPYRE_NTASKS_PER_NODE": "", "EXPYRE_NCORES_PER_TASK": "2"}, tmp_path)
    assert env["EXPYRE_NTASKS_PER_NODE"] == "" and env["EXPYRE_TOT_NTASKS"] == "2"

"""Job arrays on Slurm, at unit level: the array script (golden file), the element ids, status
of elements with ``squeue -r``, finding an array by name, and the size limit.

Recorded outputs: [R] the project's test cluster (Slurm 22.05.8, MaxArraySize 1001), captured on
2026-11-24 with the command lines expyre_slurm runs.
"""

from __future__ import annotations

import attrs
import pytest
from expyre.testing import check_golden
from expyre.config_model import converter, iter_problems
from expyre.hookspecs import JobState
from expyre.script import build_array_script
from expyre_slurm import SlurmOptions
from expyre_slurm.parse import parse_find, parse_max_array_size, parse_squeue_status

from pathlib import Path

from expyre.config_model import SystemConfig
from expyre.hookspecs import JobRequest, Transport
from expyre.resources import Resources
from expyre.system import System
from expyre.types import CommandResult, SchedulerContext
from expyre_slurm import SlurmScheduler

GOLDEN = Path(__file__).parent / "golden"
SYSTEM = {"host": None, "scheduler": "slurm", "commands": ["module load python/3"],
          "header": ["#SBATCH --nodes={nnodes}"], "partitions": {"node36": {"ncores": 36, "max_time": None}}}


def _system(tmp_path: Path) -> System:
    return System("cluster", converter.structure(SYSTEM, SystemConfig), tmp_path)


def _job(system: System, resources: dict, job_id: str) -> JobRequest:
    res = Resources.from_any(resources)
    partition, alloc = res.find_nodes(system.partitions)
    return JobRequest(id=job_id, remote_dir="/scratch/me/_expyre/run_fit_0_a", script="_expyre_script.sh",
                      stdout="_expyre_job.out", stderr="_expyre_job.err", partition=partition,
                      max_time=res.max_time, nodes=alloc, system_name=system.name)


def _check(name: str, text: str) -> None:
    check_golden(GOLDEN / name, text)


class Replay(Transport):
    """Answers each command with ``responder(argv) -> (rc, stdout, stderr)`` and records it."""

    is_local = True

    def __init__(self, responder):
        super().__init__(None)
        self.responder = responder
        self.calls: list[list[str]] = []

    def run(self, command, *, cwd=None, input=None, timeout=None, unset_env_prefixes=()):
        self.calls.append(list(command))
        return CommandResult(command, *self.responder(list(command)))

    def put(self, local_dirs, remote_parent):  # pragma: no cover
        raise NotImplementedError

    def get(self, remote_dirs, local_parent):  # pragma: no cover
        raise NotImplementedError


def _sched(**options) -> SlurmScheduler:
    opts = converter.structure(options, SlurmOptions)
    return SlurmScheduler(SchedulerContext(system_name="cluster", rundir="/scratch", options=opts))


def test_array_script_golden(tmp_path):
    system = _system(tmp_path)
    job = _job(system, {"max_time": "1h", "n": (1, "nodes"), "partitions": "node36"}, job_id="xa_fit_0_ab12cd34ef")
    job = attrs.evolve(job, script="_expyre_array.sh", stdout="_expyre_array_%a.out", stderr="_expyre_array_%a.err")
    text = build_array_script(system, job, ["run_fit_0_a", "run_fit_1_b", "run_fit_2_c"], header_extra=["#SBATCH --qos=x"])
    _check("array_script.txt", text)
    assert "#SBATCH --array=0-2\n" in text and "#SBATCH --output=_expyre_array_%a.out" in text
    assert text.index("#SBATCH --qos=x") < text.index("#SBATCH --array")


def test_array_header_and_throttle():
    s = _sched()
    assert s.arrays_supported() and s.array_index_var == "SLURM_ARRAY_TASK_ID" and s.array_index_base == 0
    assert s.array_header(None, 200) == ["#SBATCH --array=0-199"]
    assert _sched(array_throttle=8).array_header(None, 3) == ["#SBATCH --array=0-2%8"]
    assert s.array_element_id("123", 4) == "123_4"


def test_status_of_elements_needs_r():
    s = _sched()
    assert "-r" not in s.status_command(["12", "13"])
    assert s.status_command(["12_0", "12_1"]) == ["squeue", "--me", "-t", "all", "-r", "-h", "-o", "%i|%T|%r"]
    # [R] squeue --me -t all -r -h -o '%i|%T|%r' while a 4-element array ran on a 4-core node
    out = "1843_0|RUNNING|None\n1843_1|COMPLETED|None\n1843_2|PENDING|Resources\n1843_3|PENDING|Resources\n1799|COMPLETED|None\n"
    st = parse_squeue_status(out, ["1843_0", "1843_1", "1843_2", "1843_9"])
    assert st["1843_0"].state is JobState.RUNNING and st["1843_1"].state is JobState.COMPLETED
    assert st["1843_2"].state is JobState.QUEUED and "1843_9" not in st


def test_find_array_by_name_gives_array_id():
    # [R] squeue -t all -h -o '%i|%j' --name=...: elements of a running array, and a pending range
    out = "1843_0|xa_sq_0_v84afkyw0a\n1843_[2-4]|xa_sq_0_v84afkyw0a\n1850|plain_job_x\n"
    assert parse_find(out, ["xa_sq_0_v84afkyw0a", "plain_job_x"]) == {"xa_sq_0_v84afkyw0a": "1843", "plain_job_x": "1850"}
    assert parse_find("1843_[0-199%4]|a\n", ["a"]) == {"a": "1843"}
    assert parse_find("garbage_x|a\n", ["a"]) == {}


def test_array_size_limit_from_scontrol_or_option():
    # [R] scontrol show config (excerpt)
    conf = "MailProg                = /usr/bin/mail\nMaxArraySize            = 1001\nMaxJobCount             = 10000\n"
    assert parse_max_array_size(conf) == 1001 and parse_max_array_size("nothing") is None
    t = Replay(lambda argv: (0, conf, ""))
    assert _sched().array_size_limit(t) == 1001 and t.calls[0] == ["scontrol", "show", "config"]
    t = Replay(lambda argv: (0, "MaxArraySize = 0\n", ""))
    assert _sched().array_size_limit(t) is None  # the site disabled arrays
    t = Replay(lambda argv: pytest.fail("not asked"))
    assert _sched(max_array_size=50).array_size_limit(t) == 50


def test_bad_array_options_name_the_key():
    with pytest.raises(Exception) as info:
        converter.structure({"max_array_size": 0}, SlurmOptions)
    # an attrs validator: the message names the field (the path stops at the options object)
    assert [msg for _, msg in iter_problems(info.value)] == ["'max_array_size' must be >= 1: 0"]

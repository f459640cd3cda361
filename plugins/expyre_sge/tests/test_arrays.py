"""Job arrays on Grid Engine, at unit level: header, element ids (task ids count from 1), status
of array tasks from a recorded ``qstat -xml``, accounting of one task, the size limit.

Recorded outputs: data/README.md ("Job arrays"): SGE 8.1.9 of scripts/services, 2026-11-24.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from expyre.config_model import converter
from expyre.hookspecs import Transport
from expyre.types import CommandResult, JobState, SchedulerContext
from expyre_sge import SgeOptions, SgeScheduler
from expyre_sge.parse import expand_tasks, parse_max_aj_tasks

DATA = Path(__file__).parent / "data"


class Fake(Transport):
    is_local = True

    def __init__(self, respond):
        super().__init__(None)
        self.respond = respond
        self.calls: list = []

    def run(self, command, **kw):
        self.calls.append(command)
        return CommandResult(command, *self.respond(command))

    def put(self, local_dirs, remote_parent):  # pragma: no cover
        raise NotImplementedError

    def get(self, remote_dirs, local_parent):  # pragma: no cover
        raise NotImplementedError


def sched(**options) -> SgeScheduler:
    opts = converter.structure(options, SgeOptions)
    return SgeScheduler(SchedulerContext(system_name="cluster", rundir="/tmp/x", options=opts))


def test_array_members():
    s = sched(user="root")
    assert s.arrays_supported() and s.array_index_var == "SGE_TASK_ID" and s.array_index_base == 1
    assert s.array_header(None, 200) == ["#$ -t 1-200"]
    assert sched(array_throttle=4).array_header(None, 3) == ["#$ -t 1-3", "#$ -tc 4"]
    assert [s.array_element_id("1361", i) for i in (0, 5)] == ["1361.1", "1361.6"]


@pytest.mark.parametrize("text, tasks", [("3", {3}), ("4-8:2", {4, 6, 8}), ("5,6", {5, 6}), ("1,3-4:1", {1, 3, 4}),
                                         ("", set()), ("x", set())])
def test_expand_tasks(text, tasks):
    assert expand_tasks(text) == tasks


def test_status_of_array_tasks_from_recorded_qstat():
    s = sched(user="root")
    out = (DATA / "qstat_xml_array.xml").read_text()
    ids = [f"1361.{t}" for t in range(1, 8)] + ["1361"]
    st = s.parse_status(CommandResult(s.status_command(ids), 0, out, ""), ids)
    assert {i: st[i].state for i in st} == {
        **{f"1361.{t}": JobState.RUNNING for t in (1, 2, 3, 4)},
        "1361.5": JobState.QUEUED, "1361.6": JobState.QUEUED,
        "1361": JobState.RUNNING,  # the whole job (not an expyre id, but kept as before)
    }
    assert "1361.7" not in st


def test_accounting_of_one_task():
    s = sched(user="root")
    assert s.accounting_command(["1361.2"]) == ["qacct", "-j", "1361", "-t", "2"]
    assert s.accounting_command(["1361"]) == ["qacct", "-j", "1361"]
    out = (DATA / "qacct_array_task.txt").read_text()
    st = s.parse_accounting(CommandResult(["qacct"], 0, out, ""), ["1361.2"])
    assert st["1361.2"].exit_code == 3 and st["1361.2"].state is JobState.FAILED
    # recorded: qacct -j 999999 -t 2
    gone = CommandResult(["qacct"], 1, "", "error: Job-array tasks 999999.2-2:1 not found\n")
    assert s.parse_accounting(gone, ["999999.2"]) == {}


def test_error_reason_of_a_task_is_its_jobs():
    s = sched(user="root")
    assert s.explain_command(["12.3", "12.4", "9"]) == ["qstat", "-j", "9,12"]


def test_array_size_limit():
    text = (DATA / "qconf_sconf.txt").read_text()
    assert parse_max_aj_tasks(text) == 75000
    t = Fake(lambda c: (0, text, ""))
    assert sched().array_size_limit(t) == 75000 and t.calls == [["qconf", "-sconf"]]
    assert sched().array_size_limit(Fake(lambda c: (0, "max_aj_tasks 0\n", ""))) == SgeScheduler.max_array_size
    assert sched(max_array_size=10).array_size_limit(Fake(lambda c: pytest.fail("not asked"))) == 10


def test_control_of_one_task():
    # recorded 2026-11-24 (SGE 8.1.9 here): qrls / qhold / qdel of task 2 of array job 2108
    s = sched(user="root")
    assert s.control_command("hold", ["2108.2"]) == ["qhold", "2108.2"]
    for op, out in [("release", "modified hold of job-array task 2108.2\n"),
                    ("hold", "modified hold of job-array task 2108.2\n"),
                    ("cancel", "root has registered the job-array task 2108.2 for deletion\n")]:
        s.check_control(op, CommandResult([op], 0, out, ""), ["2108.2"])  # no error

"""expyre's offline contract for the shellq scheduler, from recorded outputs of its commands
(tests/recorded/: ``# key: value`` header, ``---``, the stdout verbatim; see
:func:`expyre.testing.load_recorded`). No cluster and no running job needed.

Regenerate the golden header after an intended change with ``EXPYRE_UPDATE_GOLDEN=1 pytest`` and
review the diff.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
from expyre.testing import OfflineSchedulerContract, load_recorded
from expyre.types import JobState

from expyre_shellq import STATES, ShellQ

HERE = Path(__file__).parent
RECORDED = HERE / "recorded"


class TestShellqOfflineContract(OfflineSchedulerContract):
    backend = ShellQ
    state_codes = dict(STATES)  # every ps state code documented in ps(1)
    job_id = "4242"
    array_id = load_recorded(RECORDED / "submit_array.txt").stdout.strip()
    array_size = 3
    golden_dir = HERE / "golden"
    golden_headers = {
        "header_one_task.txt": (
            {"scheduler": "shellq", "host": None, "header": ["# tasks: {tot_ntasks}"],
             "partitions": {"any": {"ncores": 4, "max_time": None}}},
            {"max_time": "10m", "n": (2, "tasks")},
        ),
    }

    def status_output(self, job_id, code):
        # the recorded ps output, its first job given this pid and this state code
        result = load_recorded(RECORDED / "ps_status.txt")
        stdout = re.sub(r"^(\s*)4242 Ss$", rf"\g<1>{job_id} {code}", result.stdout, count=1, flags=re.M)
        return attrs.evolve(result, stdout=stdout)

    def submit_output(self):
        return load_recorded(RECORDED / "submit.txt"), "4242"

    def submit_failure_output(self):
        return load_recorded(RECORDED / "submit_failed.txt")

    def array_status_output(self, element_ids):
        lines = [f"   {pid} S" for pid in element_ids]
        return attrs.evolve(load_recorded(RECORDED / "ps_status.txt"), stdout="\n".join(lines) + "\n")


def test_gone_jobs_are_left_out():
    """ps lists nothing (exit 1) once every pid has gone: no job is reported, nothing raises."""
    sched = TestShellqOfflineContract().scheduler()
    assert sched.parse_status(load_recorded(RECORDED / "ps_none.txt"), ["4242"]) == {}


def test_registered_in_the_expyre_entry_point_group():
    """Installed, the plugin is found by expyre (entry point ``shellq`` in the group ``expyre``)."""
    from expyre import plugins

    plugins.reset()
    assert plugins.get_scheduler_spec("shellq").backend is ShellQ
    info = {i.name: i for i in plugins.plugin_infos()}
    assert info["shellq"].distribution == "expyre-shellq" and info["shellq"].status == "loaded"

"""Every Grid Engine state code maps; unknown ones map to ``unknown``.

The codes are the table of qstat(1) (SGE 8.1.9, "state" column: Pending, Running, Suspended,
Error, Deleted), the codes seen in real-schedulers.md Appendix A (r, qw, hqw, z) and those recorded
with data/record.sh (dr, hr, s, t, Eqw); hs was seen with `qmod -sj` of a held running job.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from expyre.testing import OfflineSchedulerContract
from expyre.types import CommandResult, JobState, JobStatus
from expyre_sge import SgeScheduler
from expyre_sge.states import FAILED_REASONS, accounting_state, explain_state, map_state, merge_states

QSTAT_MAN_TABLE = {
    # Pending
    "qw": JobState.QUEUED,
    "hqw": JobState.HELD,
    "hRwq": JobState.HELD,
    "hRqw": JobState.HELD,  # spelling used by AiiDA and some qstat versions
    # Running
    "r": JobState.RUNNING,
    "t": JobState.RUNNING,
    "Rr": JobState.RUNNING,
    "Rt": JobState.RUNNING,
    # Suspended
    "s": JobState.SUSPENDED,
    "ts": JobState.SUSPENDED,
    "S": JobState.SUSPENDED,
    "tS": JobState.SUSPENDED,
    "T": JobState.SUSPENDED,
    "tT": JobState.SUSPENDED,
    "Rs": JobState.SUSPENDED,
    "Rts": JobState.SUSPENDED,
    "RS": JobState.SUSPENDED,
    "RtS": JobState.SUSPENDED,
    "RT": JobState.SUSPENDED,
    "RtT": JobState.SUSPENDED,
    # Error
    "Eqw": JobState.NODE_FAIL,
    "Ehqw": JobState.NODE_FAIL,
    "EhRqw": JobState.NODE_FAIL,
    # Deleted
    "dr": JobState.CANCELLED,
    "dt": JobState.CANCELLED,
    "dRr": JobState.CANCELLED,
    "dRt": JobState.CANCELLED,
    "ds": JobState.CANCELLED,
    "dS": JobState.CANCELLED,
    "dT": JobState.CANCELLED,
    "dRs": JobState.CANCELLED,
    "dRS": JobState.CANCELLED,
    "dRT": JobState.CANCELLED,
    "dqw": JobState.CANCELLED,
    # seen for real, not in the man page table
    "hr": JobState.RUNNING,  # qhold of a running job: it keeps running
    "hs": JobState.SUSPENDED,
    "w": JobState.QUEUED,
    # finished (qstat -s z)
    "z": JobState.COMPLETED,
}


@pytest.mark.parametrize("code, state", sorted(QSTAT_MAN_TABLE.items()))
def test_every_code_maps(code: str, state: JobState) -> None:
    st = map_state(code, "42")
    assert st.state is state, (code, st)
    assert st.raw == code
    assert st.reason


@pytest.mark.parametrize("code", ["", "  ", "R", "x", "Pr", "rX", "running", "?", "E q w"])
def test_unknown_codes(code: str) -> None:
    st = map_state(code)
    assert st.state is JobState.UNKNOWN
    assert not st.state.terminal and not st.state.active


def test_error_state_says_what_to_do() -> None:
    st = map_state("Eqw", "28")
    assert "qstat -j 28" in st.reason and "qdel 28" in st.reason
    assert st.state.terminal


def test_explain() -> None:
    assert explain_state("hRwq") == "on hold, restarted, waiting, queued"


def test_merge_prefers_active() -> None:
    running, held, cancelled = map_state("r"), map_state("hqw"), map_state("dr")
    assert merge_states(held, running) is running
    assert merge_states(running, held) is running
    assert merge_states(cancelled, held) is held
    assert merge_states(map_state("qw"), map_state("hqw")).state is JobState.QUEUED


@pytest.mark.parametrize(
    "failed, exit_status, state",
    [
        (0, 0, JobState.COMPLETED),
        (0, 3, JobState.FAILED),
        (0, 137, JobState.FAILED),  # killed by a signal inside the job (e.g. the kernel's OOM killer)
        (37, 137, JobState.TIMEOUT),
        (100, 137, JobState.CANCELLED),
        (100, 143, JobState.CANCELLED),
        (100, 1, JobState.FAILED),
        (25, 0, JobState.PREEMPTED),
        (26, 0, JobState.NODE_FAIL),  # opening output file
        (28, 0, JobState.NODE_FAIL),  # changing to working directory
        (1, None, JobState.NODE_FAIL),
        (99, None, JobState.NODE_FAIL),  # a code this table does not know
    ],
)
def test_accounting_state(failed: int, exit_status: int | None, state: JobState) -> None:
    assert accounting_state(failed, exit_status) is state


def test_failed_reasons_known() -> None:
    assert FAILED_REASONS[37].startswith("qmaster enforced h_rt")
    assert FAILED_REASONS[100] == "assumedly after job"


def test_status_describe() -> None:
    assert map_state("hqw").describe() == "held (hqw) - on hold, queued, waiting"
    assert isinstance(map_state("r"), JobStatus)


# -- the offline contract (expyre.testing), from the recorded outputs in data/ ---------------------
DATA = Path(__file__).parent / "data"


class TestSgeOfflineContract(OfflineSchedulerContract):
    backend = SgeScheduler
    state_codes = QSTAT_MAN_TABLE
    job_id = "22"
    array_id = "1361"  # qsub -terse -t 1-6 printed "1361.1-6:1" (data/README.md)
    array_size = 6
    golden_dir = Path(__file__).parent / "golden"
    golden_headers = {
        "header_contract_all_q.txt": (
            {"scheduler": "sge", "host": None, "header": ["#$ -pe smp {tot_ncores}"],
             "partitions": {"all.q": {"ncores": 4, "max_time": None}}},
            {"max_time": "10m", "n": (2, "tasks")},
        ),
    }

    def status_output(self, job_id, code):
        # data/qstat_xml_states.xml (record.sh), its first job (22, state dr) in this state
        text = (DATA / "qstat_xml_states.xml").read_text()
        text = text.replace("<JB_job_number>22</JB_job_number>", f"<JB_job_number>{job_id}</JB_job_number>", 1)
        text = text.replace("<state>dr</state>", f"<state>{code}</state>", 1)
        return CommandResult(["qstat", "-xml", "-u", "root"], 0, text)

    def submit_output(self):
        # real-schedulers.md Appendix A: qsub -terse
        return CommandResult(["qsub", "-terse", "_expyre_script.sh"], 0, "22\n"), "22"

    def submit_failure_output(self):
        # Appendix A: a definite refusal
        return CommandResult(["qsub", "-terse", "_expyre_script.sh"], 1, "",
                             'Unable to run job: Job was rejected because job requests unknown queue "nosuch.q".\nExiting.\n')

    def array_status_output(self, element_ids):
        # data/qstat_xml_array.xml: tasks 1-4 of job 1361 running, 5 and 6 pending in one line
        return CommandResult(["qstat", "-xml", "-u", "root"], 0, (DATA / "qstat_xml_array.xml").read_text())

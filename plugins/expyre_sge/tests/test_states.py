"""Every Grid Engine state code maps; unknown ones map to ``unknown``.

The codes are the table of qstat(1) (SGE 8.1.9, "state" column: Pending, Running, Suspended,
Error, Deleted), the codes seen in real-schedulers.md Appendix A (r, qw, hqw, z) and those recorded
with data/record.sh (dr, hr, s, t, Eqw); hs was seen with `qmod -sj` of a held running job.
"""

from __future__ import annotations

import pytest

from expyre.types import JobState, JobStatus
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

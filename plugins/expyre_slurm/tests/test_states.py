"""Every Slurm state code, in both forms, maps to an expyre state.

Codes and meanings: the squeue man page, JOB STATE CODES (Slurm 22.05, /usr/share/man/man1/squeue.1.gz
on the test machine; same 24 codes at https://slurm.schedmd.com/squeue.html). The mapping follows
field-facts.md ("Recommended generic" column).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from expyre.hookspecs import JobState
from expyre.testing import OfflineSchedulerContract, load_recorded
from expyre_slurm import SlurmScheduler
from expyre_slurm.states import COMPACT_CODES, STATES, map_state, normalize_state

EXPECTED = {
    "BF": JobState.NODE_FAIL,
    "CA": JobState.CANCELLED,
    "CD": JobState.COMPLETED,
    "CF": JobState.QUEUED,
    "CG": JobState.RUNNING,
    "DL": JobState.TIMEOUT,
    "F": JobState.FAILED,
    "NF": JobState.NODE_FAIL,
    "OOM": JobState.OUT_OF_MEMORY,
    "PD": JobState.QUEUED,
    "PR": JobState.PREEMPTED,
    "R": JobState.RUNNING,
    "RD": JobState.HELD,
    "RF": JobState.QUEUED,
    "RH": JobState.HELD,
    "RQ": JobState.QUEUED,
    "RS": JobState.RUNNING,
    "RV": JobState.CANCELLED,
    "SI": JobState.RUNNING,
    "SE": JobState.HELD,
    "SO": JobState.RUNNING,
    "ST": JobState.SUSPENDED,
    "S": JobState.SUSPENDED,
    "TO": JobState.TIMEOUT,
}


def test_table_covers_the_24_documented_codes():
    assert len(COMPACT_CODES) == 24
    assert set(COMPACT_CODES) == set(EXPECTED)
    assert set(COMPACT_CODES.values()) == set(STATES)


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_compact_and_long_forms(code):
    long = COMPACT_CODES[code]
    assert map_state(code) is EXPECTED[code]
    assert map_state(long) is EXPECTED[code]
    assert map_state(long.lower()) is EXPECTED[code]
    assert map_state(f" {long} ") is EXPECTED[code]


@pytest.mark.parametrize("code", ["CF", "CG", "S", "ST", "RQ", "PR"])
def test_not_death_right_away(code):
    # CONFIGURING, COMPLETING, SUSPENDED, STOPPED, REQUEUED are active; PREEMPTED is its own state,
    # which the core gives a grace period (a requeued job comes back as PENDING)
    state = map_state(code)
    assert state.active or state is JobState.PREEMPTED
    assert state not in (JobState.FAILED, JobState.CANCELLED, JobState.UNKNOWN)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("CANCELLED by 1234", JobState.CANCELLED),  # sacct, real-schedulers.md Appendix A
        ("CANCELLED by 0", JobState.CANCELLED),
        ("CANCELLED+", JobState.CANCELLED),  # sacct's narrow column, Appendix A
        ("OUT_OF_ME+", JobState.UNKNOWN),  # truncated beyond recognition: never guessed
        ("", JobState.UNKNOWN),
        ("SOMETHING_NEW", JobState.UNKNOWN),
        ("XX", JobState.UNKNOWN),
    ],
)
def test_variants(raw, expected):
    assert map_state(raw) is expected


def test_normalize():
    assert normalize_state("CANCELLED by 1001") == "CANCELLED"
    assert normalize_state("pd") == "PENDING"
    assert normalize_state("CANCELLED+") == "CANCELLED"


@pytest.mark.parametrize(
    "reason, expected",
    [
        ("JobHeldUser", JobState.HELD),  # scontrol hold / sbatch --hold (Appendix A)
        ("JobHeldAdmin", JobState.HELD),
        ("JobHoldMaxRequeue", JobState.HELD),
        ("launch failed requeued held", JobState.HELD),
        ("DependencyNeverSatisfied", JobState.HELD),
        ("Resources", JobState.QUEUED),
        ("Priority", JobState.QUEUED),
        ("Dependency", JobState.QUEUED),
        ("BeginTime", JobState.QUEUED),
        ("PartitionTimeLimit", JobState.QUEUED),
        ("None", JobState.QUEUED),
        ("", JobState.QUEUED),
    ],
)
def test_pending_reasons(reason, expected):
    assert map_state("PENDING", reason) is expected
    assert map_state("PD", reason) is expected


def test_held_reason_only_matters_when_pending():
    # sacct keeps the last pending reason of a job that ran: "19|xb|COMPLETED|0:0|JobHeldUser"
    # (observed on the project's test cluster for a job submitted with --hold, then released)
    assert map_state("COMPLETED", "JobHeldUser") is JobState.COMPLETED
    assert map_state("RUNNING", "JobHeldUser") is JobState.RUNNING


# -- the offline contract (expyre.testing), from the recorded outputs in recorded/ -----------------
RECORDED = Path(__file__).parent / "recorded"


class TestSlurmOfflineContract(OfflineSchedulerContract):
    backend = SlurmScheduler
    # squeue -o %T prints the long forms of the 24 documented codes
    state_codes = {COMPACT_CODES[code]: state for code, state in EXPECTED.items()}
    job_id = "23"
    array_id = "1843"  # sbatch --parsable of an array prints the array's id
    array_size = 4
    golden_dir = Path(__file__).parent / "golden"
    golden_headers = {
        "header_debug_two_tasks.txt": (
            {"scheduler": "slurm", "host": None, "header": ["#SBATCH --ntasks={tot_ntasks}"],
             "partitions": {"debug": {"ncores": 4, "max_time": "1h"}}},
            {"max_time": "10m", "n": (2, "tasks")},
        ),
    }

    def status_output(self, job_id, code):
        # the recorded squeue output with job 23's line (PENDING|Resources) in this state
        result = load_recorded(RECORDED / "squeue_all.txt")
        return attrs.evolve(result, stdout=result.stdout.replace("23|PENDING|Resources", f"{job_id}|{code}|None"))

    def submit_output(self):
        return load_recorded(RECORDED / "sbatch_parsable.txt"), "8"

    def submit_failure_output(self):
        return load_recorded(RECORDED / "sbatch_bad_partition.txt")

    def array_status_output(self, element_ids):
        return load_recorded(RECORDED / "squeue_array.txt")

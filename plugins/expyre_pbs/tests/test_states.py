"""Every PBS state code of both families, and exit-status decoding (values: OpenPBS
src/include/job.h; Torque 6.1 Administrator Guide "Job exit status"; field-facts.md)."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from expyre.testing import OfflineSchedulerContract, load_recorded
from expyre.types import JobState
from expyre_pbs import PbsScheduler
from expyre_pbs.flavors import Flavor
from expyre_pbs.states import STATE_CODES, TERMINAL_CODES, decode_exit, status_from

ACTIVE = {
    "Q": JobState.QUEUED,
    "H": JobState.HELD,
    "W": JobState.QUEUED,
    "T": JobState.QUEUED,
    "M": JobState.QUEUED,
    "R": JobState.RUNNING,
    "B": JobState.RUNNING,
    "E": JobState.RUNNING,
    "S": JobState.SUSPENDED,
    "U": JobState.SUSPENDED,
}


def test_tables_cover_every_code_of_both_families():
    assert set(STATE_CODES) | set(TERMINAL_CODES) == set("QHWTMRBESUXFC")


@pytest.mark.parametrize("flavor", list(Flavor))
@pytest.mark.parametrize("code,state", sorted(ACTIVE.items()))
def test_active_codes(code, state, flavor):
    st = status_from(code, None, flavor)
    assert st.state is state
    assert st.state.active
    assert st.raw == code


@pytest.mark.parametrize("flavor", list(Flavor))
@pytest.mark.parametrize("code", ["X", "F", "C"])
def test_terminal_codes_decode_the_exit_status(code, flavor):
    assert status_from(code, 0, flavor).state is JobState.COMPLETED
    failed = status_from(code, 3, flavor)
    assert failed.state is JobState.FAILED and failed.exit_code == 3 and "exited 3" in failed.reason
    killed = status_from(code, 265, flavor)
    assert killed.state is JobState.CANCELLED and "SIGKILL" in killed.reason


@pytest.mark.parametrize("flavor", list(Flavor))
@pytest.mark.parametrize("code", ["X", "F", "C"])
def test_terminal_without_exit_status_is_terminal_and_says_so(code, flavor):
    st = status_from(code, None, flavor, comment="Job deleted by user alice")
    assert st.state.terminal
    assert "exit status not reported" in st.reason and "Job deleted by user alice" in st.reason
    assert st.exit_code is None


@pytest.mark.parametrize("flavor", list(Flavor))
@pytest.mark.parametrize("code", ["K", "Z", "", "qw", "RUNNING"])
def test_unknown_codes_map_to_unknown(code, flavor):
    st = status_from(code, None, flavor)
    assert st.state is JobState.UNKNOWN
    assert not st.state.terminal and not st.state.active


@pytest.mark.parametrize(
    "code,state,words",
    [
        (-29, JobState.TIMEOUT, "walltime"),
        (-27, JobState.OUT_OF_MEMORY, "JOB_EXEC_KILL_MEM"),
        (-26, JobState.OUT_OF_MEMORY, "vmem"),
        (-28, JobState.TIMEOUT, "cput"),
        (-25, JobState.FAILED, "NCPUS_SUM"),
        (-11, JobState.PREEMPTED, "JOB_EXEC_RERUN"),
        (-3, JobState.NODE_FAIL, "JOB_EXEC_RETRY"),
        (-19, JobState.CANCELLED, "HOOK_DELETE"),
        (-99, JobState.FAILED, "pbspro internal exit status -99"),
    ],
)
def test_pbspro_negative_exit_statuses(code, state, words):
    got, reason = decode_exit(code, Flavor.PBSPRO)
    assert got is state and words in reason


@pytest.mark.parametrize(
    "code,state,words",
    [
        (-11, JobState.TIMEOUT, "JOB_EXEC_OVERLIMIT_WT"),
        (-10, JobState.OUT_OF_MEMORY, "memory"),
        (-12, JobState.TIMEOUT, "cpu time"),
        (-1, JobState.NODE_FAIL, "JOB_EXEC_FAIL1"),
        (-8, JobState.FAILED, "CMDFAIL"),
        (-29, JobState.FAILED, "torque internal exit status -29"),
    ],
)
def test_torque_negative_exit_statuses(code, state, words):
    got, reason = decode_exit(code, Flavor.TORQUE)
    assert got is state and words in reason


@pytest.mark.parametrize("flavor", list(Flavor))
def test_signals_are_256_plus_n(flavor):
    assert decode_exit(271, flavor)[0] is JobState.CANCELLED  # 256 + SIGTERM
    assert "SIGTERM" in decode_exit(271, flavor)[1]
    segv = decode_exit(256 + 11, flavor)
    assert segv[0] is JobState.FAILED and "SIGSEGV" in segv[1]
    # 128 + N is the script's own status: a command it ran was killed
    script = decode_exit(137, flavor)
    assert script[0] is JobState.FAILED and "128+9" in script[1] and "SIGKILL" in script[1]


def test_describe_quotes_code_reason_and_exit():
    st = status_from("F", -29, Flavor.PBSPRO, comment="Job run at Mon Mar 04 at 10:05 on (node012:ncpus=1) and finished")
    text = st.describe()
    assert text.startswith("timeout (F) - killed at its walltime limit (JOB_EXEC_KILL_WALLTIME)")
    assert "[exit -29]" in text


# -- the offline contract (expyre.testing), from the recorded outputs in fixtures/ -----------------
FIXTURES = Path(__file__).parent / "fixtures"
# the terminal codes with no exit status in the record (the first job of each recorded output has none)
_TERMINAL_UNREPORTED = {"X": JobState.COMPLETED, "F": JobState.COMPLETED, "C": JobState.COMPLETED}


class TestTorqueOfflineContract(OfflineSchedulerContract):
    backend = PbsScheduler
    scheduler_options = {"flavor": "torque"}
    state_codes = {**ACTIVE, **_TERMINAL_UNREPORTED}
    job_id = "5201.torque01.cluster.org"
    array_id = "1098[].torque01.cluster.org"  # qsub -t 0-2 (fixtures/torque/qstat_ft_array.txt)
    array_size = 3
    golden_dir = Path(__file__).parent / "golden"
    golden_headers = {
        "contract_torque_header.txt": (
            {"scheduler": "pbs", "scheduler_options": {"flavor": "torque"}, "host": None,
             "header": ["#PBS -l nodes={nnodes}:ppn={ncores_per_node}"],
             "partitions": {"batch": {"ncores": 4, "max_time": "1h"}}},
            {"max_time": "10m", "n": (2, "tasks")},
        ),
    }

    def status_output(self, job_id, code):
        # fixtures/torque/qstat_f_all_states.txt, its first job (5201, Q) in this state
        result = load_recorded(FIXTURES / "torque" / "qstat_f_all_states.txt")
        stdout = result.stdout.replace("Job Id: 5201.torque01.cluster.org", f"Job Id: {job_id}", 1)
        stdout = stdout.replace("    job_state = Q\n", f"    job_state = {code}\n", 1)
        return attrs.evolve(result, stdout=stdout)

    def submit_output(self):
        return load_recorded(FIXTURES / "torque" / "qsub_ok.txt"), "5201.torque01.cluster.org"

    def submit_failure_output(self):
        return load_recorded(FIXTURES / "torque" / "qsub_refused.txt")

    def array_status_output(self, element_ids):
        return load_recorded(FIXTURES / "torque" / "qstat_ft_array.txt")


class TestPbsproOfflineContract(OfflineSchedulerContract):
    backend = PbsScheduler
    scheduler_options = {"flavor": "pbspro"}
    state_codes = {**ACTIVE, **_TERMINAL_UNREPORTED}
    job_id = "4101.pbs01"
    array_id = "4500[].pbs01"  # fixtures/pbspro/qstat_ft_json_array.txt
    array_size = 4
    golden_dir = Path(__file__).parent / "golden"
    golden_headers = {
        "contract_pbspro_header.txt": (
            {"scheduler": "pbs", "scheduler_options": {"flavor": "pbspro"}, "host": None,
             "header": ["#PBS -l select={nnodes}:ncpus={ncores_per_node}"],
             "partitions": {"workq": {"ncores": 4, "max_time": "1h"}}},
            {"max_time": "10m", "n": (2, "tasks")},
        ),
    }

    def status_output(self, job_id, code):
        # fixtures/pbspro/qstat_f_json_states.txt, its first job (4101, Q) in this state
        result = load_recorded(FIXTURES / "pbspro" / "qstat_f_json_states.txt")
        stdout = result.stdout.replace('"4101.pbs01":{', f'"{job_id}":{{', 1)
        stdout = stdout.replace('"job_state":"Q",', f'"job_state":"{code}",', 1)
        return attrs.evolve(result, stdout=stdout)

    def submit_output(self):
        return load_recorded(FIXTURES / "pbspro" / "qsub_ok.txt"), "4101.pbs01"

    def submit_failure_output(self):
        return load_recorded(FIXTURES / "pbspro" / "qsub_refused.txt")

    def array_status_output(self, element_ids):
        return load_recorded(FIXTURES / "pbspro" / "qstat_ft_json_array.txt")

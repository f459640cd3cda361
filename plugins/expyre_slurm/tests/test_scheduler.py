"""The backend's verbs and composed operations, with a transport that replays recorded output.

Recorded outputs: [A] real-schedulers.md Appendix A; [R] the project's test cluster (Slurm
22.05.8), with the command lines expyre_slurm runs.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Callable, Sequence

import pytest
from expyre import plugins
from expyre.config_model import converter, iter_problems
from expyre.hookspecs import JobState, Transport
from expyre.types import (
    CommandResult,
    JobRequest,
    NodeAllocation,
    SchedulerCommandError,
    SchedulerContext,
    SubmitError,
)
from expyre.units import Duration
from expyre_slurm import SlurmOptions, SlurmScheduler
from expyre_slurm.environment import JOB_ENV_PREFIXES


class Replay(Transport):
    """Answers each command with ``responder(argv) -> (rc, stdout, stderr)`` and records it."""

    is_local = True

    def __init__(self, responder: Callable[[list[str]], tuple[int, str, str]]):
        super().__init__(None)
        self.responder = responder
        self.calls: list[tuple[list[str], dict]] = []

    def run(self, command, *, cwd=None, input=None, timeout=None, unset_env_prefixes=()):
        argv = list(command) if not isinstance(command, str) else ["bash", "-c", command]
        self.calls.append((argv, {"cwd": cwd, "unset_env_prefixes": tuple(unset_env_prefixes)}))
        rc, out, err = self.responder(argv)
        return CommandResult(command, rc, out, err)

    def put(self, local_dirs: Sequence[Path], remote_parent: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def get(self, remote_dirs: Sequence[str], local_parent: Path) -> None:  # pragma: no cover
        raise NotImplementedError


def _sched(**options) -> SlurmScheduler:
    opts = converter.structure(options, SlurmOptions)
    return SlurmScheduler(SchedulerContext(system_name="cluster", rundir="/scratch", options=opts))


JOB = JobRequest(
    id="fit_ab12cd34", remote_dir="/scratch/run_fit_ab12cd34", script="_expyre_script.sh",
    stdout="_expyre_job.out", stderr="_expyre_job.err", partition="debug", max_time=Duration(600),
    nodes=NodeAllocation(nnodes=1, ncores_per_node=1, tot_ncores=1, tot_ntasks=1, ncores_per_task=1, ntasks_per_node=1),
    system_name="cluster",
)


def _res(rc: int, out: str = "", err: str = "", argv=("x",)) -> CommandResult:
    return CommandResult(list(argv), rc, out, err)


# -- registration ------------------------------------------------------------------------------

def test_entry_point_and_registration():
    eps = [ep for ep in importlib.metadata.entry_points(group="expyre") if ep.name == "slurm"]
    assert [ep.value for ep in eps] == ["expyre_slurm"]
    spec = plugins.get_scheduler_spec("slurm")
    assert spec.backend is SlurmScheduler
    assert SlurmScheduler.name == "slurm" and SlurmScheduler.foreign_env_prefixes == JOB_ENV_PREFIXES


def test_options_from_config():
    s = _sched(user="alice", accounting="jobcomp", vanish_grace=5, find_days=2)
    assert s.options.user == "alice" and s.accounting_mode == "jobcomp" and s.vanish_grace == 5
    assert _sched().vanish_grace == SlurmScheduler.vanish_grace == 30.0

def _problems(options: dict) -> list[tuple[str, str]]:
    try:
        converter.structure(options, SlurmOptions)
    except Exception as exc:  # noqa: BLE001
        return list(iter_problems(exc, ("scheduler_options",)))
    return []


def test_bad_options_name_the_key():
    # what config loading reports (expyre.config._check_backends uses the same walker)
    assert _problems({"accounting": "sometimes"}) == [
        ("scheduler_options.accounting", "invalid accounting 'sometimes': use one of auto, slurmdbd, jobcomp, none")]
    assert _problems({"acounting": "none"}) == [
        ("scheduler_options", "unknown key 'acounting' (did you mean 'accounting'?)")]
    assert _problems({"vanish_grace": -1}) == [
        ("scheduler_options.vanish_grace", "invalid number of seconds -1: use a number >= 0")]
    assert _problems({"find_days": -1})[0][0] == "scheduler_options"  # attrs validator: names the field
    assert _problems({"user": "bob", "accounting": "none", "vanish_grace": 2.5, "find_days": 1}) == []


# -- submit ------------------------------------------------------------------------------------

def test_submit_command_and_environment():
    s = _sched()
    assert s.submit_command(JOB) == ["sbatch", "--parsable", "_expyre_script.sh"]
    t = Replay(lambda argv: (0, "8\n", ""))  # [A] sbatch --parsable
    assert s.submit(t, JOB) == "8"
    (argv, kw), = t.calls
    assert kw == {"cwd": "/scratch/run_fit_ab12cd34", "unset_env_prefixes": JOB_ENV_PREFIXES}


def test_only_sbatch_has_variables_removed():
    # squeue, sacct, scancel and scontrol read no variable of a job's environment, and they must
    # ask the controller and cluster that sbatch used (SLURM_CONF, SLURM_CLUSTERS): they run with
    # the environment as it is
    s = _sched(accounting="slurmdbd")
    t = Replay(lambda argv: (0, "8\n" if argv[0] == "sbatch" else "", ""))
    assert s.submit(t, JOB) == "8"
    s.status(t, ["8"])
    s.accounting(t, ["8"])
    s.find(t, ["fit_ab12cd34"])
    s.control(t, "cancel", ["8"])
    s.control(t, "hold", ["8"])
    tools = [(argv[0], kw["unset_env_prefixes"]) for argv, kw in t.calls]
    assert tools == [("sbatch", JOB_ENV_PREFIXES), ("squeue", ()), ("sacct", ()), ("squeue", ()), ("sacct", ()),
                     ("scancel", ()), ("scontrol", ())]


def test_submit_multi_cluster_id():
    assert _sched().parse_submit(_res(0, "1234;other\n"), JOB) == "1234"


def test_submit_refused_quotes_sbatch():
    # [A] sbatch -p debug -t 20 --wrap true
    err = "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)\n"
    with pytest.raises(SubmitError, match="Requested time limit is invalid") as info:
        _sched().parse_submit(_res(1, "", err), JOB)
    assert "fit_ab12cd34" in str(info.value)


@pytest.mark.parametrize("rc, out, err", [
    (1, "", "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n"),
    (0, "", ""),
    (0, "Submitted batch job 7\n", ""),
])
def test_submit_ambiguous_is_not_a_refusal(rc, out, err):
    # the core then looks the job up by name before trying again (SubmitError is final)
    with pytest.raises(SchedulerCommandError) as info:
        _sched().parse_submit(_res(rc, out, err), JOB)
    assert not isinstance(info.value, SubmitError)


# -- status ------------------------------------------------------------------------------------

def test_status_is_one_query_for_all_ids_of_this_user():
    s = _sched()
    ids = [str(i) for i in range(100, 150)]
    cmd = s.status_command(ids)
    assert cmd == ["squeue", "--me", "-t", "all", "-h", "-o", "%i|%T|%r"]
    assert "-j" not in cmd  # a purged single id would make squeue -j exit 1
    assert _sched(user="alice").status_command(ids)[:3] == ["squeue", "-u", "alice"]


def test_status_parse_and_failure():
    s = _sched()
    # [R] squeue --me -t all -h -o '%i|%T|%r'
    out = "20|CANCELLED|None\n9|COMPLETED|None\n23|PENDING|Resources\n24|PENDING|JobHeldUser\n21|TIMEOUT|TimeLimit\n"
    t = Replay(lambda argv: (0, out, ""))
    st = s.status(t, ["20", "21", "23", "24", "30"])
    assert {k: v.state for k, v in st.items()} == {
        "20": JobState.CANCELLED, "21": JobState.TIMEOUT, "23": JobState.QUEUED, "24": JobState.HELD,
    }
    assert len(t.calls) == 1
    with pytest.raises(SchedulerCommandError, match="Unable to contact slurm controller"):
        s.parse_status(_res(1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"), ["1"])


# -- accounting --------------------------------------------------------------------------------

def test_accounting_command():
    s = _sched()
    assert s.accounting_command(["18", "19"]) == [
        "sacct", "-X", "-P", "-n", "-o", "JobID,State,ExitCode,Reason", "-j", "18,19"]
    assert _sched(accounting="jobcomp").accounting_command(["18"])[:2] == ["sacct", "-c"]
    assert _sched(accounting="none").accounting_command(["18"]) is None


def test_accounting_with_slurmdbd():
    # [R] sacct -X -P -n -o JobID,State,ExitCode,Reason -j 21,22
    t = Replay(lambda argv: (0, "21|TIMEOUT|0:0|None\n22|RUNNING|0:0|None\n", ""))
    st = _sched().accounting(t, ["21"])
    assert st["21"].state is JobState.TIMEOUT and st["21"].exit_code == 0
    assert len(t.calls) == 1


def test_accounting_falls_back_to_jobcomp_then_sticks():
    def responder(argv):
        if "-c" in argv:  # [R] sacct -c -X -P -n -o JobID,State,ExitCode,Reason -j 18,19,20
            return 0, "18|COMPLETED|0:0|\n19|FAILED|3:0|\n20|CANCELLED|0:0|\n", ""
        return 1, "", "Slurm accounting storage is disabled\n"  # real-schedulers.md 3.2

    s = _sched()
    t = Replay(responder)
    st = s.accounting(t, ["19", "20"])
    assert st["19"].state is JobState.FAILED and st["19"].exit_code == 3
    assert st["20"].state is JobState.CANCELLED
    assert s.accounting_mode == "jobcomp"
    assert [("-c" in argv) for argv, _ in t.calls] == [False, True]
    s.accounting(t, ["18"])  # the next time: straight to sacct -c
    assert [("-c" in argv) for argv, _ in t.calls] == [False, True, True]


def test_accounting_nothing_available():
    def responder(argv):
        if "-c" in argv:  # [R]-style: sacct -c without a readable jobcomp file (real-schedulers.md 3.6)
            return 1, "", "sacct: fatal: open /var/log/slurm/jobcomp.log: Permission denied\n"
        return 1, "", "Slurm accounting storage is disabled\n"

    s = _sched()
    t = Replay(responder)
    assert s.accounting(t, ["5"]) == {}
    assert s.accounting_mode == "none"
    assert s.accounting(t, ["5"]) == {} and len(t.calls) == 2  # no more sacct calls


def test_accounting_transient_error_raises():
    # slurmdbd down (snakemake-executor-plugin-slurm#114): the core keeps relying on result files
    t = Replay(lambda argv: (1, "", "sacct: error: Problem talking to the database: Connection refused\n"))
    s = _sched()
    with pytest.raises(SchedulerCommandError, match="Connection refused"):
        s.accounting(t, ["5"])
    assert s.accounting_mode == "slurmdbd"


# -- find --------------------------------------------------------------------------------------

def test_find_in_squeue_then_sacct():
    def responder(argv):
        if argv[0] == "squeue":  # [R] squeue --me -t all -h -o '%i|%j' --name=...
            return 0, "18|cap_done\n", ""
        return 0, "19|cap_fail\n", ""  # [R] sacct -X -P -n -S now-7days -o JobID,JobName --name=...

    s = _sched()
    t = Replay(responder)
    assert s.find(t, ["cap_done", "cap_fail", "cap_never"]) == {"cap_done": "18", "cap_fail": "19"}
    (q, _), (a, _) = t.calls
    assert q == ["squeue", "--me", "-t", "all", "-h", "-o", "%i|%j", "--name=cap_done,cap_fail,cap_never"]
    assert a == ["sacct", "-X", "-P", "-n", "-S", "now-7days", "-o", "JobID,JobName", "--name=cap_fail,cap_never"]


def test_find_all_in_squeue_needs_no_sacct():
    t = Replay(lambda argv: (0, "18|cap_done\n", ""))
    assert _sched().find(t, ["cap_done"]) == {"cap_done": "18"}
    assert len(t.calls) == 1


def test_find_without_accounting():
    def responder(argv):
        return (0, "", "") if argv[0] == "squeue" else (1, "", "Slurm accounting storage is disabled\n")

    s = _sched()
    assert s.find(Replay(responder), ["x"]) == {}
    assert s.accounting_mode == "jobcomp"


def test_find_failure_raises():
    t = Replay(lambda argv: (1, "", "slurm_load_jobs error: Socket timed out on send/recv operation\n"))
    with pytest.raises(SchedulerCommandError):
        _sched().find(t, ["x"])


# -- cancel / hold / release -------------------------------------------------------------------

def test_control_commands():
    s = _sched()
    assert s.control_command("cancel", ["12", "13"]) == ["scancel", "12", "13"]
    assert s.control_command("hold", ["12", "13"]) == ["scontrol", "hold", "12,13"]
    assert s.control_command("release", ["12"]) == ["scontrol", "release", "12"]
    with pytest.raises(ValueError):
        s.control_command("pause", ["12"])  # type: ignore[arg-type]


@pytest.mark.parametrize("op, rc, err", [
    ("cancel", 0, ""),  # [R] scancel 18 999999: finished and unknown ids, silent, exit 0
    # [R] scontrol hold 18 (finished)
    ("hold", 1, "Job has already finished for job 18\nslurm_suspend error: Job has already finished\n"),
    # [R] scontrol release 18,24 (18 finished, 24 released): the summary line reads "No error"
    ("release", 1, "Job has already finished for job 18\nslurm_suspend error: No error\n"),
    # [R] scontrol hold 999999
    ("hold", 1, "Invalid job id specified for job 999999\nslurm_suspend error: Invalid job id specified\n"),
])
def test_control_moot_is_fine(op, rc, err):
    _sched().check_control(op, _res(rc, "", err), ["18"])


@pytest.mark.parametrize("op, err", [
    ("hold", "Access/permission denied for job 12\nslurm_suspend error: Access/permission denied\n"),
    ("cancel", "scancel: error: Kill job error on job id 12: Access/permission denied\n"),
    ("release", "slurm_suspend error: Unable to contact slurm controller (connect failure)\n"),
    ("cancel", ""),
])
def test_control_failure_raises(op, err):
    with pytest.raises(SchedulerCommandError):
        _sched().check_control(op, _res(1, "", err), ["12"])


def test_status_queries_are_spaced(monkeypatch):
    import expyre_slurm.scheduler as mod

    clock = [100.0]
    monkeypatch.setattr(mod.time, "monotonic", lambda: clock[0])
    t = Replay(lambda argv: (0, "5|RUNNING|None\n6|PENDING|Priority\n", ""))
    s = _sched(min_status_interval=2)
    assert s.status(t, ["5", "6"])["5"].state is JobState.RUNNING
    clock[0] += 1.0
    assert set(s.status(t, ["5"])) == {"5"}  # answered from the previous query
    assert len(t.calls) == 1
    s.status(t, ["5", "7"])  # 7 was not covered by it: query again
    assert len(t.calls) == 2
    clock[0] += 2.5
    s.status(t, ["5"])
    assert len(t.calls) == 3
    assert _sched(min_status_interval=0).options.min_status_interval == 0


# -- describing and checking a system (xpr config check) ------------------------------------------

def test_probe_and_partition_listing():
    s = _sched()
    assert s.probe_command() == "command -v squeue"
    assert s.partitions_command() == ["sinfo", "-h", "-o", "%P"]
    assert s.parse_partitions(_res(0, "debug*\nlong\n\n")) == {"debug", "long"}
    t = Replay(lambda argv: (0, "/usr/bin/squeue\n", "") if argv[0] == "bash" else (0, "debug*\ngpu\n", ""))
    assert s.probe(t) == "/usr/bin/squeue"
    assert s.list_partitions(t) == {"debug", "gpu"}
    missing = Replay(lambda argv: (1, "", ""))
    with pytest.raises(SchedulerCommandError, match="command -v squeue"):
        s.probe(missing)
    with pytest.raises(SchedulerCommandError, match="listing partitions failed"):
        s.list_partitions(missing)
    # what Slurm does not offer keeps the contract's "not available"
    assert SlurmScheduler.default_partitions() is None
    assert s.explain_command(["12"]) is None and s.explain_queued(t, ["12"]) == {}

"""The SGE backend's verbs with a recording fake transport: command lines, parsing of recorded
outputs (sources as in test_parse.py), error classes, setup checks, and the env hygiene of submit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from cattrs import ClassValidationError

from expyre import plugins
from expyre.config_model import converter, iter_problems
from expyre.hookspecs import Transport
from expyre.types import CommandResult, JobState, SchedulerCommandError, SchedulerContext, SubmitError
from expyre_sge import SgeOptions, SgeScheduler, SgeSetupError
from expyre_sge.scheduler import FOREIGN_ENV_NAMES
from sge_testlib import request

DATA = Path(__file__).parent / "data"


class FakeTransport(Transport):
    """Answers each command with ``respond(command)``; records every call."""

    is_local = True

    def __init__(self, respond: Callable[[object], CommandResult]) -> None:
        super().__init__(None)
        self.respond = respond
        self.calls: list[tuple[object, dict]] = []

    def run(self, command, **kw):
        self.calls.append((command, kw))
        return self.respond(command)

    def put(self, local_dirs, remote_parent):  # pragma: no cover - unused
        raise NotImplementedError

    def get(self, remote_dirs, local_parent):  # pragma: no cover - unused
        raise NotImplementedError


def sched(options: SgeOptions | None = None, host: str | None = None) -> SgeScheduler:
    return SgeScheduler(SchedulerContext(system_name="cluster", rundir="/tmp/x", host=host, options=options))


def res(argv, rc=0, out="", err="") -> CommandResult:
    return CommandResult(argv, rc, out, err)


def test_registered_as_sge() -> None:
    assert plugins.get_scheduler_spec("sge").backend is SgeScheduler


def test_options_structured_by_core_converter() -> None:
    opts = converter.structure({"bin_dir": "/usr/bin", "user": "alice", "vanish_grace": 3}, SgeOptions)
    s = sched(opts)
    assert s.vanish_grace == 3.0
    assert s.status_command(["1"]) == ["/usr/bin/qstat", "-xml", "-u", "alice"]
    with pytest.raises(ClassValidationError) as info:
        converter.structure({"bindir": "/usr/bin"}, SgeOptions)
    assert list(iter_problems(info.value)) == [("", "unknown key 'bindir' (did you mean 'bin_dir'?)")]


# -- setup -----------------------------------------------------------------------------------------


def test_setup_finds_user_and_checks_qstat() -> None:
    s = sched()
    t = FakeTransport(lambda c: res(c, 0, "xprtest\nSGE 8.1.9\n"))
    s.setup(t)
    assert s.user == "xprtest"
    assert t.calls[0][0] == "id -un; qstat -help 2>&1 | head -n 1"
    assert s.status_command(["3"]) == ["qstat", "-xml", "-u", "xprtest"]


def test_setup_rejects_torque_wrappers() -> None:
    # /opt/slurm-torque/bin/qstat -help prints "Usage:" (recorded on this machine)
    t = FakeTransport(lambda c: res(c, 0, "xprpbs\nUsage:\n"))
    with pytest.raises(SgeSetupError, match="not Grid Engine's.*bin_dir"):
        sched().setup(t)


def test_setup_command_not_found() -> None:
    t = FakeTransport(lambda c: res(c, 0, "alice\nbash: line 1: /opt/sge/bin/qstat: No such file or directory\n"))
    with pytest.raises(SgeSetupError, match="was not found"):
        sched(SgeOptions(bin_dir="/opt/sge/bin")).setup(t)


def test_setup_with_bin_dir_quotes_path() -> None:
    s = sched(SgeOptions(bin_dir="/opt/my sge/bin"))
    assert s.setup_command() == "id -un; '/opt/my sge/bin/qstat' -help 2>&1 | head -n 1"


def test_user_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "localme")
    assert sched().user == "localme"
    assert sched(host="bob@cluster").user == "bob"
    assert sched(SgeOptions(user="carol"), host="bob@cluster").user == "carol"


# -- submit ----------------------------------------------------------------------------------------


def test_submit_command_unsets_enclosing_job_variables() -> None:
    argv = sched().submit_command(request())
    assert argv[0] == "env"
    assert argv[-3:] == ["qsub", "-terse", "_expyre_script.sh"]
    unset = {argv[i + 1] for i, a in enumerate(argv[:-3]) if a == "-u"}
    assert unset == set(FOREIGN_ENV_NAMES)
    assert {"JOB_ID", "NSLOTS", "PE", "PE_HOSTFILE", "QUEUE", "ENVIRONMENT", "REQUEST", "NHOSTS"} <= unset


def test_foreign_prefixes_keep_cluster_location() -> None:
    prefixes = SgeScheduler.foreign_env_prefixes
    job_vars = ["SGE_O_WORKDIR", "SGE_O_HOST", "SGE_TASK_ID", "SGE_TASK_FIRST", "SGE_STDOUT_PATH", "SGE_STDERR_PATH",
                "SGE_STDIN_PATH", "SGE_CWD_PATH", "SGE_JOB_SPOOL_DIR", "SGE_CKPT_DIR", "SGE_BINARY_PATH", "SGE_ACCOUNT"]
    # the variables a real SGE 8.1.9 job had (real-schedulers.md 5.3 and data/record.sh's probe)
    for v in job_vars:
        assert v.startswith(prefixes), v
    for v in ["SGE_ROOT", "SGE_CELL", "SGE_ARCH", "SGE_QMASTER_PORT", "SGE_EXECD_PORT", "SGE_CLUSTER_NAME", "SGE_LONG_QNAMES"]:
        assert not v.startswith(prefixes), v


def test_submit_uses_prefixes_and_cwd() -> None:
    s = sched()
    t = FakeTransport(lambda c: res(c, 0, "22\n"))
    assert s.submit(t, request()) == "22"
    (argv, kw), = t.calls
    assert kw["cwd"] == request().remote_dir
    assert kw["unset_env_prefixes"] == SgeScheduler.foreign_env_prefixes


def test_parse_submit_warning_on_stderr() -> None:
    # recorded: a script with two -pe lines
    r = res(["qsub"], 0, "16\n", 'warning: "-pe" option has already been set, overriding previous setting\n')
    assert sched().parse_submit(r, request()) == "16"


def test_parse_submit_refused_is_submit_error() -> None:
    r = res(["qsub"], 1, "", 'Unable to run job: Job was rejected because job requests unknown queue "nosuch.q".\nExiting.\n')
    with pytest.raises(SubmitError, match="unknown queue"):
        sched().parse_submit(r, request())


@pytest.mark.parametrize(
    "r",
    [
        res(["qsub"], 0, "", ""),  # exit 0 but no id: maybe submitted
        res(["qsub"], 1, "", "Unable to run job: failed receiving gdi request response for mid=1 (got syncron message receive timeout error).\nExiting.\n"),
    ],
)
def test_parse_submit_ambiguous_is_not_submit_error(r: CommandResult) -> None:
    with pytest.raises(SchedulerCommandError) as info:
        sched().parse_submit(r, request())
    assert not isinstance(info.value, SubmitError)


# -- find ------------------------------------------------------------------------------------------


def test_find_by_name_includes_finished() -> None:
    s = sched(SgeOptions(user="root"))
    assert s.find_command(["x"]) == ["qstat", "-xml", "-u", "root", "-s", "prsz"]
    r = res(s.find_command(["x"]), 0, (DATA / "qstat_xml_find.xml").read_text())
    found = s.parse_find(r, ["rec_held", "rec_ok", "rec_error", "not_there"])
    assert set(found) == {"rec_held", "rec_ok", "rec_error"}
    assert found["rec_held"] == "26" and found["rec_error"] == "28"


def test_find_falls_back_to_qacct_for_names_qstat_no_longer_lists() -> None:
    """A job that finished and rolled out of ``qstat -s z`` (the cluster's last 100) is found in
    the accounting records, so an interrupted submission is never repeated."""
    s = sched(SgeOptions(user="root"))

    def respond(cmd):
        if cmd[0] == "qstat":
            return res(cmd, 0, (DATA / "qstat_xml_find.xml").read_text())
        if cmd[-1] == "rec_ok_rolled":
            return res(cmd, 0, (DATA / "qacct_ok.txt").read_text().replace("rec_ok ", "rec_ok_rolled "))
        return res(cmd, 1, "", (DATA / "qacct_unknown.txt").read_text().replace("job id 9999999", f"job name {cmd[-1]}"))

    t = FakeTransport(respond)
    assert s.find(t, ["rec_held", "rec_ok_rolled", "never_submitted"]) == {"rec_held": "26", "rec_ok_rolled": "18"}
    assert [c for c, _ in t.calls][1:] == [["qacct", "-o", "root", "-d", "7", "-j", "rec_ok_rolled"],
                                           ["qacct", "-o", "root", "-d", "7", "-j", "never_submitted"]]


def test_find_qacct_failure_raises() -> None:
    t = FakeTransport(lambda cmd: res(cmd, 0, "<job_info></job_info>") if cmd[0] == "qstat"
                      else res(cmd, 1, "", "error: can't open accounting file"))
    with pytest.raises(SchedulerCommandError, match="qacct could not look up job x"):
        sched(SgeOptions(user="root")).find(t, ["x"])


def test_find_failure_raises() -> None:
    with pytest.raises(SchedulerCommandError):
        sched().parse_find(res(["qstat"], 1, "", "error: commlib error"), ["x"])


# -- status ----------------------------------------------------------------------------------------


def test_status_one_query_filters_ids() -> None:
    s = sched(SgeOptions(user="root"))
    xml = (DATA / "qstat_xml_states.xml").read_text()
    r = res(s.status_command(["22", "23"]), 0, xml)
    got = s.parse_status(r, ["22", "23", "24", "25", "26", "27", "29", "999"])
    assert {k: v.state for k, v in got.items()} == {
        "22": JobState.CANCELLED,  # dr
        "23": JobState.RUNNING,  # hr
        "24": JobState.SUSPENDED,  # s
        "25": JobState.QUEUED,  # qw
        "26": JobState.HELD,  # hqw
        "27": JobState.HELD,  # hqw array
        "29": JobState.RUNNING,  # t
    }
    assert "999" not in got  # vanished: left out for the core to reconcile


def test_status_appendix_a() -> None:
    s = sched(SgeOptions(user="xprtest"))
    r = res(s.status_command(["23"]), 0, (DATA / "qstat_xml_appendix_a.xml").read_text())
    got = s.parse_status(r, ["23", "24", "25"])
    assert [got[i].state for i in ("23", "24", "25")] == [JobState.RUNNING, JobState.HELD, JobState.QUEUED]


def test_status_array_tasks_merge() -> None:
    # an array job with task 1 running and tasks 2-3 pending is listed twice
    xml = (
        "<job_info><queue_info><job_list state='running'><JB_job_number>7</JB_job_number><JB_name>a</JB_name>"
        "<state>r</state><tasks>1</tasks></job_list></queue_info><job_info><job_list state='pending'>"
        "<JB_job_number>7</JB_job_number><JB_name>a</JB_name><state>qw</state><tasks>2-3:1</tasks></job_list></job_info></job_info>"
    )
    got = sched().parse_status(res(["qstat"], 0, xml), ["7"])
    assert got["7"].state is JobState.RUNNING


def test_status_unknown_code_does_not_raise() -> None:
    xml = "<job_info><queue_info><job_list><JB_job_number>8</JB_job_number><state>Pq</state></job_list></queue_info></job_info>"
    got = sched().parse_status(res(["qstat"], 0, xml), ["8"])
    assert got["8"].state is JobState.UNKNOWN and got["8"].raw == "Pq"


@pytest.mark.parametrize(
    "r",
    [
        res(["qstat"], 1, "", 'error: commlib error: got select error (Connection refused)\nerror: unable to send message to qmaster using port 6444 on host "vm": got send error\n'),
        res(["qstat"], 0, "", ""),
        res(["qstat"], 0, "<job_info><queue_info>", ""),
    ],
)
def test_status_failure_raises(r: CommandResult) -> None:
    with pytest.raises(SchedulerCommandError):
        sched().parse_status(r, ["1"])


def test_error_state_reason_from_qstat_j_once() -> None:
    s = sched(SgeOptions(user="root"))
    xml = (DATA / "qstat_xml_states.xml").read_text()
    qstat_j = (DATA / "qstat_j_error.txt").read_text()

    def respond(c):
        return res(c, 0, qstat_j if c[:2] == ["qstat", "-j"] else xml)

    t = FakeTransport(respond)
    got = s.status(t, ["28", "26"])
    assert got["28"].state is JobState.NODE_FAIL
    assert "can't open output file \"/nonexistent_dir/x.err\"" in got["28"].reason
    assert [c for c, _ in t.calls] == [["qstat", "-xml", "-u", "root"], ["qstat", "-j", "28"]]
    # next poll: no second qstat -j, and the reason stays (also for a parse without transport)
    again = s.status(t, ["28", "26"])
    assert len(t.calls) == 3 and "can't open output file" in again["28"].reason
    assert "can't open output file" in s.parse_status(res(["qstat"], 0, xml), ["28"])["28"].reason
    assert got["28"].describe().startswith("node_fail (Eqw) - error")


def test_error_reason_failure_keeps_state() -> None:
    xml = (DATA / "qstat_xml_states.xml").read_text()
    t = FakeTransport(lambda c: res(c, 0, xml) if c[1] == "-xml" else res(c, 1, "", "error"))
    got = sched(SgeOptions(user="root")).status(t, ["28"])
    assert got["28"].state is JobState.NODE_FAIL


# -- accounting ------------------------------------------------------------------------------------


def test_accounting_one_qacct_per_job() -> None:
    files = {"40": "qacct_h_rt.txt", "41": "qacct_qdel.txt"}
    texts = {}
    for jid, f in files.items():
        text = (DATA / f).read_text()
        old = [line for line in text.splitlines() if line.startswith("jobnumber")][0]
        texts[jid] = text.replace(old, f"jobnumber    {jid}")
    t = FakeTransport(lambda c: res(c, 0, texts[c[2]]) if c[2] in texts else res(c, 1, "error: job id 42 not found\n"))
    got = sched().accounting(t, ["40", "41", "42"])
    assert [c for c, _ in t.calls] == [["qacct", "-j", "40"], ["qacct", "-j", "41"], ["qacct", "-j", "42"]]
    assert got["40"].state is JobState.TIMEOUT and "h_rt" in got["40"].reason
    assert got["41"].state is JobState.CANCELLED
    assert "42" not in got


def test_accounting_unknown_job_is_empty() -> None:
    r = res(["qacct", "-j", "9999999"], 1, "", (DATA / "qacct_unknown.txt").read_text())
    assert sched().parse_accounting(r, ["9999999"]) == {}


def test_accounting_other_error_raises() -> None:
    r = res(["qacct"], 1, "", "error: can't open accounting file /var/lib/gridengine/default/common/accounting\n")
    with pytest.raises(SchedulerCommandError):
        sched().parse_accounting(r, ["1"])


def test_accounting_command_one_id() -> None:
    assert sched(SgeOptions(bin_dir="/usr/bin")).accounting_command(["5"]) == ["/usr/bin/qacct", "-j", "5"]
    with pytest.raises(ValueError):
        sched().accounting_command(["5", "6"])


# -- control ---------------------------------------------------------------------------------------


def test_control_commands() -> None:
    s = sched()
    assert s.control_command("cancel", ["1", "2"]) == ["qdel", "1", "2"]
    assert s.control_command("hold", ["1"]) == ["qhold", "1"]
    assert s.control_command("release", ["1"]) == ["qrls", "1"]
    with pytest.raises(ValueError):
        s.control_command("suspend", ["1"])  # type: ignore[arg-type]


def test_cancel_of_finished_job_is_fine() -> None:
    # Appendix A: qdel <finished job> -> 'denied: job "24" does not exist', exit 1
    sched().check_control("cancel", res(["qdel", "24"], 1, 'denied: job "24" does not exist\n'), ["24"])
    sched().check_control("cancel", res(["qdel"], 0, (DATA / "qdel_mixed.txt").read_text()), ["23"])


def test_hold_of_missing_job_raises() -> None:
    with pytest.raises(SchedulerCommandError, match="does not exist"):
        sched().check_control("hold", res(["qhold", "99999"], 3, 'denied: job "99999" does not exist\n'), ["99999"])


def test_control_permission_error_raises() -> None:
    r = res(["qdel", "5"], 1, 'xprtest - you do not have the necessary privileges to delete the job "5"\n')
    with pytest.raises(SchedulerCommandError, match="privileges"):
        sched().check_control("cancel", r, ["5"])


def test_control_silent_failure_raises() -> None:
    with pytest.raises(SchedulerCommandError):
        sched().check_control("cancel", res(["qdel", "5"], 2, ""), ["5"])


def test_hold_of_held_job_prints_nothing_and_is_fine() -> None:
    # recorded: qhold of jobs already held prints nothing and exits 0
    sched().check_control("hold", res(["qhold", "14", "15"], 0, ""), ["14", "15"])


# -- describing and checking a system (xpr config check, xpr why) ---------------------------------


def test_probe_and_partition_listing_use_bin_dir() -> None:
    s = sched(SgeOptions(bin_dir="/opt/sge bin"))
    assert s.probe_command() == "command -v '/opt/sge bin/qstat'"
    assert s.partitions_command() == ["/opt/sge bin/qconf", "-sql"]
    assert s.parse_partitions(res(["qconf"], out="all.q\nbig.q\n")) == {"all.q", "big.q"}
    assert sched().probe_command() == "command -v qstat"
    assert SgeScheduler.default_partitions() is None


def test_explain_queued_gives_scheduling_info_and_error_reasons() -> None:
    text = (DATA / "qstat_j_error.txt").read_text()
    s = sched()
    assert s.explain_command(["26", "28.3"]) == ["qstat", "-j", "26,28"]
    out = s.parse_explain(res(["qstat"], out=text), ["26", "28.3", "99"])
    assert out["26"].endswith("Job is in hold state") and "all.q@vm" in out["26"]
    assert "can't open output file" in out["28.3"] and out["28.3"].endswith("Job is in error state")
    assert "99" not in out
    t = FakeTransport(lambda cmd: res(cmd, out=text))
    assert s.explain_queued(t, ["26"]) == {"26": out["26"]}
    assert t.calls[0][0] == ["qstat", "-j", "26"]

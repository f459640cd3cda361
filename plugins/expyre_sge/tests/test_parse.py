"""Parsing of recorded Grid Engine outputs.

Sources (see data/README.md): files named ``*_appendix_a*`` and the inline strings marked
"Appendix A" are verbatim from real-schedulers.md Appendix A (SGE 8.1.9 run as xprtest); the other
data files were recorded with data/record.sh on the real SGE 8.1.9 of scripts/services/start-sge.sh.
"""

from __future__ import annotations

from pathlib import Path

import re

import pytest

from expyre.types import JobState
from expyre_sge.parse import (
    control_failures,
    is_grid_engine_banner,
    parse_error_reasons,
    parse_job_id,
    parse_qacct,
    parse_qstat_xml,
    parse_scheduling_info,
    qacct_status,
    submit_failure_is_ambiguous,
)

DATA = Path(__file__).parent / "data"


def data(name: str) -> str:
    return (DATA / name).read_text()


# -- qsub -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "out, expected",
    [
        ("22\n", "22"),  # Appendix A: qsub -terse
        ("25.1-3:1\n", "25"),  # Appendix A / real-schedulers.md 5.3: qsub -terse -t 1-3
        ('Your job 21 ("sfmt") has been submitted\n', "21"),  # Appendix A: qsub without -terse
        ('Your job-array 25.1-3:1 ("arr") has been submitted\n', "25"),  # qsub(1) array form
        ('Job 27 exited with exit code 1.\nYour job 27 ("false") has been submitted\n', "27"),  # Appendix A: -sync y
        ("  7  \n", "7"),
        ("\n\n1234567\n", "1234567"),
    ],
)
def test_parse_job_id(out: str, expected: str) -> None:
    assert parse_job_id(out) == expected


@pytest.mark.parametrize("out", ["", "Exiting.\n", "Unable to run job: Error reading answer list from qmaster\nExiting.\n", "12a\n", "job 12\n"])
def test_parse_job_id_none(out: str) -> None:
    assert parse_job_id(out) is None


@pytest.mark.parametrize(
    "text, ambiguous",
    [
        # Appendix A / real-schedulers.md 5.2 (GOTCHA 3): a definite refusal
        ("Unable to run job: job rejected: your user id 0 is lower than minimum user id 1000 of cluster configuration\nExiting.", False),
        ('Unable to run job: Job was rejected because job requests unknown queue "nosuch.q".\nExiting.', False),
        ('Unable to run job: job rejected: the requested parallel environment "nope" does not exist.\nExiting.', False),
        # the request may have reached qmaster, or qmaster is down: look the job up before retrying
        ("Unable to run job: failed receiving gdi request response for mid=1 (got syncron message receive timeout error).\nExiting.", True),
        ('error: commlib error: got select error (Connection refused)\nUnable to run job: unable to send message to qmaster using port 6444 on host "vm": got send error\nExiting.', True),
        ("Unable to run job: Error reading answer list from qmaster\nExiting.", True),  # Appendix A
    ],
)
def test_submit_failure_is_ambiguous(text: str, ambiguous: bool) -> None:
    assert submit_failure_is_ambiguous(text) is ambiguous


# -- qstat -xml ------------------------------------------------------------------------------------


def test_qstat_xml_appendix_a() -> None:
    jobs = {j.number: j for j in parse_qstat_xml(data("qstat_xml_appendix_a.xml"))}
    assert set(jobs) == {"23", "24", "25"}
    assert (jobs["23"].name, jobs["23"].owner, jobs["23"].state, jobs["23"].queue) == ("sfmt", "xprtest", "r", "all.q@vm")
    assert (jobs["25"].state, jobs["25"].tasks, jobs["25"].queue) == ("qw", "1-3:1", "")
    assert (jobs["24"].name, jobs["24"].state) == ("held", "hqw")


def test_qstat_xml_many_states() -> None:
    states = {j.name: j.state for j in parse_qstat_xml(data("qstat_xml_states.xml"))}
    assert states == {
        "rec_running": "dr",
        "rec_hold_running": "hr",
        "rec_suspended": "s",
        "rec_deleting": "t",
        "rec_waiting": "qw",
        "rec_error": "Eqw",
        "rec_held": "hqw",
        "rec_array": "hqw",
    }


def test_qstat_xml_find_lists_zombies() -> None:
    jobs = parse_qstat_xml(data("qstat_xml_find.xml"))
    assert {j.name for j in jobs if j.state == "z"} >= {"rec_ok", "rec_three", "rec_killed", "rec_hrt"}


def test_qstat_xml_empty_queue() -> None:
    # recorded: `qstat -xml -u nosuchuser` on the real SGE 8.1.9
    text = (
        "<?xml version='1.0'?>\n"
        '<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">\n'
        "  <queue_info>\n  </queue_info>\n  <job_info>\n  </job_info>\n</job_info>\n"
    )
    assert parse_qstat_xml(text) == []


def test_qstat_xml_default_namespace() -> None:
    # some Grid Engine versions put the schema in a default namespace: tags are matched by local name
    text = (
        '<job_info xmlns="urn:x"><queue_info><job_list state="running"><JB_job_number>5</JB_job_number>'
        "<JB_name>n</JB_name><JB_owner>u</JB_owner><state>r</state></job_list></queue_info></job_info>"
    )
    [job] = parse_qstat_xml(text)
    assert (job.number, job.name, job.state) == ("5", "n", "r")


@pytest.mark.parametrize(
    "text",
    ["", "error: commlib error: got select error (Connection refused)\n", "<job_info><queue_info>", "<foo/>"],
)
def test_qstat_xml_garbage_raises(text: str) -> None:
    with pytest.raises(ValueError):
        parse_qstat_xml(text)


# -- qstat -j --------------------------------------------------------------------------------------


def test_error_reasons() -> None:
    reasons = parse_error_reasons(data("qstat_j_error.txt"))
    assert list(reasons) == ["28"]  # 26 is only held: no error reason
    assert "can't open output file \"/nonexistent_dir/x.err\": No such file or directory" in reasons["28"]


def test_error_reasons_unknown_job() -> None:
    # Appendix A: qstat -j <unknown>
    assert parse_error_reasons("Following jobs do not exist: \n999999\n") == {}


def test_scheduling_info_of_pending_jobs() -> None:
    """Why a job waits: the "scheduling info" lines of qstat -j (recorded, two jobs)."""
    info = parse_scheduling_info(data("qstat_j_error.txt"))
    assert info["26"] == ('queue instance "all.q@vm" dropped because it is full; '
                          "All queues dropped because of overload or full; Job is in hold state")
    assert info["28"].endswith("Job is in error state")


def test_scheduling_info_one_line_and_unknown_job() -> None:
    text = "==============================================================\njob_number:                 1374\n" \
           "script_file:                true\nscheduling info:            Job is in hold state\n"
    assert parse_scheduling_info(text) == {"1374": "Job is in hold state"}
    assert parse_scheduling_info("Following jobs do not exist: \n999999\n") == {}


# -- qacct -----------------------------------------------------------------------------------------


def test_qacct_ok_appendix_a() -> None:
    [rec] = parse_qacct(data("qacct_ok_appendix_a.txt"))
    assert (rec.jobnumber, rec.jobname, rec.failed, rec.exit_status) == ("24", "held", 0, 0)
    st = qacct_status(rec)
    assert st.state is JobState.COMPLETED and st.exit_code == 0


@pytest.mark.parametrize(
    "fname, state, exit_code, words",
    [
        ("qacct_ok.txt", JobState.COMPLETED, 0, "failed 0"),
        ("qacct_exit3.txt", JobState.FAILED, 3, "exit_status 3"),
        ("qacct_h_rt.txt", JobState.TIMEOUT, 137, "failed 37 : qmaster enforced h_rt, h_cpu, or h_vmem limit"),
        ("qacct_qdel.txt", JobState.CANCELLED, 137, "failed 100 : assumedly after job"),
    ],
)
def test_qacct_states(fname: str, state: JobState, exit_code: int, words: str) -> None:
    [rec] = parse_qacct(data(fname))
    st = qacct_status(rec)
    assert st.state is state
    assert st.exit_code == exit_code
    assert words in st.reason
    assert st.describe().startswith(state.value)


def test_qacct_key_lines_appendix_a() -> None:
    # Appendix A: `qacct -j <h_rt exceeded> | grep ...` and `<qdel'ed while running>` (key lines only)
    hrt = "jobnumber    28                  \nfailed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit\nexit_status  137                  (Killed)\nru_wallclock 6s\n"
    killed = "jobnumber    29                  \nfailed       100 : assumedly after job\nexit_status  137                  (Killed)\n"
    [a] = parse_qacct("=" * 62 + "\n" + hrt)
    [b] = parse_qacct("=" * 62 + "\n" + killed)
    assert qacct_status(a).state is JobState.TIMEOUT
    assert "ru_wallclock 6s" in qacct_status(a).reason and "(Killed)" in qacct_status(a).reason
    assert qacct_status(b).state is JobState.CANCELLED


def test_qacct_reused_job_number_takes_last_record() -> None:
    two = data("qacct_exit3.txt") + data("qacct_ok.txt").replace(
        f"jobnumber    {parse_qacct(data('qacct_ok.txt'))[0].jobnumber}", f"jobnumber    {parse_qacct(data('qacct_exit3.txt'))[0].jobnumber}"
    )
    recs = parse_qacct(two)
    assert len(recs) == 2 and recs[0].jobnumber == recs[1].jobnumber
    assert qacct_status(recs[-1]).state is JobState.COMPLETED


def test_qacct_unknown() -> None:
    assert parse_qacct(data("qacct_unknown.txt")) == []


# -- qdel / qhold / qrls ---------------------------------------------------------------------------


def test_control_ok_lines() -> None:
    lines = data("qdel_mixed.txt").splitlines()
    lines += ["modified hold of job 23", "xprtest has deleted job-array tasks 1-3:1 of job 25"]  # Appendix A
    assert control_failures(lines, gone_is_ok=False) == []


def test_control_gone() -> None:
    lines = data("qdel_gone.txt").splitlines()
    assert control_failures(lines, gone_is_ok=True) == []
    assert control_failures(lines, gone_is_ok=False) == lines


def test_control_other_failure() -> None:
    line = 'xprtest - you do not have the necessary privileges to delete the job "5"'
    assert control_failures([line], gone_is_ok=True) == [line]


# -- qstat -help banner ----------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["SGE 8.1.9", "GE 6.2u5", "OGS/GE 2011.11p1", "UGE 8.6.7", "AGE 2024.1.0"])
def test_banner_grid_engine(line: str) -> None:
    assert is_grid_engine_banner(line)


@pytest.mark.parametrize(
    "line",
    [
        "Usage:",  # Slurm's Torque-style wrapper (/opt/slurm-torque/bin/qstat --help, recorded)
        "qstat: invalid option -- 'h'",
        "bash: line 1: qstat: command not found",
        "",
    ],
)
def test_banner_not_grid_engine(line: str) -> None:
    assert not is_grid_engine_banner(line)


# -- usage ----------------------------------------------------------------------------------------

def test_qacct_usage_of_a_200_mib_job() -> None:
    from expyre.types import JobUsage
    from expyre_sge.parse import parse_qacct_usage

    got = parse_qacct_usage(data("qacct_200mib.txt"), ["661", "662"])
    assert got == {"661": JobUsage(elapsed=2.0, max_rss_kib=213068, max_vmem_kib=216252, source="qacct")}
    # the job's Python held a 200 MiB buffer: its peak RSS is above that, and far below 2 GiB
    assert 200 * 1024 <= got["661"].max_rss_kib < 2 * 1024 * 1024


def test_qacct_usage_array_task_and_trivial_job() -> None:
    from expyre_sge.parse import parse_qacct_usage, parse_sge_memory_bytes

    task = parse_qacct_usage(data("qacct_array_task.txt"), ["1361.2"])["1361.2"]
    assert task.elapsed == 4.0 and task.max_rss_kib == 4556 and task.max_vmem_kib == 4956
    ok = parse_qacct_usage(data("qacct_ok.txt") + data("qacct_array_task.txt"), ["1361.2"])
    assert list(ok) == ["1361.2"]
    assert [parse_sge_memory_bytes(t) for t in ("0.000B", "1.5KB", "2GB", "12", "n/a")] == [0.0, 1536.0, 2 * 1024.0 ** 3, 12.0, None]


def test_qacct_usage_command_is_one_loop() -> None:
    from expyre.testing import RecordingTransport
    from expyre.types import CommandResult, SchedulerContext
    from expyre_sge.scheduler import SgeScheduler

    s = SgeScheduler(SchedulerContext(system_name="cluster", rundir="/tmp/x", host=None, options=None))
    cmd = s.usage_command(["661", "1361.2", "bad;id"])
    assert cmd == "qacct -j 661 2>/dev/null; qacct -j 1361 -t 2 2>/dev/null; true"
    t = RecordingTransport(CommandResult([cmd], 0, data("qacct_200mib.txt")))
    assert list(s.usage(t, ["661", "1361.2"])) == ["661"] and t.calls == [cmd]
    assert s.usage_command(["x"]) is None


# -- what a status needs, read without the XML parser when the layout is SGE's own ----------------
@pytest.mark.parametrize("name", ["qstat_xml_appendix_a.xml", "qstat_xml_states.xml", "qstat_xml_find.xml",
                                  "qstat_xml_array.xml"])
def test_qstat_xml_states_match_the_xml_parser(name: str) -> None:
    from expyre_sge.parse import parse_qstat_xml_states

    text = data(name)
    want = [(j.number, j.state, j.tasks) for j in parse_qstat_xml(text)]
    assert parse_qstat_xml_states(text) == want and want
    # many jobs (the poll of 10^4), and the layouts that must take the XML parser
    many = re.sub(r"(<job_list\b.*?</job_list>\s*)", lambda m: m.group(1) * 50, text, flags=re.DOTALL)
    assert parse_qstat_xml_states(many) == [(j.number, j.state, j.tasks) for j in parse_qstat_xml(many)]
    for odd in (text.replace("<state>", "<state >"), text.replace("<JB_name>", "<JB_name>a&amp;b")):
        assert parse_qstat_xml_states(odd) == [(j.number, j.state, j.tasks) for j in parse_qstat_xml(odd)]


@pytest.mark.parametrize(
    "text",
    ["", "error: commlib error: got select error (Connection refused)\n", "<job_info><queue_info>", "<foo/>",
     "<?xml version='1.0'?>\n<job_info><queue_info><job_list state=\"running\"><JB_job_number>5</JB_job_number>"],
)
def test_qstat_xml_states_garbage_raises(text: str) -> None:
    from expyre_sge.parse import parse_qstat_xml_states

    with pytest.raises(ValueError):
        parse_qstat_xml_states(text)

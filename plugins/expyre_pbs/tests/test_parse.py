"""The qsub/qstat parsers on recorded outputs of both families (see each fixture's ``source``)."""

from __future__ import annotations

import pytest

from expyre_pbs.parse import (
    QstatParseError,
    benign_qstat_errors,
    job_key,
    match_ids,
    parse_job_id,
    parse_qstat,
    parse_qstat_full,
    parse_qstat_json,
)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("123\n", "123"),  # Slurm's Torque wrappers
        ("123.server.domain\n", "123.server.domain"),  # Torque, PBS Pro
        ("4110[].pbs01\n", "4110[].pbs01"),  # array job
        ("123[]\n", "123[]"),
        ("  77.pbs-ha  \n", "77.pbs-ha"),
        ("Welcome to the cluster\nqsub: warning: default walltime used\n9.srv\n\n", "9.srv"),
        ("", None),
        ("qsub: Job rejected\n", None),
        ("Your job 21 (\"sfmt\") has been submitted\n", None),  # SGE's words are no PBS id
    ],
)
def test_parse_job_id(text, expected):
    assert parse_job_id(text) == expected


@pytest.mark.parametrize(
    "relpath,expected",
    [
        ("torque_wrappers/qsub_ok.txt", "26"),
        ("torque/qsub_ok.txt", "5201.torque01.cluster.org"),
        ("pbspro/qsub_ok.txt", "4101.pbs01"),
        ("pbspro/qsub_array.txt", "4110[].pbs01"),
    ],
)
def test_parse_job_id_recorded(recorded, relpath, expected):
    assert parse_job_id(recorded(relpath).stdout) == expected


def test_job_key_and_match_ids():
    assert job_key("123[].srv.dom") == "123[]"
    assert job_key("123.srv") == "123"
    assert job_key("123") == "123"
    reported = ["123.srv.example.org", "124.srv", "125[].srv", "125[1].srv"]
    assert match_ids(reported, ["123.srv", "124.srv", "125[].srv", "125[1].srv", "126.srv"]) == {
        "123.srv": "123.srv.example.org",
        "124.srv": "124.srv",
        "125[].srv": "125[].srv",
        "125[1].srv": "125[1].srv",
    }
    # ambiguous sequence numbers (two servers) are not guessed
    assert match_ids(["7.a", "7.b"], ["7.c"]) == {}


def test_wrapper_full_format_tab_indented(recorded):
    jobs = parse_qstat_full(recorded("torque_wrappers/qstat_f_mixed.txt").stdout)
    assert list(jobs) == ["26", "27", "28"]
    assert jobs["26"]["job_state"] == "R" and jobs["26"]["Job_Name"] == "rec_sleep"
    assert jobs["27"]["Priority"] == "0" and "Hold_Types" not in jobs["27"]
    assert jobs["28"]["Resource_List.walltime"] == "00:10:00"


def test_torque_full_format_with_wrapped_values(recorded):
    jobs = parse_qstat_full(recorded("torque/qstat_f_all_states.txt").stdout)
    assert len(jobs) == 14
    q = jobs["5201.torque01.cluster.org"]
    assert q["Error_Path"] == "login1.cluster.org:/home/alice/expyre_rundir/run_fit_a_8k2m0q1xz4/_expyre_job.err"
    assert q["Output_Path"].endswith("/run_fit_a_8k2m0q1xz4/_expyre_job.out")
    assert jobs["5212.torque01.cluster.org"]["comment"] == "Job exceeded its walltime limit. Job was aborted See Administrator for help"
    assert jobs["5210[1].torque01.cluster.org"]["exit_status"] == "0"


def test_torque_doc_example(recorded):
    jobs = parse_qstat_full(recorded("torque/qstat_f_doc_exit_minus1.txt").stdout)
    job = jobs["179.host"]
    assert job["exit_status"] == "-1" and job["job_state"] == "C"
    assert job["Variable_List"].endswith("PBS_O_WORKDIR=/opt/moab,PBS_O_QUEUE=batchq")
    assert "Bad UID for job execution" in job["sched_hint"]


def test_pbspro_text_format_blank_line_inside_block(recorded):
    jobs = parse_qstat_full(recorded("pbspro/qstat_f_text.txt").stdout)
    a = jobs["4601.pbs01.cluster.org"]
    assert a["Error_Path"].endswith("run_wrap_a_0123456789/_expyre_job.err")
    assert a["exec_vnode"].endswith("(b144:ncpus=16)")
    assert a["etime"] == "Mon Mar  4 10:00:00 2024"
    assert jobs["4602.pbs01.cluster.org"]["Exit_status"] == "-29"


def test_full_format_rejects_attributes_without_job_id():
    with pytest.raises(QstatParseError):
        parse_qstat_full("    job_state = R\n")
    assert parse_qstat_full("") == {}
    assert parse_qstat_full("some banner\nJob Id: 1\n\tjob_state = Q\n") == {"1": {"job_state": "Q"}}


def test_pbspro_json(recorded):
    jobs = parse_qstat_json(recorded("pbspro/qstat_f_json_states.txt").stdout)
    assert len(jobs) == 10
    assert jobs["4110[].pbs01"]["job_state"] == "B"
    assert jobs["4101.pbs01"]["Resource_List"]["select"] == "1:ncpus=4:mpiprocs=4"


def test_pbspro_json_without_jobs_key(recorded):
    assert parse_qstat_json(recorded("pbspro/qstat_f_json_none.txt").stdout) == {}
    assert parse_qstat_json("") == {}


def test_pbspro_json_invalid_escapes_and_control_characters(recorded):
    jobs = parse_qstat_json(recorded("pbspro/qstat_f_json_bad_escape.txt").stdout)
    v = jobs["4501.pbs01"]["Variable_List"]
    assert v["WINPATH"] == "C:\\Users\\alice"
    assert v["TABBED"] == "a\tb"


def test_json_garbage_is_an_error():
    with pytest.raises(QstatParseError):
        parse_qstat_json("{not json")
    with pytest.raises(QstatParseError):
        parse_qstat_json('["a"]')


def test_parse_qstat_tells_the_formats_apart(recorded):
    assert "4101.pbs01" in parse_qstat(recorded("pbspro/qstat_f_json_states.txt").stdout)
    assert "26" in parse_qstat(recorded("torque_wrappers/qstat_f_mixed.txt").stdout)


def test_benign_qstat_errors(recorded):
    assert benign_qstat_errors(recorded("pbspro/qstat_f_json_none.txt").stderr)
    assert benign_qstat_errors(recorded("pbspro/qstat_xf_json_history.txt").stderr)
    assert benign_qstat_errors(recorded("torque/qstat_f_all_states.txt").stderr)
    assert not benign_qstat_errors(recorded("pbspro/qstat_connect_error.txt").stderr)
    assert not benign_qstat_errors(recorded("torque_wrappers/qstat_version.txt").stderr)


# -- qstat -f restricted to some attributes: the same answer as the whole parse, filtered ----------
_KEYS = ("job_state", "Exit_status", "comment", "Hold_Types", "Priority")
_TRICKY = [
    # real Torque style: attributes indented with spaces, wrapped values continue after a tab
    "Job Id: 1.s\n    job_state = Q\n    comment = a long\n\tcomment, wrapped\n\t twice\n    Priority = 0\n",
    # a continuation line that looks like a wanted attribute belongs to the value before it
    "Job Id: 2.s\n    Job_Name = x\n\tjob_state = R\n    job_state = Q\n",
    # Slurm's wrappers: attributes indented with a tab, never wrapped; blank lines inside a block
    "Job Id: 3\n\tJob_Name = y\n\n\tjob_state = C\n\texit_status = 0\n  \n\tPriority = 0\n",
    # messages mixed in, an empty block, a repeated id, a duplicate key (the last wins), mixed case
    "banner line\nJob Id: 4.s\nqstat: note\nJob Id: 5.s\n    JOB_STATE = H\n    job_state = R\nstray message\n"
    "\tcontinued after the message\nJob Id: 4.s\n    Exit_Status = 271\n    hold_types = u\n",
    # a key that only begins like a wanted one; no space after "="; trailing blanks
    "Job Id: 6\n    job_state_extra = 1\n    job_state =Q  \n    comment =   \n",
    # CRLF line ends: the line parser, filtered
    "Job Id: 7\r\n    job_state = R\r\n    comment = x\r\n",
    "",
    "no job at all\n",
]


def _filtered(jobs):
    lower = {k.lower() for k in _KEYS}
    return {j: {k: v for k, v in a.items() if k.lower() in lower} for j, a in jobs.items()}


@pytest.mark.parametrize("text", _TRICKY)
def test_qstat_full_with_keys_matches_the_whole_parse(text):
    assert parse_qstat_full(text, _KEYS) == _filtered(parse_qstat_full(text))


@pytest.mark.parametrize("relpath", ["torque/qstat_f_all_states.txt", "torque/qstat_f_doc_exit_minus1.txt",
                                     "torque/qstat_ft_array.txt", "torque_wrappers/qstat_f_mixed.txt",
                                     "torque_wrappers/qstat_f_after.txt", "pbspro/qstat_f_text.txt"])
def test_qstat_full_with_keys_matches_on_recorded_outputs(recorded, relpath):
    text = recorded(relpath).stdout
    fast = parse_qstat_full(text, _KEYS)
    assert fast == _filtered(parse_qstat_full(text)) and fast
    # and repeated 10^3 times (the poll of many jobs), with the ids changed
    many = "".join(text.replace("Job Id: ", f"Job Id: 9{i:04d}") for i in range(1000))
    assert parse_qstat_full(many, _KEYS) == _filtered(parse_qstat_full(many))


def test_qstat_full_with_keys_refuses_attributes_before_a_job():
    with pytest.raises(QstatParseError):
        parse_qstat_full("    job_state = R\nJob Id: 1\n", _KEYS)

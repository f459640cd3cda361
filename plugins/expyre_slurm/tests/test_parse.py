"""Parsers, fed with verbatim command output.

Sources, marked on each constant:
* [A] real-schedulers.md Appendix A (Slurm 22.05.8, jobs of user xprtest);
* [R] recorded on the project's test cluster (scripts/services/start-slurm.sh, Slurm 22.05.8, as
  root) with exactly the command lines expyre_slurm runs; the command is quoted above each one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from expyre.hookspecs import JobState
from expyre.testing import load_recorded
from expyre_slurm.parse import (
    accounting_disabled,
    parse_exit_code,
    parse_find,
    parse_job_id,
    parse_sacct,
    parse_squeue_status,
    submit_failure_is_ambiguous,
)

#: recorded outputs shared with the offline contract (test_states.py), in expyre.testing.load_recorded's format
RECORDED = Path(__file__).parent / "recorded"

# -- sbatch ------------------------------------------------------------------------------------

# [A] sbatch --parsable job.sh 1
SBATCH_PARSABLE = load_recorded(RECORDED / "sbatch_parsable.txt").stdout


def test_job_id():
    assert parse_job_id(SBATCH_PARSABLE) == "8"
    # --parsable on multi-cluster setups prints "JOBID;CLUSTER" (sbatch man page, --parsable)
    assert parse_job_id("1234;cluster2\n") == "1234"
    # warnings may precede the id
    assert parse_job_id("sbatch: warning: something\n77\n") == "77"
    assert parse_job_id("Submitted batch job 7\n") is None  # [A] without --parsable: not ours
    assert parse_job_id("") is None


# [A] sbatch -p debug -t 20 --wrap true (exit 1)
SBATCH_OVER_LIMIT = (
    "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)\n"
)
# [A] sbatch -p nosuch --wrap true (exit 1)
SBATCH_BAD_PARTITION = load_recorded(RECORDED / "sbatch_bad_partition.txt").stderr


def test_submit_failures_definitive_or_ambiguous():
    assert not submit_failure_is_ambiguous(SBATCH_OVER_LIMIT)
    assert not submit_failure_is_ambiguous(SBATCH_BAD_PARTITION)
    # the message of submitit#1659 / dpdispatcher's retry list: the RPC may have been processed
    assert submit_failure_is_ambiguous(
        "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
    )
    assert submit_failure_is_ambiguous(
        "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"
    )


# -- squeue ------------------------------------------------------------------------------------

# [A] squeue -h -o '%i|%j|%T|%r|%u|%P|%M|%l' -j 9,10,11
SQUEUE_APPENDIX = """10|fmt|PENDING|Resources|xprtest|debug|0:00|1:00
11|wrap|PENDING|JobHeldUser|xprtest|debug|0:00|10:00
9|fmt|RUNNING|None|xprtest|debug|0:02|1:00
"""


def test_squeue_appendix_format():
    st = parse_squeue_status(SQUEUE_APPENDIX, ["9", "10", "11", "12"], fmt="%i|%j|%T|%r|%u|%P|%M|%l")
    assert set(st) == {"9", "10", "11"}  # 12 not listed: left out
    assert st["9"].state is JobState.RUNNING and st["9"].reason == ""
    assert st["10"].state is JobState.QUEUED and st["10"].reason == "Resources"
    assert st["11"].state is JobState.HELD and st["11"].reason == "JobHeldUser"
    assert st["11"].raw == "PENDING"


# [R] squeue --me -t all -h -o '%i|%T|%r'   (ids: done=18 fail=19 cancel=20 timeout=21 run=22
#     pend=23 held=24; 9 and 25 are other jobs of the same user)
SQUEUE_ALL = load_recorded(RECORDED / "squeue_all.txt").stdout
# [R] the same, later: 21 hit its 1-minute limit, 22 was held by root while running (holds by
#     root read JobHeldAdmin), 24 released
SQUEUE_ALL_LATER = """20|CANCELLED|None
9|COMPLETED|None
18|COMPLETED|None
25|COMPLETED|None
19|FAILED|NonZeroExitCode
23|PENDING|Resources
24|PENDING|Priority
22|RUNNING|JobHeldAdmin
21|TIMEOUT|TimeLimit
"""


def test_squeue_all_states():
    ids = ["18", "19", "20", "21", "22", "23", "24", "26"]
    st = parse_squeue_status(SQUEUE_ALL, ids)
    assert set(st) == {"18", "19", "20", "21", "22", "23", "24"}  # other jobs (9) ignored, 26 absent
    assert st["18"].state is JobState.COMPLETED
    assert st["19"].state is JobState.FAILED and st["19"].reason == "NonZeroExitCode"
    assert st["20"].state is JobState.CANCELLED
    assert st["21"].state is JobState.RUNNING
    assert st["23"].state is JobState.QUEUED
    assert st["24"].state is JobState.HELD
    later = parse_squeue_status(SQUEUE_ALL_LATER, ids)
    assert later["21"].state is JobState.TIMEOUT and later["21"].reason == "TimeLimit"
    assert later["21"].describe() == "timeout - TimeLimit"
    assert later["22"].state is JobState.RUNNING  # a hold does not stop a running job
    assert later["24"].state is JobState.QUEUED


def test_squeue_odd_lines_do_not_break_the_poll():
    text = "garbage\n30|NEW_STATE_2030|Whatever\n31|RUNNING|None\n32|PENDING|launch failed requeued held\n"
    st = parse_squeue_status(text, ["30", "31", "32"])
    assert st["30"].state is JobState.UNKNOWN and st["30"].raw == "NEW_STATE_2030"
    assert st["31"].state is JobState.RUNNING
    assert st["32"].state is JobState.HELD
    assert parse_squeue_status("", ["1"]) == {}


# -- sacct -------------------------------------------------------------------------------------

# [A] sacct --parsable2 --noheader -o JobID,JobName,User,State,ExitCode,Start,End,Elapsed -j 9,10,11,12,13,14
SACCT_APPENDIX = """9|fmt|xprtest|CANCELLED by 1001|0:0|2026-11-24T10:07:34|2026-11-24T10:07:36|00:00:02
9.batch|batch||CANCELLED|0:15|2026-11-24T10:07:34|2026-11-24T10:07:36|00:00:02
10|fmt|xprtest|COMPLETED|0:0|2026-11-24T10:07:36|2026-11-24T10:07:41|00:00:05
10.batch|batch||COMPLETED|0:0|2026-11-24T10:07:36|2026-11-24T10:07:41|00:00:05
11|wrap|xprtest|COMPLETED|0:0|2026-11-24T10:07:42|2026-11-24T10:07:42|00:00:00
11.batch|batch||COMPLETED|0:0|2026-11-24T10:07:42|2026-11-24T10:07:42|00:00:00
12|wrap|xprtest|FAILED|3:0|2026-11-24T10:07:42|2026-11-24T10:07:42|00:00:00
12.batch|batch||FAILED|3:0|2026-11-24T10:07:42|2026-11-24T10:07:42|00:00:00
13|wrap|xprtest|TIMEOUT|0:0|2026-11-24T10:07:42|2026-11-24T10:08:53|00:01:11
13.batch|batch||CANCELLED|0:15|2026-11-24T10:07:42|2026-11-24T10:08:53|00:01:11
14_0|wrap|xprtest|COMPLETED|0:0|2026-11-24T10:07:42|2026-11-24T10:07:42|00:00:00
14_0.batch|batch||COMPLETED|0:0|2026-11-24T10:07:42|2026-11-24T10:07:42|00:00:00
14_1|wrap|xprtest|COMPLETED|0:0|2026-11-24T10:07:43|2026-11-24T10:07:43|00:00:00
14_1.batch|batch||COMPLETED|0:0|2026-11-24T10:07:43|2026-11-24T10:07:43|00:00:00
14_2|wrap|xprtest|COMPLETED|0:0|2026-11-24T10:07:43|2026-11-24T10:07:43|00:00:00
14_2.batch|batch||COMPLETED|0:0|2026-11-24T10:07:43|2026-11-24T10:07:43|00:00:00
"""
SACCT_APPENDIX_FIELDS = "JobID,JobName,User,State,ExitCode,Start,End,Elapsed"


def test_sacct_appendix():
    st = parse_sacct(SACCT_APPENDIX, ["9", "10", "12", "13", "99"], fields=SACCT_APPENDIX_FIELDS)
    assert set(st) == {"9", "10", "12", "13"}
    assert st["9"].state is JobState.CANCELLED and st["9"].raw == "CANCELLED by 1001"
    assert st["9"].describe() == "cancelled (CANCELLED by 1001) [exit 0]"
    assert st["10"].state is JobState.COMPLETED and st["10"].exit_code == 0
    assert st["12"].state is JobState.FAILED and st["12"].exit_code == 3
    # the allocation line decides, not the .batch step (CANCELLED 0:15 under a TIMEOUT job)
    assert st["13"].state is JobState.TIMEOUT


# [A] sacct -c --parsable2 -o JobID,JobName,User,State,ExitCode,Start,End,Elapsed -j 9,10,11,12,13
#     (no --noheader: the header line must be skipped)
SACCT_C_APPENDIX = """JobID|JobName|User|State|ExitCode|Start|End|Elapsed
9|fmt|xprtest(1001)|CANCELLED|0:0|2026-11-24T10:07:34|2026-11-24T10:07:36|00:00:02
10|fmt|xprtest(1001)|COMPLETED|0:0|2026-11-24T10:07:36|2026-11-24T10:07:41|00:00:05
12|wrap|xprtest(1001)|FAILED|3:0|2026-11-24T10:07:42|2026-11-24T10:07:42|00:00:00
11|wrap|xprtest(1001)|COMPLETED|0:0|2026-11-24T10:07:42|2026-11-24T10:07:42|00:00:00
13|wrap|xprtest(1001)|TIMEOUT|0:0|2026-11-24T10:07:42|2026-11-24T10:08:53|00:01:11
"""


def test_sacct_jobcomp_appendix():
    st = parse_sacct(SACCT_C_APPENDIX, ["9", "11", "12", "13", "JobID"], fields=SACCT_APPENDIX_FIELDS)
    assert {k: v.state for k, v in st.items() if k != "JobID"} == {
        "9": JobState.CANCELLED, "11": JobState.COMPLETED, "12": JobState.FAILED, "13": JobState.TIMEOUT,
    }


# [R] sacct -X -P -n -o JobID,State,ExitCode,Reason -j 18,19,20,22,23,24,999999
#     (22 had started seconds before: slurmdbd still says PENDING; 23, 24 not recorded yet)
SACCT_X = """18|COMPLETED|0:0|None
19|FAILED|3:0|None
20|CANCELLED by 0|0:0|None
22|PENDING|0:0|None
"""
# [R] sacct -P -n -o JobID,State,ExitCode,Reason -j 20,19   (without -X: step lines too)
SACCT_STEPS = """19|FAILED|3:0|None
19.batch|FAILED|3:0|
20|CANCELLED by 0|0:0|None
20.batch|CANCELLED|0:15|
"""
# [R] sacct -X -P -n -o JobID,State,ExitCode,Reason -j 21,22
SACCT_TIMEOUT = """21|TIMEOUT|0:0|None
22|RUNNING|0:0|None
"""
# [R] sacct -c -X -P -n -o JobID,State,ExitCode,Reason -j 18,19,20
SACCT_C = """18|COMPLETED|0:0|
19|FAILED|3:0|
20|CANCELLED|0:0|
"""


def test_sacct_recorded():
    st = parse_sacct(SACCT_X, ["18", "19", "20", "22", "23", "999999"])
    assert set(st) == {"18", "19", "20", "22"}
    assert st["18"].state is JobState.COMPLETED and st["18"].reason == ""
    assert st["19"].describe() == "failed [exit 3]"
    assert st["20"].state is JobState.CANCELLED
    assert st["22"].state is JobState.QUEUED
    steps = parse_sacct(SACCT_STEPS, ["19", "20"])
    assert steps["20"].state is JobState.CANCELLED and steps["20"].exit_code == 0
    assert parse_sacct(SACCT_TIMEOUT, ["21"])["21"].state is JobState.TIMEOUT
    c = parse_sacct(SACCT_C, ["18", "19", "20"])
    assert [c[i].state for i in ("18", "19", "20")] == [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED]


def test_sacct_reused_id_last_record_wins_and_signals():
    text = "5|COMPLETED|0:0|None\n5|FAILED|1:0|None\n6|CANCELLED|0:9|None\n"
    st = parse_sacct(text, ["5", "6"])
    assert st["5"].state is JobState.FAILED
    assert st["6"].reason == "killed by signal 9"


def test_exit_code():
    assert parse_exit_code("3:0") == (3, 0)
    assert parse_exit_code("0:15") == (0, 15)
    assert parse_exit_code("") == (None, None)


# [A] sacct -j 999999 (default format: header only, exit 0) -> nothing
SACCT_UNKNOWN_DEFAULT = """JobID           JobName  Partition    Account  AllocCPUS      State ExitCode 
------------ ---------- ---------- ---------- ---------- ---------- -------- 
"""


def test_sacct_nothing():
    assert parse_sacct("", ["1"]) == {}
    assert parse_sacct(SACCT_UNKNOWN_DEFAULT, ["999999"]) == {}


def test_accounting_disabled():
    # real-schedulers.md 3.2: plain sacct without slurmdbd prints this (exit 1)
    assert accounting_disabled("Slurm accounting storage is disabled\n")
    # 3.1: sacctmgr/sacct when slurm.conf has no accounting_storage/slurmdbd
    assert accounting_disabled("You are not running a supported accounting_storage plugin\n")
    assert not accounting_disabled("sacct: error: Problem talking to the database: Connection refused")


# -- find --------------------------------------------------------------------------------------

# [R] squeue --me -t all -h -o '%i|%j' --name=cap_done,cap_held,cap_nosuch
SQUEUE_FIND = """18|cap_done
24|cap_held
"""
# [R] sacct -X -P -n -S now-7days -o JobID,JobName --name=cap_done,cap_fail
SACCT_FIND = """18|cap_done
19|cap_fail
"""


def test_find():
    assert parse_find(SQUEUE_FIND, ["cap_done", "cap_held", "cap_nosuch"]) == {"cap_done": "18", "cap_held": "24"}
    assert parse_find(SACCT_FIND, ["cap_fail"]) == {"cap_fail": "19"}
    # a foreign job whose name holds '|' cannot confuse the id column
    assert parse_find("40|a | b\n41|x\n", ["x", "a"]) == {"x": "41"}
    # twice the same name (should never happen): the newest id
    assert parse_find("7|n\n12|n\n9|n\n", ["n"]) == {"n": "12"}


@pytest.mark.parametrize("text", ["", "\n\n", "JOBID|NAME\n"])
def test_find_empty(text):
    assert parse_find(text, ["n"]) == {}


# -- usage -------------------------------------------------------------------------------------

def test_sacct_usage_recorded():
    from expyre.types import JobUsage
    from expyre_slurm.parse import parse_sacct_usage

    rec = load_recorded(RECORDED / "sacct_usage.txt")
    got = parse_sacct_usage(rec.stdout, ["4479", "4482", "4486", "999999"])
    # no memory sample for a 2 s job at the cluster's 30 s gathering; the step's MaxRSS otherwise
    assert got == {
        "4479": JobUsage(elapsed=3.0, max_rss_kib=None, source="sacct"),
        "4482": JobUsage(elapsed=40.0, max_rss_kib=221200, source="sacct"),
        "4486": JobUsage(elapsed=5.0, max_rss_kib=221204, source="sacct"),
    }
    assert 200 * 1024 <= got["4486"].max_rss_kib < 2 * 1024 * 1024


def test_sacct_usage_of_a_running_job_is_not_final():
    from expyre_slurm.parse import parse_sacct_usage

    rec = load_recorded(RECORDED / "sacct_usage_running.txt")
    assert parse_sacct_usage(rec.stdout, ["4488"]) == {}


def test_sacct_usage_steps_arrays_units_and_reused_ids():
    from expyre_slurm.parse import parse_sacct_usage, parse_slurm_memory_kib

    text = ("12_3|COMPLETED|61|\n12_3.batch|COMPLETED|61|1000K\n12_3.extern|COMPLETED|61|2.5M\n12_3.0|COMPLETED|60|1.5G\n"
            "7|FAILED|4|\n7.batch|FAILED|4|100K\n7|CANCELLED by 0|9|\n7.batch|CANCELLED|9|50K\ngarbage\n")
    got = parse_sacct_usage(text, ["12_3", "7", "12"])
    assert got["12_3"].elapsed == 61.0 and got["12_3"].max_rss_kib == 1572864  # the largest step
    assert got["7"].elapsed == 9.0 and got["7"].max_rss_kib == 50  # the last record of a reused id
    assert "12" not in got
    assert [parse_slurm_memory_kib(t) for t in ("221200K", "0", "", "2048", "1.5g", "x")] == [221200, 0, None, 2, 1572864, None]


def test_usage_command_only_with_slurmdbd():
    from expyre.testing import RecordingTransport
    from expyre.types import CommandResult
    from expyre.types import SchedulerContext
    from expyre_slurm.scheduler import SlurmOptions, SlurmScheduler

    s = SlurmScheduler(SchedulerContext(system_name="t", rundir="r", host=None, options=SlurmOptions()))
    assert s.usage_command(["12", "13_1"]) == ["sacct", "-P", "-n", "-o", "JobID,State,ElapsedRaw,MaxRSS", "-j", "12,13_1"]
    # the site has no accounting database: the scheduler says so once and stops asking
    t = RecordingTransport(CommandResult(["sacct"], 1, "", "Slurm accounting storage is disabled\n"))
    assert s.usage(t, ["12"]) == {} and len(t.calls) == 1
    assert s.usage_command(["12"]) is None
    s2 = SlurmScheduler(SchedulerContext(system_name="t", rundir="r", host=None, options=SlurmOptions(accounting="none")))
    assert s2.usage_command(["12"]) is None

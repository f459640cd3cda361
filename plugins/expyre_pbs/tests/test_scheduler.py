"""The ``pbs`` backend's verbs (commands built, recorded outputs parsed) for both families,
without running anything (see each fixture's ``source`` for where its format comes from)."""

from __future__ import annotations

import pytest

from expyre import plugins
from expyre.config_model import converter, iter_problems
from expyre.types import CommandResult, JobState, SchedulerCommandError, SchedulerContext, SubmitError
from expyre_pbs import PbsOptions, PbsScheduler
from expyre_pbs.flavors import Detected, Flavor, FlavorDetectionError, detect_flavor


def make(flavor: str = "torque", **opts) -> PbsScheduler:
    return PbsScheduler(SchedulerContext(system_name="c", rundir="expyre_rundir", options=PbsOptions(flavor=flavor, **opts)))


class FakeJob:
    id = "fit_abcdefghij"
    stdout = "_expyre_job.out"
    stderr = "_expyre_job.err"
    script = "_expyre_script.sh"


# -- registration and options ----------------------------------------------------------------


def test_registered_under_pbs():
    spec = plugins.get_scheduler_spec("pbs")
    assert spec.backend is PbsScheduler
    assert PbsScheduler.Options is PbsOptions


def test_options_structure_and_errors_name_the_key():
    assert converter.structure({"flavor": "pbspro", "bin_dir": "/opt/pbs/bin"}, PbsOptions) == PbsOptions("pbspro", "/opt/pbs/bin")
    assert converter.structure({}, PbsOptions).flavor == "auto"
    with pytest.raises(Exception) as info:
        converter.structure({"flavor": "slurm"}, PbsOptions)
    assert [p for p, _ in iter_problems(info.value)] == ["flavor"]
    with pytest.raises(Exception) as info:
        converter.structure({"flavour": "torque"}, PbsOptions)
    assert "did you mean 'flavor'" in list(iter_problems(info.value))[0][1]


def test_bin_dir_prefixes_every_command():
    s = make(bin_dir="/opt/slurm-torque/bin/")
    assert s.submit_command(FakeJob())[0] == "/opt/slurm-torque/bin/qsub"
    assert s.status_command(["1"])[0] == "/opt/slurm-torque/bin/qstat"
    assert s.control_command("cancel", ["1"])[0] == "/opt/slurm-torque/bin/qdel"
    assert s.control_command("hold", ["1"])[0] == "/opt/slurm-torque/bin/qhold"
    assert s.control_command("release", ["1"])[0] == "/opt/slurm-torque/bin/qrls"
    assert make().status_command(["1"])[0] == "qstat"


def test_foreign_env_prefixes_cover_job_variables_but_not_server_selection():
    prefixes = PbsScheduler.foreign_env_prefixes
    for var in ("PBS_JOBID", "PBS_NODEFILE", "PBS_O_WORKDIR", "PBS_NUM_PPN", "PBS_NP", "PBS_ARRAYID", "PBS_ARRAY_INDEX",
                "PBS_JOBNAME", "PBS_NODENUM", "PBS_TASKNUM", "PBS_QUEUE", "PBS_ENVIRONMENT", "PBS_JOBDIR"):
        assert var.startswith(prefixes), var
    for var in ("PBS_SERVER", "PBS_DEFAULT", "PBS_CONF_FILE", "PBS_EXEC", "PBS_HOME"):
        assert not var.startswith(prefixes), var


# -- flavor -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relpath,flavor,detail",
    [
        ("torque/qstat_version.txt", Flavor.TORQUE, "Torque 6.1.2"),
        ("pbspro/qstat_version.txt", Flavor.PBSPRO, "PBS Pro/OpenPBS 2022.1.3.20230614134139"),
        ("torque_wrappers/qstat_version.txt", Flavor.TORQUE, "Slurm's Torque-compatible wrappers"),
    ],
)
def test_detect_flavor(recorded, relpath, flavor, detail):
    d = detect_flavor(recorded(relpath))
    assert d.flavor is flavor and detail in d.detail


def test_detect_flavor_refuses_grid_engine_and_missing_qstat():
    # SGE 8.1.9's qstat rejects --version with its usage text on stdout (run on this machine)
    sge = CommandResult(["qstat", "--version"], 1, "SGE 8.1.9\nusage: qstat [options]\n        [-ext] ...\n", 'invalid option argument "--version"\n')
    with pytest.raises(FlavorDetectionError, match="Grid Engine's qstat.*bin_dir"):
        detect_flavor(sge)
    missing = CommandResult(["qstat", "--version"], 127, "", "bash: line 1: qstat: command not found\n")
    with pytest.raises(FlavorDetectionError, match="not found.*bin_dir"):
        detect_flavor(missing)
    with pytest.raises(FlavorDetectionError, match='"flavor": "torque"'):
        detect_flavor(CommandResult(["qstat", "--version"], 0, "something else\n", ""))


class FakeTransport:
    is_local = True

    def __init__(self, result: CommandResult):
        self.result = result
        self.calls: list = []

    def run(self, command, **kw):
        self.calls.append(command)
        return self.result


def test_setup_detects_once_and_sets_grace(recorded):
    s = make("auto", bin_dir="/opt/pbs/bin")
    assert not s.flavor_known and "not detected" in s.describe()
    t = FakeTransport(recorded("pbspro/qstat_version.txt"))
    s.setup(t)
    s.setup(t)
    assert t.calls == [["/opt/pbs/bin/qstat", "--version"]]
    assert s.flavor is Flavor.PBSPRO and s.vanish_grace == 10.0
    assert s.status_command(["1.a"]) == ["/opt/pbs/bin/qstat", "-f", "-F", "json", "1.a"]
    assert s.describe() == "PBS (pbspro: PBS Pro/OpenPBS 2022.1.3.20230614134139)"


def test_setup_failure_is_a_command_error_naming_the_system():
    s = make("auto")
    with pytest.raises(SchedulerCommandError, match="system 'c'.*not found"):
        s.setup(FakeTransport(CommandResult(["qstat", "--version"], 127, "", "qstat: command not found")))


def test_configured_flavor_needs_no_detection():
    s = make("torque", vanish_grace=5)
    t = FakeTransport(CommandResult([], 0))
    s.setup(t)
    assert t.calls == [] and s.vanish_grace == 5.0 and s.flavor is Flavor.TORQUE
    assert make("torque").vanish_grace == 30.0


# -- commands -----------------------------------------------------------------------------------


def test_commands_per_flavor():
    t, p = make("torque"), make("pbspro")
    ids = ["5201.torque01", "5202.torque01"]
    assert t.status_command(ids) == ["qstat", "-f", *ids]
    assert p.status_command(ids) == ["qstat", "-f", "-F", "json", *ids]
    assert t.accounting_command(ids) is None
    assert p.accounting_command(ids) == ["qstat", "-x", "-f", "-F", "json", *ids]
    assert t.find_command(["x"]) == ["qstat", "-f"]
    assert p.find_command(["x"]) == ["qstat", "-f", "-F", "json"]
    for s in (t, p):
        assert s.submit_command(FakeJob()) == ["qsub", "-o", "_expyre_job.out", "-e", "_expyre_job.err", "_expyre_script.sh"]
        assert s.control_command("cancel", ids) == ["qdel", *ids]
        assert s.control_command("hold", ids) == ["qhold", "-h", "u", *ids]
        assert s.control_command("release", ids) == ["qrls", "-h", "u", *ids]
        with pytest.raises(ValueError):
            s.control_command("suspend", ids)  # type: ignore[arg-type]


# -- submit -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flavor,relpath,jid",
    [
        ("torque", "torque_wrappers/qsub_ok.txt", "26"),
        ("torque", "torque/qsub_ok.txt", "5201.torque01.cluster.org"),
        ("pbspro", "pbspro/qsub_ok.txt", "4101.pbs01"),
        ("pbspro", "pbspro/qsub_array.txt", "4110[].pbs01"),
    ],
)
def test_parse_submit(recorded, flavor, relpath, jid):
    assert make(flavor).parse_submit(recorded(relpath), FakeJob()) == jid


@pytest.mark.parametrize(
    "flavor,relpath,words",
    [
        ("torque", "torque_wrappers/qsub_refused.txt", "Requested time limit is invalid"),
        ("torque", "torque_wrappers/qsub_badqueue.txt", "Invalid partition name specified"),
        ("torque", "torque/qsub_refused.txt", "cannot satisfy queue max walltime"),
        ("pbspro", "pbspro/qsub_refused.txt", "violates queue and/or server resource limits"),
    ],
)
def test_refused_submit_quotes_the_scheduler_and_the_flavor(recorded, flavor, relpath, words):
    with pytest.raises(SubmitError) as info:
        make(flavor).parse_submit(recorded(relpath), FakeJob())
    msg = str(info.value)
    assert words in msg and f"PBS ({flavor}" in msg and FakeJob.id in msg
    assert "There was an error running" not in msg  # the wrappers' boilerplate is stripped


def test_ambiguous_submit_is_not_a_submit_error(recorded):
    with pytest.raises(SchedulerCommandError) as info:
        make("pbspro").parse_submit(recorded("pbspro/qsub_timeout.txt"), FakeJob())
    assert not isinstance(info.value, SubmitError)  # the core looks the job up by name first
    with pytest.raises(SchedulerCommandError) as info:
        make("torque").parse_submit(CommandResult(["qsub"], 0, "\n", ""), FakeJob())
    assert not isinstance(info.value, SubmitError) and "no job id" in str(info.value)


# -- status -------------------------------------------------------------------------------------


def test_status_wrappers(recorded):
    s = make("torque")
    st = s.parse_status(recorded("torque_wrappers/qstat_f_mixed.txt"), ["26", "27", "28", "999999"])
    assert set(st) == {"26", "27", "28"}  # the unknown id is left out
    assert st["26"].state is JobState.RUNNING
    assert st["27"].state is JobState.HELD and "Priority 0" in st["27"].reason  # qsub -h, shown as Q
    assert st["28"].state is JobState.COMPLETED and "exit status not reported" in st["28"].reason
    after = s.parse_status(recorded("torque_wrappers/qstat_f_after.txt"), ["26"])
    assert after["26"].state is JobState.COMPLETED and after["26"].raw == "C"


def test_status_wrappers_none_known(recorded):
    assert make("torque").parse_status(recorded("torque_wrappers/qstat_f_unknown.txt"), ["999999"]) == {}


def test_status_torque_every_code(recorded):
    st = make("torque").parse_status(
        recorded("torque/qstat_f_all_states.txt"),
        [f"52{n:02d}.torque01.cluster.org" for n in range(1, 14)]
        + ["5210[].torque01.cluster.org", "5210[1].torque01.cluster.org", "5299.torque01.cluster.org"],
    )
    got = {k.split(".")[0]: (v.state, v.raw, v.exit_code) for k, v in st.items()}
    assert got == {
        "5201": (JobState.QUEUED, "Q", None),
        "5202": (JobState.HELD, "H", None),
        "5203": (JobState.QUEUED, "W", None),
        "5204": (JobState.QUEUED, "T", None),
        "5205": (JobState.RUNNING, "R", None),
        "5206": (JobState.RUNNING, "E", None),
        "5207": (JobState.SUSPENDED, "S", None),
        "5208": (JobState.COMPLETED, "C", 0),
        "5209": (JobState.FAILED, "C", 3),
        "5211": (JobState.CANCELLED, "C", 271),
        "5212": (JobState.TIMEOUT, "C", -11),
        "5213": (JobState.OUT_OF_MEMORY, "C", -10),
        "5210[]": (JobState.RUNNING, "R", None),
        "5210[1]": (JobState.COMPLETED, "C", 0),
    }
    assert "Job exceeded its walltime limit" in st["5212.torque01.cluster.org"].reason


def test_status_server_suffix_differs(recorded):
    # qsub said "5201.torque01"; qstat prints the fully qualified server name
    st = make("torque").parse_status(recorded("torque/qstat_f_all_states.txt"), ["5201.torque01", "5210[1].torque01"])
    assert st["5201.torque01"].state is JobState.QUEUED
    assert st["5210[1].torque01"].state is JobState.COMPLETED


def test_status_pbspro_every_active_code(recorded):
    ids = ["4101.pbs01", "4102.pbs01", "4103.pbs01", "4104.pbs01", "4105.pbs01", "4106.pbs01",
           "4110[].pbs01", "4107.pbs01", "4108.pbs01", "4109.pbs01", "4199.pbs01"]
    st = make("pbspro").parse_status(recorded("pbspro/qstat_f_json_states.txt"), ids)
    got = {k: (v.state, v.raw) for k, v in st.items()}
    assert got == {
        "4101.pbs01": (JobState.QUEUED, "Q"),
        "4102.pbs01": (JobState.HELD, "H"),
        "4103.pbs01": (JobState.QUEUED, "W"),
        "4104.pbs01": (JobState.QUEUED, "T"),
        "4105.pbs01": (JobState.QUEUED, "M"),
        "4106.pbs01": (JobState.RUNNING, "R"),
        "4110[].pbs01": (JobState.RUNNING, "B"),
        "4107.pbs01": (JobState.RUNNING, "E"),
        "4108.pbs01": (JobState.SUSPENDED, "S"),
        "4109.pbs01": (JobState.SUSPENDED, "U"),
    }
    assert "Insufficient amount of resource" in st["4101.pbs01"].reason
    assert "moved" in st["4105.pbs01"].reason


def test_status_pbspro_finished_jobs_are_left_out(recorded):
    assert make("pbspro").parse_status(recorded("pbspro/qstat_f_json_none.txt"), ["4301.pbs01", "4302.pbs01"]) == {}


def test_accounting_pbspro_history(recorded):
    ids = [f"43{n:02d}.pbs01" for n in range(1, 10)] + ["4310[2].pbs01", "4399.pbs01"]
    st = make("pbspro").parse_accounting(recorded("pbspro/qstat_xf_json_history.txt"), ids)
    got = {k: (v.state, v.exit_code) for k, v in st.items()}
    assert got == {
        "4301.pbs01": (JobState.COMPLETED, 0),
        "4302.pbs01": (JobState.FAILED, 3),
        "4303.pbs01": (JobState.FAILED, 137),
        "4304.pbs01": (JobState.CANCELLED, 265),
        "4305.pbs01": (JobState.CANCELLED, 271),
        "4306.pbs01": (JobState.TIMEOUT, -29),
        "4307.pbs01": (JobState.OUT_OF_MEMORY, -27),
        "4308.pbs01": (JobState.FAILED, -25),
        "4309.pbs01": (JobState.COMPLETED, None),
        "4310[2].pbs01": (JobState.COMPLETED, 0),
    }
    assert "JOB_EXEC_KILL_WALLTIME" in st["4306.pbs01"].describe()
    assert "Job deleted by user alice" in st["4309.pbs01"].reason


def test_pbspro_text_output_also_parses(recorded):
    st = make("pbspro").parse_status(recorded("pbspro/qstat_f_text.txt"), ["4601.pbs01.cluster.org", "4602.pbs01.cluster.org"])
    assert st["4601.pbs01.cluster.org"].state is JobState.RUNNING
    assert st["4602.pbs01.cluster.org"].state is JobState.TIMEOUT


@pytest.mark.parametrize(
    "flavor,result",
    [
        ("pbspro", "pbspro/qstat_connect_error.txt"),
        ("torque", "torque_wrappers/qstat_version.txt"),  # exit 2, "Unknown option": wrong flavor configured
    ],
)
def test_failed_query_raises_instead_of_reporting_jobs_vanished(recorded, flavor, result):
    with pytest.raises(SchedulerCommandError) as info:
        make(flavor).parse_status(recorded(result), ["4101.pbs01"])
    assert f"PBS ({flavor}" in str(info.value)


def test_unparseable_status_raises():
    with pytest.raises(SchedulerCommandError, match="invalid JSON"):
        make("pbspro").parse_status(CommandResult(["qstat"], 0, "{oops", ""), ["1.a"])


# -- find ---------------------------------------------------------------------------------------


def test_find_by_name(recorded):
    assert make("torque").parse_find(recorded("torque_wrappers/qstat_f_mixed.txt"), ["rec_fail", "nope"]) == {"rec_fail": "28"}
    assert make("pbspro").parse_find(recorded("pbspro/qstat_f_json_states.txt"), ["fit_f_qwertyuiop"]) == {
        "fit_f_qwertyuiop": "4106.pbs01"
    }


# -- cancel / hold / release --------------------------------------------------------------------


def test_check_control(recorded):
    s = make("torque")
    s.check_control("cancel", recorded("torque_wrappers/qdel_done.txt"), ["28"])  # exit 1, silent: already ended
    s.check_control("cancel", recorded("torque_wrappers/qdel_unknown.txt"), ["999999"])
    s.check_control("cancel", CommandResult(["qdel", "1.a"], 153, "", "qdel: Unknown Job Id 1.a\n"), ["1.a"])
    p = make("pbspro")
    p.check_control("cancel", CommandResult(["qdel", "1.a"], 35, "", "qdel: Job has finished 1.a\n"), ["1.a"])
    s.check_control("hold", CommandResult(["qhold"], 0, "", "Use of uninitialized value $hold in string eq\n"), ["27"])
    with pytest.raises(SchedulerCommandError, match=r"PBS \(torque.*hold of 27 failed.*Invalid job id"):
        s.check_control("hold", CommandResult(["qhold", "-h", "u", "27"], 1, "qhold: Error on job id 27: Invalid job id specified\n", ""), ["27"])
    with pytest.raises(SchedulerCommandError, match="cancel of 5.a failed"):
        p.check_control("cancel", CommandResult(["qdel", "5.a"], 1, "", "qdel: Unauthorized Request  5.a\n"), ["5.a"])


def test_detected_flavor_is_used_for_decoding():
    s = make("auto")
    s.set_flavor(Detected(Flavor.PBSPRO, "test"))
    st = s.parse_status(CommandResult(["qstat"], 0, '{"Jobs": {"1.a": {"job_state": "F", "Exit_status": -29}}}', ""), ["1.a"])
    assert st["1.a"].state is JobState.TIMEOUT


# -- describing and checking a system (xpr config check) ------------------------------------------


def test_probe_and_partition_listing():
    s = make(bin_dir="/opt/pbs/bin")
    assert s.probe_command() == "command -v /opt/pbs/bin/qstat"
    assert s.partitions_command() == ["/opt/pbs/bin/qstat", "-Q"]
    assert make().partitions_command() == ["qstat", "-Q"]
    qstat_q = (
        "Queue              Max    Tot   Ena   Str   Que   Run   Hld   Wat   Trn   Ext T   Cpt\n"
        "----------------  -----  ----  ----  ----  ----  ----  ----  ----  ----  ---- -   ---\n"
        "workq                 0     0   yes   yes     0     0     0     0     0     0 E     0\n"
        "bigmem                0     0   yes   yes     0     0     0     0     0     0 E     0\n"
    )
    assert s.parse_partitions(CommandResult(["qstat", "-Q"], 0, qstat_q)) == {"workq", "bigmem"}
    torque = "Queue            Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext T\nbatch 0 0 yes yes 0 0 0 0 0 0 E\n"
    assert s.parse_partitions(CommandResult(["qstat", "-Q"], 0, torque)) == {"batch"}
    assert PbsScheduler.default_partitions() is None and s.explain_command(["1"]) is None

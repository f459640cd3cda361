"""Job arrays on PBS, at unit level: PBS Pro (``-J``, ``PBS_ARRAY_INDEX``) and Torque (``-t``,
``PBS_ARRAYID``) from written fixtures (see each one's ``source``), and no arrays on Slurm's Torque
wrappers (their detection output is recorded)."""

from __future__ import annotations

import pytest

from expyre.types import JobState, SchedulerCommandError, SchedulerContext
from expyre_pbs import PbsOptions, PbsScheduler
from expyre_pbs.flavors import detect_flavor


def make(flavor: str, **opts) -> PbsScheduler:
    return PbsScheduler(SchedulerContext(system_name="c", rundir="expyre_rundir", options=PbsOptions(flavor=flavor, **opts)))


def test_pbspro_array_members(recorded):
    s = make("pbspro")
    assert s.arrays_supported() and s.array_index_var == "PBS_ARRAY_INDEX" and s.array_index_base == 0
    assert s.array_output_token == "^array_index^"
    assert s.array_header(None, 200) == ["#PBS -J 0-199"]
    array_id = s.parse_submit(recorded("pbspro/qsub_array.txt"), type("J", (), {"id": "xa"})())
    assert array_id == "4110[].pbs01" and s.array_element_id(array_id, 3) == "4110[3].pbs01"
    with pytest.raises(SchedulerCommandError, match="not an id with"):
        s.array_element_id("4110.pbs01", 3)


def test_pbspro_status_of_subjobs(recorded):
    s = make("pbspro")
    ids = [f"4500[{i}].pbs01" for i in (0, 1, 2, 3, 9)]
    result = recorded("pbspro/qstat_ft_json_array.txt")
    assert list(result.argv) == s.status_command(ids)  # -t: subjobs are listed only with it
    st = s.parse_status(result, ids)
    assert st["4500[0].pbs01"].state is JobState.COMPLETED
    assert st["4500[1].pbs01"].state is JobState.FAILED and st["4500[1].pbs01"].exit_code == 1
    assert st["4500[2].pbs01"].state is JobState.RUNNING and st["4500[3].pbs01"].state is JobState.QUEUED
    assert "4500[9].pbs01" not in st
    assert s.accounting_command(ids[:1]) == ["qstat", "-x", "-f", "-F", "json", "-t", "4500[0].pbs01"]
    assert s.status_command(["12.pbs01"]) == ["qstat", "-f", "-F", "json", "12.pbs01"]  # no -t without elements


def test_pbspro_find_array_by_name(recorded):
    s = make("pbspro")
    found = s.parse_find(recorded("pbspro/qstat_ft_json_array.txt"), ["xa_sq_0_0000000001"])
    assert found["xa_sq_0_0000000001"].startswith("4500[")


def test_torque_array_members_and_status(recorded):
    s = make("torque")
    assert s.arrays_supported() and s.array_index_var == "PBS_ARRAYID" and s.array_output_token == ""
    assert s.array_header(None, 3) == ["#PBS -t 0-2"]
    ids = [s.array_element_id("1098[].torque01.cluster.org", i) for i in range(3)]
    result = recorded("torque/qstat_ft_array.txt")
    assert list(result.argv) == s.status_command(ids)
    st = s.parse_status(result, ids)
    assert [st[i].state for i in ids] == [JobState.COMPLETED, JobState.RUNNING, JobState.QUEUED]


def test_no_arrays_on_slurms_torque_wrappers(recorded):
    detected = detect_flavor(recorded("torque_wrappers/qstat_version.txt"))
    assert detected.slurm_wrappers
    s = make("auto")
    assert not s.arrays_supported()  # not detected yet
    s.set_flavor(detected)
    assert not s.arrays_supported()
    assert make("auto", arrays=True).arrays_supported()  # a site may insist
    real = detect_flavor(recorded("torque/qstat_version.txt"))
    s.set_flavor(real)
    assert not real.slurm_wrappers and s.arrays_supported()


def test_array_size_limit_is_configurable():
    assert make("pbspro").array_size_limit(None) == 10000
    assert make("pbspro", max_array_size=500).array_size_limit(None) == 500

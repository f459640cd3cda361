"""expyre.Executor on the real schedulers (Slurm, Grid Engine, Slurm's Torque-style PBS commands)
and over ssh: a map of 200 trivial calls packed and as job arrays, in order; a raising element
fails only its own future; cancel of a queued array element; restart of a map in a new process
that reuses the finished elements (submissions counted in the jobs DB and by the scheduler);
partial results of packed chunks over ssh.

Systems come from ``$EXPYRE_PYTEST_CONFIG`` / ``$EXPYRE_PYTEST_SYSTEMS`` like every real test.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from expyre import Executor, config
from expyre.func import ExPyReRemoteTraceback
from expyre.system import remote_path
from expyre.testing import available_systems, isolated_root, make_root, selected_systems, skip_or_fail, wait_for

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import executor_real_funcs as funcs  # noqa: E402

pytestmark = pytest.mark.real_scheduler

RES = {"max_time": "5m", "n": (1, "tasks")}
WHOLE_NODE = {"max_time": "5m", "n": (1, "nodes")}
#: a whole-node job that holds the node until the test releases it (a flag file): its time limit
#: must never be what ends it, however slow a loaded machine makes the test
BLOCKER = {"max_time": "1h", "n": (1, "nodes")}
#: header lines that make it ask for all the node's cores where the test systems' config.json
#: header does not (Slurm's default header asks for none: the job would hold one CPU)
BLOCKER_HEADER = {kind: ["#SBATCH --nodes={nnodes}", "#SBATCH --ntasks={tot_ntasks}", "#SBATCH --cpus-per-task={ncores_per_task}"]
                  for kind in ("slurm", "ssh_slurm")}
#: one system per kind: the schedulers on this machine, and Slurm over ssh
KINDS = {"slurm": ("slurm", "local"), "sge": ("sge", "local"), "pbs": ("pbs", "local"), "ssh_slurm": ("slurm", "ssh")}
TIMEOUT = 240


def _pick(kind: str) -> str | None:
    scheduler, transport = KINDS[kind]
    names = sorted(selected_systems(scheduler, transport))
    return names[0] if names else None


@pytest.fixture(params=sorted(KINDS))
def real(request, tmp_path, monkeypatch):
    """``(system name, kind)`` in a fresh root holding that system only."""
    name = _pick(request.param)
    if name is None:
        skip_or_fail(f"no {KINDS[request.param][0]} system over {KINDS[request.param][1]} selected")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_PROGRESS", "0")
    with isolated_root(tmp_path / "_expyre", {name: available_systems()[name]}):
        yield name, request.param


def _executor(system_name: str, **kw) -> Executor:
    kw.setdefault("resources", RES)
    return Executor(system_name=system_name, partial_node=True, check_interval=1, **kw)


def _arrays_here(name: str) -> bool:
    return config.get_system(name).array_limit() is not None


def _touch(name: str, flag: str) -> None:
    """Create ``<rundir>/<flag>`` on the host that runs the jobs (jobs see it as ``../<flag>``)."""
    system = config.get_system(name)
    r = system.transport.run(f"touch -- {remote_path(system.rundir)}/{flag}")
    assert r.ok, r.describe()


def test_map_200_packed(real):
    name, _ = real
    with _executor(name, name="sq") as ex:
        assert list(ex.map(funcs.square, range(200), chunksize=50)) == [i * i for i in range(200)]
    rows = config.db.jobs(name="sq_.*")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"processed"}


def test_map_200_as_arrays(real):
    """200 calls as array elements: 20 packed chunks of 10 (an array of 20, elements one core
    each); on schedulers with arrays, split at a site limit of 8 into arrays of 8 + 8 + 4."""
    name, kind = real
    sysd = dict(available_systems()[name])
    sysd["scheduler_options"] = {**(sysd.get("scheduler_options") or {}), "max_array_size": 8}  # the site's limit
    make_root(Path(os.environ["EXPYRE_ROOT"]), {name: sysd})
    with _executor(name, name="arr", array=True) as ex:
        assert list(ex.map(funcs.square, range(200), chunksize=10)) == [i * i for i in range(200)]
    rows = config.db.jobs(name="arr_.*")
    assert len(rows) == 20
    ids = [r["remote_id"] for r in rows]
    if kind == "pbs":  # Slurm's Torque wrappers: no arrays, one job each
        assert not _arrays_here(name) and len(set(ids)) == 20
        return
    assert config.get_system(name).array_limit() == 8
    arrays = {_array_of(kind, i) for i in ids}
    assert len(arrays) == 3, ids  # 8 + 8 + 4 elements: three submissions for 20 jobs
    assert sorted(_array_of(kind, i) for i in ids).count(sorted(arrays)[0]) in (4, 8)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["slurm", "ssh_slurm"])
def test_array_of_200_single_calls_on_slurm(kind, tmp_path, monkeypatch):
    """The plain form: 200 one-call jobs in ONE ``sbatch --array=0-199``. Slow (about 45 s: 200
    jobs through a 4-core node); the fast tests above run 200 calls as arrays of packed chunks."""
    name = _pick(kind)
    if name is None:
        skip_or_fail(f"no {KINDS[kind][0]} system over {KINDS[kind][1]} selected")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_PROGRESS", "0")
    with isolated_root(tmp_path / "_expyre", {name: available_systems()[name]}):
        with _executor(name, name="one", array=True) as ex:
            assert list(ex.map(funcs.square, range(200))) == [i * i for i in range(200)]
        ids = [r["remote_id"] for r in config.db.jobs(name="one_.*")]
    assert len(ids) == 200 and len({i.split("_")[0] for i in ids}) == 1
    assert sorted(int(i.split("_")[1]) for i in ids) == list(range(200))


def _array_of(kind: str, element_id: str) -> str:
    if kind in ("slurm", "ssh_slurm"):
        return element_id.split("_")[0]
    if kind == "sge":
        return element_id.split(".")[0]
    return element_id.split("[")[0]


@pytest.mark.parametrize("chunksize", [1, 4])
def test_one_raising_element_fails_only_its_future(real, chunksize):
    name, _ = real
    with _executor(name, array=True) as ex:
        fs = ex.map_futures(funcs.raise_at, range(8), [5] * 8, chunksize=chunksize)
        cf.wait(fs, timeout=TIMEOUT)
        for i, f in enumerate(fs):
            if i == 5:
                exc = f.exception()
                assert isinstance(exc, ValueError) and "element 5 raised" in str(exc)
                assert isinstance(exc.__cause__, ExPyReRemoteTraceback) and "raise_at" in exc.__cause__.tb
            else:
                assert f.result() == i


def test_cancel_a_queued_element(real):
    """A whole-node job holds the node; the array's elements queue behind it; cancelling one
    element's future cancels that element in the scheduler, and only it. Nothing here races a
    duration: the blocker holds the node until the flag file appears (its time limit is far away),
    and the elements are seen queued by the scheduler itself before one is cancelled."""
    name, kind = real
    flag = f"go_{secrets.token_hex(4)}"
    system = config.get_system(name)

    def scheduler_state(job_id):
        rid = config.db.get(job_id)["remote_id"]
        st = system.status([rid]).get(rid) if rid else None
        return st.state.value if st else None

    with _executor(name, resources=BLOCKER, header_extra=BLOCKER_HEADER.get(kind, [])) as blocker_ex:
        blocker = blocker_ex.submit(funcs.wait_for_file, -1, f"../{flag}")
        wait_for(lambda: blocker.running(), TIMEOUT, "the whole-node job to start")
        wait_for(lambda: scheduler_state(blocker.job_id) == "running", TIMEOUT, "the scheduler to run the whole-node job")
        with _executor(name, array=True) as ex:
            fs = ex.map_futures(funcs.wait_for_file, range(4), [f"../{flag}"] * 4)
            wait_for(lambda: all(config.db.get(f.job_id)["status"] == "submitted" for f in fs), TIMEOUT,
                     "the elements to be submitted")
            seen: dict[str, object] = {}

            def all_queued():
                seen["blocker"] = scheduler_state(blocker.job_id)
                seen["elements"] = [scheduler_state(f.job_id) for f in fs]
                return all(st in ("queued", "held") for st in seen["elements"])

            try:
                wait_for(all_queued, TIMEOUT, "the scheduler to report every element queued behind the whole-node job")
            except pytest.fail.Exception as exc:
                pytest.fail(f"{exc} (last seen: {seen})")
            assert fs[2].cancel() and fs[2].cancelled()
            row = config.db.get(fs[2].job_id)
            assert row["reason"] == "cancel requested by user"
            rid = row["remote_id"]

            def cancelled_in_scheduler():  # asked directly: the executor no longer waits for it
                st = system.status([rid]).get(rid)
                return st is None or st.state.terminal

            wait_for(cancelled_in_scheduler, TIMEOUT, "the scheduler to drop the cancelled element")
            assert config.db.get(fs[2].job_id)["status"] == "died"  # cancelled before it started
            _touch(name, flag)
            assert [fs[i].result(timeout=TIMEOUT) for i in (0, 1, 3)] == [0, 1, 3]
        assert blocker.result(timeout=TIMEOUT) == -1
    with pytest.raises(cf.CancelledError):
        fs[2].result()


DRIVER = """
import sys
sys.path.insert(0, {here!r})
import executor_real_funcs as funcs
from expyre import Executor
ex = Executor(system_name={name!r}, resources={res!r}, partial_node=True, check_interval=1, array=True, progress=False)
for r in ex.map(funcs.wait_for_file, range(8), [{flag!r}] * 8, [(0, 1, 2, 3)] * 8, chunksize=2):
    print(r, flush=True)
"""


def test_restart_mid_map_reuses_finished_elements(real, tmp_path):
    """A driver is killed after the first half of a map finished; the same map run again in a new
    process adopts every element (finished ones give their results at once) and submits nothing
    new: the jobs DB keeps one row and one scheduler id per chunk, and the scheduler lists each
    array element once."""
    name, kind = real
    flag = f"go_{secrets.token_hex(4)}"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(here=str(HERE), name=name, res=RES, flag=f"../{flag}"))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "EXPYRE_PROGRESS": "0"})
    try:
        got = [proc.stdout.readline().strip() for _ in range(4)]  # chunks 0 and 1 finished
        assert got == ["0", "1", "2", "3"], got
    finally:
        proc.kill()
        proc.wait()
    before = {r["name"]: r for r in config.db.jobs(name="wait_for_file_.*")}
    assert len(before) == 4 and all(r["remote_id"] for r in before.values())
    _touch(name, flag)
    with _executor(name, array=True) as ex:
        out = list(ex.map(funcs.wait_for_file, range(8), [f"../{flag}"] * 8, [(0, 1, 2, 3)] * 8, chunksize=2))
        assert ex.stats["submitted_jobs"] == 0 or all(
            config.db.get(f.job_id)["remote_id"] == before[config.db.get(f.job_id)["name"]]["remote_id"] for f in ex.futures())
    assert out == list(range(8))
    after = {r["name"]: r for r in config.db.jobs(name="wait_for_file_.*")}
    assert set(after) == set(before)
    for n in before:
        assert after[n]["remote_id"] == before[n]["remote_id"], n  # nothing was submitted again
    if kind in ("slurm", "ssh_slurm"):
        ids = sorted(r["remote_id"] for r in after.values())
        array = ids[0].split("_")[0]
        system = config.get_system(name)

        def accounted():  # slurmdbd lists the elements a moment after they end
            listed = system.transport.run(["sacct", "-X", "-n", "-P", "-o", "JobID", "-j", array])
            assert listed.ok, listed.describe()
            return sorted(listed.stdout.split()) if len(listed.stdout.split()) >= len(ids) else None

        assert wait_for(accounted, 60, "sacct to list the array's elements") == ids  # each submitted once


@pytest.mark.parametrize("kind", ["ssh_local", "ssh_slurm"])
def test_partial_results_over_ssh(kind, tmp_path, monkeypatch):
    """Packed chunk elements finished on the remote host come back before the chunk ends."""
    scheduler = "local" if kind == "ssh_local" else "slurm"
    names = sorted(selected_systems(scheduler, "ssh"))
    if not names:
        skip_or_fail(f"no {scheduler} system over ssh selected")
    name = names[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_PROGRESS", "0")
    flag = f"go_{secrets.token_hex(4)}"
    with isolated_root(tmp_path / "_expyre", {name: available_systems()[name]}):
        with _executor(name) as ex:
            fs = ex.map_futures(funcs.wait_for_file, range(3), [f"../{flag}"] * 3, [(0, 1)] * 3, chunksize=3)
            assert [fs[0].result(timeout=TIMEOUT), fs[1].result(timeout=TIMEOUT)] == [0, 1]
            assert not fs[2].done()
            assert config.db.get(fs[0].job_id)["status"] in ("submitted", "started")  # the chunk still runs
            _touch(name, flag)
            assert fs[2].result(timeout=TIMEOUT) == 2


ARRAY_KINDS = ["slurm", "sge", "ssh_slurm"]


@pytest.fixture(params=ARRAY_KINDS)
def array_system(request, tmp_path, monkeypatch):
    name = _pick(request.param)
    if name is None:
        skip_or_fail(f"no {KINDS[request.param][0]} system over {KINDS[request.param][1]} selected")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_PROGRESS", "0")
    with isolated_root(tmp_path / "_expyre", {name: available_systems()[name]}):
        yield name, request.param


def _array_name(xpr) -> str:
    import json

    return json.loads((xpr.stage_dir / "_expyre_array_ref.json").read_text())["array"]


def _submissions_named(name: str, kind: str, array_name: str) -> set[str]:
    """The scheduler ids of the jobs named ``array_name`` (an array counts once)."""
    system = config.get_system(name)
    if kind == "sge":
        r = system.transport.run(["qacct", "-j", array_name])
        return {line.split()[1] for line in r.stdout.splitlines() if line.startswith("jobnumber")}
    r = system.transport.run(["sacct", "-X", "-n", "-P", "-o", "JobID", f"--name={array_name}", "-S", "now-1hours"])
    assert r.ok, r.describe()
    return {i.split("_")[0] for i in r.stdout.split()}


DRIVER_CRASH = """
import sys
sys.path.insert(0, {here!r})
import executor_real_funcs as funcs
from expyre.func import ExPyRe
xprs = [ExPyRe(f"crash_{{i}}", funcs.square, args=[i]) for i in range(5)]
ExPyRe.start_array(xprs, {res!r}, {name!r}, partial_node=True)
print("not killed", flush=True)
"""


def test_array_submit_killed_after_sbatch_is_adopted(array_system, tmp_path):
    """The driver is killed (kill -9) just after the scheduler accepted the array and before the
    jobs DB knew it; running the same calls again finds the array by its name and adopts its
    elements: one array in the scheduler, results right."""
    from expyre.func import ExPyRe

    name, kind = array_system
    script = tmp_path / "driver.py"
    script.write_text(DRIVER_CRASH.format(here=str(HERE), name=name, res=RES))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT,
                       env={**os.environ, "EXPYRE_FAULT_POINT": "start_submitted"})
    assert r.returncode == -9 and "not killed" not in r.stdout, (r.returncode, r.stdout, r.stderr)
    xprs = [ExPyRe(f"crash_{i}", funcs.square, args=[i]) for i in range(5)]
    assert all(x.recreated and x.status == "created" for x in xprs)  # the DB never heard of the submission
    array_name = _array_name(xprs[0])
    assert ExPyRe.start_array(xprs, RES, name, partial_node=True) == {}
    assert [x.get_results(timeout=TIMEOUT, check_interval=1) for x in xprs] == [i * i for i in range(5)]
    ids = {_array_of(kind, x.remote_id) for x in xprs}
    assert len(ids) == 1
    assert wait_for(lambda: _submissions_named(name, kind, array_name), 60, "the scheduler's records") == ids


def test_array_submit_with_lost_answer_is_looked_up(array_system, monkeypatch):
    """The submit command ran but its answer was lost (the connection dropped): the core looks
    the array up by name instead of submitting it again."""
    from expyre.func import ExPyRe
    from expyre.types import TransportError

    name, kind = array_system
    system = config.get_system(name)
    transport = system.transport
    original = transport.run
    lost = []

    def run(command, **kw):
        result = original(command, **kw)
        text = command if isinstance(command, str) else " ".join(command)
        if not lost and ("sbatch" in text or "qsub" in text):
            lost.append(result)
            raise TransportError("connection lost after the command was sent (test)")
        return result

    monkeypatch.setattr(transport, "run", run)
    xprs = [ExPyRe(f"lost_{i}", funcs.square, args=[i]) for i in range(4)]
    assert ExPyRe.start_array(xprs, RES, name, partial_node=True) == {}
    assert lost and lost[0].ok  # the array really was submitted once
    assert [x.get_results(timeout=TIMEOUT, check_interval=1) for x in xprs] == [i * i for i in range(4)]
    ids = {_array_of(kind, x.remote_id) for x in xprs}
    assert len(ids) == 1
    assert wait_for(lambda: _submissions_named(name, kind, _array_name(xprs[0])), 60, "the scheduler's records") == ids


@pytest.mark.parametrize("kind", ["ssh_local", "ssh_slurm"])
def test_restart_reruns_a_failed_chunk_over_ssh(kind, tmp_path, monkeypatch):
    """A finished chunk holding a raising call is run again on restart, also when it ran on a
    remote host (whose copy of the old result markers must go first); the other chunks are reused."""
    scheduler = "local" if kind == "ssh_local" else "slurm"
    names = sorted(selected_systems(scheduler, "ssh"))
    if not names:
        skip_or_fail(f"no {scheduler} system over ssh selected")
    name = names[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_PROGRESS", "0")
    flag = f"fixed_{secrets.token_hex(4)}"
    args = (range(6), [4] * 6, [f"../{flag}"] * 6)
    with isolated_root(tmp_path / "_expyre", {name: available_systems()[name]}):
        with pytest.raises(KeyboardInterrupt):
            with _executor(name) as ex:
                fs = ex.map_futures(funcs.fail_unless_file, *args, chunksize=3)
                cf.wait(fs, timeout=TIMEOUT)
                assert isinstance(fs[4].exception(), ValueError)
                for x in {f.job_id: f.xpr for f in fs}.values():  # the chunks' rows reach their final state
                    x.get_results(timeout=TIMEOUT, quiet=True)
                raise KeyboardInterrupt  # the driver dies: nothing is marked processed
        before = {r["name"]: r["remote_id"] for r in config.db.jobs(name="fail_unless_file_.*")}
        _touch(name, flag)
        with _executor(name) as ex:
            assert list(ex.map(funcs.fail_unless_file, *args, chunksize=3)) == list(range(6))
        after = {r["name"]: r["remote_id"] for r in config.db.jobs(name="fail_unless_file_.*")}
    assert after["fail_unless_file_0"] == before["fail_unless_file_0"]  # reused
    assert after["fail_unless_file_1"] != before["fail_unless_file_1"]  # run again

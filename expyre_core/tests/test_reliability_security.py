"""Security: private directories, results unpickled only from the job's own directory, no secrets
on command lines. (`xpr rm` refusing to delete outside the root, also through a symlink, is in
test_cli.py::test_rm*; hostile names in test_reliability_catalogue.py.)"""

from __future__ import annotations

import operator
import os
import pickle
import stat
import time
from pathlib import Path

import pytest

from expyre import config
from expyre.func import ExPyRe
from expyre.testing import isolated_root

RES = {"max_time": "5m", "n": (1, "tasks")}
SECRET = "s3cr3t-Token-value-9f8e7d"


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    # "copied": this machine, but jobs run in a separate run dir (stage in/out like a remote host)
    copied = {"scheduler": "local", "rundir": str(tmp_path / "rundir"),
              "partitions": {"p": {"ncores": 1, "max_time": None, "max_mem": None}}}
    with isolated_root(tmp_path / "_expyre", {"copied": copied}) as r:
        yield r


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_stage_and_run_dirs_are_private(root, tmp_path):
    xpr = ExPyRe("priv", operator.add, args=[1, 2])
    xpr.start(resources=RES, system_name="copied")
    assert xpr.get_results(timeout=60) == 3
    run_dir = tmp_path / "rundir" / xpr.stage_dir.name
    assert run_dir.is_dir()
    assert mode(root) == 0o700 and mode(xpr.stage_dir) == 0o700
    assert mode(run_dir) == 0o700, oct(mode(run_dir))
    assert mode(root / "jobs.db") == 0o600
    for d in (tmp_path / "rundir" / "_expyre_localq", root):
        for p in d.rglob("*"):
            if p.is_dir():
                assert mode(p) & 0o077 == 0, p


def test_env_values_never_on_a_command_line(root, tmp_path):
    """env_vars values travel in the (private) job script, never in an argv: not in what is
    passed to the transport, not in any process's command line while the job runs."""
    system = config.get_system("copied")
    seen: list = []
    trans = system.transport
    for verb in ("run", "put", "get"):
        orig = getattr(trans, verb)

        def spy(*a, _orig=orig, **kw):
            seen.append((a, kw))
            return _orig(*a, **kw)

        setattr(trans, verb, spy)
    xpr = ExPyRe("secret", time.sleep, args=[2], env_vars=[f"API_TOKEN={SECRET}"])
    xpr.start(resources=RES, system_name="copied")
    cmdlines = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # while the job sleeps
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
                except OSError:
                    pass
        time.sleep(0.2)
    assert xpr.get_results(timeout=60) is None
    assert not [c for c in cmdlines if SECRET.encode() in c], "secret visible in a process command line"
    assert SECRET not in repr(seen), "secret passed in a transport argument"
    script = (xpr.stage_dir / "_expyre_script.sh")
    assert SECRET in script.read_text() and mode(xpr.stage_dir) == 0o700


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_results_only_from_the_jobs_own_dir(root, tmp_path):
    """A tampered jobs-database row pointing elsewhere is refused before anything is unpickled."""
    xpr = ExPyRe("own", operator.add, args=[1, 2])
    evil = tmp_path / "evil" / xpr.stage_dir.name
    evil.mkdir(parents=True)
    (evil / "_expyre_job_succeeded").write_bytes(pickle.dumps(_Boom()))
    config.db.update(xpr.id, from_dir=str(evil), status="submitted", remote_id="x", system="local")
    with pytest.raises(ValueError, match="not its own stage directory"):
        ExPyRe.from_jobsdb(config.db.get(xpr.id))[0].get_results(timeout=5)
    assert not (tmp_path / "PWNED").exists()


def test_result_marker_symlink_is_not_followed(root, tmp_path):
    """A result marker that is a symlink (e.g. planted in a shared run dir) is not read: one in
    the stage dir is replaced by the run dir's own copy; one there too is an error."""
    xpr = ExPyRe("link", operator.add, args=[1, 2])
    xpr.start(resources=RES, system_name="copied")
    assert xpr.get_results(timeout=60) == 3
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(pickle.dumps(_Boom()))
    marker = xpr.stage_dir / "_expyre_job_succeeded"
    marker.unlink()
    marker.symlink_to(outside)
    from expyre.func import ExPyReResultError

    assert ExPyRe.from_jobsdb(config.db.get(xpr.id))[0].get_results(timeout=5) == 3
    assert not marker.is_symlink()
    run_marker = tmp_path / "rundir" / xpr.stage_dir.name / "_expyre_job_succeeded"
    for m in (marker, run_marker):
        m.unlink()
        m.symlink_to(outside)
    with pytest.raises(ExPyReResultError, match="neither can its copy where the job ran"):
        ExPyRe.from_jobsdb(config.db.get(xpr.id))[0].get_results(timeout=5)
    assert not [n for n in os.listdir(xpr.stage_dir) if n.startswith(".")], "the bad file set aside is not left"
    assert not (tmp_path / "PWNED").exists()

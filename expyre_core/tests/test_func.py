"""The ExPyRe API on the zero-config local system: every behaviour ExPyRe's README describes, and the original's
defects that must not come back."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from expyre.control import ControlError

import xpr_core_jobfuncs as jobfuncs
from expyre import config
from expyre.func import ExPyRe, ExPyReJobDiedError, ExPyReRemoteTraceback, ExPyReResultError, ExPyReTimeoutError

RES = {"max_time": "5m", "n": (1, "tasks")}


def run(xpr, **kw):
    xpr.start(resources=RES, system_name="local", partial_node=True, **kw)
    return xpr.get_results(timeout=60, check_interval=1)


def test_status_lifecycle_and_stage_dir_private(root):
    xpr = ExPyRe("add", jobfuncs.add, args=[1, 2])
    assert xpr.status == "created" and config.db.get(xpr.id)["status"] == "created"
    assert stat.S_IMODE(xpr.stage_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert run(xpr) == 3
    assert config.db.get(xpr.id)["status"] == "succeeded"
    xpr.mark_processed()
    assert config.db.get(xpr.id)["status"] == "processed"
    with pytest.raises(RuntimeError, match="no longer available"):
        xpr.get_results()
    removed = xpr.clean()
    assert config.db.get(xpr.id)["status"] == "cleaned"
    assert not (xpr.stage_dir / "_expyre_task.pkl").exists() and str(xpr.stage_dir / "_expyre_task.pkl") in removed


def test_function_keyword_and_positional(root):
    assert run(ExPyRe("kw", function=jobfuncs.add, args=[2], kwargs={"b": 5})) == 7


def test_restart_semantics(root):
    a = ExPyRe("same", jobfuncs.add, args=[1, 1])
    b = ExPyRe("same", jobfuncs.add, args=[1, 1])
    assert b.id == a.id and b.recreated
    assert run(b) == 2
    assert ExPyRe("same", jobfuncs.add, args=[1, 2]).id != a.id  # other arguments
    assert ExPyRe("other", jobfuncs.add, args=[1, 1]).id != a.id  # other name
    assert ExPyRe("same", jobfuncs.add, args=[1, 1], try_restart_from_prev=False).id != a.id
    b.mark_processed()
    assert ExPyRe("same", jobfuncs.add, args=[1, 1]).id != a.id


def test_hash_ignore(root):
    a = ExPyRe("ign", jobfuncs.add, args=[1, 2], kwargs={"scratch": "x"}, hash_ignore=["scratch"])
    b = ExPyRe("ign", jobfuncs.add, args=[1, 2], kwargs={"scratch": "y"}, hash_ignore=["scratch"])
    assert a.id == b.id
    c = ExPyRe("ign2", jobfuncs.add, args=[1, 2], hash_ignore=[1])
    d = ExPyRe("ign2", jobfuncs.add, args=[1, 3], hash_ignore=[1])
    assert c.id == d.id


def test_edited_function_reruns(root, tmp_path, monkeypatch):
    mod = tmp_path / "editable_mod.py"
    mod.write_text("def f(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import editable_mod

    first = ExPyRe("edit", editable_mod.f, args=[1])
    mod.write_text("def f(x):\n    return x + 2\n")
    importlib.reload(editable_mod)
    second = ExPyRe("edit", editable_mod.f, args=[1])
    assert second.id != first.id and not second.recreated


def test_hash_is_stable_across_processes_even_for_sets(root, tmp_path):
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(jobfuncs.__file__).parent)!r})
        import xpr_core_jobfuncs as jobfuncs
        from expyre.func import ExPyRe
        x = ExPyRe("sets", jobfuncs.add, args=[{{"alpha", "beta", "gamma", "delta"}}, frozenset({{"x", "y"}})])
        print(x.hash)
    """)
    hashes = set()
    for hash_salt in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_salt, "EXPYRE_ROOT": str(root)}
        hashes.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip())
    assert len(hashes) == 1


def test_the_same_call_is_reused_under_every_hash_salt_and_its_dicts_keep_their_order(root, tmp_path):
    """Sets inside an object and a dict built from a set: iteration orders that differ in every
    process. The first process runs the job; the others, under other PYTHONHASHSEEDs, find the same
    job and its result (no second run); the job receives each dict in the driver's order."""
    code = textwrap.dedent(f"""
        import json, sys; sys.path.insert(0, {str(Path(jobfuncs.__file__).parent)!r})
        import xpr_core_jobfuncs as jobfuncs
        from expyre.func import ExPyRe
        names = {{"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}}
        order = sorted(names, key=lambda n: n[::-1])  # an insertion order that is neither sorted nor the set's
        settings = jobfuncs.Settings(tags=set(names), table={{n: len(n) for n in order}})
        groups = {{n: {{n.upper(), n[::-1]}} for n in names}}
        x = ExPyRe("salted", jobfuncs.describe_settings, args=[settings], kwargs={{"groups": groups}})
        x.start(resources={{"max_time": "5m", "n": (1, "tasks")}}, system_name="local", partial_node=True)
        keys, tags, got_groups, pid = x.get_results(timeout=120, check_interval=0.2)
        print(json.dumps({{"id": x.id, "recreated": x.recreated, "keys": keys, "expected_keys": order,
                          "groups": [k for k, _ in got_groups], "expected_groups": list(groups), "pid": pid}}))
    """)
    runs = []
    for salt in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": salt, "EXPYRE_ROOT": str(root)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert len({r["id"] for r in runs}) == 1
    assert [r["recreated"] for r in runs] == [False, True, True]
    assert len({r["pid"] for r in runs}) == 1  # ran once
    for r in runs:
        assert r["keys"] == r["expected_keys"]  # the first process's order reached its job
    assert runs[0]["groups"] == runs[0]["expected_groups"]


def test_input_and_output_files(root, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("payload")
    xpr = ExPyRe("io", jobfuncs.read_input, args=["data/in.txt"], input_files=["data/in.txt"])
    assert run(xpr) == "payload"
    changed = ExPyRe("io", jobfuncs.read_input, args=["data/in.txt"], input_files=["data/in.txt"])
    assert changed.id == xpr.id
    (tmp_path / "data" / "in.txt").write_text("other payload")
    assert ExPyRe("io", jobfuncs.read_input, args=["data/in.txt"], input_files=["data/in.txt"]).id != xpr.id

    out = ExPyRe("out", jobfuncs.write_output, args=["result.txt", "hello"], output_files=["result.txt", "sub/*.txt"])
    run(out)
    assert (tmp_path / "result.txt").read_text() == "hello"
    assert (tmp_path / "sub" / "more.txt").read_text() == "more"


@pytest.mark.parametrize("kw, err, message", [
    ({"input_files": ["missing.txt"]}, FileNotFoundError, "input file 'missing.txt' does not exist"),
    ({"input_files": ["../etc/passwd"]}, ValueError, "'..' path components"),
    ({"output_files": ["/etc/passwd"]}, ValueError, "relative path"),
    ({"output_files": ["../x"]}, ValueError, "relative path"),
    ({"env_vars": ["NOT_SET_ANYWHERE_XYZ"]}, KeyError, "NOT_SET_ANYWHERE_XYZ is not set"),
    ({"env_vars": ["BAD-NAME=1"]}, ValueError, "not a valid variable name"),
    ({"hash_ignore": [1.5]}, TypeError, "hash_ignore"),
])
def test_bad_input_is_rejected_before_anything_is_staged(root, kw, err, message):
    with pytest.raises(err, match=message):
        ExPyRe("bad", jobfuncs.add, args=[1, 2], **kw)
    assert [p.name for p in root.iterdir() if p.name.startswith(("run_", ".tmp"))] == []
    assert config.db.jobs() == []


def test_unpicklable_argument_fails_at_construction(root):
    with pytest.raises(pickle.PicklingError, match="cannot be pickled"):
        ExPyRe("lock", jobfuncs.add, args=[threading.Lock(), 1])
    assert [p.name for p in root.iterdir() if p.name.startswith(("run_", ".tmp"))] == []


def test_env_vars_quoted_and_taken_from_environment(root, tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_DRIVER", "driver value")
    marker = tmp_path / "pwned"
    hostile = f"$(touch {marker}); `touch {marker}` \"'"
    xpr = ExPyRe("env", jobfuncs.env, args=["FROM_DRIVER", "HOSTILE"], env_vars=["FROM_DRIVER", f"HOSTILE={hostile}"])
    assert run(xpr) == {"FROM_DRIVER": "driver value", "HOSTILE": hostile}
    assert not marker.exists()


def test_hostile_job_name(root, tmp_path):
    marker = tmp_path / "pwned"
    name = f"n'; touch {marker}; $(touch {marker}) \n\"x\" .. / ; DROP TABLE jobs; --"
    xpr = ExPyRe(name, jobfuncs.add, args=[2, 2])
    assert run(xpr) == 4
    assert not marker.exists()
    assert config.db.get(xpr.id)["name"] == name
    assert xpr.stage_dir.parent == root
    assert ExPyRe.from_jobsdb(config.db.jobs(name=__import__("re").escape(name)))[0].id == xpr.id


def test_remote_exception_keeps_type_and_traceback(root):
    xpr = ExPyRe("zero", divmod, args=[1, 0])
    with pytest.raises(ZeroDivisionError) as info:
        run(xpr)
    assert isinstance(info.value.__cause__, ExPyReRemoteTraceback)
    assert "ZeroDivisionError" in info.value.__cause__.tb
    assert config.db.get(xpr.id)["status"] == "failed"
    # a failed job is not reused: an identical call makes a new one
    assert ExPyRe("zero", divmod, args=[1, 0]).id != xpr.id


def test_unpicklable_result_is_a_clear_failure(root):
    with pytest.raises(Exception) as info:
        run(ExPyRe("unpicklable", jobfuncs.unpicklable_result))
    assert "pickl" in str(info.value).lower() or "pickl" in str(info.value.__cause__).lower()


def test_job_that_dies_without_result(root):
    xpr = ExPyRe("dies", jobfuncs.die_hard)
    with pytest.raises(ExPyReJobDiedError, match="exit code 7"):
        run(xpr)
    row = config.db.get(xpr.id)
    assert row["status"] == "died" and "exit code 7" in row["reason"]


def test_max_time_kills_job(root):
    xpr = ExPyRe("slow", jobfuncs.sleep, args=[60])
    xpr.start(resources={"max_time": 2, "n": (1, "tasks")}, system_name="local", partial_node=True)
    with pytest.raises(ExPyReJobDiedError, match="timeout"):
        xpr.get_results(timeout=60, check_interval=1)


def test_get_results_timeout_is_a_timeouterror(root):
    xpr = ExPyRe("wait", jobfuncs.sleep, args=[30])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    with pytest.raises(TimeoutError) as info:
        xpr.get_results(timeout=0.5, check_interval=0.1)
    assert isinstance(info.value, ExPyReTimeoutError)
    xpr.cancel()


def test_corrupted_result_file(root):
    xpr = ExPyRe("corrupt", jobfuncs.add, args=[1, 2])
    assert run(xpr) == 3
    (xpr.stage_dir / "_expyre_job_succeeded").write_bytes(b"\x80\x05truncated")
    with pytest.raises(ExPyReResultError, match="truncated or corrupted"):
        ExPyRe.from_jobsdb(config.db.get(xpr.id))[0].get_results(timeout=5)


def test_from_jobsdb_and_stdout(root):
    xpr = ExPyRe("task_1", print, args=["printed in the job"])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    (again,) = ExPyRe.from_jobsdb(config.db.jobs(name="task_1"))
    assert again.get_results(timeout=60) is None
    assert again.stdout == "printed in the job\n"


def test_force_rerun_keeps_previous_results(root):
    xpr = ExPyRe("rerun", jobfuncs.add, args=[1, 2])
    assert run(xpr) == 3
    assert run(xpr, force_rerun=True) == 3
    assert (xpr.stage_dir / "_expyre_prev_1" / "_expyre_job_succeeded").exists()


def test_default_system_and_unknown_system(root, monkeypatch):
    monkeypatch.setenv("EXPYRE_SYS", "nowhere")
    xpr = ExPyRe("sys", jobfuncs.add, args=[1, 2])
    with pytest.raises(KeyError, match="unknown system 'nowhere' \\(from EXPYRE_SYS\\); configured systems: local"):
        xpr.start(resources=RES)
    monkeypatch.delenv("EXPYRE_SYS")
    xpr.start(resources=RES, partial_node=True)
    assert xpr.get_results(timeout=60) == 3 and xpr.system_name == "local"


def test_no_partition_fits_names_the_constraint(root):
    xpr = ExPyRe("big", jobfuncs.add, args=[1, 2])
    with pytest.raises(ValueError, match="local_bigmem: name does not match"):
        xpr.start(resources={**RES, "partitions": "gpu.*"}, system_name="local")


def test_job_survives_driver_death_and_is_not_resubmitted(root, tmp_path):
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(jobfuncs.__file__).parent)!r})
        import xpr_core_jobfuncs as jobfuncs
        from expyre.func import ExPyRe
        x = ExPyRe("survivor", jobfuncs.sleep, args=[2])
        x.start(resources={RES!r}, system_name="local", partial_node=True)
        print(x.id, flush=True)
        x.get_results(timeout=600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "EXPYRE_ROOT": str(root)}, stdout=subprocess.PIPE, text=True)
    job_id = proc.stdout.readline().strip()
    proc.kill()
    proc.wait()
    row = config.db.get(job_id)
    assert row["status"] in ("submitted", "started")
    again = ExPyRe("survivor", jobfuncs.sleep, args=[2])
    assert again.id == job_id
    again.start(resources=RES, system_name="local", partial_node=True)
    assert config.db.get(job_id)["remote_id"] == row["remote_id"]
    assert again.get_results(timeout=60) == 2


def test_hold_and_release(root):
    blocker = ExPyRe("blocker", jobfuncs.sleep, args=[3])
    blocker.start(resources={"max_time": "5m", "n": (1, "nodes")}, system_name="local")
    xpr = ExPyRe("held", jobfuncs.add, args=[4, 4])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    xpr.hold()
    assert blocker.get_results(timeout=60) == 3
    with pytest.raises(ExPyReTimeoutError):
        xpr.get_results(timeout=2, check_interval=0.2)
    assert "held" in config.db.get(xpr.id)["remote_status"]
    xpr.release()
    assert config.db.get(xpr.id)["reason"] == "release requested by user"
    assert xpr.get_results(timeout=60) == 8
    xpr.cancel()  # ended: nothing to cancel, no error
    with pytest.raises(ControlError, match="already succeeded; only a submitted job can be held"):
        xpr.hold()


def test_cancel_before_submission_marks_the_job_died(root):
    xpr = ExPyRe("never", jobfuncs.add, args=[1, 1])
    xpr.cancel()
    assert xpr.status == "died" and config.db.get(xpr.id)["reason"] == "cancelled before submission"


def test_clean_is_a_dry_run_unless_expyre_pytest_clean(root):
    """ExPyRe's README's EXPYRE_PYTEST_CLEAN: real cleaning only when set, otherwise a dry run."""
    xpr = ExPyRe("tidy", jobfuncs.add, args=[5, 5])
    assert run(xpr) == 10
    real = bool(os.environ.get("EXPYRE_PYTEST_CLEAN"))
    report = xpr.clean(wipe=True, dry_run=not real)
    assert report == [str(xpr.stage_dir)]
    assert xpr.stage_dir.exists() is (not real)
    assert config.db.get(xpr.id)["status"] == ("cleaned" if real else "succeeded")

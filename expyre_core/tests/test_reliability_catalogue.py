"""The bad-input catalogue: every way a user can get the input wrong, each with the error it must
give (asserted), and the hostile names that must simply work. Construction errors stage nothing.

Related cases elsewhere: config key paths and merge rules in test_config.py; hostile job names, env
values and '..' inputs in test_func.py; `xpr rm` outside the root in test_cli.py; a plugin's
scheduler without partitions in the repository's cross-distribution tests (tests/test_cross_config.py).
"""

from __future__ import annotations

import json
import operator
import os
import pickle
import re
import threading
from pathlib import Path

import pytest

from expyre import config
from expyre.config_model import ConfigError
from expyre.func import ExPyRe, ExPyReResultError
from expyre.testing import isolated_root

RES = {"max_time": "5m", "n": (1, "tasks")}
SMALL = {"scheduler": "local", "partitions": {"small": {"ncores": 2, "max_time": "1h", "max_mem": "1GB"}}}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EXPYRE_SYS", raising=False)
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", {"small": SMALL}) as r:
        yield r


def nothing_staged(root: Path) -> None:
    assert [p.name for p in root.iterdir() if p.name.startswith(("run_", ".tmp"))] == []


# -- config.json -------------------------------------------------------------------------------
def _closure_over_a_lock():
    lock = threading.Lock()

    def uses_lock():  # a local function: pickled by value, with its closure
        return lock

    return uses_lock


CONFIG_CASES = [
    ("malformed JSON", "{not json", "invalid JSON at line 1"),
    ("unknown key", {"s": {**SMALL, "hots": "x"}}, "systems.s: unknown key 'hots' (did you mean 'host'?)"),
    ("bad duration unit", {"s": {"scheduler": "local", "partitions": {"p": {"ncores": 1, "max_time": "3 fortnights"}}}},
     "systems.s.partitions.p.max_time: invalid duration '3 fortnights'"),
    ("bad memory unit", {"s": {"scheduler": "local", "partitions": {"p": {"ncores": 1, "max_mem": "12 parsecs"}}}},
     "systems.s.partitions.p.max_mem: invalid memory '12 parsecs'"),
    ("unknown scheduler", {"s": {"scheduler": "lsf", "partitions": {"p": {"ncores": 1}}}}, "systems.s.scheduler"),
]


@pytest.mark.parametrize("what, content, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_catalogue(tmp_path, monkeypatch, what, content, message):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    r = tmp_path / "_expyre"
    r.mkdir()
    (r / "config.json").write_text(content if isinstance(content, str) else json.dumps({"systems": content}))
    monkeypatch.setenv("EXPYRE_ROOT", str(r))
    from expyre.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config()
    assert message in str(info.value) and str(r / "config.json") in str(info.value), str(info.value)


# -- ExPyRe(...): nothing may be staged --------------------------------------------------------
CONSTRUCT_CASES = [
    ("unpicklable function", dict(name="f", function=_closure_over_a_lock()), pickle.PicklingError,
     r"ExPyRe\('f'\): the function or an argument cannot be pickled: cannot pickle '_thread.lock' object"),
    ("unpicklable argument", dict(name="a", function=operator.add, args=[(i for i in range(2)), 1]), pickle.PicklingError,
     "cannot pickle 'generator' object"),
    ("empty job name", dict(name="", function=operator.add), ValueError, "job name must be a non-empty string"),
    ("function not callable", dict(name="n", function=5), TypeError, r"ExPyRe\('n'\): function must be callable, got 5"),
    ("missing input file", dict(name="i", function=operator.add, args=[1, 2], input_files=["nope.dat"]), FileNotFoundError,
     "input file 'nope.dat' does not exist"),
    ("'..' in input file", dict(name="i", function=operator.add, args=[1, 2], input_files=["a/../../x"]), ValueError,
     "'..' path components are not supported"),
    ("'..' in output file", dict(name="o", function=operator.add, args=[1, 2], output_files=["a/../../x"]), ValueError,
     "must be a relative path without '..'"),
    ("bad env name", dict(name="e", function=operator.add, args=[1, 2], env_vars=["=x"]), ValueError,
     "'' is not a valid variable name"),
    ("unset env var", dict(name="e", function=operator.add, args=[1, 2], env_vars=["XPR_CATALOGUE_UNSET"]), KeyError,
     "XPR_CATALOGUE_UNSET is not set in this environment"),
    ("bool in hash_ignore", dict(name="h", function=operator.add, args=[1, 2], hash_ignore=[True]), TypeError,
     "hash_ignore entries are argument positions"),
]


@pytest.mark.parametrize("what, kw, exc, message", CONSTRUCT_CASES, ids=[c[0] for c in CONSTRUCT_CASES])
def test_construction_catalogue(root, what, kw, exc, message):
    kw = dict(kw)
    with pytest.raises(exc, match=message):
        ExPyRe(kw.pop("name"), kw.pop("function"), **kw)
    nothing_staged(root)
    assert config.db.jobs() == []


# -- start(...): nothing may be submitted ------------------------------------------------------
START_CASES = [
    ("EXPYRE_SYS names no system", {}, None, KeyError,
     r"unknown system 'nowhere' \(from EXPYRE_SYS\); configured systems: local, small"),
    ("system_name names no system", RES, "nope", KeyError, r"unknown system 'nope' \(from system_name\)"),
    ("unknown resources key", {**RES, "nodes": 2}, "small", ValueError, r"unknown resources key\(s\) \['nodes'\]"),
    ("bad n kind", {"max_time": "1h", "n": (1, "cows")}, "small", ValueError, "kind must be 'nodes' or 'tasks', got 'cows'"),
    ("no max_time", {"n": (1, "tasks")}, "small", ValueError, "resources need 'max_time'"),
    ("bad time unit", {"max_time": "5 fortnights", "n": (1, "tasks")}, "small", ValueError, "invalid duration '5 fortnights'"),
    ("bad memory unit", {**RES, "max_mem_per_task": "lots"}, "small", ValueError, "invalid memory 'lots'"),
    ("time no partition allows", {"max_time": "2h", "n": (1, "tasks")}, "small", ValueError,
     "small: max_time 2:00:00 exceeds the partition's 1:00:00"),
    ("memory no partition has", {**RES, "max_mem_per_task": "5GB"}, "small", ValueError,
     "small: needs 5GB of memory per node, more than the partition's 1GB"),
    ("partition regexp matches none", {**RES, "partitions": "gpu.*"}, "small", ValueError, "small: name does not match"),
]


@pytest.mark.parametrize("what, res, system, exc, message", START_CASES, ids=[c[0] for c in START_CASES])
def test_start_catalogue(root, monkeypatch, what, res, system, exc, message):
    monkeypatch.setenv("EXPYRE_SYS", "nowhere")
    xpr = ExPyRe("s", operator.add, args=[1, 2])
    with pytest.raises(exc, match=message):
        xpr.start(resources=res or RES, system_name=system, partial_node=True)
    row = config.db.get(xpr.id)
    assert row["status"] == "created" and row["remote_id"] is None and row["submit_owner"] is None
    assert not (root / "_expyre_localq").exists()  # nothing reached the queue


def test_exact_fit_names_the_way_out(root):
    with pytest.raises(ValueError, match=r"do not fill whole 2-core nodes \(pass exact_fit=False or partial_node=True\)"):
        ExPyRe("x", operator.add, args=[1, 2]).start(resources=RES, system_name="small")


def test_header_extra_unknown_key(root):
    with pytest.raises(ValueError, match=r"header_extra\[0\] '#X \{nope\}' cannot be formatted.*available keys: nnodes"):
        ExPyRe("x", operator.add, args=[1, 2]).start(resources=RES, system_name="small", partial_node=True,
                                                    header_extra=["#X {nope}"])


def test_more_cores_than_the_machine_is_refused_at_start(root, monkeypatch):
    """A request the partition allows but this machine can never run: start() refuses it, naming
    the resources and the machine's cores; nothing is claimed, queued or recorded as submitted."""
    monkeypatch.delenv("EXPYRE_LOCAL_NCORES", raising=False)
    from expyre.builtin.localq import machine_ncores

    have = machine_ncores()
    xpr = ExPyRe("huge", operator.add, args=[1, 2])
    with pytest.raises(ValueError, match=re.escape(
            f"job {xpr.id} on system 'small': the resources ask for 1000 cores (1000 task(s) x 1 core(s)), "
            f"but the local scheduler runs at most {have} at once on this machine ({have} cores); "
            f"ask for at most {have} cores")):
        xpr.start(resources={"max_time": "5m", "n": (1000, "tasks")}, system_name="small", partial_node=True)
    row = config.db.get(xpr.id)
    assert row["status"] == "created" and row["remote_id"] is None and row["submit_owner"] is None, row
    assert not (root / "_expyre_localq").exists()  # nothing reached the queue
    assert not (xpr.stage_dir / "_expyre_script.sh").exists()  # refused before the job script was written
    assert config.db.jobs(status=["submitted", "started"]) == []
    # the same call with a size the machine has runs (the refusal left nothing in its way)
    xpr.start(resources={"max_time": "5m", "n": (1, "tasks")}, system_name="small", partial_node=True)
    assert xpr.get_results(timeout=60, check_interval=0.2) == 3


# -- get_results: wrong order, bad timeouts, damaged result files -------------------------------
def test_get_results_before_start(root):
    with pytest.raises(RuntimeError, match="has not been started: call start\\(\\) first"):
        ExPyRe("x", operator.add, args=[1, 2]).get_results()


def test_bad_timeout_string(root):
    xpr = ExPyRe("x", operator.add, args=[1, 2])
    xpr.start(resources=RES, partial_node=True)
    with pytest.raises(ValueError, match="invalid duration 'soon'"):
        xpr.get_results(timeout="soon")


@pytest.mark.parametrize("content", [b"", b"\x80\x05\x95", b"not a pickle at all"], ids=["empty", "truncated", "garbage"])
def test_damaged_result_file(root, content):
    xpr = ExPyRe("dmg", operator.add, args=[1, 2])
    xpr.start(resources=RES, partial_node=True)
    assert xpr.get_results(timeout=60) == 3
    (xpr.stage_dir / "_expyre_job_succeeded").write_bytes(content)
    again = ExPyRe.from_jobsdb(config.db.get(xpr.id))[0]
    with pytest.raises(ExPyReResultError, match="cannot be read .*it may be truncated or corrupted. Re-run with start"):
        again.get_results(timeout=5)


def test_damaged_error_file(root):
    xpr = ExPyRe("dmg_fail", divmod, args=[1, 0])
    xpr.start(resources=RES, partial_node=True)
    with pytest.raises(ZeroDivisionError):
        xpr.get_results(timeout=60)
    (xpr.stage_dir / "_expyre_job_failed").write_bytes(b"\x80\x05")
    again = ExPyRe.from_jobsdb(config.db.get(xpr.id))[0]
    with pytest.raises(ExPyReResultError, match="failed, and its error file cannot be read"):
        again.get_results(timeout=5)


# -- hostile names must just work (nothing interpreted by a shell or by SQL) ---------------------
HOSTILE = ["it's \"quoted\"", "with  spaces", "$(touch PWNED)", "a;touch PWNED;", "new\nline", "x'); DROP TABLE jobs;--",
           "`touch PWNED`"]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_file_names_round_trip(root, tmp_path, name):
    (tmp_path / name).write_text("in:" + name)
    xpr = ExPyRe(name, Path.read_text, args=[Path(name)], input_files=[name])
    xpr.start(resources=RES, partial_node=True)
    assert xpr.get_results(timeout=60) == "in:" + name
    assert config.db.jobs(name=re.escape(name))[0]["id"] == xpr.id
    assert not list(tmp_path.rglob("PWNED")) and not (Path.cwd() / "PWNED").exists()
    assert xpr.stage_dir.parent == root


def test_hostile_output_file_names(root, tmp_path):
    def _write_all(names):  # local: pickled by value (the job cannot import this test module)
        for n in names:
            Path(n).write_text(n)

    names = [n for n in HOSTILE if "\n" not in n]
    xpr = ExPyRe("outs", _write_all, args=[names], output_files=[re.sub(r"([*?\[])", r"[\1]", n) for n in names])
    xpr.start(resources=RES, partial_node=True)
    xpr.get_results(timeout=60)
    for n in names:
        assert (tmp_path / n).read_text() == n
    assert not list(tmp_path.rglob("PWNED"))

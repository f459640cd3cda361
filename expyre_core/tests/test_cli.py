"""The ``xpr`` command line, driven through click's runner and through real subprocesses, against
jobs run on the embedded ``local`` system."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import xpr_core_jobfuncs as jobfuncs
from expyre import cli as xcli
from expyre import config
from expyre.func import ExPyRe
from expyre.testing import wait_for
from expyre.why import diff_hashes

RES = {"max_time": "5m", "n": (1, "tasks")}


def xpr(*args: str, input: str | None = None):
    return CliRunner().invoke(xcli.cli, list(args), input=input, catch_exceptions=False)


def xpr_sub(root: Path, *args: str, input: str | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, EXPYRE_ROOT=str(root), EXPYRE_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "expyre", *args], capture_output=True, text=True, env=env,
                          input=input, timeout=120, **kw)


def run(x: ExPyRe, timeout: float = 60):
    x.start(resources=RES, system_name="local", partial_node=True)
    return x.get_results(timeout=timeout, check_interval=0.5)


def one_line_error(result) -> str:
    err = result.stderr.strip()
    assert result.exit_code != 0
    assert err.startswith("xpr: ") and "\n" not in err, err
    return err


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", [[], ["ls"], ["rm"], ["db_unlock"], ["sync"], ["cancel"], ["hold"], ["release"],
                                 ["plugins"], ["config"], ["config", "show"], ["config", "check"], ["why"],
                                 ["show"], ["logs"]])
def test_every_command_has_help_with_an_example(cmd):
    r = xpr(*cmd, "--help")
    assert r.exit_code == 0, r.stdout
    assert "Example" in r.stdout and "xpr " in r.stdout


def test_ls_filters_sorting_json_and_plain_text(root):
    a = ExPyRe("alpha", jobfuncs.add, args=[1, 2])
    assert run(a) == 3
    a.mark_processed()
    b = ExPyRe("beta", jobfuncs.add, args=[2, 2])
    assert run(b) == 4
    c = ExPyRe("beta_2", jobfuncs.add, args=[3, 3])  # created, never started
    rows = json.loads(xpr("ls", "--json").stdout)
    assert [r["id"] for r in rows] == [a.id, b.id, c.id]  # oldest first
    assert rows[1]["resources"]["max_time"] == 300
    ids = lambda *args: [r["id"] for r in json.loads(xpr("ls", "--json", *args).stdout)]  # noqa: E731
    assert ids("-s", "ongoing") == [c.id]
    assert ids("-s", "can_produce_results") == [b.id, c.id]
    assert ids("-s", "processed|succeeded") == [a.id, b.id]
    assert ids("-n", "beta") == [b.id]  # whole-value match
    assert ids("-n", "beta.*", "-s", "succeeded") == [b.id]
    assert ids("-n", "alpha", "-n", "beta_2") == [a.id, c.id]
    assert ids("-i", b.id) == [b.id]
    assert ids("-S", "local") == [a.id, b.id]  # c has no system yet
    assert ids("--sort", "name", "-r") == [c.id, b.id, a.id]
    assert ids("-r", "--limit", "1") == [c.id]

    r = xpr("ls")  # piped: plain aligned text, no colour codes, nothing cut
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:6] == ["id", "name", "status", "created", "updated", "age"]
    assert "\x1b[" not in r.stdout and len(lines) == 4
    assert lines[1].split()[:3] == [a.id, "alpha", "processed"]
    assert time.strftime("%Y-%m-%d") in lines[1]
    long_ = xpr("ls", "-l", "-i", b.id).stdout
    assert str(b.stage_dir) in long_ and (b.hash or "")[:12] in long_ and "local" in long_

    r = xpr("ls", "-n", "nothing")
    assert r.exit_code == 0 and r.stdout == "" and "no jobs match" in r.stderr


def test_ls_errors_are_one_line(root):
    err = one_line_error(xpr("ls", "-s", "ongoin"))
    assert "did you mean 'ongoing'" in err
    assert "invalid" in one_line_error(xpr("ls", "-n", "("))


def test_rm_needs_a_filter_and_confirmation(root):
    x = ExPyRe("gone", jobfuncs.add, args=[1, 1])
    assert run(x) == 2
    assert "at least one filter" in one_line_error(xpr("rm"))
    r = xpr("rm", "-n", "gone", input="n\n")
    assert "nothing deleted" in one_line_error(r)
    assert config.db.get(x.id) is not None
    r = xpr("rm", "-n", "gone", "--dry-run")
    assert r.exit_code == 0 and x.id in r.stdout and config.db.get(x.id) is not None
    r = xpr("rm", "-n", "gone", input="y\n")
    assert r.exit_code == 0, r.stdout
    assert config.db.get(x.id) is None and x.stage_dir.exists()  # without --clean the files stay
    assert "no jobs match" in one_line_error(xpr("rm", "-n", "gone", "-y"))


def test_rm_clean_deletes_only_expyre_stage_dirs(root, tmp_path):
    x = ExPyRe("tidy", jobfuncs.add, args=[1, 1])
    assert run(x) == 2
    r = xpr("rm", "-i", x.id, "-y", "--clean")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert config.db.get(x.id) is None and not x.stage_dir.exists()

    # a row pointing outside the root (or through a symlink) is never deleted
    y = ExPyRe("outside", jobfuncs.add, args=[2, 2])
    outside = tmp_path / "precious" / y.stage_dir.name
    outside.mkdir(parents=True)
    (outside / "data").write_text("keep me")
    config.db.update(y.id, from_dir=str(outside))
    z = ExPyRe("linked", jobfuncs.add, args=[3, 3])
    target = tmp_path / "precious2"
    target.mkdir()
    (target / "data").write_text("keep me too")
    import shutil

    shutil.rmtree(z.stage_dir)
    z.stage_dir.symlink_to(target)
    r = xpr("rm", "-n", "outside|linked", "-y", "--clean")
    assert r.exit_code == 1
    assert "not a run_* directory of the expyre root" in r.stderr
    assert (outside / "data").read_text() == "keep me" and (target / "data").exists()
    assert config.db.get(y.id) is not None and config.db.get(z.id) is not None


def test_rm_clean_of_a_running_job_needs_cancel(root):
    x = ExPyRe("long", jobfuncs.sleep, args=[60])
    x.start(resources=RES, system_name="local", partial_node=True)
    r = xpr("rm", "-i", x.id, "-y", "--clean")
    assert r.exit_code == 1 and "use --cancel" in r.stderr
    assert config.db.get(x.id) is not None and x.stage_dir.exists()
    r = xpr("rm", "-i", x.id, "-y", "--clean", "--cancel")
    assert r.exit_code == 0, r.stderr
    assert config.db.get(x.id) is None and not x.stage_dir.exists()
    # the job ends; once it has, rm also drops the local queue's records of it (then it is unknown)
    wait_for(lambda: (st := x.system.status([x.remote_id]).get(x.remote_id)) is None or st.state.terminal, 30,
             "the cancelled job to end")


def _finished_in_queue(x: ExPyRe) -> bool:
    st = x.system.status([x.remote_id]).get(x.remote_id)
    return st is not None and st.state.terminal


def test_sync_records_results_and_deaths_without_waiting(root):
    ok = ExPyRe("ok", jobfuncs.add, args=[5, 6])
    dead = ExPyRe("dead", jobfuncs.die_hard)
    for x in (ok, dead):
        x.start(resources=RES, system_name="local", partial_node=True)
    for x in (ok, dead):
        wait_for(lambda: _finished_in_queue(x), 60, f"{x.name} to end in the local queue")
    assert config.db.get(ok.id)["status"] in ("submitted", "started")
    t0 = time.monotonic()
    r = xpr("sync", "--json")
    assert r.exit_code == 0, r.stderr
    assert time.monotonic() - t0 < 20
    out = {x["id"]: x for x in json.loads(r.stdout)}
    assert out[ok.id]["status"] == "succeeded" and out[ok.id]["before"] in ("submitted", "started")
    assert out[dead.id]["status"] == "died"
    assert config.db.get(ok.id)["status"] == "succeeded"
    assert "without a result" in config.db.get(dead.id)["reason"]
    assert ExPyRe.from_jobsdb(config.db.get(ok.id))[0].get_results(timeout=10) == 11
    r = xpr("sync")  # nothing ongoing any more
    assert r.exit_code == 0 and "no jobs match" in r.stderr


def test_sync_does_not_block_on_running_jobs(root):
    x = ExPyRe("slow", jobfuncs.sleep, args=[30])
    x.start(resources=RES, system_name="local", partial_node=True)
    t0 = time.monotonic()
    r = xpr("sync", "-n", "slow", "--json")
    assert r.exit_code == 0, r.stderr
    assert time.monotonic() - t0 < 10
    (row,) = json.loads(r.stdout)
    assert row["status"] in ("submitted", "started")
    xpr("cancel", "-i", x.id, "-y")


def test_cancel_hold_release_batch_per_system(root):
    blocker = ExPyRe("blocker", jobfuncs.sleep, args=[3])
    blocker.start(resources={"max_time": "5m", "n": (1, "nodes")}, system_name="local")
    a = ExPyRe("held", jobfuncs.add, args=[4, 4])
    b = ExPyRe("held", jobfuncs.add, args=[5, 5])
    for x in (a, b):
        x.start(resources=RES, system_name="local", partial_node=True)
    calls = []
    from expyre.system import System

    orig = System.control

    def spy(self, op, ids):
        calls.append((op, sorted(ids)))
        return orig(self, op, ids)

    System.control = spy
    try:
        r = xpr("hold", "-n", "held")
        assert r.exit_code == 0, r.stderr
        assert calls == [("hold", sorted([a.remote_id, b.remote_id]))]  # one command for both
        assert blocker.get_results(timeout=60) == 3
        time.sleep(1)
        xpr("sync", "-n", "held")
        assert all("held" in config.db.get(x.id)["remote_status"] for x in (a, b))
        r = xpr("release", "-n", "held", "--json")
        assert r.exit_code == 0 and all(j["done"] for j in json.loads(r.stdout))
        assert calls[-1][0] == "release" and len(calls[-1][1]) == 2
    finally:
        System.control = orig
    assert a.get_results(timeout=60) == 8 and b.get_results(timeout=60) == 10
    r = xpr("hold", "-n", "held")
    assert "nothing to hold" in one_line_error(r)


def test_cancel_asks_and_marks_jobs(root):
    x = ExPyRe("victim", jobfuncs.sleep, args=[60])
    x.start(resources=RES, system_name="local", partial_node=True)
    never = ExPyRe("victim", jobfuncs.sleep, args=[61])  # created, not submitted
    r = xpr("cancel", "-n", "victim", input="n\n")
    assert "nothing cancelled" in one_line_error(r)
    r = xpr("cancel", "-n", "victim", "-y")
    assert r.exit_code == 0, r.stderr
    assert config.db.get(never.id)["status"] == "died"
    wait_for(lambda: _finished_in_queue(x), 30, "the cancelled job to end")
    xpr("sync", "-i", x.id)
    assert config.db.get(x.id)["status"] == "died"
    assert "cancel" in config.db.get(x.id)["reason"]


def test_plugins_lists_distributions(root):
    r = xpr("plugins")
    assert r.exit_code == 0
    assert "scheduler local" in r.stdout and "built in" in r.stdout
    data = json.loads(xpr("plugins", "--json").stdout)
    assert "local" in data["schedulers"] and "local" in data["transports"]
    assert all("version" in p and "distribution" in p for p in data["plugins"])


def test_config_show_says_where_systems_come_from(root):
    cfg = root / "config.json"
    cfg.write_text(json.dumps({"systems": {"other": {"host": None, "scheduler": "local",
                                                     "partitions": {"p1": {"ncores": 1, "max_time": "1h"}}}}}))
    data = json.loads(xpr("config", "show", "--json").stdout)
    assert data["systems"]["local"]["origins"] == []
    assert data["systems"]["other"]["origins"] == [str(cfg)]
    assert data["sources"] == [str(cfg)]
    text = xpr("config", "show").stdout
    assert "system local  (from embedded default)" in text
    assert f"system other  (from {cfg})" in text and "p1" in text and "01:00:00" in text
    assert "other" not in xpr("config", "show", "-S", "local").stdout.split("system local")[1]
    cfg.write_text(json.dumps({"systems": {"other": {"scheduler": "local", "partitions": {"p": {"ncores": 1, "max_tme": 1}}}}}))
    r = xpr("config", "show")
    assert r.exit_code == 2 and "max_tme" in one_line_error(r)


def test_config_check_pass_and_fail(root, monkeypatch):
    r = xpr("config", "check")
    assert r.exit_code == 0, r.stdout
    assert "local: PASS" in r.stdout
    data = json.loads(xpr("config", "check", "--json").stdout)
    assert data["systems"]["local"]["ok"] and [c["check"] for c in data["systems"]["local"]["checks"]] == ["host", "python", "scheduler", "partitions"]

    from expyre.builtin.local_transport import LocalTransport
    from expyre.types import CommandResult

    monkeypatch.setattr(LocalTransport, "run", lambda self, cmd, **kw: CommandResult(cmd, 255, "", "no route to host"))
    r = xpr("config", "check")
    assert r.exit_code == 1
    assert "local: FAIL" in r.stdout and "no route to host" in r.stdout


def test_why_explains_reuse(root):
    a = ExPyRe("task", jobfuncs.add, args=[1, 2])
    assert run(a) == 3
    a.mark_processed()
    b = ExPyRe("task", jobfuncs.add, args=[1, 2])  # same hash, new job since a was processed
    assert b.id != a.id and b.hash == a.hash
    c = ExPyRe("task", jobfuncs.add, args=[1, 3])
    data = json.loads(xpr("why", "task", "--json").stdout)["task"]
    jobs = {j["id"]: j for j in data["jobs"]}
    assert [j["id"] for j in data["jobs"]] == [c.id, b.id, a.id]
    assert jobs[c.id]["reusable"] and jobs[b.id]["reusable"] and not jobs[a.id]["reusable"]
    assert "mark_processed" in jobs[a.id]["why"]
    assert "would reuse " + c.id in data["verdict"]
    text = xpr("why", "task").stdout
    assert a.id in text and "processed" in text and (a.hash or "")[:12] in text
    assert "no recorded job" in one_line_error(xpr("why", "tas"))
    assert xpr("why", "-r", "ta.*", "--json").exit_code == 0


def test_db_unlock(root):
    ExPyRe("kept", jobfuncs.add, args=[1, 1])
    r = xpr("db_unlock")
    assert r.exit_code == 0 and "not locked" in r.stdout
    db = root / "jobs.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\n"
         "print('locked', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = xpr_sub(root, "db_unlock")
        assert r.returncode == 1 and "locked" in r.stdout and "--force" in r.stdout
        r = xpr_sub(root, "db_unlock", "--force")
        assert r.returncode == 0 and "replaced by an unlocked copy" in r.stdout
    finally:
        holder.kill()
        holder.wait()
    config.db.close()
    con = sqlite3.connect(db)
    assert [n for (n,) in con.execute("SELECT name FROM jobs")] == ["kept"]
    con.close()


def test_real_subprocess_against_local_jobs(root):
    """The installed entry point as users run it: piped plain text, JSON, one-line errors."""
    x = ExPyRe("sub", jobfuncs.add, args=[20, 22])
    x.start(resources=RES, system_name="local", partial_node=True)
    wait_for(lambda: _finished_in_queue(x), 60, "the job to end")
    r = xpr_sub(root, "sync")
    assert r.returncode == 0, r.stderr
    assert x.id in r.stdout and "succeeded" in r.stdout and "\x1b[" not in r.stdout
    r = xpr_sub(root, "ls", "--json", "-s", "succeeded")
    assert [j["id"] for j in json.loads(r.stdout)] == [x.id]
    r = xpr_sub(root, "ls", "-s", "nope")
    assert r.returncode == 1 and r.stderr.startswith("xpr: ") and r.stderr.count("\n") == 1
    r = xpr_sub(root, "rm", "-s", "succeeded", "--clean", input="")  # stdin at EOF: nothing confirmed
    assert r.returncode == 1 and "nothing deleted" in r.stderr and config.db.get(x.id) is not None
    r = xpr_sub(root, "rm", "-s", "succeeded", "--clean", "-y")
    assert r.returncode == 0, r.stderr
    assert config.db.get(x.id) is None and not x.stage_dir.exists()
    (root / "config.json").write_text("{not json")
    r = xpr_sub(root, "config", "check")
    assert r.returncode == 1 and "FAIL" in r.stdout and "invalid JSON" in r.stdout
    r = xpr_sub(root, "sync")
    assert r.returncode == 2 and r.stderr.startswith("xpr: ") and r.stderr.count("\n") == 1
    r = xpr_sub(root, "ls")  # ls does not need a valid config.json
    assert r.returncode == 0


def test_ls_ongoing_on_100k_jobs_uses_the_status_index(root):
    """`xpr ls -s ongoing` on 100k jobs (1000 ongoing), through the real entry point: every ongoing
    job and nothing else, found through the status index (no scan of the table). Its speed is
    measured by bench/ (`bash bench/run.sh -s db`), not here."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    try:
        import bench_xpr_ls
    finally:
        sys.path.pop(0)
    config.db.close()
    bench_xpr_ls.build(root, 100_000, 1000)
    r = xpr_sub(root, "ls", "-s", "ongoing")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1001 and {ln.split()[2] for ln in lines[1:]} == {"created", "submitted", "started"}
    con = sqlite3.connect(root / "jobs.db")
    try:
        plan = " ".join(str(row) for row in con.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE status IN (?,?,?) ORDER BY creation_time",
            ("created", "submitted", "started")))
    finally:
        con.close()
    assert "USING INDEX" in plan and "status" in plan, plan
    r = xpr_sub(root, "ls", "-s", "failed|died", "--json")  # a status regexp is an indexed IN too
    assert r.returncode == 0 and {j["status"] for j in json.loads(r.stdout)} <= {"failed", "died"}


# the click-free `xpr ls` (expyre.cli_ls) must read its options exactly as click does
LS_ARGVS = [
    [], ["-s", "ongoing"], ["--status", "ongoing"], ["--status=ongoing"], ["-songoing"], ["-s", "failed|died", "-s", "created"],
    ["-l"], ["--long"], ["-r", "--sort", "updated"], ["--sort=name", "--reverse"], ["--limit", "5"], ["--limit=1"],
    ["--json"], ["-i", "job_.*", "-n", "a", "-n", "b", "-S", "local"], ["--id=x", "--name", "y", "--system", "z"],
    ["-s", "ongoing", "-S", "archer2.*", "-l", "--json", "--limit", "3", "--sort", "status"],
]
LS_DECLINED = [
    ["--help"], ["-h"], ["-lr"], ["--limit", "0"], ["--limit", "x"], ["--sort", "size"], ["-s"], ["--status"],
    ["extra"], ["--json=1"], ["-x"], ["--bogus"], ["-s", "-l"], ["--", "-s"],
]


@pytest.mark.parametrize("argv", LS_ARGVS, ids=lambda a: " ".join(a) or "(none)")
def test_fast_ls_parses_like_click(argv):
    from expyre.cli_ls import parse_fast

    expected = xcli.cli.commands["ls"].make_context("ls", list(argv)).params
    assert parse_fast(["ls", *argv]) == expected


@pytest.mark.parametrize("argv", LS_DECLINED, ids=lambda a: " ".join(a))
def test_fast_ls_leaves_everything_else_to_click(argv):
    from expyre.cli_ls import parse_fast

    assert parse_fast(["ls", *argv]) is None


def test_fast_ls_has_every_option_of_click_ls():
    from expyre.cli_ls import ALL_OPTIONS

    click_opts = {o for p in xcli.cli.commands["ls"].params for o in p.opts}
    assert click_opts - {"--help"} == {f for o in ALL_OPTIONS for f in o.flags}


def test_xpr_ls_loads_neither_click_nor_plugins(root):
    """The `xpr` entry point answers `ls` without importing click, rich, pluggy, attrs or cattrs,
    prints what click's path prints, and hands anything it does not read to click."""
    x = ExPyRe("listed", jobfuncs.add, args=[1, 2])
    assert run(x) == 3
    with config.db._tx() as con:  # created a day and a half-hour ago: the age column ("1d00h") is
        # the same in both runs below (in seconds it could tick between them)
        con.execute("UPDATE jobs SET creation_time = ? WHERE id = ?", (time.time() - 86400 - 1800, x.id))
    probe = ("import sys; from expyre.xpr import main; main(sys.argv[1:]); "
             "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'click', 'rich', 'pluggy', 'attr', 'attrs', 'cattrs'}); "
             "sys.stderr.write('HEAVY=' + ','.join(heavy))")
    env = dict(os.environ, EXPYRE_ROOT=str(root))

    def probe_run(*args):
        return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env, timeout=60)

    for args in (["ls"], ["ls", "-s", "succeeded", "-l"], ["ls", "--json"], ["ls", "-n", "nothing"]):
        fast = probe_run(*args)
        assert fast.returncode == 0 and fast.stderr.endswith("HEAVY="), fast.stderr
        via_click = xpr(*args)
        assert fast.stdout == via_click.stdout
        assert fast.stderr[: -len("HEAVY=")] == via_click.stderr
    declined = probe_run("ls", "--sort=size")
    assert declined.returncode == 2 and "Invalid value for '--sort'" in declined.stderr
    typo = probe_run("ls", "-s", "ongoin")  # bad filters are reported by click's path, in one line
    assert typo.returncode == 1 and typo.stderr.startswith("xpr: status 'ongoin' matches no status")


def test_why_says_what_changed_between_calls(root, tmp_path):
    """The constructor records per-component digests (_expyre_hashes.json) that `xpr why` compares."""
    (tmp_path / "in.txt").write_text("one")
    a = ExPyRe("calc", jobfuncs.add, args=[1, 2], kwargs={"scratch": "x"}, input_files=["in.txt"])
    digests = json.loads((a.stage_dir / "_expyre_hashes.json").read_text())
    assert digests["hash"] == a.hash and set(digests["args"]) == {"0", "1"} and set(digests["kwargs"]) == {"scratch"}
    assert digests["function_name"] == "xpr_core_jobfuncs.add" and set(digests["files"]) == {"in.txt"}
    time.sleep(0.01)
    (tmp_path / "in.txt").write_text("two")
    b = ExPyRe("calc", jobfuncs.add, args=[1, 5], kwargs={"scratch": "x"}, input_files=["in.txt"])
    time.sleep(0.01)
    c = ExPyRe("calc", jobfuncs.sleep, args=[1, 5], kwargs={"scratch": "x"}, input_files=["in.txt"])
    data = json.loads(xpr("why", "calc", "--json").stdout)["calc"]
    jobs = {j["id"]: j for j in data["jobs"]}
    assert jobs[b.id]["changed_since"] == ["function xpr_core_jobfuncs.add -> xpr_core_jobfuncs.sleep"]
    assert jobs[a.id]["changed_since"] == ["function xpr_core_jobfuncs.add -> xpr_core_jobfuncs.sleep", "argument 1",
                                           "input file in.txt contents"]
    text = xpr("why", "calc").stdout
    assert f"{c.id} vs {a.id}: changed: function xpr_core_jobfuncs.add -> xpr_core_jobfuncs.sleep; argument 1; input file in.txt contents" in text
    assert diff_hashes(json.loads((b.stage_dir / "_expyre_hashes.json").read_text()), digests) == [
        "argument 1", "input file in.txt contents"]


# -- a third-party scheduler that implements none of the optional members ------------------------


@pytest.fixture
def shellq_root(tmp_path, monkeypatch, fresh_plugins):
    from expyre import plugins
    from expyre.testing import make_root

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples" / "plugin" / "src"))
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "data" / "site"))
    plugins.reset()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_ROOT", str(tmp_path / "_expyre"))
    return make_root(tmp_path / "_expyre", {"bg": {"scheduler": "shellq", "host": None,
                                                   "partitions": {"any": {"ncores": 1}}}})


def test_cli_works_with_a_scheduler_without_the_optional_members(shellq_root):
    from expyre import plugins
    from expyre.hookspecs import Scheduler

    backend = plugins.get_scheduler_spec("shellq").backend
    for member in ("default_partitions", "probe_command", "partitions_command", "parse_partitions",
                   "explain_command", "parse_explain", "probe", "list_partitions", "explain_queued"):
        assert not any(member in vars(c) for c in backend.__mro__ if c is not Scheduler and issubclass(c, Scheduler)), member
    assert plugins.default_partitions("shellq") is None

    data = json.loads(xpr("config", "check", "-S", "bg", "--json").stdout)
    checks = {c["check"]: c for c in data["systems"]["bg"]["checks"]}
    assert data["systems"]["bg"]["ok"], checks
    assert checks["scheduler"]["detail"].startswith("shellq: /")  # the status command's program, found on PATH
    assert "any" in checks["partitions"]["detail"] and "lists none" in checks["partitions"]["detail"]
    assert "any " in xpr("config", "show", "-S", "bg").stdout

    x = ExPyRe("bg_sleep", jobfuncs.sleep, args=[60])
    x.start(resources=RES, system_name="bg", partial_node=True)
    config.db.update(x.id, remote_status="queued")  # as a scheduler would say: why asks it, shellq cannot tell
    r = xpr("why", "bg_sleep", "--json")
    assert r.exit_code == 0, r.stderr
    (job,) = json.loads(r.stdout)["bg_sleep"]["jobs"]
    assert job["id"] == x.id and "waiting" not in job
    r = xpr("hold", "-n", "bg_sleep", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["done"], r.stdout + r.stderr
    assert xpr("release", "-n", "bg_sleep").exit_code == 0
    r = xpr("cancel", "-n", "bg_sleep", "-y")
    assert r.exit_code == 0, r.stderr
    assert config.db.get(x.id)["reason"] == "cancel requested by user (xpr)"


def test_config_without_partitions_needs_a_scheduler_with_defaults(shellq_root):
    (shellq_root / "config.json").write_text(json.dumps({"systems": {"bg": {"scheduler": "shellq", "host": None}}}))
    r = xpr("config", "check")
    assert r.exit_code == 1 and "systems.bg.partitions" in r.stdout and "shellq" in r.stdout


def test_why_says_why_a_queued_job_waits(root, monkeypatch):
    from expyre.builtin.local_scheduler import LocalScheduler

    x = ExPyRe("waiter", jobfuncs.sleep, args=[60])
    x.start(resources=RES, system_name="local", partial_node=True)
    config.db.update(x.id, status="submitted", remote_status="queued (Resources)")
    asked = []

    def explain_queued(self, transport, ids, timeout=None):
        asked.append(list(ids))
        return {i: "waits for 4 free cores" for i in ids}

    monkeypatch.setattr(LocalScheduler, "explain_queued", explain_queued)
    r = xpr("why", "waiter")
    assert r.exit_code == 0, r.stderr
    assert asked == [[x.remote_id]]
    assert f"{x.id} waits in the queue: waits for 4 free cores" in r.stdout
    (job,) = json.loads(xpr("why", "waiter", "--json").stdout)["waiter"]["jobs"]
    assert job["waiting"] == "waits for 4 free cores"
    xpr("cancel", "-i", x.id, "-y")

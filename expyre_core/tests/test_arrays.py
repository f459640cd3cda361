"""Job arrays in the core, with the example plugin ``shellq`` (examples/plugin, found through tests/data/site), whose
"arrays" are background processes: ``ExPyRe.start_array`` writes one shared script per array,
splits at the limit, submits an array of one as a plain job, and each element is an ordinary job
with its own id, directory and result. The real schedulers' arrays are tested in
tests/test_executor_real.py and each plugin's tests/test_arrays.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import test_executor_funcs as funcs
from expyre import Executor, config, plugins
from expyre.func import ExPyRe
from expyre.testing import make_root

DATA = Path(__file__).parent / "data"
#: the example plugin expyre-shellq (examples/plugin), "installed" by the .dist-info shim in data/site
EXAMPLE_PLUGIN_SRC = Path(__file__).resolve().parents[2] / "examples" / "plugin" / "src"
RES = {"max_time": "1m", "n": (1, "tasks")}


@pytest.fixture
def shellq_root(tmp_path, monkeypatch, fresh_plugins):
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_SRC))
    monkeypatch.syspath_prepend(str(DATA / "site"))
    plugins.reset()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_ROOT", str(tmp_path / "_expyre"))  # restored afterwards
    return lambda **opts: make_root(tmp_path / "_expyre", {"bg": {
        "scheduler": "shellq", "host": None, "partitions": {"any": {"ncores": 1}}, **opts}})


def test_start_array_splits_and_each_element_is_a_job(shellq_root, monkeypatch):
    shellq_root()
    monkeypatch.setattr(plugins.get_scheduler_spec("shellq").backend, "max_array_size", 3)
    xprs = [ExPyRe(f"el_{i}", funcs.square, args=[i]) for i in range(7)]
    assert ExPyRe.start_array(xprs, RES, "bg") == {}
    assert [x.get_results(timeout=60, check_interval=1) for x in xprs] == [i * i for i in range(7)]
    # arrays of 3 + 3, and the last job alone (an array of one is a plain job)
    firsts = [x for x in xprs if (x.stage_dir / "_expyre_array.sh").exists()]
    assert [x.name for x in firsts] == ["el_0", "el_3"]
    assert (firsts[1].stage_dir / "_expyre_array_dirs").read_text().split() == [x.stage_dir.name for x in xprs[3:6]]
    refs = [json.loads((x.stage_dir / "_expyre_array_ref.json").read_text()) for x in xprs[:6]]
    assert [r["index"] for r in refs] == [0, 1, 2, 0, 1, 2] and len({r["array"] for r in refs}) == 2
    assert not (xprs[6].stage_dir / "_expyre_array_ref.json").exists()
    ids = [config.db.get(x.id)["remote_id"] for x in xprs]
    assert len(set(ids)) == 7 and all(i.isdigit() for i in ids)  # each element's own id (a pid here)
    script = (firsts[0].stage_dir / "_expyre_array.sh").read_text()
    assert "# shellq array of 3" in script and "SHELLQ_INDEX" in script
    # each element ran its own ordinary job script in its own directory, its output there
    assert all((x.stage_dir / "_expyre_job.out").exists() for x in xprs)
    assert sorted(p.name for p in firsts[0].stage_dir.glob("_expyre_array_*.out")) == [
        "_expyre_array_0.out", "_expyre_array_1.out", "_expyre_array_2.out"]


def test_site_limit_from_scheduler_options_needs_the_plugin_to_accept_it(shellq_root):
    # shellq has no Options class: its scheduler_options cannot set max_array_size
    shellq_root()
    assert config.get_system("bg").array_limit() == 100


def test_executor_array_and_restart_of_a_failed_element(shellq_root, tmp_path):
    """Packed chunks as array elements; after a crash, the chunk with the raising call is run
    again (in a new array), the others are reused."""
    shellq_root()
    flag = str(tmp_path / "fixed")
    with pytest.raises(KeyboardInterrupt):
        with Executor(system_name="bg", resources=RES, check_interval=1, array=True) as ex:
            fs = ex.map_futures(funcs.fail_until_file, range(16), [flag] * 16, chunksize=4)
            assert [f.exception(timeout=60) is None for f in fs] == [i != 13 for i in range(16)]
            for x in {f.job_id: f.xpr for f in fs}.values():  # the chunks' rows reach their final state
                x.get_results(timeout=60, quiet=True)
            raise KeyboardInterrupt  # nothing is marked processed
    before = {r["name"]: r["remote_id"] for r in config.db.jobs(name="fail_until_file_.*")}
    assert len(before) == 4
    Path(flag).write_text("")
    with Executor(system_name="bg", resources=RES, check_interval=1, array=True) as ex:
        assert list(ex.map(funcs.fail_until_file, range(16), [flag] * 16, chunksize=4)) == list(range(16))
    after = {r["name"]: r["remote_id"] for r in config.db.jobs(name="fail_until_file_.*")}
    assert {n for n in before if after[n] != before[n]} == {"fail_until_file_3"}


def test_array_element_cancel(shellq_root, tmp_path):
    shellq_root()
    flag = str(tmp_path / "go")
    xprs = [ExPyRe(f"w_{i}", funcs.sleep_in_file, args=[i, flag]) for i in range(3)]
    assert ExPyRe.start_array(xprs, RES, "bg") == {}
    xprs[1].cancel()  # kills element 1's process alone
    Path(flag).write_text("")
    assert xprs[0].get_results(timeout=60, check_interval=1) == 0
    assert xprs[2].get_results(timeout=60, check_interval=1) == 2
    from expyre.func import ExPyReJobDiedError

    with pytest.raises(ExPyReJobDiedError):
        xprs[1].get_results(timeout=60, check_interval=1)

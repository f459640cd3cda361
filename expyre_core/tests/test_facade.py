"""ExPyRe as a facade over the services: its public behaviour at the seams that moved."""

from __future__ import annotations

import pytest

from expyre import config
from expyre.func import ExPyRe, ExPyReRemoteTraceback
from expyre.poller import Poller


def test_get_results_rejects_unknown_keywords(root):
    xpr = ExPyRe("kw", pow, args=[2, 5])
    xpr.start(resources={"n": (1, "tasks"), "max_time": "1m"}, partial_node=True)
    with pytest.raises(TypeError, match="timout"):
        xpr.get_results(timout=5)  # misspelt: an error, not silently ignored
    assert xpr.get_results(timeout=60, check_interval=0.2, quiet=True) == 32


def test_public_names_of_the_services(root):
    import expyre.func as func
    from expyre import errors

    assert func._Poller is Poller  # the former private name still works
    assert ExPyReRemoteTraceback is errors.ExPyReRemoteTraceback
    xpr = ExPyRe("reload", pow, args=[3, 2])
    config.db.update(xpr.id, reason="set elsewhere")
    assert xpr.reload()["reason"] == "set elsewhere" and xpr.reason == "set elsewhere"


def test_scheduler_always_gets_an_options_instance(root):
    from expyre.builtin.local_scheduler import LocalOptions

    sched = config.get_system("local").scheduler
    assert isinstance(sched.context.options, LocalOptions)  # structured from {} by the core


def test_a_job_handle_from_a_row_is_evaluated_without_the_facade(root):
    from expyre.job import JobHandle
    from expyre.poller import evaluate

    xpr = ExPyRe("handle", pow, args=[2, 3])
    xpr.start(resources={"n": (1, "tasks"), "max_time": "1m"}, partial_node=True)
    assert xpr.get_results(timeout=60, check_interval=0.2, quiet=True) == 8
    job = JobHandle(config.db.get(xpr.id))
    assert isinstance(xpr, JobHandle) and repr(job).startswith("JobHandle(id=")
    assert evaluate(job, Poller.get(job.system, config.db)) == "succeeded"
    config.db.update(xpr.id, from_dir="/elsewhere")
    with pytest.raises(ValueError, match="not its own stage directory"):
        job.reload()


def test_scheduler_options_problems_carry_the_key_path(tmp_path, monkeypatch):
    from expyre.config_files import ConfigError
    from expyre.config_load import load_config

    root = tmp_path / "_expyre"
    root.mkdir()
    (root / "config.json").write_text('{"systems": {"box": {"host": null, "scheduler": "local", '
                                      '"scheduler_options": {"pyton": "python3"}}}}')
    monkeypatch.setenv("EXPYRE_ROOT", str(root))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert info.value.problems == [("systems.box.scheduler_options", "unknown key 'pyton' (did you mean 'python'?)")]

"""The runtime variables: EXPYRE_RETRY, EXPYRE_TIMING_VERBOSE (EXPYRE_ROOT and EXPYRE_SYS are covered
in test_config.py and test_func.py; EXPYRE_RSH, which needs the ssh transport, in the repository's
cross-distribution tests, tests/test_cross_config.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from expyre.config_model import SystemConfig
from expyre.system import System, retry_policy
from expyre.types import SchedulerCommandError


def test_retry_policy(monkeypatch):
    monkeypatch.delenv("EXPYRE_RETRY", raising=False)
    assert retry_policy() == (3, 5.0)
    monkeypatch.setenv("EXPYRE_RETRY", "5 0.5")
    assert retry_policy() == (5, 0.5)
    monkeypatch.setenv("EXPYRE_RETRY", "three")
    with pytest.raises(ValueError, match="EXPYRE_RETRY='three' is invalid"):
        retry_policy()


def test_idempotent_commands_are_retried_per_expyre_retry(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPYRE_RETRY", "4 0")
    system = System("s", SystemConfig(scheduler="local"), tmp_path)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise SchedulerCommandError("transient")
        return "ok"

    assert system._retry(flaky, "test") == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(SchedulerCommandError):
        system._retry(lambda: calls.append(1) or (_ for _ in ()).throw(SchedulerCommandError("down")), "test")
    assert len(calls) == 4


def test_timing_verbose_traces_to_stderr(root):
    code = textwrap.dedent("""
        from expyre.func import ExPyRe
        x = ExPyRe("timed", max, args=[1, 2])
        x.start(resources={"max_time": "1m", "n": (1, "tasks")}, system_name="local", partial_node=True)
        assert x.get_results(timeout=60) == 2
    """)
    env = {**os.environ, "EXPYRE_ROOT": str(root), "EXPYRE_TIMING_VERBOSE": "1"}
    err = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stderr
    assert "expyre timing" in err and "constructor done" in err and "start() done" in err
    env.pop("EXPYRE_TIMING_VERBOSE")
    quiet = subprocess.run([sys.executable, "-c", code.replace("timed", "quiet")], env=env, capture_output=True, text=True, check=True).stderr
    assert "expyre timing" not in quiet

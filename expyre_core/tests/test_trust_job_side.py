"""A job's BaseException (sys.exit, KeyboardInterrupt) reaches the driver as an Exception and
never ends the driver; futures of other calls are unaffected."""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import sys
import textwrap

import pytest

import xpr_trust_jobfuncs as jf
from expyre import Executor
from expyre._runner import RemoteBaseException
from expyre.func import ExPyRe, ExPyReRemoteTraceback

RES = {"max_time": "5m", "n": (1, "tasks")}


def run(xpr):
    xpr.start(resources=RES, system_name="local", partial_node=True)
    return xpr.get_results(timeout=120, check_interval=0.5)


def test_sys_exit_in_a_job_is_an_exception_with_its_code(root):
    with pytest.raises(Exception) as info:
        run(ExPyRe("exit5", jf.exit_with, args=[5]))
    exc = info.value
    assert isinstance(exc, RemoteBaseException) and isinstance(exc, Exception)
    assert exc.type_name == "builtins.SystemExit" and exc.code == 5
    assert "SystemExit" in str(exc) and "5" in str(exc)
    assert "exit_with" in exc.remote_traceback and "sys.exit" in exc.remote_traceback
    assert isinstance(exc.__cause__, ExPyReRemoteTraceback) and "SystemExit" in exc.__cause__.tb


def test_a_recorded_system_exit_is_raised_as_an_exception_on_the_driver(tmp_path):
    """An error file holding a SystemExit itself (as an older runner wrote it) never ends the driver."""
    import pickle
    from types import SimpleNamespace

    from expyre.layout import FAILED
    from expyre.results import remote_exception

    (tmp_path / FAILED).write_bytes(pickle.dumps({"exception": SystemExit(3), "traceback": "tb text"}))
    job = SimpleNamespace(id="old_ab12cd34", stage_dir=tmp_path)
    exc = remote_exception(job)
    assert isinstance(exc, RemoteBaseException) and exc.code == 3 and exc.remote_traceback == "tb text"
    assert str(exc) == "the job's function raised SystemExit (exit code 3)"


def test_keyboard_interrupt_in_a_job_is_an_exception(root):
    with pytest.raises(Exception) as info:
        run(ExPyRe("ctrl-c", jf.interrupt))
    exc = info.value
    assert isinstance(exc, RemoteBaseException)
    assert exc.type_name == "builtins.KeyboardInterrupt" and exc.code is None and "stop" in str(exc)


def test_executor_futures_survive_a_job_exit(root):
    with Executor(system_name="local", resources=RES, partial_node=True, check_interval=0.5, progress=False) as ex:
        bad = ex.submit(jf.exit_with, 3)
        good = [ex.submit(jf.square, i) for i in range(3)]
        cf.wait([bad, *good], timeout=120)
        assert isinstance(bad.exception(), RemoteBaseException) and bad.exception().code == 3
        assert [f.result() for f in good] == [0, 1, 4]


@pytest.mark.parametrize("chunksize", [2, 4])
def test_packed_element_exit_fails_only_its_future(root, chunksize):
    with Executor(system_name="local", resources=RES, partial_node=True, check_interval=0.5, progress=False) as ex:
        fs = ex.map_futures(jf.exit_or_square, range(4), [2] * 4, chunksize=chunksize)
        cf.wait(fs, timeout=120)
        for i, f in enumerate(fs):
            if i == 2:
                exc = f.exception()
                assert isinstance(exc, RemoteBaseException) and exc.code == 7, exc
                assert exc.type_name == "builtins.SystemExit" and "exit_or_square" in exc.remote_traceback
            else:
                assert f.result() == i * i


DRIVER = """
import sys
sys.path.insert(0, {here!r})
import xpr_trust_jobfuncs as jf
from expyre.func import ExPyRe
x = ExPyRe("exit9", jf.exit_with, args=[9])
x.start(resources={{"max_time": "5m", "n": (1, "tasks")}}, system_name="local", partial_node=True)
try:
    x.get_results(timeout=120, check_interval=0.5)
except Exception as exc:
    print("caught", type(exc).__name__, exc.code)
print("driver goes on")
"""


def test_driver_process_is_not_ended_by_a_job_exit(root, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(here=str(__import__("pathlib").Path(__file__).parent)))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["caught RemoteBaseException 9", "driver goes on"]

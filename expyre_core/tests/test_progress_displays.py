"""Progress where expyre runs: with stderr on a pipe (a log line per interval on the logger
``expyre.progress``), in a Jupyter kernel (an HTML display in the cell, run by nbclient with a
real ipykernel), while ``concurrent.futures.as_completed`` waits, and never a frame left after
an exception; ``EXPYRE_PROGRESS=0`` still silences everything."""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import test_executor_funcs as funcs
from expyre import Executor, progress
from expyre.testing import wait_for

RES = {"max_time": "5m", "n": (1, "tasks")}
T = 120
FUNCS_DIR = str(Path(funcs.__file__).parent)


def _driver(tmp_path: Path, flag: Path, setup: str = "") -> Path:
    """A script mapping sleep_in_file over 4 calls (they end once ``flag`` exists)."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {FUNCS_DIR!r})
        {setup}
        from expyre import Executor
        import test_executor_funcs as funcs
        with Executor(system_name="local", resources={RES!r}, partial_node=True, check_interval=1, name="piped") as ex:
            print(sum(ex.map(funcs.sleep_in_file, range(4), [{str(flag)!r}] * 4, chunksize=1)), flush=True)
    """))
    return script


class _Lines:
    """The lines of a subprocess's stderr as they come (read by a thread)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.ended = threading.Event()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)
        self.ended.set()


def _run_piped(tmp_path: Path, env_extra: dict[str, str], setup: str = "") -> tuple[list[str], str]:
    flag = tmp_path / "go"
    env = {**os.environ, "EXPYRE_PROGRESS": "1", **env_extra}
    proc = subprocess.Popen([sys.executable, str(_driver(tmp_path, flag, setup))], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        err = _Lines(proc.stderr)
        if env["EXPYRE_PROGRESS"] != "0":
            # the calls end only once a progress line was written: the test never races the map
            wait_for(lambda: any("calls done" in line for line in err.lines) or err.ended.is_set(), T,
                     "a progress line on stderr")
        flag.write_text("")
        out = proc.stdout.read()
        proc.wait(timeout=T)
        assert err.ended.wait(T)
        return list(err.lines), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_log_lines_when_stderr_is_a_pipe(root, tmp_path):
    """No terminal and no logging configured: one line per interval, written to stderr anyway,
    with the counts and what is slowest; a last line when the wait ends."""
    lines, out = _run_piped(tmp_path, {"EXPYRE_PROGRESS_INTERVAL": "0.5"})
    assert out.strip() == "6"
    progress_lines = [line for line in lines if " expyre.progress INFO " in line]
    assert progress_lines, lines
    first = progress_lines[0]
    assert "piped: 0/4 calls done" in first and "running" in first and "queued" in first and "failed" in first
    assert any("slowest: piped_" in line or "longest queued: piped_" in line for line in progress_lines), lines
    assert "4/4 calls done" in progress_lines[-1] and "(finished waiting)" in progress_lines[-1]


def test_log_lines_go_through_logging_when_configured(root, tmp_path):
    setup = ("import logging; logging.basicConfig(level=logging.INFO, format='LOGGED %(name)s %(levelname)s %(message)s')")
    lines, _ = _run_piped(tmp_path, {"EXPYRE_PROGRESS_INTERVAL": "0.5"}, setup)
    assert any(line.startswith("LOGGED expyre.progress INFO piped: ") for line in lines), lines
    assert not any(" expyre.progress INFO " in line and not line.startswith("LOGGED") for line in lines)


def test_progress_0_silences_the_pipe(root, tmp_path):
    lines, out = _run_piped(tmp_path, {"EXPYRE_PROGRESS": "0", "EXPYRE_PROGRESS_INTERVAL": "0.1"})
    assert out.strip() == "6" and not any("expyre.progress" in line for line in lines), lines


def test_bad_interval_is_refused(root, monkeypatch):
    monkeypatch.setenv("EXPYRE_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ValueError, match="EXPYRE_PROGRESS_INTERVAL='soon': must be a number of seconds > 0"):
        Executor(system_name="local", resources=RES)
    monkeypatch.setenv("EXPYRE_PROGRESS_INTERVAL", "0")
    with pytest.raises(ValueError, match="EXPYRE_PROGRESS_INTERVAL"):
        progress.interval()
    monkeypatch.setenv("EXPYRE_PROGRESS_INTERVAL", "2.5")
    assert progress.interval() == 2.5


class _Recorder:
    """Stands for progress.Display: records what would be drawn."""

    instances: list["_Recorder"] = []

    def __init__(self, name, total, mode, every=None):
        self.mode, self.updates, self.closed = mode, [], False
        _Recorder.instances.append(self)

    def update(self, text, completed, total):
        assert not self.closed, "a display updated after it ended"
        self.updates.append((text, completed, total))

    def close(self):
        self.closed = True


@pytest.fixture
def recorded(monkeypatch):
    import expyre.executor as exmod

    _Recorder.instances = []
    monkeypatch.setattr(exmod, "Display", _Recorder)
    monkeypatch.setattr(exmod, "SHOW_AFTER", 0.0)
    monkeypatch.setattr(exmod, "display_mode", lambda requested=True: "terminal" if requested else None)
    return _Recorder.instances


def test_as_completed_display_shows_while_waiting(root, tmp_path, recorded):
    flag = tmp_path / "go"
    with Executor(system_name="local", resources=RES, partial_node=True, check_interval=1, name="ac") as ex:
        fs = ex.map_futures(funcs.sleep_in_file, range(3), [str(flag)] * 3, chunksize=1)

        def release():
            wait_for(lambda: recorded and recorded[0].updates, T, "the display during as_completed")
            flag.write_text("")

        t = threading.Thread(target=release, daemon=True)
        t.start()
        assert sorted(f.result() for f in cf.as_completed(fs, timeout=T)) == [0, 1, 2]
        t.join(T)
    text, done, total = recorded[0].updates[0]
    assert text.startswith("ac: ") and total == 3
    assert all(d.closed for d in recorded)


def test_no_display_left_after_an_exception(root, tmp_path, recorded):
    """map raising: the display is ended before the exception reaches the caller."""
    with pytest.raises(ValueError, match="unlucky 13"):
        with Executor(system_name="local", resources=RES, partial_node=True, check_interval=1, name="boom") as ex:
            it = ex.map(funcs.maybe_raise, [12, 13, 14], chunksize=3)
            try:
                for _ in it:
                    pass
            except ValueError:
                assert all(d.closed for d in recorded)  # at the moment the exception arrives
                raise
    assert ex._display is None


@pytest.mark.slow
def test_notebook_display(root, tmp_path, monkeypatch):
    """A real Jupyter kernel (ipykernel, run by nbclient): the cell's outputs hold expyre's HTML
    display, updated in place to the final counts, and the map's result."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("EXPYRE_PROGRESS", "1")
    (tmp_path / "home").mkdir(exist_ok=True)  # the kernel's HOME (IPython keeps its profile there)
    flag = tmp_path / "go"
    cell = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {FUNCS_DIR!r})
        from expyre import Executor
        import test_executor_funcs as funcs
        ex = Executor(system_name="local", resources={RES!r}, partial_node=True, check_interval=1, name="nb")

        def release():  # the calls end once the display is in the notebook: no race with the map
            while ex._display is None or ex._display._handle is None:
                time.sleep(0.05)
            open({str(flag)!r}, "w").close()

        threading.Thread(target=release, daemon=True).start()
        with ex:
            print("total", sum(ex.map(funcs.sleep_in_file, range(4), [{str(flag)!r}] * 4, chunksize=1)))
    """)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    client = nbclient.NotebookClient(nb, timeout=T * 2, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = nb.cells[0].outputs
    displays = [o for o in outputs if o.output_type == "display_data"]
    assert len(displays) == 1, outputs  # one display, updated in place
    data = displays[0].data
    assert 'class="expyre-progress"' in data["text/html"] and "<progress" in data["text/html"]
    assert data["text/plain"].startswith("nb: 0 running, 0 queued, 0 failed 4/4"), data["text/plain"]
    streams = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "total 6" in streams
    assert not [o for o in outputs if o.output_type == "error"], outputs


def test_terminal_bar_is_erased_before_the_traceback(root, tmp_path):
    """On a real terminal (a pty): the bar shows while map waits, and when map raises, the bar is
    erased before the traceback is written (no frame glued in front of it)."""
    import pty

    flag = tmp_path / "go"
    script = tmp_path / "tty_driver.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {FUNCS_DIR!r})
        from expyre import Executor
        import test_executor_funcs as funcs
        with Executor(system_name="local", resources={RES!r}, partial_node=True, check_interval=1, name="ttybar") as ex:
            list(ex.map(funcs.raise_when_file, [1, 2], [{str(flag)!r}] * 2, chunksize=2))
    """))
    env = {**os.environ, "EXPYRE_PROGRESS": "1", "TERM": "xterm", "COLUMNS": "100"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the driver on the pty
        os.execve(sys.executable, [sys.executable, str(script)], env)
    out = bytearray()
    ended = threading.Event()

    def read():
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out.extend(chunk)
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_for(lambda: b"ttybar: " in out or ended.is_set(), T, "the progress bar on the terminal")
        flag.write_text("")
        assert ended.wait(T)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert os.WEXITSTATUS(status) == 1 and "ValueError: raised after the flag, 1" in text, text
    first_error = min(i for i in (text.find("Traceback"), text.find("ExPyReRemoteTraceback"), text.find("ValueError"))
                      if i >= 0)
    last_frame = text.rfind("ttybar: ", 0, first_error)
    assert last_frame >= 0, text  # the bar was drawn
    # the bar's line is cleared ("\x1b[2K") after its last frame and before the traceback begins,
    # and no frame is drawn after that
    erase = text.find("\x1b[2K", last_frame)
    assert 0 <= erase < first_error, repr(text[last_frame:first_error + 40])
    assert "ttybar: " not in text[first_error:], repr(text[first_error:])

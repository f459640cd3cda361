"""The job-side runner: evaluates one pickled call in the current directory (a job's stage dir).

This file is copied into every stage directory as ``_expyre_runner.py`` and run there with the
job's Python, so it imports only the standard library and cloudpickle (the remote side needs
nothing else). Every outcome is a file created by atomic rename:

* ``_expyre_job_started``    - the runner began (host, pid, time)
* ``_expyre_job_succeeded``  - the pickled return value
* ``_expyre_job_failed``     - a pickled dict: exception (if picklable), its type, message, traceback
* ``_expyre_stdout`` / ``_expyre_stderr`` - what the function wrote (file descriptors 1 and 2,
  so output of C code and subprocesses is captured too); they are restored afterwards.

Exit status: 0 if the function returned, 1 if it raised (or the call could not be loaded).
"""

import os
import pickle
import sys
import time

# Only what every job needs is imported up front (a job's start-up is the floor of every call):
# cloudpickle is imported by pickle itself when the call needs it (functions pickled by value),
# traceback only on failure, and the host name comes from uname.

TASK = "_expyre_task.pkl"
STARTED = "_expyre_job_started"
SUCCEEDED = "_expyre_job_succeeded"
FAILED = "_expyre_job_failed"
STDOUT = "_expyre_stdout"
STDERR = "_expyre_stderr"


def _atomic_write(path, write):
    tmp = f".{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_task():
    with open(TASK, "rb") as f:
        function = pickle.load(f)
        nargs = pickle.load(f)
        args = [pickle.load(f) for _ in range(nargs)]
        keys = pickle.load(f)
        kwargs = {k: pickle.load(f) for k in keys}
    return function, args, kwargs


class _Redirect:
    """Send fds 1 and 2 to files while the function runs, and restore them afterwards."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        self.files = (open(STDOUT, "wb"), open(STDERR, "wb"))
        os.dup2(self.files[0].fileno(), 1)
        os.dup2(self.files[1].fileno(), 2)
        return self

    def __exit__(self, *exc):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        for f in self.files:
            f.close()
        return False


def _hostname():
    return os.uname().nodename


def _format_exc():
    import traceback

    return traceback.format_exc()


def _dump(obj, f):
    """Plain pickle when it can (most values: no cloudpickle import in the job), else cloudpickle
    (lambdas, classes and functions defined by value); ``f`` is a fresh file or buffer."""
    try:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        return
    except Exception:  # noqa: BLE001 - e.g. a function or class that only cloudpickle can pickle
        f.seek(0)
        f.truncate()
    try:
        import cloudpickle
    except ImportError:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        cloudpickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def _fail(exc, tb_text, stage):
    info = {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": tb_text,
        "stage": stage,
        "host": _hostname(),
        "exception": None,
    }
    try:
        info["exception"] = pickle.loads(_dumps(exc))
        payload = _dumps({**info, "exception": exc})
    except Exception:
        payload = _dumps(info)
    _atomic_write(FAILED, lambda f: f.write(payload))


def _dumps(obj):
    import io

    buf = io.BytesIO()
    _dump(obj, buf)
    return buf.getvalue()


def main():
    stamp = f"host={_hostname()} pid={os.getpid()} time={time.time():.3f}\n".encode()
    _atomic_write(STARTED, lambda f: f.write(stamp))
    try:
        try:
            function, args, kwargs = _load_task()  # imports cloudpickle if the pickle needs it
        except ImportError as exc:
            if exc.name != "cloudpickle":
                raise
            raise ImportError(
                f"cloudpickle is not installed for {sys.executable} on {_hostname()}: "
                f"install it there (pip install cloudpickle) or set python_cmd"
            ) from exc
    except BaseException as exc:
        _fail(exc, _format_exc(), "loading the call")
        return 1
    try:
        with _Redirect():
            result = function(*args, **kwargs)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are results too
        _fail(exc, _format_exc(), "running the function")
        return 1
    try:
        _atomic_write(SUCCEEDED, lambda f: _dump(result, f))
    except BaseException as exc:
        _fail(exc, _format_exc(), "pickling the return value")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

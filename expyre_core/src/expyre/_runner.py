"""The job-side runner: evaluates one pickled call in the current directory (a job's stage dir).

This file is copied into every stage directory as ``_expyre_runner.py`` and run there with the
job's Python, so it imports only the standard library and cloudpickle (the remote side needs
nothing else). Every outcome is a file created by atomic rename:

* ``_expyre_job_started``    - the runner began (host, pid, time)
* ``_expyre_job_succeeded``  - the pickled return value
* ``_expyre_job_failed``     - a pickled dict: exception (if picklable), its type, message, traceback
* ``_expyre_stdout`` / ``_expyre_stderr`` - what the function wrote (file descriptors 1 and 2,
  so output of C code and subprocesses is captured too); they are restored afterwards.
* ``_expyre_usage.json``     - what the job used: start and end time, wall time, peak resident
  memory of the runner and of its waited-for children, CPU times (:func:`usage`); written just
  before the outcome file, so whoever sees the outcome finds it too (best effort: a failure to
  write it never changes the outcome).

A ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``...)
raised by the function is recorded as a :class:`RemoteBaseException`, an ``Exception`` that keeps
its type name, exit code and traceback: it must never end or interrupt the driver that reads it.

When the file system of the stage directory is full, a failed write removes its temporary file,
and the runner records instead a small failure saying no space is left and where (writing it
usually succeeds once the temporary file is gone). If even that cannot be written, the runner
exits with :data:`EXIT_NO_SPACE` after saying so on stderr.

Exit status: 0 if the function returned, 1 if it raised (or the call could not be loaded),
:data:`EXIT_NO_SPACE` if its outcome could not be recorded for lack of space.
"""

import errno
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
#: the user's own modules shipped with the call (see expyre.shipping), first on sys.path
MODULES = "_expyre_modules"
USAGE = "_expyre_usage.json"
#: the version of the usage record's format
USAGE_VERSION = 1
#: the runner's exit status when no outcome file could be written for lack of space (ENOSPC)
EXIT_NO_SPACE = 28


class RemoteBaseException(Exception):
    """A job's function raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, ``GeneratorExit``...). It reaches the driver as this ``Exception``, so
    that a job's ``sys.exit(5)`` neither ends nor interrupts the driver.

    :ivar type_name: the original exception's type, e.g. ``"builtins.SystemExit"``.
    :ivar code: ``SystemExit.code`` (the job's exit code) for a ``SystemExit``, else None.
    :ivar remote_traceback: the traceback text in the job.
    """

    def __init__(self, type_name, message="", code=None, remote_traceback=""):
        super().__init__(type_name, message, code, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.code = code
        self.remote_traceback = remote_traceback

    def __str__(self):
        short = self.type_name.rpartition(".")[2] if self.type_name.startswith("builtins.") else self.type_name
        text = f"the job's function raised {short}"
        if self.type_name == "builtins.SystemExit":
            text += f" (exit code {self.code!r})"
        elif self.message:
            text += f": {self.message}"
        return text

    def __reduce__(self):
        # In a job this class lives in ``__main__`` (this file is run as a script), so it is
        # pickled by the name it has on the driver, where expyre is installed.
        return (_DriverClass(), self.args)


class _DriverName:
    """Pickles as ``importlib.import_module("expyre._runner")`` (stdlib only)."""

    def __reduce__(self):
        import importlib

        return (importlib.import_module, ("expyre._runner",))


class _DriverClass:
    """Pickles as ``expyre._runner.RemoteBaseException``, whether or not expyre is importable here."""

    def __call__(self, *args):  # never called: pickle only requires a callable
        return RemoteBaseException(*args)

    def __reduce__(self):
        return (getattr, (_DriverName(), "RemoteBaseException"))


class _Module:
    """Pickles as ``importlib.import_module(name)`` (standard library only)."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        import importlib

        return (importlib.import_module, (self.name,))


class _PublicName:
    """A class pickled by its public name: ``getattr(importlib.import_module(module), name)``, for
    classes whose ``__module__`` is private and differs between Python versions."""

    def __init__(self, module, name):
        self.module = module
        self.name = name

    def __call__(self, *args):  # never called: pickle only requires a callable
        import importlib

        return getattr(importlib.import_module(self.module), self.name)(*args)

    def __reduce__(self):
        return (getattr, (_Module(self.module), self.name))


_PATH_TABLE = None


def path_dispatch_table():
    """A pickler ``dispatch_table`` entry per ``pathlib`` class whose ``__module__`` is not
    ``pathlib`` (Python 3.13 moved them to ``pathlib._local``, which earlier Pythons cannot
    import): each path is pickled as its public class called with its parts. Empty before 3.13
    (or while ``pathlib`` is not imported: then no path is being pickled)."""
    global _PATH_TABLE
    if _PATH_TABLE is None:
        pl = sys.modules.get("pathlib")
        if pl is None:
            return {}
        table = {}
        for name in ("PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath", "WindowsPath"):
            cls = getattr(pl, name, None)
            if isinstance(cls, type) and cls.__module__ != "pathlib":
                public = _PublicName("pathlib", name)
                table[cls] = lambda p, _public=public: (_public, tuple(p.parts))
        _PATH_TABLE = table
    return _PATH_TABLE


def _pickler(f, cls=None):
    """A pickler of ``cls`` (default ``pickle.Pickler``) writing to ``f`` at the highest protocol,
    with paths pickled by their public names (:func:`path_dispatch_table`)."""
    cls = cls or pickle.Pickler
    p = cls(f, protocol=pickle.HIGHEST_PROTOCOL)
    table = path_dispatch_table()
    if table:
        import collections
        import copyreg

        import collections.abc

        base = getattr(cls, "dispatch_table", None)  # the C Pickler's is a member descriptor, not a table
        if not isinstance(base, collections.abc.Mapping):
            base = copyreg.dispatch_table
        p.dispatch_table = collections.ChainMap(table, base)
    return p


class NoSpaceError(OSError):
    """Writing an outcome file failed with ENOSPC (the file system of the stage directory is full)."""


def _atomic_write(path, write):
    """Write ``path`` through a temporary file renamed into place; the temporary file is removed
    if anything fails (a disk-full failure raises :class:`NoSpaceError`)."""
    tmp = f".{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise NoSpaceError(errno.ENOSPC, f"no space left on device writing {os.path.abspath(path)}") from exc
        raise


#: the end of a task file whose pickles have out-of-band buffers (see :mod:`expyre.stable_pickle`)
TRAILER_MAGIC = b"XPRORD01"
_DICT, _SET, _FROZENSET = "expyre.d", "expyre.s", "expyre.f"


def read_orders(f):
    """The trailer of a task file: one list of out-of-band buffers per pickle (``[]`` if there is
    none); leaves the file at its start."""
    f.seek(0, 2)
    size = f.tell()
    orders = []
    if size >= 16:
        f.seek(size - 16)
        tail = f.read(16)
        if tail[8:] == TRAILER_MAGIC:
            n = int.from_bytes(tail[:8], "little")
            if n <= size - 16:
                f.seek(size - 16 - n)
                orders = pickle.loads(f.read(n))
    f.seek(0)
    return orders


class TaskUnpickler(pickle.Unpickler):
    """Loads one pickle of a task file written by :mod:`expyre.stable_pickle`: its dicts, sets and
    frozensets come as persistent ids holding their entries in canonical order, and each dict's
    insertion order is restored from its out-of-band buffer (``buffers``: the pickle's entry of
    the trailer)."""

    def __init__(self, f, buffers=None):
        super().__init__(f, buffers=buffers or ())
        self.made = {}  # id(persistent id) -> (persistent id, container): shared containers stay shared

    def persistent_load(self, pid):
        got = self.made.get(id(pid))
        if got is not None:
            return got[1]
        tag, inner, marker = pid
        if tag == _DICT:
            rank = memoryview(marker).cast("B")
            if len(rank):
                import array

                positions = array.array("I")
                positions.frombytes(rank.tobytes())
                items = list(inner.items())
                inner.clear()
                inner.update(items[p] for p in positions)
            obj = inner
        elif tag == _SET:
            obj = set(inner)
        elif tag == _FROZENSET:
            obj = frozenset(inner)
        else:
            raise pickle.UnpicklingError("unknown persistent id %r (written by a newer expyre?)" % (tag,))
        self.made[id(pid)] = (pid, obj)
        return obj


def _load_task():
    with open(TASK, "rb") as f:
        orders = iter(read_orders(f))

        def load():
            return TaskUnpickler(f, next(orders, None)).load()

        function = load()
        nargs = load()
        args = [load() for _ in range(nargs)]
        keys = load()
        kwargs = {k: load() for k in keys}
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
        _pickler(f).dump(obj)
        return
    except Exception:  # noqa: BLE001 - e.g. a function or class that only cloudpickle can pickle
        f.seek(0)
        f.truncate()
    try:
        import cloudpickle
    except ImportError:
        _pickler(f).dump(obj)
    else:
        _pickler(f, cloudpickle.CloudPickler).dump(obj)


def _fail(exc, tb_text, stage):
    if not isinstance(exc, Exception):
        code = exc.code if isinstance(exc, SystemExit) else None
        if code is not None and not isinstance(code, (int, str)):
            code = repr(code)
        exc = RemoteBaseException(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc), code, tb_text)
        info = {
            "type": "expyre._runner.RemoteBaseException",
            "message": str(exc),
            "traceback": tb_text,
            "stage": stage,
            "host": _hostname(),
            "exception": exc,  # not round-tripped here: it unpickles on the driver (see __reduce__)
        }
        _atomic_write(FAILED, lambda f: f.write(_dumps(info)))
        return
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


def _no_space(exc, stage):
    """Record that an outcome could not be written for lack of space: a small failure file if it
    fits (the big temporary file is gone by now), else a line on stderr; the exit status says it."""
    message = f"{exc.strerror} (while {stage}); free space there and run the job again"
    info = {
        "type": "builtins.OSError",
        "message": message,
        "traceback": "",
        "stage": stage,
        "host": _hostname(),
        "exception": OSError(errno.ENOSPC, message),
    }
    try:
        _atomic_write(FAILED, lambda f: pickle.dump(info, f, protocol=pickle.HIGHEST_PROTOCOL))
        return 1
    except BaseException:  # noqa: BLE001 - nothing else can be written: say it on stderr, and by the exit status
        try:
            os.write(2, f"expyre runner: {message}\n".encode())
        except OSError:
            pass
        return EXIT_NO_SPACE


def _missing_module_hint(exc):
    """The message of a ModuleNotFoundError met while loading the call: which module, where, and
    how to make it importable."""
    top = exc.name.partition(".")[0]
    shipped = sorted(n.partition(".")[0] for n in os.listdir(MODULES)) if os.path.isdir(MODULES) else []
    py = "%d.%d" % sys.version_info[:2]
    text = (f"the call needs module {exc.name!r}, which the job's Python ({sys.executable}, Python {py} on "
            f"{_hostname()}) cannot import ({exc}). ")
    if top in shipped:
        text += f"{top!r} was shipped with the call but is incomplete: check that all its files are there"
    else:
        text += (f"If {top!r} is your own module (a file next to your script or in your project), let expyre "
                 f"ship it with the call: do not pass ship_modules=False and do not set EXPYRE_SHIP_MODULES=0"
                 + (f" (shipped here: {', '.join(shipped)})" if shipped else " (no module was shipped)")
                 + f"; otherwise install {top!r} for that Python (e.g. `{sys.executable} -m pip install ...`), "
                 f"add its directory to PYTHONPATH in env_vars, or set \"python_cmd\" of the system in config.json "
                 f"to a Python that has it")
    return text


def _maxrss_kib(ru):
    """``ru_maxrss`` in KiB (Linux reports KiB, macOS bytes)."""
    value = int(ru.ru_maxrss)
    return value // 1024 if sys.platform == "darwin" else value


def usage(start_time, start_mono):
    """What the job used from ``start_time`` (epoch seconds; ``start_mono``: the monotonic clock
    then) until now: a JSON-ready dict (sizes in KiB, times in seconds)."""
    end_time = time.time()
    out = {
        "version": USAGE_VERSION,
        "host": _hostname(),
        "start_time": round(start_time, 3),
        "end_time": round(end_time, 3),
        "wall_time": round(time.monotonic() - start_mono, 3),
    }
    try:
        import resource
    except ImportError:  # not a Unix: times only
        return out
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.update({
        "peak_rss_kib": _maxrss_kib(me),
        "children_peak_rss_kib": _maxrss_kib(children),
        "user_cpu": round(me.ru_utime + children.ru_utime, 3),
        "system_cpu": round(me.ru_stime + children.ru_stime, 3),
    })
    return out


def _write_usage(start_time, start_mono):
    """Write :data:`USAGE` (atomically); never fails the job."""
    try:
        import json

        data = json.dumps(usage(start_time, start_mono), sort_keys=True).encode()
        _atomic_write(USAGE, lambda f: f.write(data))
    except Exception as exc:  # noqa: BLE001 - usage is best effort; the outcome matters
        try:
            os.write(2, ("expyre runner: could not record usage: %s\n" % (exc,)).encode())
        except OSError:
            pass


def main():
    try:
        return _main()
    except NoSpaceError as exc:
        return _no_space(exc, "recording the job's outcome")


def _main():
    start_time, start_mono = time.time(), time.monotonic()
    stamp = f"host={_hostname()} pid={os.getpid()} time={start_time:.3f}\n".encode()
    try:
        _atomic_write(STARTED, lambda f: f.write(stamp))
    except NoSpaceError as exc:
        return _no_space(exc, "starting")
    if os.path.isdir(MODULES):
        sys.path.insert(0, os.path.abspath(MODULES))
    try:
        try:
            function, args, kwargs = _load_task()  # imports cloudpickle if the pickle needs it
        except ImportError as exc:
            if exc.name == "cloudpickle":
                raise ImportError(
                    f"cloudpickle is not installed for {sys.executable} on {_hostname()}: "
                    f"install it there (pip install cloudpickle) or set python_cmd"
                ) from exc
            if isinstance(exc, ModuleNotFoundError) and exc.name:
                raise ModuleNotFoundError(_missing_module_hint(exc), name=exc.name) from exc
            raise
    except BaseException as exc:
        tb_text = _format_exc()
        _write_usage(start_time, start_mono)
        _fail(exc, tb_text, "loading the call")
        return 1
    try:
        with _Redirect():
            result = function(*args, **kwargs)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are results too
        tb_text = _format_exc()
        _write_usage(start_time, start_mono)
        _fail(exc, tb_text, "running the function")
        return 1
    _write_usage(start_time, start_mono)
    try:
        _atomic_write(SUCCEEDED, lambda f: _dump(result, f))
    except NoSpaceError as exc:
        return _no_space(exc, "writing the return value")
    except BaseException as exc:
        _fail(exc, _format_exc(), "pickling the return value")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

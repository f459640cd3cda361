"""Many calls in one job: the job-side function of a packed chunk, and its outcomes.

A chunk is an ordinary ExPyRe job whose function is :func:`run_chunk`: it evaluates
``function(*args, **kwargs)`` for each element and returns a list with one *outcome* per element,
so a raising element fails only its own future. Each outcome is pickled on its own
(``("ok", bytes)`` or ``("error", bytes)``), so a value that cannot be pickled, or cannot be
unpickled here, also spoils only its own element.

In the job this module is imported from its copy ``_expyre_chunk.py`` in the stage directory
(:data:`JOB_MODULE`): a call's pickle refers to :func:`run_chunk` as
``_expyre_chunk.run_chunk`` (see ``StablePickler`` (:mod:`expyre.stable_pickle`)), so the job needs
neither expyre nor a Python of the driver's version (code pickled by value would need both the
driver's minor version and cloudpickle). Its job-side half therefore imports only the standard
library (and cloudpickle, when called), keeps Python 3.8's syntax, and names the element files
itself (:data:`PARTIAL_PREFIX`, equal to :data:`expyre.layout.PARTIAL_PREFIX`); the driver-side
:func:`decode_outcome` imports expyre's errors when it runs.

Hash: the chunk job's function argument is left out of the ExPyRe hash and replaced by
``code_digest``, the same identity-and-code digest (:func:`expyre.digest.function_digest`) ExPyRe uses for its own
function, so re-running the same ``map`` finds the same chunk jobs (and an edited function
makes new ones).
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import traceback
from typing import Any, Callable, Sequence

__all__ = ["run_chunk", "decode_outcome", "PackedElementError", "PARTIAL_PREFIX", "JOB_MODULE"]

#: per-element result files written as elements finish (``<prefix><index>``; see expyre.layout)
PARTIAL_PREFIX = "_expyre_elem_"
#: the name under which the job imports this module (its copy in the stage directory)
JOB_MODULE = "_expyre_chunk"


class PackedElementError(RuntimeError):
    """Stands for an element's exception that could not be pickled or unpickled."""


def _runner_module() -> Any:
    """The runner's module: expyre's own on the driver, else its copy beside this one in the job."""
    try:
        from . import _runner
    except ImportError:  # the job: this file is the top-level module _expyre_chunk
        import _expyre_runner as _runner  # type: ignore[no-redef]
    return _runner


def _dumps(obj: Any) -> bytes:
    """cloudpickle, with paths by their public names (any job or driver Python loads them)."""
    import io

    import cloudpickle

    buf = io.BytesIO()
    _runner_module()._pickler(buf, cloudpickle.CloudPickler).dump(obj)
    return buf.getvalue()


def _error_payload(exc: BaseException, tb: str, index: int) -> bytes:
    info = {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": tb,
        "host": socket.gethostname(),
        "index": index,
        "exception": None,
    }
    try:
        pickle.loads(_dumps(exc))
        return _dumps({**info, "exception": exc})
    except Exception:  # noqa: BLE001 - an unpicklable exception is reported by type and message
        return _dumps(info)


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f".{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def run_chunk(
    function: Callable,
    calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
    code_digest: str = "",
    first_index: int = 0,
    partial: bool = False,
) -> list[tuple[str, bytes]]:
    """Evaluate ``function(*args, **kwargs)`` for each ``(args, kwargs)`` of ``calls``.

    :param code_digest: identifies ``function`` in the job's hash (not used here).
    :param first_index: the map index of the first call (for error messages).
    :param partial: also write each element's outcome to ``_expyre_elem_<i>`` (i counted from 0
        within the chunk) in the job's directory as soon as it is known, so the driver can hand
        out results before the whole chunk ends.
    :return: one ``("ok", pickled value)`` or ``("error", pickled error info)`` per call.
    """
    out: list[tuple[str, bytes]] = []
    for i, (args, kwargs) in enumerate(calls):
        try:
            value = function(*args, **kwargs)
            outcome = ("ok", _dumps(value))
        except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt are outcomes too
            if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Exception):
                # a real interrupt of the job (e.g. the scheduler's SIGINT): stop the chunk
                raise
            outcome = ("error", _error_payload(exc, traceback.format_exc(), first_index + i))
        out.append(outcome)
        if partial:
            _atomic_write(f"{PARTIAL_PREFIX}{i}", _dumps(outcome))
        sys.stdout.flush()
    return out


def decode_outcome(outcome: tuple[str, bytes], where: str) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, exception)`` for one element's outcome; the exception carries
    the remote traceback as ``__cause__`` (as :meth:`ExPyRe.get_results` does for whole jobs)."""
    from .errors import ExPyReRemoteTraceback

    kind, payload = outcome
    if kind == "ok":
        try:
            return True, pickle.loads(payload)
        except Exception as exc:  # noqa: BLE001
            err = PackedElementError(f"{where}: the result cannot be unpickled here ({type(exc).__name__}: {exc})")
            err.__cause__ = exc
            return False, err
    try:
        info = pickle.loads(payload)
    except Exception as exc:  # noqa: BLE001
        return False, PackedElementError(f"{where} raised, and its error cannot be unpickled here: {exc}")
    exc = info.get("exception")
    if isinstance(exc, BaseException) and not isinstance(exc, Exception):
        # an element's sys.exit() or KeyboardInterrupt must not end or interrupt the driver
        from ._runner import RemoteBaseException

        code = exc.code if isinstance(exc, SystemExit) else None
        if code is not None and not isinstance(code, (int, str)):
            code = repr(code)
        exc = RemoteBaseException(info.get("type") or type(exc).__name__, info.get("message", ""), code,
                                  info.get("traceback", ""))
    elif not isinstance(exc, BaseException):
        exc = PackedElementError(f"{info.get('type')}: {info.get('message')}")
    exc.__cause__ = ExPyReRemoteTraceback(info.get("traceback", ""))
    if hasattr(exc, "add_note"):
        exc.add_note(f"raised in {where} on {info.get('host')}")
    return False, exc


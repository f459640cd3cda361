"""Stable pickles: equal arguments give equal bytes, and so equal hashes, in every process.

A plain pickle of a set (or of a dict built from one) depends on the process: string hashing, and
with it set iteration order, is randomised per process (``PYTHONHASHSEED``), so the same call
would hash differently after a restart and run again. This pickler writes every ``set``,
``frozenset`` and ``dict`` with two or more entries, wherever it sits (an argument, inside a
list, a dataclass, an object's ``__dict__``, a function's globals), as a *persistent id* holding
its entries in a canonical order. A dict's own insertion order travels beside the pickle, in an
out-of-band buffer that is not hashed, so the job receives every dict in its original order: the
hash ignores dict order (as ``==`` does) and the call does not change. Classes and enums that
cloudpickle writes by value are named by where they were defined instead of by a random id.

The format, for a file of several pickles (ExPyRe's task file)::

    pickle 0, pickle 1, ..., pickle n-1, trailer

The trailer is a protocol-4 pickle of a list with one entry per pickle (the list of that pickle's
out-of-band buffers), then its length as 8 little-endian bytes, then :data:`TRAILER_MAGIC`; it is
left out when no pickle has a buffer. The job side reads it with :func:`read_orders` before it
loads the pickles with :class:`TaskUnpickler`; both live in the job-side runner (``_runner.py``,
standard library only) and are re-exported here.

A container that contains itself (a cycle through dicts or sets) cannot be written this way: such
a pickle is rewritten as a plain cloudpickle (its hash may then depend on the process).
Dict subclasses (``OrderedDict``, ``defaultdict``...) keep their own pickling.
"""

from __future__ import annotations

import array
import pickle
import struct
import types
import weakref
from collections import ChainMap
from typing import TYPE_CHECKING, Any, BinaryIO

import cloudpickle
from cloudpickle import cloudpickle as _cp

__all__ = ["dump", "dumps", "write_orders", "read_orders", "TaskUnpickler", "TRAILER_MAGIC"]

# the loader lives in the job-side runner (standard library only); the format is defined there
from ._runner import _DICT, _FROZENSET, _SET, TRAILER_MAGIC, TaskUnpickler, _Module, path_dispatch_table, read_orders
from .packing import JOB_MODULE as _CHUNK_MODULE

if TYPE_CHECKING:
    from .shipping import PickleInfo


# cloudpickle names each class it pickles by value with a random "tracker id" (uuid4), so the same
# class pickles differently in every process; a stable pickle names it by where it was defined
# (plus a counter for the rare second class of the same qualified name in one process)
_TRACKER_IDS: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
_TRACKER_NAMES: dict[str, int] = {}
# reconstructor -> position of the tracker id in its arguments
_TRACKED = {
    getattr(_cp, "_make_skeleton_class", None): 4,
    getattr(_cp, "_make_skeleton_enum", None): 5,
    getattr(_cp, "_make_typevar", None): 5,
}
_TRACKED.pop(None, None)


def _tracker_id(obj: Any) -> str:
    tid = _TRACKER_IDS.get(obj)
    if tid is None:
        name = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
        n = _TRACKER_NAMES.get(name, 0) + 1
        _TRACKER_NAMES[name] = n
        tid = f"expyre:{name}" + (f"#{n}" if n > 1 else "")
        _TRACKER_IDS[obj] = tid
    return tid


class _Cycle(Exception):
    """A dict or set reached again while its own entries are being written."""


_SIMPLE = (str, int, float, bytes)


def _canon(x: Any) -> Any:
    """A total-order sort key for a hashable value, the same in every process."""
    t = type(x)
    if t is str or t is int or t is float or t is bytes or t is bool:
        return (t.__name__, x)
    if x is None:
        return ("NoneType", 0)
    if t is tuple:
        return ("tuple", tuple(_canon(e) for e in x))
    if t is frozenset:
        return ("frozenset", tuple(sorted(_canon(e) for e in x)))
    return (f"{t.__module__}.{t.__qualname__}", repr(x))


def _sorted(items: list) -> list:
    """``items`` in canonical order (plain order when they are all str, all int...)."""
    types = set(map(type, items))
    if len(types) == 1 and types.pop() in _SIMPLE:
        return sorted(items)
    return sorted(items, key=_canon)


_RECORDED = (types.FunctionType, types.ModuleType, types.BuiltinFunctionType)


class RecordingPickler(cloudpickle.CloudPickler):
    """cloudpickle that tells a :class:`~expyre.shipping.PickleInfo` what it met: the modules of
    what it pickled by reference, and the functions it pickled by value (see
    :mod:`expyre.shipping`). Paths are pickled by their public class names (``pathlib.PosixPath``,
    not Python 3.13's ``pathlib._local.PosixPath``), so that any job Python (3.8 on) loads them."""

    def __init__(self, file: BinaryIO, protocol: int = pickle.HIGHEST_PROTOCOL, info: "PickleInfo | None" = None,
                 **kw: Any) -> None:
        super().__init__(file, protocol=protocol, **kw)
        self.info = info
        table = path_dispatch_table()
        if table:
            self.dispatch_table = ChainMap(table, cloudpickle.CloudPickler.dispatch_table)

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.FunctionType and obj.__qualname__ == "run_chunk" and obj.__module__ == "expyre.packing":
            # the Executor's chunk runner: imported in the job from its copy in the stage directory
            if self.info is not None:
                self.info.job_modules.add(_CHUNK_MODULE)
            return (getattr, (_Module(_CHUNK_MODULE), "run_chunk"))
        rv = super().reducer_override(obj)
        info = self.info
        if info is not None:
            t = type(obj)
            if t in _RECORDED or isinstance(obj, type):
                info.record(obj, by_value=rv is not NotImplemented)
        return rv


class StablePickler(RecordingPickler):
    """cloudpickle with dicts and sets written in canonical order (see the module's docstring).

    Each dict, set or frozenset of two or more entries is written as a persistent id
    ``(tag, entries in canonical order, marker)``. The marker is a :class:`pickle.PickleBuffer`
    sent out of band (only a one-byte opcode stays in the pickle, so it is not hashed): for a
    dict, it holds the canonical positions of the keys in insertion order (empty when they are in
    canonical order already). Meeting the marker also tells the pickler that the container's
    entries are all written; a container met again before that contains itself (see
    :func:`dump`). After :meth:`dump`, :attr:`buffers` holds the markers' bytes, in the order
    the unpickler needs them.
    """

    def __init__(self, file: BinaryIO, protocol: int = pickle.HIGHEST_PROTOCOL,
                 info: "PickleInfo | None" = None) -> None:
        self.buffers: list[bytes] = []
        super().__init__(file, protocol=protocol, info=info, buffer_callback=self._out_of_band)
        self._pids: dict[int, tuple] = {}     # id(container) -> its persistent id
        self._own: set[int] = set()           # ids of the dicts written inside persistent ids
        self._keep: list[Any] = []            # keeps containers, copies and markers alive: ids stay unique
        self._open: set[int] = set()          # ids of the markers of containers whose entries are being written
        self._marker_bytes: dict[int, bytes] = {}

    def _out_of_band(self, buf: pickle.PickleBuffer) -> bool:
        data = self._marker_bytes.pop(id(buf), None)
        if data is None:
            return True  # anything else (numpy arrays...) stays in the pickle
        self.buffers.append(data)
        return False

    def reducer_override(self, obj: Any) -> Any:
        rv = super().reducer_override(obj)
        if type(rv) is tuple and len(rv) >= 2:
            pos = _TRACKED.get(rv[0])
            if pos is not None and len(rv[1]) > pos:
                args = list(rv[1])
                args[pos] = _tracker_id(obj)
                rv = (rv[0], tuple(args), *rv[2:])
        return rv

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if t is not dict and t is not set and t is not frozenset:
            if t is pickle.PickleBuffer and self._open:
                self._open.discard(id(obj))  # a marker: its container is written
            return None
        key = id(obj)
        if key in self._own or len(obj) < 2:
            return None
        pid = self._pids.get(key)
        if pid is not None:
            if id(pid[2]) in self._open:
                raise _Cycle()
            return pid
        data = b""
        if t is dict:
            keys = list(obj)
            canonical = _sorted(keys)
            if canonical == keys:
                inner: Any = obj
            else:
                inner = {k: obj[k] for k in canonical}
                at = {k: i for i, k in enumerate(canonical)}
                data = array.array("I", [at[k] for k in keys]).tobytes()
            self._own.add(id(inner))
            marker = pickle.PickleBuffer(data)  # read-only in both cases: the same opcodes
            pid = (_DICT, inner, marker)
        else:
            marker = pickle.PickleBuffer(data)
            pid = (_SET if t is set else _FROZENSET, _sorted(list(obj)), marker)
        self._keep.append((obj, pid))
        self._marker_bytes[id(marker)] = data
        self._open.add(id(marker))
        self._pids[key] = pid
        return pid


class _Mark:
    """Where a file (and the hashers that see its bytes) stood before a pickle began."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.state = out.checkpoint() if hasattr(out, "checkpoint") else out.tell()

    def rewind(self) -> None:
        if hasattr(self.out, "checkpoint"):
            self.out.rollback(self.state)
        else:
            self.out.seek(self.state)
            self.out.truncate()


def dump(obj: Any, out: Any, orders: list | None = None, info: "PickleInfo | None" = None) -> None:
    """Write one stable pickle of ``obj`` to ``out``; append its out-of-band buffers to ``orders``;
    tell ``info`` (if given) which modules and by-value functions it met.

    ``out`` is a binary file, or a writer with ``checkpoint()``/``rollback(state)`` (one that also
    feeds hashers: it must be able to forget a pickle begun, for the rare container that contains
    itself, which is then written as a plain cloudpickle).
    """
    mark = _Mark(out)
    try:
        pickler = StablePickler(out, info=info)
        pickler.dump(obj)
        buffers = pickler.buffers
    except _Cycle:
        mark.rewind()
        RecordingPickler(out, protocol=pickle.HIGHEST_PROTOCOL, info=info).dump(obj)
        buffers = []
    if orders is not None:
        orders.append(buffers)


def dumps(obj: Any) -> bytes:
    """The stable pickle of ``obj`` (for hashing: dict orders are not kept)."""
    import io

    buf = io.BytesIO()
    dump(obj, buf)
    return buf.getvalue()


def write_orders(f: BinaryIO, orders: list) -> None:
    """Append the trailer (not part of any hash) after the pickles: ``orders`` holds each pickle's
    out-of-band buffers, as :func:`dump` appended them."""
    if not any(orders):
        return  # no persistent ids: the pickles load as plain pickles
    payload = pickle.dumps(orders, protocol=4)
    f.write(payload + struct.pack("<Q", len(payload)) + TRAILER_MAGIC)

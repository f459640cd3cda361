"""Service layer: the digest of a call, computed while it is pickled (one streamed pass).

The restart rule of ExPyRe's README rests on this: the hash covers the function's identity *and*
code (:func:`function_digest`), each argument's pickle (sets in sorted order, so equal arguments
hash equally in every process) except those of ``hash_ignore``, and the input files' names and
contents. The arguments are pickled exactly once: :func:`write_call` streams them to the stage
directory's task file through the hash.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import cloudpickle

__all__ = ["HashingWriter", "Tee", "dump", "function_digest", "function_name", "hash_file", "write_call"]


class HashingWriter(io.RawIOBase):
    def __init__(self, f, h):
        self.f = f
        self.h = h
        self.hashing = True
        self.part = None  # an extra hasher for one component (see :data:`expyre.layout.HASHES`)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        # the pickler hands large buffers over as they are: a pickle.PickleBuffer (numpy arrays,
        # protocol 5) has the buffer protocol but no len()
        self.f.write(b)
        if self.hashing:
            self.h.update(b)
            if self.part is not None:
                self.part.update(b)
        return memoryview(b).nbytes


class Tee:
    """Feeds one stream of bytes to several hashers."""

    def __init__(self, *hashers):
        self.hashers = hashers

    def update(self, b) -> None:
        for h in self.hashers:
            h.update(b)


class _SortedSet(set):
    """Marks a set to pickle in sorted order (the C pickler never asks about exact sets)."""


class _SortedFrozenSet(frozenset):
    pass


def _stabilize(obj: Any, depth: int = 0) -> Any:
    """Copy plain containers (list, tuple, dict, set) with their sets replaced by markers that pickle
    in sorted order, so equal arguments hash equally in every process (string hashing, and with it
    set iteration order, is randomised per process). Other objects are left alone."""
    t = type(obj)
    if depth > 100:
        return obj
    if t is set or t is frozenset:
        items = [_stabilize(x, depth + 1) for x in obj]
        return (_SortedSet if t is set else _SortedFrozenSet)(items)
    if t is list or t is tuple:
        new = [_stabilize(x, depth + 1) for x in obj]
        if all(a is b for a, b in zip(new, obj)):
            return obj
        return new if t is list else tuple(new)
    if t is dict:
        new_d = {_stabilize(k, depth + 1): _stabilize(v, depth + 1) for k, v in obj.items()}
        if all(a is b for a, b in zip(new_d.values(), obj.values())) and all(a is b for a, b in zip(new_d, obj)):
            return obj
        return new_d
    return obj


class _StablePickler(cloudpickle.CloudPickler):
    """cloudpickle that writes marked sets (see :func:`_stabilize`) as sorted plain sets."""

    def reducer_override(self, obj):
        t = type(obj)
        if t is _SortedSet or t is _SortedFrozenSet:
            base = set if t is _SortedSet else frozenset
            try:
                items = sorted(obj)
            except TypeError:
                items = sorted(obj, key=repr)
            return base, (items,)
        return super().reducer_override(obj)


def dump(obj: Any, out) -> None:
    _StablePickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(_stabilize(obj))


def _code_digest(code, h) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if inspect.iscode(const):
            _code_digest(const, h)
        elif isinstance(const, frozenset):
            h.update(repr(sorted(map(repr, const))).encode())
        else:
            h.update(repr(const).encode())


def function_digest(fn: Any, h, seen: set[int] | None = None) -> None:
    """Identity and code of a callable (not its pickle: that may carry per-process ids)."""
    seen = seen if seen is not None else set()
    if id(fn) in seen:
        return
    seen.add(id(fn))
    if isinstance(fn, functools.partial):
        h.update(b"partial:")
        function_digest(fn.func, h, seen)
        buf = io.BytesIO()
        dump((fn.args, dict(sorted(fn.keywords.items()))), buf)
        h.update(buf.getvalue())
        return
    if inspect.ismethod(fn):
        function_digest(fn.__func__, h, seen)
        buf = io.BytesIO()
        dump(fn.__self__, buf)
        h.update(buf.getvalue())
        return
    h.update(f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}".encode())
    target = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(target, "__code__", None)
    if code is not None:
        _code_digest(code, h)
    elif not (inspect.isbuiltin(fn) or inspect.isclass(fn) or hasattr(fn, "__code__")):
        call = getattr(type(fn), "__call__", None)
        if call is not None and hasattr(call, "__code__"):
            _code_digest(call.__code__, h)
        if not type(fn).__module__ == "numpy":  # ufuncs etc. pickle by name
            buf = io.BytesIO()
            dump(fn, buf)
            h.update(buf.getvalue())


def function_name(fn: Any) -> str:
    """``module.qualname`` of a callable, as recorded in the per-component digests."""
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def hash_file(path: Path, h) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def write_call(path: Path, function: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
               hash_ignore: Sequence[int | str], h, parts: dict[str, Any]) -> None:
    """Pickle the call to ``path`` in the runner's task format (function, number of arguments, each
    argument, the sorted keyword names, each keyword value), feeding the hashed parts to ``h`` and
    each argument's own digest to ``parts["args"]``/``parts["kwargs"]``; the function's digest goes
    to ``h`` and ``parts["function"]`` first."""
    part = hashlib.sha256()
    function_digest(function, Tee(h, part))
    parts["function"] = part.hexdigest()
    parts["function_name"] = function_name(function)
    with open(path, "wb") as f:
        w = HashingWriter(f, h)
        w.hashing = False
        dump(function, w)
        dump(len(args), w)
        for i, a in enumerate(args):
            w.hashing = i not in hash_ignore
            h.update(f"\0arg{i}\0".encode()) if w.hashing else None
            w.part = hashlib.sha256() if w.hashing else None
            dump(a, w)
            if w.part is not None:
                parts["args"][str(i)] = w.part.hexdigest()
            w.part = None
        w.hashing = False
        keys = sorted(kwargs)
        dump(keys, w)
        for k in keys:
            w.hashing = k not in hash_ignore
            h.update(f"\0kw:{k}\0".encode()) if w.hashing else None
            w.part = hashlib.sha256() if w.hashing else None
            dump(kwargs[k], w)
            if w.part is not None:
                parts["kwargs"][k] = w.part.hexdigest()
            w.part = None

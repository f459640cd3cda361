"""Service layer: the digest of a call, computed while it is pickled (one streamed pass).

The restart rule of ExPyRe's README rests on this: the hash covers the function's identity *and*
code (:func:`function_digest`), each argument's pickle except those of ``hash_ignore``, and the
input files' names and contents. Arguments are written by :mod:`expyre.stable_pickle`, so equal
arguments give equal bytes in every process: sets, frozensets and dicts (wherever they sit: inside
lists, dataclasses, objects) in a canonical order, whatever the process's ``PYTHONHASHSEED``; a
dict's insertion order travels beside the pickle, unhashed, and is restored in the job. The
arguments are pickled exactly once: :func:`write_call` streams them to the stage directory's task
file through the hash.

The digest of a call (:data:`HASH_VERSION` first): the function's digest, then for each hashed
argument its position or keyword name and the SHA-256 of its pickle (the per-component digests
that ``xpr why`` compares).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import stable_pickle

__all__ = ["HASH_VERSION", "HashingWriter", "Tee", "function_digest", "function_name", "hash_file", "write_call"]

#: what a call's digest starts with; a new version when the digest of an unchanged call changes
HASH_VERSION = b"expyre-2\0"


class HashingWriter(io.RawIOBase):
    """Writes to ``f`` and, while :attr:`part` is a hasher, feeds it the same bytes. A pickle begun
    can be forgotten (:meth:`checkpoint`, :meth:`rollback`): :func:`expyre.stable_pickle.dump`
    rewrites the rare value that contains itself as a plain pickle."""

    def __init__(self, f):
        self.f = f
        self.part = None

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        # the pickler hands large buffers over as they are: a pickle.PickleBuffer (numpy arrays,
        # protocol 5) has the buffer protocol but no len()
        self.f.write(b)
        if self.part is not None:
            self.part.update(b)
        return memoryview(b).nbytes

    def checkpoint(self) -> tuple:
        return self.f.tell(), (self.part.copy() if self.part is not None else None)

    def rollback(self, state: tuple) -> None:
        pos, part = state
        self.f.seek(pos)
        self.f.truncate()
        self.part = part


class Tee:
    """Feeds one stream of bytes to several hashers."""

    def __init__(self, *hashers):
        self.hashers = hashers

    def update(self, b) -> None:
        for h in self.hashers:
            h.update(b)


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
        h.update(stable_pickle.dumps((fn.args, fn.keywords)))
        return
    if inspect.ismethod(fn):
        function_digest(fn.__func__, h, seen)
        h.update(stable_pickle.dumps(fn.__self__))
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
            h.update(stable_pickle.dumps(fn))


def function_name(fn: Any) -> str:
    """``module.qualname`` of a callable, as recorded in the per-component digests."""
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def hash_file(path: Path, h) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def write_call(path: Path, function: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
               hash_ignore: Sequence[int | str], h, parts: dict[str, Any], info: Any = None) -> None:
    """Pickle the call to ``path`` in the runner's task format (function, number of arguments, each
    argument, the sorted keyword names, each keyword value, then the trailer of dict orders), feeding
    the function's digest and each hashed argument's digest to ``h`` and recording them in
    ``parts["function"]``, ``parts["args"]`` and ``parts["kwargs"]``. ``info`` (a
    :class:`~expyre.shipping.PickleInfo`) learns which modules and by-value functions the
    pickles hold."""
    part = hashlib.sha256()
    function_digest(function, Tee(h, part))
    parts["function"] = part.hexdigest()
    parts["function_name"] = function_name(function)
    orders: list = []
    with open(path, "wb") as f:
        w = HashingWriter(f)

        def put(value: Any, label: str | None) -> str | None:
            w.part = hashlib.sha256() if label is not None else None
            stable_pickle.dump(value, w, orders, info)
            digest, w.part = w.part, None
            if digest is None:
                return None
            h.update(f"\0{label}\0".encode())
            h.update(digest.digest())
            return digest.hexdigest()

        put(function, None)
        put(len(args), None)
        for i, a in enumerate(args):
            d = put(a, None if i in hash_ignore else f"arg{i}")
            if d is not None:
                parts["args"][str(i)] = d
        keys = sorted(kwargs)
        put(keys, None)
        for k in keys:
            d = put(kwargs[k], None if k in hash_ignore else f"kw:{k}")
            if d is not None:
                parts["kwargs"][k] = d
        stable_pickle.write_orders(f, orders)

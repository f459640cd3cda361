"""Leaf layer: the user's own modules, shipped with a call so that the job can import them.

A function defined in a module next to the user's script (``import mymod; ExPyRe("x", mymod.f)``)
is pickled by reference (``mymod.f``), and the job, which runs in its stage directory, could not
import ``mymod``. So every module a call's pickles refer to (a function's or class's module, a
module object, an import inside a function pickled by value), when it is *not installed* (its file
lies outside every site-packages directory, the standard library and the paths that ``.pth``
files add, and it is no editable install), is copied into the stage directory's
:data:`~expyre.layout.MODULES` directory, which the runner puts first on the job's ``sys.path``.
Then a shipped module and the driver's are the same file: classes are the same classes on both
sides, results come back as instances of the driver's classes, and source files load on any
Python version (code pickled by value does not).

Modules are shipped whole: a top-level module file, or a top-level package's directory (without
``__pycache__`` and hidden entries). The imports written in a shipped file (also inside its
functions) are followed, so ``mymod``'s own ``import tools`` ships ``tools`` too. The call's
digest covers each shipped module's files (names and contents), so an edited module makes a new
job and an unchanged one keeps its hash in every process.

``ExPyRe(..., ship_modules=False)``, ``Executor(..., ship_modules=False)`` or
``EXPYRE_SHIP_MODULES=0`` turn it off; the job must then import the modules by itself (installed
there, or on its ``PYTHONPATH``).
"""

from __future__ import annotations

import ast
import dis
import hashlib
import importlib.util
import logging
import os
import site
import sys
import sysconfig
import threading
import types
from pathlib import Path
from typing import Any, Iterable

__all__ = ["PickleInfo", "ModuleShipError", "ship_enabled", "ship_modules", "user_module_location",
           "SHIP_ENV", "WARN_BYTES"]

logger = logging.getLogger("expyre.func")

#: the environment variable that turns shipping off (``0``) when the keyword is not given
SHIP_ENV = "EXPYRE_SHIP_MODULES"
#: shipped modules larger than this (bytes, all files of one top-level module) are logged as a warning
WARN_BYTES = 20 * 1024 * 1024

_NEVER = frozenset({"__main__", "__mp_main__", "builtins", "expyre", "cloudpickle"})


class ModuleShipError(ImportError):
    """The call refers to a module that the job cannot import and that cannot be shipped."""


class PickleInfo:
    """What a call's pickles refer to, as the pickler met it (``expyre.stable_pickle.StablePickler``).

    :ivar modules: names of the modules of functions, classes and module objects pickled by reference.
    :ivar imports: top-level names imported inside functions pickled by value.
    :ivar by_value: ``module.qualname`` of each function pickled by value (its code object is
        specific to this Python's minor version).
    :ivar job_modules: expyre's own job-side modules the pickles refer to by their job-side names
        (``_expyre_chunk``: :mod:`expyre.packing`), copied beside the runner.
    """

    def __init__(self) -> None:
        self.modules: set[str] = set()
        self.imports: set[str] = set()
        self.by_value: list[str] = []
        self.job_modules: set[str] = set()

    def record(self, obj: Any, by_value: bool) -> None:
        t = type(obj)
        if t is types.FunctionType:
            if by_value:
                self.by_value.append(f"{obj.__module__}.{obj.__qualname__}")
                self.imports.update(_code_imports(obj.__code__))
            else:
                self.modules.add(obj.__module__)
        elif t is types.ModuleType:
            self.modules.add(obj.__name__)
        elif not by_value and (isinstance(obj, type) or t is types.BuiltinFunctionType):
            mod = getattr(obj, "__module__", None)
            if isinstance(mod, str):
                self.modules.add(mod)


def _code_imports(code: types.CodeType) -> set[str]:
    names: set[str] = set()
    for ins in dis.get_instructions(code):
        if ins.opname == "IMPORT_NAME" and isinstance(ins.argval, str):
            names.add(ins.argval.partition(".")[0])
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_imports(const)
    return names


def ship_enabled(flag: bool | None) -> bool:
    """The keyword if given, else ``EXPYRE_SHIP_MODULES`` (default on)."""
    if flag is not None:
        return bool(flag)
    raw = os.environ.get(SHIP_ENV, "1").strip().lower()
    if raw in ("1", "true", "yes", "on", ""):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{SHIP_ENV}={os.environ.get(SHIP_ENV)!r} is invalid: use 1 (ship the user's own modules "
                     f"with each call, the default) or 0 (do not)")


# -- which modules are the user's own ------------------------------------------------------------
_lock = threading.Lock()
_roots: list[str] | None = None
_where: dict[str, tuple[str, ...] | None] = {}
_editable: set[str] | None = None
_imports_cache: dict[tuple[str, int, int], frozenset[str]] = {}


def _norm(p: str) -> str:
    return os.path.normcase(os.path.realpath(p))


def _installed_roots() -> list[str]:
    """Directories whose modules count as installed: the standard library, every site-packages
    directory, and the paths the ``.pth`` files there add (editable installs)."""
    global _roots
    if _roots is None:
        found: set[str] = set()
        paths = sysconfig.get_paths()
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            if paths.get(key):
                found.add(paths[key])
        sites: list[str] = []
        try:
            sites += list(site.getsitepackages())
        except AttributeError:  # pragma: no cover - some embedded interpreters
            pass
        user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
        if isinstance(user_site, str):
            sites.append(user_site)
        sites += [p for p in sys.path if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages")]
        for s in sites:
            found.add(s)
            try:
                pth_files = sorted(n for n in os.listdir(s) if n.endswith(".pth"))
            except OSError:
                continue
            for name in pth_files:
                try:
                    lines = Path(s, name).read_text(errors="replace").splitlines()
                except OSError:
                    continue
                for line in lines:
                    line = line.strip()
                    if line and not line.startswith(("#", "import ", "import\t")):
                        found.add(os.path.join(s, line))
        _roots = sorted({_norm(p) for p in found if os.path.isdir(p)})
    return _roots


def _is_installed_path(path: str) -> bool:
    p = _norm(path)
    parts = p.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    return any(p == r or p.startswith(r.rstrip(os.sep) + os.sep) for r in _installed_roots())


def _editable_names() -> set[str]:
    """Top-level names provided by editable installs (``pip install -e``): installed, though
    their files lie in a project directory."""
    global _editable
    if _editable is None:
        names: set[str] = set()
        try:
            from importlib import metadata

            for dist in metadata.distributions():
                try:
                    direct = dist.read_text("direct_url.json") or ""
                except Exception:  # noqa: BLE001 - a broken distribution is not ours to judge
                    continue
                if '"editable": true' not in direct.replace("'", '"').lower():
                    continue
                top = dist.read_text("top_level.txt") or ""
                names.update(n.strip() for n in top.splitlines() if n.strip())
        except Exception as exc:  # noqa: BLE001
            logger.debug("listing editable installs failed: %s", exc)
        _editable = names
    return _editable


def user_module_location(top: str) -> tuple[str, ...] | None:
    """Where the user's own top-level module ``top`` lies: ``(file,)`` for a module, its
    directories for a package; None when it is installed, built in, or not found."""
    with _lock:
        if top in _where:
            return _where[top]
    loc = _locate(top)
    with _lock:
        _where[top] = loc
    return loc


def _locate(top: str) -> tuple[str, ...] | None:
    if (not top or top in _NEVER or top in sys.builtin_module_names
            or top in getattr(sys, "stdlib_module_names", ())):
        return None
    mod = sys.modules.get(top)
    dirs: list[str] = []
    file: str | None = None
    if mod is not None:
        file = getattr(mod, "__file__", None)
        path = getattr(mod, "__path__", None)
        if file is None and path is not None:
            dirs = [str(p) for p in path]
    else:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        if spec.origin and spec.has_location:
            file = spec.origin
        elif spec.submodule_search_locations:
            dirs = [str(p) for p in spec.submodule_search_locations]
    if file:
        if not os.path.isfile(file) or _is_installed_path(file):
            return None
        if os.path.basename(file).startswith("__init__."):
            dirs = [os.path.dirname(file)]
        else:
            return None if top in _editable_names() else (file,)
    dirs = [d for d in dirs if os.path.isdir(d) and not _is_installed_path(d)]
    if not dirs or top in _editable_names():
        return None
    return tuple(dirs)


def _file_imports(path: str) -> frozenset[str]:
    """Top-level names imported anywhere in the Python file ``path`` (cached by size and time)."""
    try:
        st = os.stat(path)
    except OSError:
        return frozenset()
    key = (path, st.st_mtime_ns, st.st_size)
    got = _imports_cache.get(key)
    if got is not None:
        return got
    names: set[str] = set()
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=path)
    except (SyntaxError, ValueError, OSError):
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.partition(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.partition(".")[0])
    got = frozenset(names)
    _imports_cache[key] = got
    return got


def _files_of(top: str, loc: tuple[str, ...]) -> list[tuple[str, Path]]:
    """``(path in the modules directory, source file)`` for every file shipped for ``top``."""
    if len(loc) == 1 and os.path.isfile(loc[0]):
        name = os.path.basename(loc[0])
        suffix = name[name.index("."):] if "." in name else ".py"
        return [(top + suffix, Path(loc[0]))]
    out: dict[str, Path] = {}
    for d in loc:
        base = Path(d)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(n for n in dirnames if n != "__pycache__" and not n.startswith("."))
            for n in sorted(filenames):
                if n.startswith(".") or n.endswith((".pyc", ".pyo")):
                    continue
                src = Path(dirpath, n)
                rel = f"{top}/{src.relative_to(base).as_posix()}"
                out.setdefault(rel, src)
    return sorted(out.items())


def _python_files(files: list[tuple[str, Path]]) -> Iterable[str]:
    return (str(src) for rel, src in files if rel.endswith(".py"))


def _check_importable(name: str) -> None:
    """Raise :class:`ModuleShipError` for a module that no job can import (one that exists only
    in this process's memory, with no file or spec)."""
    top = name.partition(".")[0]
    mod = sys.modules.get(top)
    if mod is None or top in sys.builtin_module_names or top in _NEVER:
        return
    if getattr(mod, "__spec__", None) is None and getattr(mod, "__file__", None) is None \
            and getattr(mod, "__path__", None) is None:
        raise ModuleShipError(
            f"module {top!r} exists only in this process (it has no file and no import spec), so the job "
            f"cannot import it; define the function in a module file (your own modules are shipped with "
            f"the call) or register it with cloudpickle.register_pickle_by_value({top})", name=top)


def ship_modules(info: PickleInfo, dest: Path, h: Any, parts: dict[str, Any], ship: bool = True) -> list[str]:
    """Copy the user's own modules that ``info`` refers to (and those they import) into ``dest``;
    feed their digests to ``h`` and record them in ``parts["modules"]``. Returns their names.
    With ``ship`` false, only checks.

    :raises ModuleShipError: a module referred to by reference can be imported by no job.
    """
    for name in sorted(info.modules):
        _check_importable(name)
    if not ship:
        return []
    todo = sorted({m.partition(".")[0] for m in info.modules} | info.imports)
    chosen: dict[str, list[tuple[str, Path]]] = {}
    seen: set[str] = set()
    while todo:
        top = todo.pop()
        if top in seen:
            continue
        seen.add(top)
        loc = user_module_location(top)
        if loc is None:
            continue
        files = _files_of(top, loc)
        chosen[top] = files
        for py in _python_files(files):
            todo.extend(n for n in _file_imports(py) if n not in seen)
    if not chosen:
        return []
    modules = parts.setdefault("modules", {})
    for top in sorted(chosen):
        part = hashlib.sha256()
        size = 0
        for rel, src in chosen[top]:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = src.read_bytes()
            target.write_bytes(data)
            size += len(data)
            part.update(f"\0{rel}\0{len(data)}\0".encode())
            part.update(data)
        h.update(f"\0module:{top}\0".encode())
        h.update(part.digest())
        modules[top] = part.hexdigest()
        if size > WARN_BYTES:
            logger.warning("module %s shipped with the call is %.1f MB (all files of %s): install it where the jobs "
                           "run (pip install ...) and pass ship_modules=False to avoid copying it with every call",
                           top, size / 1e6, chosen[top][0][1].parent)
    logger.debug("shipped modules %s", ", ".join(sorted(chosen)))
    return sorted(chosen)

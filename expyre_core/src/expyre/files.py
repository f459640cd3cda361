"""Plugin API: putting files in place so that no reader ever sees a half-written one.

Several drivers may share one expyre root, and a driver may be killed at any moment. Every file
that a driver writes where another process may read it (a stage directory, a run directory, the
current directory's output files) is therefore written under a private temporary name in the
destination directory and renamed into place with :func:`os.replace`: a reader sees the old
file or the new one, never a part of it, and a killed writer leaves at most a temporary file
(whose name :func:`is_temp_name` recognises; copies skip such files and :func:`remove_stale_temps`
removes those of dead processes).

A job's result markers (:data:`~expyre.layout.RESULT_MARKERS`) vouch for the files the runner
wrote before them (its captured output, the per-call outcomes of a packed job). A copy of a job
directory puts them in place LAST, and only those that existed before it began to copy the
other files: when a marker is in a stage directory, so is everything it vouches for.

Transports use :func:`copy_tree` (a copy on this machine) or :func:`move_tree` (files already
fetched into a holding directory beside the destination, e.g. by rsync) to follow this.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import threading
from pathlib import Path
from typing import Iterable

from . import _faults
from .layout import RESULT_MARKERS

__all__ = ["temp_name", "is_temp_name", "atomic_write", "atomic_text", "copy_file", "copy_tree", "move_tree",
           "holding_dir", "remove_stale_temps", "RESULT_MARKERS", "COPY_BACK_POINT", "HOLDING_PREFIX"]

#: size of the pieces a copy reads and writes
CHUNK = 1 << 20
#: the fault point (``expyre._faults``) passed inside a copy back, after the first piece of a
#: file larger than one piece is written under its temporary name
COPY_BACK_POINT = "copy_back_partial"

# ``.<name>.tmp.<pid>[.<anything>]``: ours, the job-side runner's and the packed jobs' temporary files
_TEMP_RE = re.compile(r"^\..+\.tmp\.(\d+)(\.[^/]*)?$")
# ``.<name>.tmp.<pid>.<thread>``: only this module's (a runner's may belong to a live job on another node)
_OUR_TEMP_RE = re.compile(r"^\..+\.tmp\.(\d+)\.\d+$")
#: prefix of the holding directories of :func:`holding_dir` (``<prefix><pid>_<n>``)
HOLDING_PREFIX = ".tmp_fetch_"


def temp_name(path: Path, tag: str = "") -> Path:
    """A private temporary name for writing ``path``: in the same directory (so that renaming it
    into place is atomic), unique to this process and thread (and ``tag``, for a second one)."""
    return path.with_name(f".{path.name}{tag}.tmp.{os.getpid()}.{threading.get_ident()}")


def is_temp_name(name: str) -> bool:
    """True for the temporary file name of a writer: this module, the job-side runner or a packed
    job (rsync's are not: the transports let rsync write into a holding directory)."""
    return bool(_TEMP_RE.match(name))


def atomic_write(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` through :func:`temp_name` and :func:`os.replace` (``mode`` less
    the umask, as :func:`open` would create it)."""
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def atomic_text(path: Path, text: str) -> None:
    """:func:`atomic_write` of ``text`` (UTF-8)."""
    atomic_write(Path(path), text.encode())


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns and stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode)


def copy_file(src: Path, dst: Path, *, fsync: bool = False, fault: str | None = None,
              follow_symlinks: bool = False) -> bool:
    """Copy the file (or symlink, as a symlink, unless ``follow_symlinks``) ``src`` to ``dst``
    through a temporary name in ``dst``'s directory, keeping its mode and times. Skipped (False)
    when ``dst`` already has ``src``'s size, time and type, or when ``src`` vanished; True when
    copied.

    ``fault`` names an ``expyre._faults.point`` passed after the first piece of a large file."""
    try:
        st = os.stat(src) if follow_symlinks else os.lstat(src)
    except FileNotFoundError:
        return False  # vanished since it was listed (a writer's temporary file renamed away)
    try:
        if stat.S_ISLNK(st.st_mode):
            if os.path.islink(dst) and os.readlink(src) == os.readlink(dst):
                return False
        elif _same(st, os.lstat(dst)):
            return False
    except OSError:
        pass
    tmp = temp_name(dst)
    try:
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), tmp)
        elif stat.S_ISREG(st.st_mode):
            try:
                fin = open(src, "rb")
            except FileNotFoundError:
                return False
            with fin, os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb") as fout:
                first = True
                while True:
                    piece = fin.read(CHUNK)
                    if not piece:
                        break
                    fout.write(piece)
                    if first and fault and len(piece) == CHUNK:
                        fout.flush()
                        _faults.point(fault)
                    first = False
                if fsync:
                    fout.flush()
                    os.fsync(fout.fileno())
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            return False  # sockets, fifos, devices: not job output
        os.replace(tmp, dst)
    except BaseException:
        _unlink(tmp)
        raise
    return True


def _entries(src: Path, last: Iterable[str], follow_symlinks: bool = False) -> tuple[list[Path], list[Path]]:
    """The directories and files of the tree ``src`` (relative), except the top-level ``last``
    names and writers' temporary files. Symlinks to directories are files unless ``follow_symlinks``."""
    dirs: list[Path] = []
    files: list[Path] = []
    skip = set(last)
    for top, dnames, fnames in os.walk(src, followlinks=follow_symlinks):
        rel = Path(top).relative_to(src)
        for d in sorted(dnames):
            p = Path(top) / d
            (files if p.is_symlink() and not follow_symlinks else dirs).append(rel / d)
        for f in sorted(fnames):
            if (rel == Path(".") and f in skip) or is_temp_name(f):
                continue
            files.append(rel / f)
        dnames[:] = sorted(d for d in dnames if follow_symlinks or not (Path(top) / d).is_symlink())
    return dirs, files


def _make_dir(src: Path, dst: Path) -> None:
    try:
        mode = stat.S_IMODE(os.stat(src).st_mode) | 0o700
    except OSError:
        mode = 0o700
    try:
        os.mkdir(dst, mode)
    except FileExistsError:
        pass


def copy_tree(src: Path, dst: Path, *, last: Iterable[str] = RESULT_MARKERS, fault: str | None = None,
              follow_symlinks: bool = False) -> int:
    """Copy the directory tree ``src`` into ``dst`` (created if needed), file by file with
    :func:`copy_file` (symlinks as symlinks, unless ``follow_symlinks``); nothing in ``dst`` is
    deleted. The top-level files named in ``last`` that exist when the copy begins are copied
    after all the others (and synced to disk).

    :return: the number of files copied (unchanged files are skipped)."""
    src, dst = Path(src), Path(dst)
    present_last = [n for n in last if os.path.lexists(src / n)]  # before the files they vouch for
    _make_dir(src, dst)
    dirs, files = _entries(src, last, follow_symlinks)
    n = 0
    for d in dirs:
        _make_dir(src / d, dst / d)
    for f in files:
        n += copy_file(src / f, dst / f, fault=fault, follow_symlinks=follow_symlinks)
    for m in present_last:
        n += copy_file(src / m, dst / m, fsync=True, fault=fault, follow_symlinks=follow_symlinks)
    return n


def move_tree(src: Path, dst: Path, *, last: Iterable[str] = RESULT_MARKERS, fault: str | None = None) -> int:
    """Move the files of ``src`` (a holding directory on the same file system, e.g. filled by
    rsync) into the directory ``dst`` with :func:`os.replace`, the top-level ``last`` names after
    all the others (``fault`` names an ``expyre._faults.point`` passed just before them).
    Files that already are ``dst``'s (hard links to it) stay. ``src`` is left with what was not
    moved; the caller removes it.

    :return: the number of files moved."""
    src, dst = Path(src), Path(dst)
    _make_dir(src, dst)
    dirs, files = _entries(src, last)
    n = 0

    def move(rel: Path) -> int:
        a, b = src / rel, dst / rel
        try:
            sa = os.lstat(a)
        except FileNotFoundError:
            return 0
        try:
            sb = os.lstat(b)
            if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
                return 0
        except FileNotFoundError:
            pass
        os.replace(a, b)
        return 1

    for d in dirs:
        _make_dir(src / d, dst / d)
    for f in files:
        n += move(f)
    if fault:
        _faults.point(fault)
    for m in last:
        n += move(Path(m))
    return n


def holding_dir(parent: Path) -> Path:
    """A new private directory in ``parent`` to fetch files into before :func:`move_tree`."""
    remove_stale_temps(parent)
    for i in range(1000):
        p = Path(parent) / f"{HOLDING_PREFIX}{os.getpid()}_{threading.get_ident()}_{i}"
        try:
            os.mkdir(p, 0o700)
            return p
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a holding directory in {parent}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the temporary files and holding directories that processes now dead (on this
    machine, a ``kill -9`` in the middle of a copy) left in ``directory``; return them."""
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if name.startswith(HOLDING_PREFIX):
            pid_s = name[len(HOLDING_PREFIX):].split("_", 1)[0]
        else:
            m = _OUR_TEMP_RE.match(name)
            if not m:
                continue
            pid_s = m.group(1)
        if not pid_s.isdigit() or _alive(int(pid_s)):
            continue
        p = Path(directory) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            _unlink(p)
        removed.append(p)
    return removed

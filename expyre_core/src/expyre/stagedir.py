"""Config-loading layer: a job's stage directory opened as a verified directory descriptor, and
the files in it opened through that descriptor: the one way expyre reads what a job left.

Anything in a stage directory may have been written by someone else (a shared run directory, a
copy back from a cluster), and any path may be swapped between a check and a use. So nothing is
checked by path and then opened by path again:

* the parent (the expyre root) is opened and checked: a directory owned by the current user (or
  root) and not writable by group or others, so that only its owner can replace its entries;
* the stage directory is opened *relative to the parent's descriptor* without following a
  symlink (``O_DIRECTORY | O_NOFOLLOW``) and checked on that descriptor (``fstat``): the same
  owner and mode rules;
* a file is opened relative to the stage directory's descriptor without following a symlink
  and without blocking (a FIFO would), and must be a regular file owned by the current user or
  root.

Whatever fails these is refused with :class:`~expyre.config_files.UnsafePathError`, naming the
path, its owner and mode and the fix. Every read of a file of the directory goes through the
same descriptor, so a directory swapped meanwhile is never read.

Example::

    from expyre.stagedir import open_stage_dir
    with open_stage_dir(job.stage_dir) as sd:
        if "_expyre_job_succeeded" in sd.names():
            with sd.open("_expyre_job_succeeded") as f:
                value = pickle.load(f)
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .config_files import UnsafePathError, _user

__all__ = ["StageDir", "open_stage_dir", "UnsafePathError", "why_refused"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | _CLOEXEC
#: errno of opening a symlink with O_NOFOLLOW (Linux: ELOOP; the BSDs: EMLINK)
_SYMLINK_ERRNOS = (errno.ELOOP, errno.EMLINK)

_KINDS = ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISREG, "a regular file"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "of an unknown kind")


def _describe(st: os.stat_result) -> str:
    return f"owner {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}"


def _dir_problem(path: Path, st: os.stat_result, private: bool = True) -> str | None:
    """Why the directory ``path`` (as ``fstat`` saw it) must not be trusted, or None; ``private``:
    it must not be writable by group or others either."""
    me = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is {_kind(st.st_mode)}, not a directory ({_describe(st)})"
    if st.st_uid not in (me, 0):
        return f"{path} is owned by {_user(st.st_uid)}, not by you ({_user(me)}) or root (mode {stat.S_IMODE(st.st_mode):04o})"
    if private and st.st_mode & 0o022:
        return f"{path} is writable by group or others ({_describe(st)})"
    return None


def _dir_fix(path: Path) -> str:
    return (f"if it is yours and you trust it, run `chmod go-w {path}` (and `chown` it to yourself); otherwise "
            f"remove it (a job whose stage directory was replaced runs again with start(..., force_rerun=True))")


def _open_dir_fd(name: str | Path, path: Path, what: str, dir_fd: int | None, private: bool = True) -> int:
    """``name`` (relative to ``dir_fd``, the last component never through a symlink when
    ``dir_fd`` is given) opened as a directory and checked on its descriptor (:func:`_dir_problem`)."""
    flags = _DIR_FLAGS | (os.O_NOFOLLOW if dir_fd is not None else 0)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if dir_fd is None or exc.errno not in (*_SYMLINK_ERRNOS, errno.ENOTDIR):
            raise
        fix = ("remove it; expyre reads a job's files only from its own directory, never through a "
               "symlink (the job runs again with start(..., force_rerun=True))")
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            where = f" to {os.readlink(name, dir_fd=dir_fd)}" if stat.S_ISLNK(st.st_mode) else ""
        except OSError:
            st = None
        if st is None or stat.S_ISDIR(st.st_mode):  # it changed between the open and the look
            raise UnsafePathError(path, f"{what} {path} was a symlink or not a directory when opened "
                                  f"(it is being replaced)", fix) from None
        raise UnsafePathError(path, f"{what} {path} is {_kind(st.st_mode)}{where}, not a directory ({_describe(st)})",
                              fix) from None
    try:
        problem = _dir_problem(path, os.fstat(fd), private)
    except BaseException:
        os.close(fd)
        raise
    if problem:
        os.close(fd)
        raise UnsafePathError(path, f"{what} {problem}", _dir_fix(path))
    return fd


def why_refused(exc: UnsafePathError) -> str:
    """The one line of a refusal: what is wrong, and the fix (without the "1 problem(s)" header)."""
    return "; ".join(msg for _, msg in exc.problems)


def open_stage_dir(path: str | os.PathLike) -> "StageDir":
    """The directory ``path`` (a job's stage directory ``<root>/run_<id>``, or its copy in a
    local run directory) opened and verified: its parent is opened and checked first, then
    ``path`` is opened relative to the parent's descriptor, never through a symlink.

    :raises UnsafePathError: the parent or the directory is not a directory owned by you (or
        root) and private to it for writing, or the directory is a symlink.
    :raises FileNotFoundError: it does not exist (nor other :class:`OSError` as they come).
    """
    path = Path(os.path.abspath(path))
    parent_fd = _open_dir_fd(path.parent, path.parent, "directory", None)
    try:
        fd = _open_dir_fd(path.name, path, "stage directory", parent_fd)
    finally:
        os.close(parent_fd)
    return StageDir(path, fd)


class StageDir:
    """An open, verified stage directory (see :func:`open_stage_dir`). Every method works on its
    descriptor, never on its path again; close it (or use it as a context manager)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    # -- the directory ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The names in the directory."""
        return os.listdir(self.fd)

    def exists(self, name: str) -> bool:
        """``name`` is an entry of the directory (of any kind; a symlink is not followed)."""
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def subdir(self, name: str, private: bool = True) -> "StageDir":
        """The subdirectory ``name``, opened and checked as the stage directory is (never through
        a symlink, owned by you or root; with ``private``, not writable by group or others)."""
        return StageDir(self.path / name, _open_dir_fd(name, self.path / name, "directory", self.fd, private))

    def lstat(self, name: str) -> os.stat_result:
        """What ``name`` is (a symlink is not followed)."""
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    # -- its files -------------------------------------------------------------------------------
    def open(self, name: str) -> BinaryIO:
        """The file ``name`` opened for reading: a regular file owned by you (or root), not a
        symlink (:class:`UnsafePathError` otherwise; :class:`FileNotFoundError` if missing)."""
        path = self.path / name
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno not in _SYMLINK_ERRNOS:
                raise
            try:
                target = f" to {os.readlink(name, dir_fd=self.fd)}"
            except OSError:
                target = ""
            raise UnsafePathError(path, f"{path} is a symlink{target}", "remove it; expyre never reads a job's "
                                  "files through a symlink (the job runs again with start(..., force_rerun=True))") from None
        try:
            st = os.fstat(fd)
            me = os.geteuid()
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePathError(path, f"{path} is {_kind(st.st_mode)}, not a regular file ({_describe(st)})",
                                      "remove it (the job runs again with start(..., force_rerun=True))")
            if st.st_uid not in (me, 0):
                raise UnsafePathError(path, f"{path} is owned by {_user(st.st_uid)}, not by you ({_user(me)}) or root "
                                      f"(mode {stat.S_IMODE(st.st_mode):04o})",
                                      "remove it, or if you trust it `chown` it to yourself")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        """The contents of the file ``name`` (at most ``limit`` bytes), as :meth:`open` allows."""
        with self.open(name) as f:
            return f.read() if limit is None else f.read(limit)

    def read_text(self, name: str, limit: int | None = None) -> str:
        """:meth:`read_bytes` decoded as UTF-8 (undecodable bytes replaced)."""
        return self.read_bytes(name, limit).decode(errors="replace")

    # -- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "StageDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"StageDir({str(self.path)!r}, fd={self.fd})"

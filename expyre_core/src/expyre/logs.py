"""A job's output so far, and following it while it runs: what ``xpr logs`` prints.

Two files hold a job's output on each stream, both growing while it runs:

* ``_expyre_job.out`` / ``_expyre_job.err``: what the scheduler captured of the job script (its
  commands, module loads, the runner's own errors);
* ``_expyre_stdout`` / ``_expyre_stderr``: what the function wrote (the runner points file
  descriptors 1 and 2 at them while the function runs).

They are read where the job runs: the stage directory itself for a system that shares it, the
job's directory under ``rundir`` for a local rundir, and over the system's transport for a remote
host, in ONE command per read (the new bytes of each file past the offsets already read, and the
job's result markers, base64-encoded). A job that ended is read from its local stage directory
(its files were copied back with the results). A local directory is read through its verified
directory descriptor (:mod:`expyre.stagedir`): never through a symlink, never one that another
user owns or can write.

Example::

    from expyre.logs import JobLogs
    logs = JobLogs("fit_ab12cd34ef_3")
    for name, text in logs.read(tail_lines=20).chunks:
        print(name, text)
    for name, text in logs.follow(interval=2):  # until the job ends
        print(text, end="")
"""

from __future__ import annotations

import base64
import codecs
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .jobsdb import STATUS_GROUPS
from .layout import JOB_STDERR, JOB_STDOUT, RESULT_MARKERS, STDERR, STDOUT
from .shell import remote_path
from .stagedir import UnsafePathError, open_stage_dir

__all__ = ["STREAMS", "LogRead", "JobLogs"]

logger = logging.getLogger(__name__)

#: stream -> (the job script's output file, the function's output file), in the order printed
STREAMS = {"stdout": (JOB_STDOUT, STDOUT), "stderr": (JOB_STDERR, STDERR)}
_SEP = "__EXPYRE_LOGS__"
#: the most bytes of one file one read returns (a long-silent follower catches up in several reads)
MAX_READ = 8 << 20


@dataclass
class LogRead:
    """One read of a job's output files.

    :param chunks: ``(file name, new text)`` for each file that grew, in :data:`STREAMS` order.
    :param finished: the job has ended (a result marker exists where it runs, or its status in
        the jobs database is final).
    :param where: the directory read (``host:dir`` for a remote host).
    :param present: the files that exist there (also those that did not grow).
    """

    chunks: list[tuple[str, str]] = field(default_factory=list)
    finished: bool = False
    where: str = ""
    present: set[str] = field(default_factory=set)


class JobLogs:
    """Reads the output files of one job, remembering how far each was read.

    :param job_id: the job's id.
    :param stream: ``"stdout"`` or ``"stderr"``.
    :param function_only: read only the function's file (``_expyre_stdout``/``_expyre_stderr``),
        not the job script's.
    :raises LookupError: no such job in the jobs database.
    """

    def __init__(self, job_id: str, stream: str = "stdout", db=None, function_only: bool = False) -> None:
        from . import config

        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}; valid: {', '.join(STREAMS)}")
        self.db = db if db is not None else config.db
        self.job_id = job_id
        self.files = STREAMS[stream][1:] if function_only else STREAMS[stream]
        self.offsets: dict[str, int] = {f: 0 for f in self.files}
        self._decoders = {f: codecs.getincrementaldecoder("utf-8")(errors="replace") for f in self.files}
        if self._row() is None:
            raise LookupError(f"no job {job_id!r} in the jobs database {self.db.path}")

    def _row(self) -> dict | None:
        return self.db.get(self.job_id)

    def _location(self, row: dict):
        """``(system or None, directory)``: the system when the files are read through its
        transport on a remote host, else None and a local directory."""
        from . import config

        stage = Path(row["from_dir"])
        if row["system"] and row["status"] in STATUS_GROUPS["ongoing"]:
            system = config.get_system(row["system"])
            if not system.shares_stage_dirs:
                rd = system.remote_dir(stage)
                return (system, rd) if system.host is not None else (None, Path(rd))
        return None, stage

    def read(self, tail_lines: int | None = None) -> LogRead:
        """The output written since the last read (the first read: all of it, or with
        ``tail_lines`` only the last lines of each file)."""
        row = self._row()
        if row is None:
            raise LookupError(f"job {self.job_id} is no longer in the jobs database")
        system, where = self._location(row)
        if system is None:
            data, markers = self._read_local(Path(where), tail_lines)
            shown = str(where)
        else:
            data, markers = self._read_remote(system, str(where), tail_lines)
            shown = f"{system.host}:{where}"
        out = LogRead(where=shown, present=set(data))
        for f in self.files:
            if f not in data:
                continue
            size, raw = data[f]
            self.offsets[f] = size
            text = self._decoders[f].decode(raw)
            if text:
                out.chunks.append((f, text))
        out.finished = bool(markers) or row["status"] not in STATUS_GROUPS["ongoing"]
        return out

    def _read_local(self, d: Path, tail_lines: int | None) -> tuple[dict[str, tuple[int, bytes]], set[str]]:
        """The new output in the local directory ``d``, read through its verified directory
        descriptor (:mod:`expyre.stagedir`; :class:`~expyre.config_files.UnsafePathError` when it
        must not be read). A file that is missing or must not be read (a symlink, a FIFO, another
        user's) is left out."""
        data: dict[str, tuple[int, bytes]] = {}
        try:
            sd = open_stage_dir(d)
        except FileNotFoundError:
            return data, set()
        with sd:
            for f in self.files:
                try:
                    fh = sd.open(f)
                except (OSError, UnsafePathError):
                    continue
                with fh:
                    size = os.fstat(fh.fileno()).st_size
                    off = self.offsets[f] if self.offsets[f] <= size else 0  # truncated: a re-run
                    if tail_lines is not None:
                        start = max(0, size - MAX_READ)
                        fh.seek(start)
                        raw = _last_lines(fh.read(size - start), tail_lines)
                    else:
                        fh.seek(off)
                        raw = fh.read(min(size - off, MAX_READ))
                        size = off + len(raw)
                data[f] = (size, raw)
            markers = {m for m in RESULT_MARKERS if sd.exists(m)}
        return data, markers

    def command(self, remote_dir: str, tail_lines: int | None = None) -> str:
        """The one shell command that reads the new output in ``remote_dir`` (and its markers)."""
        parts = [f"cd -- {remote_path(remote_dir)} 2>/dev/null || exit 0"]
        for f in self.files:  # s: the size read up to (the next offset), taken before reading
            if tail_lines is not None:
                limit = ""
                body = f'head -c "$s" {f} | tail -n {int(tail_lines)} | base64'
            else:
                limit = (f'o={int(self.offsets[f])}; [ "$s" -lt "$o" ] && o=0; '
                         f'[ $((s - o)) -gt {MAX_READ} ] && s=$((o + {MAX_READ})); ')
                body = f'head -c "$s" {f} | tail -c +$((o + 1)) | base64'
            parts.append(f'if [ -f {f} ] && [ ! -L {f} ]; then s=$(wc -c < {f} | tr -d " "); {limit}'
                         f'printf "{_SEP} file %s %s\\n" {f} "$s"; {body}; fi')
        parts.append(" ".join(f'[ -e {m} ] && printf "{_SEP} marker %s\\n" {m};' for m in RESULT_MARKERS) + " true")
        return "\n".join(parts)

    def _read_remote(self, system, remote_dir: str, tail_lines: int | None) -> tuple[dict[str, tuple[int, bytes]], set[str]]:
        result = system.transport.run(self.command(remote_dir, tail_lines))
        if not result.ok:
            raise RuntimeError(f"job {self.job_id}: reading its output on {system.host} failed: {result.describe()}")
        data: dict[str, tuple[int, bytes]] = {}
        markers: set[str] = set()
        current: str | None = None
        size = 0
        b64: list[str] = []

        def flush() -> None:
            if current is not None:
                raw = base64.b64decode("".join(b64)) if b64 else b""
                data[current] = (size, raw)

        for line in result.stdout.splitlines():
            if line.startswith(_SEP + " "):
                flush()
                current, b64 = None, []
                kind, _, rest = line[len(_SEP) + 1:].partition(" ")
                if kind == "file":
                    name, _, n = rest.rpartition(" ")
                    if name in self.files and n.isdigit():
                        current, size = name, int(n)
                elif kind == "marker" and rest in RESULT_MARKERS:
                    markers.add(rest)
            elif current is not None:
                b64.append(line.strip())
        flush()
        return data, markers

    def follow(self, interval: float = 2.0, tail_lines: int | None = None,
               sleep=time.sleep) -> Iterator[tuple[str, str]]:
        """``(file name, new text)`` as the job writes it, every ``interval`` seconds, until the
        job has ended (then the rest is given and the iteration stops)."""
        first = True
        while True:
            r = self.read(tail_lines=tail_lines if first else None)
            first = False
            yield from r.chunks
            if r.finished:
                while True:  # what was written between the last read and the end (and any backlog)
                    rest = self.read()
                    yield from rest.chunks
                    if not rest.chunks:
                        return
            sleep(interval)


def _last_lines(raw: bytes, n: int) -> bytes:
    if n <= 0:
        return b""
    lines = raw.splitlines(keepends=True)
    return b"".join(lines[-n:])

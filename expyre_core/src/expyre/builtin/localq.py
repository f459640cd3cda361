"""A tiny batch queue for one machine: the engine of the built-in ``local`` scheduler.

Standard library only: it is imported in-process when the jobs run on this machine, and copied to
``<rundir>/_expyre_localq/localq.py`` and run as ``python3 localq.py <command> ...`` when the
``local`` scheduler serves a remote host over ssh.

Layout of a queue directory ``Q``, owned by the user of the queue and private to it (mode 0700;
any other owner or mode is refused, as a job request planted there would run as that user)::

    Q/jobs/<jid>.json     the request (written atomically by ``submit``): no environment in it
    Q/env/<jid>.json      the environment the job starts with; removed as soon as it starts (or ends
                          without starting), so that the driver's variables do not linger on disk
    Q/done/<jid>.json     the request of a finished job
    Q/state/<jid>.json    what the daemon says: queued|held|running|completed|failed|timeout|cancelled
    Q/ctl/<jid>.<op>      cancel / hold / release requests
    Q/daemon.lock         flock held by the one daemon of this queue
    Q/wake                FIFO: a byte written here wakes the daemon at once
    Q/daemon.log

One daemon per queue directory runs the jobs as detached process groups (they survive the
process that submitted them), never more cores at once than its capacity (this machine's cores),
kills a job at its max_time (SIGTERM, then SIGKILL after a grace period) and exits after a while
with nothing to do. Any client that finds work queued and no daemon starts one. Only requests
written by the queue's user are run.

A full file system does not crash the daemon: a state it cannot write is kept and written again
on every tick, and :func:`status` reports a job whose process ended while its state could not be
written as failed, saying that no space is left and where. :func:`forget` removes the records of
finished jobs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid

KILL_GRACE = 5.0
#: the job runner's exit status when it could not record its outcome for lack of space
EXIT_NO_SPACE = 28
IDLE_EXIT = 20.0
TERMINAL = ("completed", "failed", "timeout", "cancelled")


def machine_ncores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def capacity() -> int:
    """Cores the queue runs at once: ``$EXPYRE_LOCAL_NCORES``, else this machine's cores.
    :class:`ValueError` names the variable when it is not a whole number >= 1."""
    raw = os.environ.get("EXPYRE_LOCAL_NCORES", "")
    if not raw.strip():
        return machine_ncores()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"EXPYRE_LOCAL_NCORES={raw!r} is invalid: give a whole number of cores >= 1 "
                         f"(this machine has {machine_ncores()}), or unset it to use all of them")
    return value


class UnsafeQueueError(PermissionError):
    """The queue directory is not private to the current user: it is not used."""


def check_private_dir(path: str, what: str = "queue directory") -> None:
    """Refuse ``path`` unless it is a real directory owned by the current user and not
    accessible to group or others (:class:`UnsafeQueueError` names path, owner, mode and fix)."""
    st = os.lstat(path)
    import stat as _stat

    euid = os.geteuid()
    problem = None
    if not _stat.S_ISDIR(st.st_mode):
        problem = "is not a directory (a symlink or a file)"
    elif st.st_uid != euid:
        problem = f"is owned by {_user(st.st_uid)}, not by {_user(euid)} who runs this"
    elif st.st_mode & 0o077:
        problem = "is accessible to group or others"
    if problem:
        fix = (f"remove it (it is recreated private), or if it is yours: chmod 700 {path}"
               if _stat.S_ISDIR(st.st_mode) and st.st_uid == euid else f"remove it; it is recreated private to {_user(euid)}")
        raise UnsafeQueueError(
            f"{what} {path} {problem} (owner {_user(st.st_uid)}, mode {_stat.S_IMODE(st.st_mode):04o}); "
            f"refusing to use it, as others could plant jobs there that would run as {_user(euid)}: {fix}"
        )


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _mkdirs(q: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(q)), mode=0o700, exist_ok=True)
    try:
        os.mkdir(q, 0o700)
    except FileExistsError:
        pass
    check_private_dir(q)
    for sub in ("jobs", "done", "state", "ctl", "env"):
        try:
            os.mkdir(os.path.join(q, sub), 0o700)
        except FileExistsError:
            pass
    fifo = os.path.join(q, "wake")
    try:
        os.mkfifo(fifo, 0o600)
    except FileExistsError:
        pass


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _nofollow(path: str, flags: int) -> int:
    """An ``open()`` opener: never through a symlink, never blocking on a FIFO."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


def _read_json(path: str, owned: bool = False) -> dict | None:
    """The JSON object in ``path``; None if it does not exist or is being written (not JSON yet).
    Any other error (e.g. an unreadable file) raises. The file is opened without following a
    symlink and without blocking (a FIFO would), then checked on the open file: a symlink or
    anything but a regular file is None, or with ``owned`` raises :class:`OSError`. ``owned``:
    also None unless the file belongs to the current user and is writable by nobody else."""
    import stat as _stat

    try:
        try:
            f = open(path, opener=_nofollow)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EMLINK):
                raise
            if not owned:
                return None
            raise OSError(exc.errno, f"{path} is a symlink; not following it") from None
        with f:
            st = os.fstat(f.fileno())
            if not _stat.S_ISREG(st.st_mode):
                if not owned:
                    return None
                raise OSError(errno.EINVAL, f"{path} is not a regular file (mode {st.st_mode:o})")
            if owned and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
                return None
            os.set_blocking(f.fileno(), True)
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _no_space_left(q: str) -> bool:
    """The file system of ``q`` has (almost) no space left for ordinary users."""
    try:
        st = os.statvfs(q)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024 or (st.f_files > 0 and st.f_favail == 0)


def _owned_private(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return True  # gone: nothing to ignore
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _wake(q: str) -> None:
    try:
        fd = os.open(os.path.join(q, "wake"), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # no daemon reading: ensure_daemon() starts one
    try:
        os.write(fd, b"x")
    except OSError:
        pass
    finally:
        os.close(fd)


def daemon_alive(q: str) -> bool:
    try:
        fd = os.open(os.path.join(q, "daemon.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def ensure_daemon(q: str, python: str | None = None) -> None:
    """Start the queue's daemon unless one runs (it survives the caller)."""
    q = os.path.abspath(q)  # the daemon runs in "/"; q may be relative (to a remote home)
    if daemon_alive(q):
        _wake(q)
        return
    check_private_dir(q)
    log = open(os.path.join(q, "daemon.log"), "ab")
    subprocess.Popen(
        [python or sys.executable, os.path.abspath(__file__), "daemon", q],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        close_fds=True,
        cwd="/",
    )
    log.close()


# ---------------------------------------------------------------------------------------------
# client operations
# ---------------------------------------------------------------------------------------------


def submit(
    q: str,
    *,
    directory: str,
    script: str,
    stdout: str,
    stderr: str,
    ncores: int,
    max_time: float | None,
    name: str,
    env: dict | None = None,
    hold: bool = False,
    python: str | None = None,
) -> str:
    _mkdirs(q)
    jid = f"{time.time_ns():x}{uuid.uuid4().hex[:6]}"
    request = {
        "jid": jid,
        "name": name,
        "dir": os.path.abspath(directory),
        "script": script,
        "stdout": stdout,
        "stderr": stderr,
        "ncores": int(ncores),
        "max_time": max_time,
        "seq": time.time_ns(),
    }
    if max_time is not None and not max_time > 0:
        raise ValueError(f"max_time must be > 0 seconds (or None for no limit), got {max_time!r}")
    if hold:
        open(os.path.join(q, "ctl", f"{jid}.hold"), "w").close()
    env_path = os.path.join(q, "env", f"{jid}.json")
    try:
        _write_json(env_path, dict(os.environ if env is None else env))
        _write_json(os.path.join(q, "jobs", f"{jid}.json"), request)
    except BaseException:
        _unlink(env_path)
        _unlink(os.path.join(q, "ctl", f"{jid}.hold"))
        raise
    ensure_daemon(q, python)
    return jid


def status(q: str, jids: list[str]) -> dict[str, dict]:
    """``jid -> {"state", "exit", "reason"}`` for the jids this queue knows. An unreadable state
    file raises :class:`OSError` (the caller counts it as a failed poll)."""
    out: dict[str, dict] = {}
    pending = False
    if os.path.isdir(q):
        check_private_dir(q)
    for jid in jids:
        st = _read_json(os.path.join(q, "state", f"{jid}.json"))
        if st is not None and st.get("state") == "running" and _proc_start(st.get("pid") or 0) != st.get("pstart") \
                and _no_space_left(q):
            # the job's process ended, and the daemon cannot write its state: say so now
            # rather than "running" until the disk is freed
            st = {"state": "failed", "exit": None, "start": st.get("start"),
                  "reason": f"the job's process ended but the queue cannot record how: no space left on device "
                            f"in {os.path.abspath(q)}"}
        if st is None:
            if os.path.exists(os.path.join(q, "jobs", f"{jid}.json")):
                held = os.path.exists(os.path.join(q, "ctl", f"{jid}.hold"))
                st = {"state": "held" if held else "queued"}
                pending = True
            else:
                continue
        elif st.get("state") not in TERMINAL:
            pending = True
        out[jid] = st
    if pending and os.path.isdir(q) and not daemon_alive(q):
        ensure_daemon(q)  # self-healing: work left and nobody to do it
    return out


def find(q: str, names: list[str]) -> dict[str, str]:
    wanted = set(names)
    found: dict[str, tuple[int, str]] = {}
    paths = []
    for sub in ("jobs", "done"):
        try:
            paths += [os.path.join(q, sub, e) for e in os.listdir(os.path.join(q, sub)) if e.endswith(".json")]
        except FileNotFoundError:
            pass
    for path in paths:
        req = _read_json(path)
        if req is None and os.path.basename(os.path.dirname(path)) == "jobs":
            # the daemon moved it to done/ between our listing and this read
            req = _read_json(os.path.join(q, "done", os.path.basename(path)))
        if req and req.get("name") in wanted:
            prev = found.get(req["name"])
            if prev is None or req["seq"] > prev[0]:
                found[req["name"]] = (req["seq"], req["jid"])
    return {name: jid for name, (_, jid) in found.items()}


def forget(q: str, jids: list[str]) -> list[str]:
    """Remove every record of these jobs (request, state, environment, controls) once they have
    ended; returns the jids left alone because they have not ended (queued, held or running)."""
    if not os.path.isdir(q):
        return []
    check_private_dir(q)
    busy = []
    for jid in jids:
        if "/" in jid or jid.startswith("."):
            raise ValueError(f"invalid job id {jid!r}")
        st = _read_json(os.path.join(q, "state", f"{jid}.json"))
        known = st is not None or os.path.exists(os.path.join(q, "jobs", f"{jid}.json"))
        if known and (st is None or st.get("state") not in TERMINAL):
            busy.append(jid)
            continue
        for path in (os.path.join(q, "jobs", f"{jid}.json"), os.path.join(q, "done", f"{jid}.json"),
                     os.path.join(q, "env", f"{jid}.json"), os.path.join(q, "state", f"{jid}.json")):
            _unlink(path)
        for op in ("hold", "release", "cancel"):
            _unlink(os.path.join(q, "ctl", f"{jid}.{op}"))
    return busy


def control(q: str, op: str, jids: list[str]) -> list[str]:
    """Ask the daemon to cancel/hold/release; returns the jids this queue does not know."""
    if op not in ("cancel", "hold", "release"):
        raise ValueError(f"unknown operation {op!r}")
    unknown = []
    for jid in jids:
        if not os.path.exists(os.path.join(q, "jobs", f"{jid}.json")):
            unknown.append(jid)
            continue
        open(os.path.join(q, "ctl", f"{jid}.{op}"), "w").close()
    ensure_daemon(q)
    return unknown


# ---------------------------------------------------------------------------------------------
# the daemon
# ---------------------------------------------------------------------------------------------


def _proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return None
        return fields[19]
    except (OSError, IndexError):
        return None


class Daemon:
    def __init__(self, q: str) -> None:
        self.q = q
        try:
            self.capacity = capacity()
        except ValueError as exc:
            self.capacity = machine_ncores()
            self.log(f"{exc}; using {self.capacity}")
        self.unwritten: dict[str, dict] = {}  # jid -> a state that could not be written yet
        self.running: dict[str, dict] = {}  # jid -> {proc|pid, ncores, deadline, kill_at, state_if_killed}
        self.known: set[str] = set()
        self.queue: list[dict] = []

    def log(self, msg: str) -> None:
        try:
            sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # e.g. the file system of the log is full: the daemon goes on without it

    def set_state(self, jid: str, state: str, **extra) -> None:
        data = {"state": state, "time": time.time(), **extra}
        self._write_state(jid, data)

    def _write_state(self, jid: str, data: dict) -> None:
        """Write a job's state; one that cannot be written (disk full) is kept and written again on
        the next tick (:meth:`retry_unwritten`) instead of ending the daemon."""
        if data["state"] in TERMINAL:
            _unlink(os.path.join(self.q, "env", f"{jid}.json"))  # frees space too
        try:
            _write_json(os.path.join(self.q, "state", f"{jid}.json"), data)
        except OSError as exc:
            if jid not in self.unwritten:
                self.log(f"cannot write the state of job {jid} ({data['state']}): {exc}; trying again")
            self.unwritten[jid] = data
            return
        self.unwritten.pop(jid, None)
        if data["state"] in TERMINAL:  # keep jobs/ small: it is scanned on every tick
            try:
                os.replace(os.path.join(self.q, "jobs", f"{jid}.json"), os.path.join(self.q, "done", f"{jid}.json"))
            except FileNotFoundError:
                pass

    def retry_unwritten(self) -> None:
        for jid, data in list(self.unwritten.items()):
            self._write_state(jid, data)

    # -- start-up: adopt what a previous daemon left running -----------------------------------
    def adopt(self) -> None:
        sdir = os.path.join(self.q, "state")
        for entry in os.listdir(sdir):
            if not entry.endswith(".json"):
                continue
            st = _read_json(os.path.join(sdir, entry))
            jid = entry[:-5]
            if not st:
                continue
            self.known.add(jid)
            if st.get("state") == "running":
                pid = st.get("pid")
                if pid and _proc_start(pid) == st.get("pstart"):
                    req = _read_json(os.path.join(self.q, "jobs", f"{jid}.json")) or {}
                    self.known.add(jid)
                    deadline = st["start"] + req["max_time"] if req.get("max_time") is not None else None
                    self.running[jid] = {"pid": pid, "pstart": st.get("pstart"), "ncores": st.get("ncores", 1),
                                         "deadline": deadline, "kill_at": None, "final": None, "start": st["start"]}
                    self.log(f"adopted running job {jid} pid {pid}")
                else:
                    self.set_state(jid, "completed", exit=None, reason="exit status unknown: the queue daemon restarted",
                                   start=st.get("start"), end=time.time())

    # -- the loop ------------------------------------------------------------------------------
    def scan_queue(self) -> None:
        jdir = os.path.join(self.q, "jobs")
        for entry in os.listdir(jdir):
            if not entry.endswith(".json"):
                continue
            jid = entry[:-5]
            if jid in self.known:
                continue
            path = os.path.join(jdir, entry)
            try:
                req = _read_json(path, owned=True)
            except OSError as exc:
                self.log(f"ignoring job request {path}: {exc}")
                self.known.add(jid)
                continue
            if req is None:
                if os.path.exists(path) and not _owned_private(path):
                    self.log(f"ignoring job request {path}: not written by this user (or writable by others)")
                    self.known.add(jid)
                continue  # else being written
            if req.get("jid") != jid:
                self.log(f"ignoring job request {path}: its jid does not match its file name")
                self.known.add(jid)
                continue
            self.known.add(jid)
            self.queue.append(req)
        self.queue.sort(key=lambda r: r["seq"])

    def handle_controls(self) -> None:
        cdir = os.path.join(self.q, "ctl")
        for entry in sorted(os.listdir(cdir)):
            jid, _, op = entry.rpartition(".")
            if op == "hold":
                continue  # a marker, read when scheduling
            path = os.path.join(cdir, entry)
            if op == "release":
                for p in (path, os.path.join(cdir, f"{jid}.hold")):
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
            elif op == "cancel":
                os.unlink(path)
                if jid in self.running:
                    self.kill(jid, "cancelled", "cancelled by request")
                else:
                    before = len(self.queue)
                    self.queue = [r for r in self.queue if r["jid"] != jid]
                    if len(self.queue) != before or not os.path.exists(os.path.join(self.q, "state", f"{jid}.json")):
                        self.set_state(jid, "cancelled", reason="cancelled while queued", exit=None)

    def kill(self, jid: str, final: str, reason: str) -> None:
        job = self.running[jid]
        if job["kill_at"] is not None:
            return
        job["final"] = (final, reason)
        job["kill_at"] = time.monotonic() + KILL_GRACE
        try:
            os.killpg(job["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass

    def check_running(self) -> bool:
        changed = False
        now_wall = time.time()
        now = time.monotonic()
        for jid, job in list(self.running.items()):
            proc = job.get("proc")
            code = None
            done = False
            if proc is not None:
                code = proc.poll()
                done = code is not None
            elif _proc_start(job["pid"]) != job["pstart"]:
                done = True  # adopted process went away; exit status unknown
            if done:
                final = job["final"]
                if final:
                    state, reason = final
                elif proc is None:
                    state, reason = "completed", "exit status unknown: the queue daemon restarted"
                elif code == 0:
                    state, reason = "completed", ""
                elif code == EXIT_NO_SPACE:
                    state, reason = "failed", (f"exit code {code}: the job could not record its outcome: no space left "
                                               f"on device in {job.get('dir') or 'its directory'}")
                else:
                    state, reason = "failed", f"exit code {code}" if code > 0 else f"killed by signal {-code}"
                self.set_state(jid, state, exit=code, reason=reason, start=job["start"], end=now_wall)
                del self.running[jid]
                changed = True
                continue
            if job["deadline"] is not None and now_wall > job["deadline"] and job["kill_at"] is None:
                self.kill(jid, "timeout", f"killed at its max_time ({job['deadline'] - job['start']:.0f} s)")
            if job["kill_at"] is not None and now > job["kill_at"]:
                try:
                    os.killpg(job["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return changed

    def schedule(self) -> bool:
        started = False
        free = self.capacity - sum(j["ncores"] for j in self.running.values())
        remaining = []
        for req in self.queue:
            jid = req["jid"]
            if os.path.exists(os.path.join(self.q, "ctl", f"{jid}.hold")):
                remaining.append(req)
                continue
            if req["ncores"] > self.capacity:
                self.set_state(jid, "failed", exit=None,
                               reason=f"needs {req['ncores']} cores, this machine has {self.capacity}")
                continue
            if req["ncores"] <= free:
                self.start(req)
                free -= req["ncores"]
                started = True
            else:
                remaining.append(req)
        self.queue = remaining
        return started

    def start(self, req: dict) -> None:
        jid = req["jid"]
        d = req["dir"]
        env_path = os.path.join(self.q, "env", f"{jid}.json")
        try:
            env = _read_json(env_path, owned=True)
            if env is None:
                raise OSError(f"its environment {env_path} is missing or not written by this user")
            out = open(os.path.join(d, req["stdout"]), "ab")
            err = open(os.path.join(d, req["stderr"]), "ab")
            proc = subprocess.Popen(
                ["bash", req["script"]], cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=env, start_new_session=True, close_fds=True,
            )
            out.close()
            err.close()
        except OSError as exc:
            self.set_state(jid, "failed", exit=None, reason=f"could not start: {exc}")
            return
        _unlink(env_path)  # the job has it now
        now = time.time()
        deadline = now + req["max_time"] if req.get("max_time") is not None else None
        pstart = _proc_start(proc.pid)
        self.running[jid] = {"proc": proc, "pid": proc.pid, "pstart": pstart, "ncores": req["ncores"],
                             "deadline": deadline, "kill_at": None, "final": None, "start": now, "dir": d}
        self.set_state(jid, "running", pid=proc.pid, pstart=pstart, ncores=req["ncores"], start=now)

    def run(self) -> int:
        _mkdirs(self.q)
        lock_fd = os.open(os.path.join(self.q, "daemon.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # another daemon serves this queue
        fifo = os.path.join(self.q, "wake")
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self._keep_w = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # so the FIFO never reports EOF
        sig_r, sig_w = os.pipe()
        os.set_blocking(sig_w, False)
        os.set_blocking(sig_r, False)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        self.log(f"daemon start pid {os.getpid()} capacity {self.capacity}")
        self.adopt()
        idle_since = time.monotonic()
        while True:
            try:
                self.retry_unwritten()
                self.scan_queue()
                self.handle_controls()
                self.check_running()
                self.schedule()
            except OSError as exc:  # e.g. a full disk: the next tick tries again; never a crash loop
                self.log(f"error in the queue loop (trying again): {exc!r}")
                time.sleep(0.5)
            if self.running or self.queue or self.unwritten:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_EXIT:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
                # re-check after releasing: a submitter that saw the lock held relies on us
                self.scan_queue()
                if not self.queue:
                    self.log("daemon idle, exiting")
                    return 0
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return 0
                continue
            timeout = 0.5 if not self.running else 0.25
            if any(j["kill_at"] is not None for j in self.running.values()):
                timeout = 0.1
            if any(j.get("proc") is None for j in self.running.values()):
                timeout = 0.2  # adopted jobs are polled
            try:
                ready, _, _ = select.select([rfd, sig_r], [], [], timeout)
            except InterruptedError:
                ready = []
            for fd in ready:
                try:
                    while os.read(fd, 4096):
                        pass
                except BlockingIOError:
                    pass


def _main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="localq.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("daemon")
    d.add_argument("q")
    s = sub.add_parser("submit")
    s.add_argument("q")
    for opt in ("--dir", "--script", "--stdout", "--stderr", "--name"):
        s.add_argument(opt, required=True)
    s.add_argument("--ncores", type=int, required=True)
    s.add_argument("--max-time", type=float, default=None)
    s.add_argument("--hold", action="store_true")
    st = sub.add_parser("status")
    st.add_argument("q")
    st.add_argument("jids", nargs="*")
    f = sub.add_parser("find")
    f.add_argument("q")
    f.add_argument("names", nargs="*")
    fg = sub.add_parser("forget")
    fg.add_argument("q")
    fg.add_argument("jids", nargs="*")
    c = sub.add_parser("control")
    c.add_argument("q")
    c.add_argument("op", choices=["cancel", "hold", "release"])
    c.add_argument("jids", nargs="+")
    a = p.parse_args(argv)
    if a.cmd == "daemon":
        return Daemon(a.q).run()
    if a.cmd == "submit":
        print(submit(a.q, directory=a.dir, script=a.script, stdout=a.stdout, stderr=a.stderr, ncores=a.ncores,
                     max_time=a.max_time, name=a.name, hold=a.hold))
        return 0
    if a.cmd == "status":
        print(json.dumps(status(a.q, a.jids)))
        return 0
    if a.cmd == "find":
        print(json.dumps(find(a.q, a.names)))
        return 0
    if a.cmd == "forget":
        print(json.dumps(forget(a.q, a.jids)))
        return 0
    unknown = control(a.q, a.op, a.jids)
    if unknown:
        print(f"unknown job id(s): {' '.join(unknown)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

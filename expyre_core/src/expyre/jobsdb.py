"""The jobs database: an sqlite index of the jobs under one expyre root.

* WAL mode and a busy timeout, so several processes can create and update jobs at once.
* Every statement is parameterised; regexp filters use a registered ``REGEXP`` function that
  matches whole strings; status groups expand to indexed ``IN`` lists.
* Status only moves forward (created -> submitted -> started -> succeeded/failed/died ->
  processed -> cleaned) unless a caller explicitly resets it, so a slow process cannot undo what a
  faster one recorded.
* The stage directories are the truth; this is an index of them (see ``expyre.func``). A database
  opened with its expyre ``root`` that is missing or empty (0 bytes) is rebuilt from the stage
  directories ``<root>/run_*`` as it is created (what each records: :mod:`expyre.stage_records`);
  :func:`rebuild` (``xpr db rebuild``) does it on demand, also for a damaged file, which it keeps
  aside.
* A damaged file (not a database, a malformed image) raises
  :class:`~expyre.errors.JobsDBDamagedError`, naming the file and the recovery command.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from functools import lru_cache, wraps
from pathlib import Path

from .errors import JobsDBDamagedError

TYPE_CHECKING = False  # no runtime import of typing: `xpr ls` imports this module (see cli_ls)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Sequence

__all__ = ["JobsDB", "STATUSES", "STATUS_GROUPS", "JobsDBDamagedError", "RebuildReport", "rebuild", "probe"]


STATUSES = ("created", "submitted", "started", "succeeded", "failed", "died", "processed", "cleaned")
STATUS_GROUPS = {
    "ongoing": ("created", "submitted", "started"),
    "unprocessed": ("succeeded", "failed", "died"),
    "finished": ("succeeded", "failed", "died"),
    "can_produce_results": ("created", "submitted", "started", "succeeded"),
}
_RANK = {"created": 0, "submitted": 1, "started": 2, "succeeded": 3, "failed": 3, "died": 3, "processed": 4, "cleaned": 5}

_COLUMNS = (
    "id",
    "name",
    "hash",
    "status",
    "system",
    "remote_id",
    "remote_status",
    "reason",
    "from_dir",
    "cwd",
    "creation_time",
    "status_time",
    "submit_owner",
    "submit_time",
    "suspect_since",
    "resources",
    "usage",
)
_UPDATABLE = frozenset(_COLUMNS) - {"id", "creation_time"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT,
    status TEXT NOT NULL,
    system TEXT,
    remote_id TEXT,
    remote_status TEXT,
    reason TEXT,
    from_dir TEXT NOT NULL,
    cwd TEXT,
    creation_time REAL NOT NULL,
    status_time REAL NOT NULL,
    submit_owner TEXT,
    submit_time REAL,
    suspect_since REAL,
    resources TEXT,
    usage TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE INDEX IF NOT EXISTS jobs_name ON jobs(name);
CREATE INDEX IF NOT EXISTS jobs_hash ON jobs(hash);
CREATE INDEX IF NOT EXISTS jobs_system_status ON jobs(system, status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

#: columns added after the first release, with their types: a database made before gets them
#: (``ALTER TABLE ... ADD COLUMN``, NULL in the existing rows) when it is opened
_ADDED_COLUMNS = (("usage", "TEXT"),)

_PLAIN = re.compile(r"^[A-Za-z0-9_\-, ]*$")

#: the meta key set once a fresh database has indexed the stage directories (by one process only)
_INDEXED_KEY = "stage_dirs_indexed"


def _damaged(exc: BaseException) -> bool:
    """sqlite's "file is not a database" or "database disk image is malformed"."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB
        return True
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _guarded(method):
    """Turn sqlite's report of a damaged file into :class:`JobsDBDamagedError` naming the file."""

    @wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if _damaged(exc):
                self.close()
                raise JobsDBDamagedError(self.path, str(exc)) from None
            raise

    return wrapper


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _regexp(pattern: str, value: Any) -> bool:
    if value is None:
        return False
    return _compiled(pattern).fullmatch(str(value)) is not None


class JobsDB:
    """The sqlite jobs database at ``path``.

    Rows come back as plain dicts with keys ``id, name, hash, status, system, remote_id,
    remote_status, reason, from_dir`` (the job's local stage directory) ``, cwd, creation_time,
    status_time, ...``.
    """

    possible_status = STATUSES
    status_group = STATUS_GROUPS
    busy_timeout_ms = 120_000

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike | None = None) -> None:
        """:param root: the expyre root whose stage directories this indexes: given, a missing or
        empty (0 bytes) database is rebuilt from them when it is created (by one process)."""
        self.path = Path(path)
        self.root = None if root is None else Path(root)
        self._local = threading.local()
        try:
            self._con().executescript(_SCHEMA)
            self._migrate()
        except JobsDBDamagedError as exc:  # every use raises it again, naming the file and the way out
            import logging

            logging.getLogger(__name__).debug("%s", exc)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self.close()

    def _migrate(self) -> None:
        """Add the columns of :data:`_ADDED_COLUMNS` that an older database lacks (in one write
        transaction: concurrent openers add each column once)."""
        con = self._con()
        have = {r[1] for r in con.execute("PRAGMA table_info(jobs)")}
        if all(c in have for c, _ in _ADDED_COLUMNS):
            return
        with self._tx() as con:
            have = {r[1] for r in con.execute("PRAGMA table_info(jobs)")}
            for column, kind in _ADDED_COLUMNS:
                if column not in have:
                    con.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")

    # -- connections ---------------------------------------------------------------------------
    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "pid", None) != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fresh = self.root is not None and _fresh(self.path)
            con = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
            try:
                con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
                if fresh:
                    self._index_stage_dirs(con)
                mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                con.close()
                if _damaged(exc):
                    raise JobsDBDamagedError(self.path, str(exc)) from None
                raise
            if mode.lower() != "wal":
                import logging

                logging.getLogger(__name__).warning("jobs database %s: WAL mode unavailable (journal_mode=%s)", self.path, mode)
            con.execute("PRAGMA synchronous=NORMAL")
            con.create_function("REGEXP", 2, _regexp, deterministic=True)
            con.row_factory = sqlite3.Row
            self._local.con = con
            self._local.pid = os.getpid()
            try:
                os.chmod(self.path, 0o600)
            except OSError:
                pass
        return con

    def _index_stage_dirs(self, con: sqlite3.Connection) -> None:
        """A missing or empty database file: create the schema and the rows of the stage
        directories of ``self.root`` in ONE transaction, before WAL mode (so no other process sees
        the tables before the rows; the first process to get the lock does it, the others find
        :data:`_INDEXED_KEY`)."""
        from .stage_records import scan  # only here: `xpr ls` on an existing database never needs it

        con.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            if con.execute("SELECT 1 FROM meta WHERE key = ?", (_INDEXED_KEY,)).fetchone() is None:
                rows, skipped = scan(self.root)
                n = self._insert_rows(con, rows)
                con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_INDEXED_KEY, str(time.time())))
                if n or skipped:
                    import logging

                    logging.getLogger(__name__).warning(
                        "jobs database %s was missing or empty: rebuilt %d job(s) from the stage directories of %s%s",
                        self.path, n, self.root, f" (skipped: {'; '.join(skipped)})" if skipped else "")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    @staticmethod
    def _insert_rows(con: sqlite3.Connection, rows: Iterable[dict]) -> int:
        n = 0
        for row in rows:
            row = {k: row.get(k) for k in _COLUMNS}
            cur = con.execute(f"INSERT OR IGNORE INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                              tuple(row.values()))
            n += cur.rowcount
        return n

    @_guarded
    def restore(self, rows: Iterable[dict]) -> list[str]:
        """Insert ``rows`` (e.g. of :func:`expyre.stage_records.scan`) whose ids are not in the
        database yet, in one transaction; existing rows are left as they are. Returns the ids
        inserted."""
        inserted = []
        with self._tx() as con:
            for row in rows:
                if self._insert_rows(con, [row]):
                    inserted.append(row["id"])
        return inserted

    class _Tx:
        def __init__(self, db: "JobsDB", immediate: bool) -> None:
            self.db = db
            self.immediate = immediate

        def __enter__(self) -> sqlite3.Connection:
            self.con = self.db._con()
            self.con.execute("BEGIN IMMEDIATE" if self.immediate else "BEGIN")
            return self.con

        def __exit__(self, exc_type, exc, tb) -> None:
            if exc_type is None:
                self.con.execute("COMMIT")
            else:
                self.con.execute("ROLLBACK")

    def _tx(self, immediate: bool = True) -> "JobsDB._Tx":
        """A transaction; ``immediate`` takes the write lock up front (no lost updates)."""
        return JobsDB._Tx(self, immediate)

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- writing -------------------------------------------------------------------------------
    @_guarded
    def add(self, id: str, name: str, from_dir: str, status: str = "created", **fields: Any) -> None:
        """Insert a new job row."""
        now = time.time()
        row = {"id": id, "name": name, "from_dir": str(from_dir), "status": status, "creation_time": now, "status_time": now}
        row.update(self._check_fields(fields))
        cols = ", ".join(row)
        with self._tx() as con:
            con.execute(f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

    def find_reusable(self, con: sqlite3.Connection, hash: str) -> dict | None:
        """The newest job with ``hash`` whose status can still produce results (inside a transaction)."""
        statuses = STATUS_GROUPS["can_produce_results"]
        row = con.execute(
            f"SELECT * FROM jobs WHERE hash = ? AND status IN ({', '.join('?' * len(statuses))}) "
            "ORDER BY creation_time DESC LIMIT 1",
            (hash, *statuses),
        ).fetchone()
        return dict(row) if row else None

    @_guarded
    def create_or_reuse(self, name: str, hash: str, cwd: str, reuse: bool,
                        place: "Callable[[], tuple[str, Path]]") -> tuple[dict, bool]:
        """Record a new job for a call with digest ``hash``, or find an identical one, in ONE
        transaction (concurrent identical calls make one job). With ``reuse``, the newest job of
        the same ``name`` and ``hash`` whose status can still produce results is returned as
        ``(row, True)``. Otherwise ``place()`` is called inside the transaction to put the new
        job's stage directory in place and return ``(job id, stage dir)``, and the new ``created``
        row is returned as ``(row, False)``."""
        with self._tx() as con:
            existing = self.find_reusable(con, hash) if reuse else None
            if existing is not None and existing["name"] == name:
                return existing, True
            job_id, stage = place()
            now = time.time()
            con.execute(
                "INSERT INTO jobs (id, name, hash, status, from_dir, cwd, creation_time, status_time) "
                "VALUES (?, ?, ?, 'created', ?, ?, ?, ?)",
                (job_id, name, hash, str(stage), cwd, now, now),
            )
            row = dict(con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
            return row, False

    @staticmethod
    def _check_fields(fields: dict[str, Any]) -> dict[str, Any]:
        bad = set(fields) - _UPDATABLE
        if bad:
            raise ValueError(f"unknown jobs database field(s) {sorted(bad)}; valid: {sorted(_UPDATABLE)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"invalid status {fields['status']!r}; valid: {', '.join(STATUSES)}")
        if "resources" in fields and not isinstance(fields["resources"], (str, type(None))):
            import json  # imported here: `xpr ls` reads rows without it

            fields["resources"] = json.dumps(fields["resources"])
        if "usage" in fields and not isinstance(fields["usage"], (str, type(None))):
            import json

            fields["usage"] = json.dumps(fields["usage"], sort_keys=True)
        return fields

    @_guarded
    def update(self, id: str, *, force: bool = False, **fields: Any) -> bool:
        """Update fields of job ``id``. A status change is applied only if it moves forward (or
        ``force``). Returns False if nothing was changed (no such job, or a backward status)."""
        fields = self._check_fields(fields)
        if not fields:
            return False
        where = "id = ?"
        params: list[Any] = []
        if "status" in fields:
            fields["status_time"] = time.time()
            if not force:
                allowed = [s for s, r in _RANK.items() if r <= _RANK[fields["status"]]]
                where += f" AND status IN ({', '.join('?' * len(allowed))})"
                params = allowed
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as con:
            cur = con.execute(f"UPDATE jobs SET {sets} WHERE {where}", (*fields.values(), id, *params))
            return cur.rowcount > 0

    @_guarded
    def merge_usage(self, id: str, parts: dict[str, Any]) -> dict | None:
        """Set the entries ``parts`` (e.g. ``{"runner": {...}}``) of job ``id``'s ``usage`` JSON
        object, keeping its other entries, in one write transaction. Returns the merged object,
        or None when there is no such job."""
        import json

        with self._tx() as con:
            row = con.execute("SELECT usage FROM jobs WHERE id = ?", (id,)).fetchone()
            if row is None:
                return None
            try:
                merged = json.loads(row["usage"]) if row["usage"] else {}
            except ValueError:
                merged = {}
            if not isinstance(merged, dict):
                merged = {}
            merged.update(parts)
            con.execute("UPDATE jobs SET usage = ? WHERE id = ?", (json.dumps(merged, sort_keys=True), id))
            return merged

    @_guarded
    def update_many(self, updates: Iterable[tuple[str, dict[str, Any]]], *, force: bool = False) -> int:
        """:meth:`update` of many jobs in ONE transaction: ``updates`` is ``(id, fields)`` pairs;
        those that set the same fields (and the same status) go through one ``executemany``. The
        rule of :meth:`update` applies to each (a status only moves forward unless ``force``).
        Returns the number of rows changed."""
        groups: dict[tuple[tuple[str, ...], str | None], list[tuple[Any, ...]]] = {}
        now = time.time()
        for id, fields in updates:
            fields = self._check_fields(dict(fields))
            if not fields:
                continue
            if "status" in fields:
                fields["status_time"] = now
            groups.setdefault((tuple(fields), fields.get("status")), []).append((*fields.values(), id))
        changed = 0
        if not groups:
            return changed
        with self._tx() as con:
            for (keys, status), rows in groups.items():
                sql = f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in keys)} WHERE id = ?"
                if status is not None and not force:
                    allowed = tuple(s for s, r in _RANK.items() if r <= _RANK[status])
                    sql += f" AND status IN ({', '.join('?' * len(allowed))})"
                    rows = [(*row, *allowed) for row in rows]
                cur = con.executemany(sql, rows)
                changed += max(cur.rowcount, 0)
        return changed

    @_guarded
    def claim_submit(self, id: str, owner: str, stale: Iterable[str] = ()) -> bool:
        """Atomically record the intent to submit job ``id`` by ``owner``. Succeeds only if the job
        is still ``created`` and no live process has claimed it (claims by ``stale`` owners are
        taken over)."""
        stale = tuple(stale)
        with self._tx() as con:
            row = con.execute("SELECT status, submit_owner FROM jobs WHERE id = ?", (id,)).fetchone()
            if row is None or row["status"] != "created":
                return False
            if row["submit_owner"] not in (None, owner) and row["submit_owner"] not in stale:
                return False
            con.execute("UPDATE jobs SET submit_owner = ?, submit_time = ? WHERE id = ?", (owner, time.time(), id))
            return True

    @_guarded
    def remove(self, id: str) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM jobs WHERE id = ?", (id,))

    # -- reading -------------------------------------------------------------------------------
    @_guarded
    def get(self, id: str) -> dict | None:
        row = self._con().execute("SELECT * FROM jobs WHERE id = ?", (id,)).fetchone()
        return dict(row) if row else None

    @_guarded
    def get_many(self, ids: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        con = self._con()
        ids = list(ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for row in con.execute(f"SELECT * FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})", chunk):
                out[row["id"]] = dict(row)
        return out

    @staticmethod
    def _filter(column: str, value: str | Sequence[str] | None, clauses: list[str], params: list[Any]) -> None:
        if value is None:
            return
        values = [value] if isinstance(value, str) else list(value)
        if column == "status":
            expanded: list[str] = []
            for v in values:
                expanded.extend(STATUS_GROUPS.get(v, (v,)))
            values = expanded
        plain = [v for v in values if _PLAIN.match(v)]
        rx = [v for v in values if not _PLAIN.match(v)]
        ors = []
        if plain:
            ors.append(f"{column} IN ({', '.join('?' * len(plain))})")
            params.extend(plain)
        for v in rx:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid {column} regexp {v!r}: {exc}") from None
            ors.append(f"{column} REGEXP ?")
            params.append(v)
        clauses.append("(" + " OR ".join(ors) + ")")

    @_guarded
    def jobs(
        self,
        status: str | Sequence[str] | None = None,
        name: str | Sequence[str] | None = None,
        id: str | Sequence[str] | None = None,
        system: str | Sequence[str] | None = None,
        readable: bool = False,
        order: str = "creation_time",
        limit: int | None = None,
        columns: Sequence[str] | None = None,
        tuples: bool = False,
    ) -> list:
        """Jobs whose fields match. Each filter is a regexp (or list of them) matching the whole
        value; ``status`` also takes the groups ``ongoing``, ``unprocessed``, ``finished`` and
        ``can_produce_results``. ``readable`` turns times into ISO strings. ``columns``: only
        these keys in each row (default: all); ``tuples``: each row a tuple of them, in their
        order, instead of a dict (with ``columns``; no ``readable``)."""
        clauses: list[str] = []
        params: list[Any] = []
        self._filter("status", status, clauses, params)
        self._filter("name", name, clauses, params)
        self._filter("id", id, clauses, params)
        self._filter("system", system, clauses, params)
        if order not in _COLUMNS:
            raise ValueError(f"cannot order by {order!r}")
        if columns is None:
            what = "*"
        else:
            bad = [c for c in columns if c not in _COLUMNS]
            if bad or not columns:
                raise ValueError(f"unknown jobs database column(s) {bad}; valid: {', '.join(_COLUMNS)}")
            what = ", ".join(columns)
        sql = f"SELECT {what} FROM jobs" + (" WHERE " + " AND ".join(clauses) if clauses else "") + f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        cur = self._con().cursor()
        cur.row_factory = None  # tuples zipped with the column names: faster than dict(sqlite3.Row)
        cur.execute(sql, params)
        if tuples:
            if columns is None or readable:
                raise ValueError("jobs(tuples=True) needs columns and no readable")
            return cur.fetchall()
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur]
        if readable:
            for r in rows:
                for k in ("creation_time", "status_time", "submit_time", "suspect_since"):
                    if r.get(k):
                        r[k] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r[k]))
        return rows

    def __iter__(self) -> Iterator[dict]:
        return iter(self.jobs())

    # -- maintenance ---------------------------------------------------------------------------
    @classmethod
    def unlock_file(cls, path: str | os.PathLike, force: bool = False) -> str:
        """:meth:`unlock` of the database file ``path`` without opening it as usual first (that
        runs the schema script, which would wait on the very lock). Returns the one-line report;
        it contains ``": locked ("`` when the database stays locked.

        :raises FileNotFoundError: there is no database at ``path``.

        Example: ``JobsDB.unlock_file(Path("_expyre/jobs.db"), force=True)``
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no jobs database at {path}")
        db = cls.__new__(cls)
        db.path = path
        db._local = threading.local()
        return db.unlock(force=force)

    def unlock(self, force: bool = False) -> str:
        """Release a stuck database. sqlite's own locks die with their process; what can remain
        is a lock held by a hung process or a stale lock on a network file system. This first
        checks whether the write lock can be taken; if not and ``force``, the database is copied
        (sqlite backup API, consistent) to a fresh file that atomically replaces it; the old one
        is kept beside it. Returns a one-line report."""
        con = sqlite3.connect(self.path, timeout=2.0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise JobsDBDamagedError(self.path, f"quick_check: {ok}")
            return f"{self.path}: not locked (integrity: {ok})"
        except sqlite3.DatabaseError as exc:
            if _damaged(exc):
                raise JobsDBDamagedError(self.path, str(exc)) from None
            if not isinstance(exc, sqlite3.OperationalError):
                raise
            if not force:
                return f"{self.path}: locked ({exc}); a process may still be using it. Re-run with --force to replace it"
        finally:
            con.close()
        self.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        fresh = self.path.with_name(self.path.name + f".unlocking-{stamp}")
        src = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        dst = sqlite3.connect(fresh)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        kept = self.path.with_name(self.path.name + f".locked-{stamp}")
        import shutil

        shutil.copy2(self.path, kept)
        os.replace(fresh, self.path)
        for suffix in ("-wal", "-shm"):
            stale = Path(str(self.path) + suffix)
            if stale.exists():
                os.replace(stale, Path(str(kept) + suffix))
        return f"{self.path}: replaced by an unlocked copy; the locked one is kept as {kept}"


def _fresh(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


def probe(path: str | os.PathLike) -> str:
    """The state of the database file ``path``: ``"missing"``, ``"empty"`` (0 bytes),
    ``"damaged: <sqlite's words>"`` or ``"ok"`` (sqlite's ``quick_check`` passes)."""
    path = Path(path)
    if not path.exists():
        return "missing"
    if path.stat().st_size == 0:
        return "empty"
    con = sqlite3.connect(path, timeout=JobsDB.busy_timeout_ms / 1000, isolation_level=None)
    try:
        res = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if _damaged(exc):
            return f"damaged: {exc}"
        raise
    finally:
        con.close()
    words = "; ".join(str(r[0]) for r in res)
    return "ok" if words == "ok" else f"damaged: {words[:300]}"


class RebuildReport:
    """What :func:`rebuild` did: ``path``, the database's state before (:func:`probe`),
    ``kept`` (where a damaged file was moved, or None), ``restored`` (the rows inserted, by
    status), ``present`` (stage directories whose job was already in the database) and
    ``skipped`` (``run_*`` entries that hold no job, each with why)."""

    def __init__(self, path: Path, state: str) -> None:
        self.path = path
        self.state = state
        self.kept: Path | None = None
        self.restored: dict[str, int] = {}
        self.present = 0
        self.skipped: list[str] = []

    def __str__(self) -> str:
        lines = [f"{self.path}: was {self.state}" + (f"; the damaged file is kept as {self.kept}" if self.kept else "")]
        n = sum(self.restored.values())
        by = ", ".join(f"{v} {k}" for k, v in sorted(self.restored.items()))
        lines.append(f"restored {n} job(s) from the stage directories" + (f" ({by})" if by else "")
                     + f"; {self.present} already in the database")
        lines += [f"skipped {s}" for s in self.skipped]
        return "\n".join(lines)


def rebuild(path: str | os.PathLike, root: str | os.PathLike) -> RebuildReport:
    """Rebuild the jobs database ``path`` from the stage directories ``<root>/run_*``: each job
    missing from it gets the row its stage directory records (its status from its markers, the
    scheduler id of a job still queued or running, so that it is not submitted again). A damaged
    file (and its ``-wal``/``-shm``) is first moved aside to ``<path>.damaged-<time>``; rows already
    in a sound database are left as they are. Stop the processes using a damaged database first.

    Example: ``print(rebuild(config.root / "jobs.db", config.root))`` (``xpr db rebuild``).
    """
    from .stage_records import scan

    path, root = Path(path), Path(root)
    report = RebuildReport(path, probe(path))
    if report.state.startswith("damaged"):
        kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, kept)
        for suffix in ("-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{kept}{suffix}")
        report.kept = kept
    rows, report.skipped = scan(root)
    db = JobsDB(path)
    try:
        inserted = set(db.restore(rows))
    finally:
        db.close()
    for r in rows:
        if r["id"] in inserted:
            report.restored[r["status"]] = report.restored.get(r["status"], 0) + 1
    report.present = len(rows) - len(inserted)
    return report

"""The zero-setup store: one SQLite file, shared safely by any number of processes.

Every session is one row of the `sessions` table. A commit is a single conditional statement
(`UPDATE ... WHERE key = ? AND revision = ?`, or an `INSERT` that does nothing when the row
exists), so the compare-and-set holds across processes without any lock of our own.

sqlite3 blocks, so each store owns one worker thread and one connection made and used only on
that thread (sqlite3 connections belong to the thread that made them). Calls queue on it in
order; SQLite itself serialises writers across processes, so more threads would not buy more
writes, and one connection keeps the code small.

Group commit: the writes (commits, marks) that arrive while a write transaction is on its way wait
and then go together in the next one, so concurrent turns of many sessions share one fsync. Each
write keeps its own condition and its own answer (a conflict is that write's alone), and none is
answered before the transaction holding it is durable. When one write fails outright, the
transaction is rolled back and its writes are redone one transaction each, so the failure stays
that write's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TypeVar
from urllib.parse import parse_qs

from convoflow.messages import SessionKey
from convoflow.stores.base import Conflict, Session, StoreError
from convoflow.stores.batches import Batches

log = logging.getLogger("convoflow.stores.sqlite")

T = TypeVar("T")

SCHEMA_VERSION = 3
"""Kept in `PRAGMA user_version`; a later schema change migrates from it."""

DEFAULT_TIMEOUT = 5.0
"""Seconds a write waits for another connection's write lock before giving up (StoreError)."""

_REPLY_LOG = """CREATE TABLE IF NOT EXISTS reply_log (
    key   TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID"""
"""The reply log of each session (Store.log_replies), beside the sessions table."""

_COLUMNS = ("partition", "app", "revision", "updated")
"""Record fields kept in their own columns; the rest of the record is one JSON text."""

_SELECT = "SELECT partition, app, revision, updated, record FROM sessions"
"""A session row as `_session` reads it."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sessions (
        key       TEXT PRIMARY KEY,
        partition TEXT NOT NULL,
        app       TEXT NOT NULL,
        revision  INTEGER NOT NULL,
        record    TEXT NOT NULL,
        updated   REAL NOT NULL,
        due       REAL
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_by_partition ON sessions (partition, updated)",
    # version 2: finding a bot's sessions with replies left undelivered, by time of last update
    "CREATE INDEX IF NOT EXISTS sessions_by_app ON sessions (app, updated)",
    # version 3: timers; only sessions waiting on one are in the index
    "CREATE INDEX IF NOT EXISTS sessions_by_due ON sessions (app, due) WHERE due IS NOT NULL",
)


class SQLiteStore:
    """Sessions in the SQLite file at `path` (created on first use; its directory must exist).

    `timeout` is how long a write waits while another process holds the write lock. `read_only`
    opens an existing file for reading alone: nothing is created or written (not even the schema).
    """

    def __init__(self, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT, read_only: bool = False) -> None:
        # Resolved now, so a later chdir cannot point the store at another file.
        self.path = Path(path).absolute()
        if not self.path.parent.is_dir():
            raise StoreError(f"cannot open SQLite store {self.path}: directory {self.path.parent} does not exist")
        if read_only and not self.path.is_file():
            raise StoreError(f"SQLite store {self.path} does not exist (nothing has been stored there)")
        self.timeout = timeout
        self.read_only = read_only
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="convoflow-sqlite")
        self._writes: Batches[_Write] = Batches(self._run_writes)
        self.transactions = 0
        """Write transactions committed so far (each one fsync, however many writes it holds)."""

    @classmethod
    def from_url(cls, url: str, read_only: bool = False) -> SQLiteStore:
        """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db`, optionally `?timeout=SECONDS`."""
        scheme, _, rest = url.partition("://")
        rest, _, query = rest.partition("?")
        if scheme != "sqlite" or not rest.startswith("/") or len(rest) < 2:
            raise ValueError(
                f"malformed SQLite store URL {url!r}; use sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        path = rest[1:]
        if path == ":memory:":
            raise ValueError(
                f"{url!r}: an in-memory SQLite database is private to one connection and thread; use memory://"
            )
        options = parse_qs(query, keep_blank_values=True)
        unknown = set(options) - {"timeout"}
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} in {url!r}; only timeout= is accepted")
        timeout = DEFAULT_TIMEOUT
        if "timeout" in options:
            try:
                timeout = float(options["timeout"][-1])
            except ValueError:
                raise ValueError(f"timeout in {url!r} must be a number of seconds") from None
            if not (math.isfinite(timeout) and timeout >= 0):
                raise ValueError(f"timeout in {url!r} must be a number of seconds >= 0")
        return cls(path, timeout=timeout, read_only=read_only)

    # --- the Store protocol ----------------------------------------------------------------------

    async def load(self, key: SessionKey) -> Session | None:
        return await self._call(self._load, key)

    async def commit(self, session: Session) -> None:
        if not await self._write(self._commit, session):
            raise Conflict(session.key, session.revision - 1)

    async def mark_delivered(self, key: SessionKey, revision: int, through_seq: int) -> bool:
        return bool(await self._write(self._mark_delivered, key, revision, through_seq))

    async def list_sessions(self, partition: str | None = None, limit: int = 100) -> list[Session]:
        return await self._call(self._list, partition, limit)

    async def undelivered(self, app: str, since: float, until: float, limit: int = 100) -> list[Session]:
        return await self._call(self._undelivered, app, since, until, limit)

    async def due(self, app: str, until: float, limit: int = 100) -> list[Session]:
        return await self._call(self._due, app, until, limit)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True  # calls from now on are refused; those already queued finish first
        await self._writes.drained()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._guarded, self._disconnect)
        self._thread.shutdown(wait=False)

    # --- on the worker thread --------------------------------------------------------------------

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        """Run `func(*args)` on the store's thread, turning database failures into StoreError.

        A caller cancelled while `func` runs does not stop it: a commit may still land, which a
        later turn sees as an already-processed incoming id.
        """
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._guarded, func, *args)

    async def _write(self, func: Callable[..., object], *args: Any) -> object:
        """The write `func(*args)`, run in the next write transaction; its result once that is durable."""
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed")
        return await self._writes.send(_Write(func, args))

    async def _run_writes(self, batch: list[_Write]) -> list[object]:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._guarded, self._write_batch, batch)

    def _write_batch(self, batch: list[_Write]) -> list[object]:
        """On the thread: the writes in one transaction, each its result; after a write failed
        (all rolled back), each in a transaction of its own, its failure as its result."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")  # the write lock first: each condition is checked under it
        try:
            outcomes = [write.func(*write.args) for write in batch]
            db.execute("COMMIT")  # synchronous=FULL: durable when this returns
            self.transactions += 1
            return outcomes
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if len(batch) == 1:
                raise
        return [self._alone(write) for write in batch]

    def _alone(self, write: _Write) -> object:
        try:
            return self._guarded(self._write_batch, [write])[0]
        except Exception as error:
            return error

    def _guarded(self, func: Callable[..., T], *args: Any) -> T:
        try:
            return func(*args)
        except sqlite3.ProgrammingError:
            raise  # our own misuse of the API: a bug to see, not a store outage
        except sqlite3.DatabaseError as error:
            raise StoreError(self._explain(error)) from error

    def _explain(self, error: sqlite3.DatabaseError) -> str:
        text = str(error)
        if "locked" in text or "busy" in text:
            return (
                f"SQLite store {self.path}: {text} (another process held the write lock longer than "
                f"the {self.timeout:g} s timeout); nothing was written"
            )
        if "not a database" in text or "malformed" in text:
            return f"SQLite store {self.path} is not a SQLite database or is corrupt: {text}"
        if "unable to open" in text:
            return f"cannot open SQLite store {self.path}: {text}"
        return f"SQLite store {self.path}: {text}; nothing was written"

    def _connection(self) -> sqlite3.Connection:
        """The thread's connection, opened (and the schema made) on first use; retried after a failure."""
        if self._db is not None:
            return self._db
        if self.read_only:
            self._db = self._read_only_connection()
            return self._db
        # isolation_level=None: no implicit transactions; each statement commits on its own and the
        # few multi-statement writes say BEGIN IMMEDIATE themselves. `timeout` is the busy timeout.
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            mode = self._to_wal(db)
            if mode != "wal":  # e.g. a filesystem without shared memory: still correct, just slower
                log.warning("SQLite store %s runs in journal mode %r, not WAL", self.path, mode)
            # WAL with synchronous=NORMAL stays consistent but may forget the latest commits on a
            # power cut or OS crash. The turn answers the platform only once its commit is durable
            # (the platform then never redelivers), so such a loss would silently rewind a
            # conversation whose replies were already sent. FULL syncs the WAL on every commit;
            # measured at a few thousand commits per second on an SSD, far above chat traffic.
            db.execute("PRAGMA synchronous=FULL")
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def _read_only_connection(self) -> sqlite3.Connection:
        # A database some process has open in WAL mode has its -wal file beside it: read it live.
        # Without one nobody has it open, and it is read as it is, with no -wal or -shm created.
        live = Path(f"{self.path}-wal").exists()
        db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro{'' if live else '&immutable=1'}", uri=True,
                             timeout=self.timeout, isolation_level=None)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"SQLite store {self.path} has schema version {version}, written by a newer "
                                 f"convoflow; this one knows up to {SCHEMA_VERSION}")
            if version == 0:
                raise StoreError(f"SQLite store {self.path} holds no convoflow sessions (no schema)")
        except BaseException:
            db.close()
            raise
        return db

    def _to_wal(self, db: sqlite3.Connection) -> str:
        """Switch the database to WAL (once per file: the mode is kept in it). Processes opening a
        new file at the same moment each try the switch, and SQLite refuses all but one at once,
        without waiting out the busy timeout (waiting could deadlock): the others try again."""
        deadline = time.monotonic() + self.timeout
        pause = 0.005
        while True:
            try:
                return str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)  # in the store's own thread
            pause = min(pause * 2, 0.1)

    def _migrate(self, db: sqlite3.Connection) -> None:
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return  # the common case: a plain read, so opening never waits for a busy writer
        with _transaction(db):
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"SQLite store {self.path} has schema version {version}, written by a newer "
                    f"convoflow; this one knows up to {SCHEMA_VERSION}"
                )
            db.execute(_SCHEMA[0])
            columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
            if "due" not in columns:  # a version 1 or 2 file: no timers were set in it
                db.execute("ALTER TABLE sessions ADD COLUMN due REAL")
            for statement in _SCHEMA[1:]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _load(self, key: SessionKey) -> Session | None:
        row = self._connection().execute(f"{_SELECT} WHERE key = ?", (str(key),)).fetchone()
        return None if row is None else _session(row)

    def _commit(self, session: Session) -> bool:
        """One conditional statement, in the write transaction; False when it matched no row (a Conflict)."""
        db = self._connection()
        record = session.to_record()
        values = (record["revision"], _rest_of(record), record["updated"], record["due"])
        if session.revision == 1:
            cursor = db.execute(
                "INSERT INTO sessions (revision, record, updated, due, key, partition, app) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                (*values, str(session.key), session.key.partition, session.key.app),
            )
        else:
            # In WAL mode a write that starts inside a read transaction can fail at once on a stale
            # snapshot; the write transaction (BEGIN IMMEDIATE) takes the write lock first, waiting
            # up to the busy timeout, and the revision is compared under it.
            cursor = db.execute(
                "UPDATE sessions SET revision = ?, record = ?, updated = ?, due = ? WHERE key = ? AND revision = ?",
                (*values, str(session.key), session.revision - 1),
            )
        return cursor.rowcount == 1

    def _mark_delivered(self, key: SessionKey, revision: int, through_seq: int) -> bool:
        db = self._connection()
        # In the write transaction, which took the write lock before reading: no other process
        # can commit between our read and our write.
        row = db.execute("SELECT revision, record FROM sessions WHERE key = ?", (str(key),)).fetchone()
        if row is None:
            return False
        stored_revision, text = row
        rest = json.loads(text)
        rest["outbox"] = [item for item in rest["outbox"] if item["seq"] > through_seq]
        current = stored_revision == revision
        db.execute(
            "UPDATE sessions SET revision = ?, record = ? WHERE key = ?",
            (revision + 1 if current else stored_revision, _dumps(rest), str(key)),
        )
        return current

    def _list(self, partition: str | None, limit: int) -> list[Session]:
        if partition is None:
            rows = self._connection().execute(f"{_SELECT} ORDER BY updated DESC LIMIT ?", (limit,))
        else:
            # The partition itself and every partition under it ("p:..." sorts between "p:" and "p;").
            rows = self._connection().execute(
                f"{_SELECT} WHERE partition = ? OR (partition > ? AND partition < ?) ORDER BY updated DESC LIMIT ?",
                (partition, partition + ":", partition + ";", limit),
            )
        return [_session(row) for row in rows]

    def _undelivered(self, app: str, since: float, until: float, limit: int) -> list[Session]:
        rows = self._connection().execute(
            f"{_SELECT} WHERE app = ? AND updated >= ? AND updated < ? AND json_array_length(record, '$.outbox') > 0"
            " ORDER BY updated LIMIT ?",
            (app, since, until, limit),
        )
        return [_session(row) for row in rows]

    def _due(self, app: str, until: float, limit: int) -> list[Session]:
        rows = self._connection().execute(
            f"{_SELECT} WHERE app = ? AND due IS NOT NULL AND due <= ? ORDER BY due, key LIMIT ?", (app, until, limit)
        )
        return [_session(row) for row in rows]

    async def scan(self, app: str, batch: int = 500) -> AsyncIterator[Session]:
        # Page by key (the primary key's order), one short read each: no read transaction stays
        # open across pages, so writers and checkpoints carry on meanwhile.
        after = ""
        while True:
            page = await self._call(self._scan_page, app, after, batch)
            for session in page:
                yield session
            if len(page) < batch:
                return
            after = str(page[-1].key)

    def _scan_page(self, app: str, after: str, batch: int) -> list[Session]:
        # `+app`: walk the primary key from `after` (each page costs its own rows), not the app index
        # (which would sort all of the app's rows for every page)
        rows = self._connection().execute(f"{_SELECT} WHERE key > ? AND +app = ? ORDER BY key LIMIT ?", (after, app, batch))
        return [_session(row) for row in rows]


    # --- the reply log (the web channel's delivered replies) -------------------------------------

    async def log_replies(self, key: SessionKey, entries: Sequence[dict[str, Any]], keep: int) -> None:
        rows = [(str(key), int(entry["seq"]), _dumps(entry)) for entry in entries]
        await self._write(self._log_replies, str(key), rows, keep)  # group-committed with the turns

    async def logged_replies(self, key: SessionKey, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return await self._call(self._logged_replies, str(key), after, limit)

    async def latest_logged(self, keys: Sequence[SessionKey]) -> dict[SessionKey, int]:
        by_name = {str(key): key for key in keys}
        found = await self._call(self._latest_logged, list(by_name))
        return {by_name[name]: seq for name, seq in found.items()}

    def _latest_logged(self, names: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        try:
            for start in range(0, len(names), 500):  # below SQLite's limit on parameters
                chunk = names[start:start + 500]
                rows = self._connection().execute(
                    f"SELECT key, MAX(seq) FROM reply_log WHERE key IN ({', '.join('?' * len(chunk))}) GROUP BY key", chunk)
                found.update(rows.fetchall())
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return {}
            raise
        return found

    def _log_replies(self, key: str, rows: list[tuple[str, int, str]], keep: int) -> None:
        db = self._connection()
        # made on first use, so files that never log replies stay as they were; in the write's own
        # transaction each time (cheap), so a batch rolled back cannot leave it believed made
        db.execute(_REPLY_LOG)
        db.executemany("INSERT INTO reply_log (key, seq, entry) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", rows)
        db.execute("DELETE FROM reply_log WHERE key = ? AND seq <= (SELECT MAX(seq) FROM reply_log WHERE key = ?) - ?",
                   (key, key, keep))

    def _logged_replies(self, key: str, after: int, limit: int) -> list[dict[str, Any]]:
        try:
            rows = self._connection().execute(
                "SELECT entry FROM reply_log WHERE key = ? AND seq > ? ORDER BY seq LIMIT ?", (key, after, limit)
            ).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):  # nothing was ever logged in this file
                return []
            raise
        return [json.loads(text) for (text,) in rows]


@dataclass(frozen=True)
class _Write:
    """One write of a transaction: `func(*args)` on the store's thread."""

    func: Callable[..., object]
    args: tuple[Any, ...]


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any error so nothing is half-written."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (e.g. on a full disk)
            db.execute("ROLLBACK")
        raise


def _dumps(data: Any) -> str:
    # ASCII-only JSON: lone surrogates and control characters in user text become escapes, so any
    # Python str a flow records survives, and what is stored matches the other stores exactly.
    return json.dumps(data, separators=(",", ":"))


def _rest_of(record: dict[str, Any]) -> str:
    return _dumps({name: value for name, value in record.items() if name not in _COLUMNS})


def _session(row: tuple[str, str, int, float, str]) -> Session:
    partition, app, revision, updated, text = row
    return Session.from_record(
        {**json.loads(text), "partition": partition, "app": app, "revision": revision, "updated": updated}
    )

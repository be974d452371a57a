"""What only the SQLite store has to prove: several processes on one file, the file itself, its errors."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path
from contextlib import closing

import pytest

from convoflow.messages import SessionKey
from convoflow.stores import Conflict, Session, StoreError, open_store
from convoflow.stores.sqlite import SCHEMA_VERSION, SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
KEY = SessionKey("telegram:7:42", "guessbot")
HANG_GUARD = 60.0
"""Seconds after which a test gives up waiting for another process (never a timing assertion)."""

# Plays turns against one session until it has committed `turns` of them, retrying on Conflict,
# and marks each turn's reply delivered. Reports the revisions it wrote.
RACER = """
import asyncio, json, sys
from convoflow.messages import SessionKey
from convoflow.stores import Conflict, Session, open_store

async def main(url, name, turns):
    store = open_store(url)
    key = SessionKey("race", "app")
    await store.load(key)  # connection and schema ready before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    commits, bumps, conflicts = [], [], 0
    while len(commits) < turns:
        session = await store.load(key) or Session(key)
        log = (session.state or {"log": []})["log"]
        item = {"seq": session.next_seq, "to": {}, "message": {"text": name}}
        new = session.advanced(
            state={"log": [*log, [name, session.revision + 1]]},
            outbox=(*session.outbox, item),
            next_seq=session.next_seq + 1,
        )
        try:
            await store.commit(new)
        except Conflict:
            conflicts += 1
            continue
        commits.append(new.revision)
        if await store.mark_delivered(key, new.revision, item["seq"]):
            bumps.append(new.revision + 1)
    await store.close()
    print(json.dumps({"commits": commits, "bumps": bumps, "conflicts": conflicts}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""

# Holds the write lock of the database (a write transaction left open) until told to stop.
LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("UPDATE sessions SET updated = updated")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )


async def read_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), HANG_GUARD)
    assert line, f"helper process exited early with {await process.wait()}"
    return line.decode().strip()


def tell(process: asyncio.subprocess.Process, line: str = "") -> None:
    assert process.stdin is not None
    process.stdin.write(f"{line}\n".encode())


def url_of(path: Path, timeout: float | None = None) -> str:
    return f"sqlite:///{path}" + ("" if timeout is None else f"?timeout={timeout}")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


class TestSeveralProcesses:
    async def test_two_processes_racing_on_one_session_lose_no_update(self, db_path: Path) -> None:
        turns = 150
        # Two processes doing nothing but write can starve each other of the write lock for
        # seconds on a loaded machine: a generous busy timeout keeps this a test of correctness.
        racers = [await spawn(RACER, url_of(db_path, timeout=60), name, str(turns)) for name in ("a", "b")]
        try:
            for racer in racers:
                assert await read_line(racer) == "ready"
            for racer in racers:  # released together, so their commits interleave
                tell(racer)
            reports = {name: json.loads(await read_line(r)) for name, r in zip("ab", racers)}
            for racer in racers:
                assert await asyncio.wait_for(racer.wait(), HANG_GUARD) == 0
        finally:
            for racer in racers:
                if racer.returncode is None:
                    racer.kill()
                    await racer.wait()

        store = SQLiteStore(db_path)
        try:
            final = await store.load(SessionKey("race", "app"))
        finally:
            await store.close()
        assert final is not None and final.state is not None
        log = [tuple(entry) for entry in final.state["log"]]
        # No lost update: every turn each racer committed is in the record, in revision order.
        assert len(log) == 2 * turns
        for name, report in reports.items():
            assert [revision for who, revision in log if who == name] == report["commits"]
        assert [revision for _, revision in log] == sorted(revision for _, revision in log)
        # Each revision was written exactly once, by a commit or by a mark_delivered bump.
        written = [r for report in reports.values() for r in report["commits"] + report["bumps"]]
        assert sorted(written) == list(range(1, final.revision + 1))
        assert final.outbox == ()

    async def test_two_store_objects_in_one_process_let_exactly_one_commit_win(self, db_path: Path) -> None:
        one, two = SQLiteStore(db_path), SQLiteStore(db_path)
        try:
            base = Session(KEY).advanced(state={"n": 0})
            await one.commit(base)
            attempts = [(one if i % 2 else two).commit(base.advanced(state={"n": i})) for i in range(10)]
            results = await asyncio.gather(*attempts, return_exceptions=True)
            assert sum(r is None for r in results) == 1
            assert all(isinstance(r, Conflict) for r in results if r is not None)
            assert (await two.load(KEY)) == (await one.load(KEY))
        finally:
            await one.close()
            await two.close()

    async def test_stores_opening_a_new_file_at_the_same_moment_all_open_it(self, tmp_path: Path) -> None:
        # As replicas starting together on a fresh file do: each switches it to WAL, and SQLite
        # refuses all switches but one at once, whatever the busy timeout.
        for attempt in range(60):
            path = tmp_path / f"fresh-{attempt}.db"
            stores = [SQLiteStore(path) for _ in range(3)]
            try:
                assert await asyncio.gather(*(store.load(KEY) for store in stores)) == [None, None, None]
            finally:
                for store in stores:
                    await store.close()

    async def test_a_write_lock_held_elsewhere_gives_store_error_after_the_timeout(self, db_path: Path) -> None:
        store = SQLiteStore.from_url(url_of(db_path, timeout=0.2))
        first = Session(KEY).advanced(state={"n": 1}, outbox=({"seq": 1, "to": {}, "message": {"text": "hi"}},))
        await store.commit(first)
        locker = await spawn(LOCKER, str(db_path))
        try:
            assert await read_line(locker) == "locked"
            # WAL: readers are not blocked by the writer
            assert await asyncio.wait_for(store.load(KEY), HANG_GUARD) == first
            with pytest.raises(StoreError, match="locked") as raised:
                await asyncio.wait_for(store.commit(first.advanced(state={"n": 2})), HANG_GUARD)
            assert str(db_path) in str(raised.value)
            with pytest.raises(StoreError, match="locked"):
                await asyncio.wait_for(store.mark_delivered(KEY, 1, 1), HANG_GUARD)
            tell(locker)
            assert await asyncio.wait_for(locker.wait(), HANG_GUARD) == 0
        finally:
            if locker.returncode is None:
                locker.kill()
                await locker.wait()
        try:
            # nothing was half-written, and the store works again once the lock is gone
            assert await store.load(KEY) == first
            await store.commit(first.advanced(state={"n": 2}))
            loaded = await store.load(KEY)
            assert loaded is not None and loaded.state == {"n": 2} and loaded.revision == 2
        finally:
            await store.close()


class TestTheFile:
    async def test_wal_mode_schema_and_version_are_in_the_file(self, db_path: Path) -> None:
        store = SQLiteStore(db_path)
        await store.commit(Session(KEY).advanced())
        try:
            with sqlite3.connect(db_path) as db:
                assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
                index = db.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions'")
                assert any("(partition, updated)" in (sql or "") for (sql,) in index)
                row = db.execute("SELECT key, partition, app, revision FROM sessions").fetchone()
                assert row == (str(KEY), KEY.partition, KEY.app, 1)
            db.close()
        finally:
            await store.close()

    async def test_sessions_survive_closing_and_reopening(self, db_path: Path) -> None:
        items = tuple({"seq": n, "to": {"chat_id": 42}, "message": {"text": f"m{n}"}} for n in (1, 2))
        session = Session(KEY).advanced(state={"frame": {"log": [["rand", 7]]}}, outbox=items, next_seq=3)
        store = SQLiteStore(db_path)
        await store.commit(session)
        assert await store.mark_delivered(KEY, 1, 1) is True
        await store.close()

        reopened = open_store(url_of(db_path))
        try:
            loaded = await reopened.load(KEY)
            assert loaded is not None
            assert (loaded.revision, loaded.state, loaded.outbox) == (2, session.state, items[1:])
            assert [s.key for s in await reopened.list_sessions(KEY.partition)] == [KEY]
            await reopened.commit(loaded.advanced(state={"frame": {"log": []}}))
        finally:
            await reopened.close()

    async def test_a_relative_url_is_relative_to_the_working_directory_when_opened(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "data").mkdir()
        monkeypatch.chdir(tmp_path)
        store = open_store("sqlite:///data/bot.db")
        monkeypatch.chdir(tmp_path / "data")  # a later chdir does not move the store
        try:
            await store.commit(Session(KEY).advanced())
        finally:
            await store.close()
        assert (tmp_path / "data" / "bot.db").is_file()
        assert not (tmp_path / "data" / "data").exists()

    async def test_a_closed_store_says_so(self, db_path: Path) -> None:
        store = SQLiteStore(db_path)
        await store.load(KEY)
        await store.close()
        await store.close()  # closing twice is harmless
        with pytest.raises(StoreError, match="closed"):
            await store.load(KEY)


class TestReadOnly:
    """What `convoflow sessions` opens: it never creates or writes anything."""

    async def test_a_missing_file_is_an_error_naming_it_and_nothing_is_created(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="does not exist") as raised:
            open_store(url_of(tmp_path / "typo.db"), read_only=True)
        assert str(tmp_path / "typo.db") in str(raised.value)
        assert list(tmp_path.iterdir()) == []

    async def test_it_reads_a_store_nobody_has_open_and_leaves_every_file_as_it_was(self, db_path: Path) -> None:
        writer = SQLiteStore(db_path)
        await writer.commit(Session(KEY).advanced(state={"frame": {"log": []}}))
        await writer.close()
        before = {path.name: path.read_bytes() for path in db_path.parent.iterdir()}
        reader = open_store(url_of(db_path), read_only=True)
        try:
            assert [s.key for s in await reader.list_sessions()] == [KEY]
            loaded = await reader.load(KEY)
            assert loaded is not None and loaded.revision == 1
            with pytest.raises(StoreError, match="readonly"):
                await reader.commit(loaded.advanced())
        finally:
            await reader.close()
        assert {path.name: path.read_bytes() for path in db_path.parent.iterdir()} == before

    async def test_it_reads_the_latest_commits_of_a_store_in_use(self, db_path: Path) -> None:
        writer = SQLiteStore(db_path)
        try:
            await writer.commit(Session(KEY).advanced())
            reader = open_store(url_of(db_path), read_only=True)
            try:
                other = SessionKey("telegram:7:43", "guessbot")
                await writer.commit(Session(other).advanced())  # after the reader opened: still seen
                assert {s.key for s in await reader.list_sessions()} == {KEY, other}
            finally:
                await reader.close()
            assert await writer.mark_delivered(KEY, 1, 0) is True  # the writer goes on as before
        finally:
            await writer.close()

    async def test_a_database_without_the_schema_is_refused_untouched(self, tmp_path: Path) -> None:
        path = tmp_path / "other.db"
        sqlite3.connect(path).close()  # an empty SQLite file, not a convoflow store
        reader = open_store(url_of(path), read_only=True)
        try:
            with pytest.raises(StoreError, match="holds no convoflow sessions"):
                await reader.list_sessions()
        finally:
            await reader.close()
        assert path.read_bytes() == b""


class TestErrors:
    @pytest.mark.parametrize(
        "url",
        [
            "sqlite:///:memory:",
            "sqlite://",
            "sqlite:///",
            "sqlite://host/sessions.db",
            "sqlite:///sessions.db?timeout=soon",
            "sqlite:///sessions.db?timeout=-1",
            "sqlite:///sessions.db?mode=ro",
        ],
    )
    def test_a_bad_url_is_a_value_error(self, url: str) -> None:
        with pytest.raises(ValueError, match="sqlite|timeout|option"):
            open_store(url)

    def test_memory_url_points_to_the_memory_store(self) -> None:
        with pytest.raises(ValueError, match="memory://"):
            open_store("sqlite:///:memory:")

    def test_a_timeout_in_the_url_is_used(self, db_path: Path) -> None:
        store = SQLiteStore.from_url(url_of(db_path, timeout=0.5))
        assert store.timeout == 0.5

    def test_a_missing_directory_names_the_path(self, tmp_path: Path) -> None:
        missing = tmp_path / "no" / "such" / "dir" / "sessions.db"
        with pytest.raises(StoreError, match="does not exist") as raised:
            open_store(url_of(missing))
        assert str(missing) in str(raised.value)
        assert not missing.parent.exists()

    async def test_a_file_that_is_not_a_database_names_the_path_and_stays_untouched(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.db"
        content = b"these are my notes, not a database\n" * 100
        path.write_bytes(content)
        store = open_store(url_of(path))
        try:
            with pytest.raises(StoreError, match="not a SQLite database") as raised:
                await store.load(KEY)
            assert str(path) in str(raised.value)
            with pytest.raises(StoreError, match="not a SQLite database"):
                await store.commit(Session(KEY).advanced())
        finally:
            await store.close()
        assert path.read_bytes() == content

    async def test_a_directory_in_place_of_the_file_names_the_path(self, tmp_path: Path) -> None:
        store = open_store(url_of(tmp_path))
        try:
            with pytest.raises(StoreError, match="cannot open") as raised:
                await store.load(KEY)
            assert str(tmp_path) in str(raised.value)
        finally:
            await store.close()

    async def test_a_database_from_a_newer_schema_is_refused(self, db_path: Path) -> None:
        with sqlite3.connect(db_path) as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.close()
        store = SQLiteStore(db_path)
        try:
            with pytest.raises(StoreError, match="newer"):
                await store.load(KEY)
        finally:
            await store.close()


async def test_a_file_of_schema_version_2_gains_timers_and_keeps_its_sessions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as db:  # the schema as convoflow wrote it before timers
        db.execute("""CREATE TABLE sessions (key TEXT PRIMARY KEY, partition TEXT NOT NULL, app TEXT NOT NULL,
                      revision INTEGER NOT NULL, record TEXT NOT NULL, updated REAL NOT NULL)""")
        db.execute("CREATE INDEX sessions_by_partition ON sessions (partition, updated)")
        db.execute("CREATE INDEX sessions_by_app ON sessions (app, updated)")
        record = {"state": {"frame": {"name": "main"}}, "outbox": [], "seen": ["u1"], "address": {},
                  "next_seq": 1, "last": [], "created": 5.0}
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                   ("telegram:7:42/guessbot", "telegram:7:42", "guessbot", 3, json.dumps(record), 6.0))
        db.execute("PRAGMA user_version = 2")
        db.commit()
    store = SQLiteStore(path)
    try:
        old = await store.load(KEY)
        assert old is not None and old.revision == 3 and old.seen == ("u1",) and old.due is None
        assert await store.due(KEY.app, 1e12) == []
        timed = old.advanced(due=100.0)
        await store.commit(timed)
        assert await store.due(KEY.app, 100.0) == [timed]
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

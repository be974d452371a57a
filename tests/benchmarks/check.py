"""`convoflow check` over many stored sessions: its time and peak memory on SQLite and MongoDB.

    .venv/bin/python tests/benchmarks/check.py

Stores 1,000 and then 100,000 live sessions of bots/signup.py (a mix of four places in its form,
recorded by the real Engine through convoflow.testing.Chat), runs the real `convoflow check` on
them in a process of its own, and prints the time it took, sessions per second and that process's
peak memory (its maximum resident set size): streaming keeps the peak about the same for 100 times
the sessions. MongoDB is the server MONGODB_URI names, else a SecantusDB started for the run.
Takes a few minutes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pymongo import AsyncMongoClient  # noqa: E402

from convoflow.stores import MemoryStore, Session  # noqa: E402
from convoflow.stores.mongo import MongoStore  # noqa: E402
from convoflow.stores.sqlite import SQLiteStore  # noqa: E402
from convoflow.testing import Chat  # noqa: E402
from tests.support.mongo_server import mongo_server_from_environment  # noqa: E402

SIZES = (1_000, 100_000)
ANSWERS = ([], ["Ada"], ["Ada", "36"], ["Ada", "36", "ada@example.org"])
"""Where the stored sessions are: at the name, the age, the email and the plan question."""


async def templates() -> list[Session]:
    """One recorded session per place in the form."""
    store = MemoryStore()
    made = []
    for n, answers in enumerate(ANSWERS):
        async with Chat("signup", store, user=f"t{n}") as chat:
            await chat.say("hi")
            for answer in answers:
                await chat.say(answer)
            session = await store.load(chat.key)
            assert session is not None and session.running
            made.append(session)
    return made


def copy_of(template: Session, i: int) -> Session:
    return Session.from_record({**template.to_record(), "partition": f"bench:{i}", "revision": 1})


async def fill_sqlite(path: Path, count: int, made: list[Session]) -> None:
    """The templates committed through the store (the file, its schema, their rows), then copied
    row by row in one statement, which is fast."""
    store = SQLiteStore(path)
    for n, template in enumerate(made):
        await store.commit(copy_of(template, -1 - n))
    await store.close()
    with sqlite3.connect(path) as db:
        rows = [db.execute("SELECT record, updated FROM sessions WHERE key = ?", (f"bench:{-1 - n}/signup",)).fetchone()
                for n in range(len(made))]
        db.execute("DELETE FROM sessions")
        db.executemany(
            "INSERT INTO sessions (key, partition, app, revision, record, updated) VALUES (?, ?, 'signup', 1, ?, ?)",
            ((f"bench:{i:06d}/signup", f"bench:{i:06d}", *rows[i % len(made)]) for i in range(count)))
    db.close()


async def fill_mongo(uri: str, count: int, made: list[Session]) -> None:
    """The templates committed through the store (the indexes, their documents), then copied in
    batches by a client of its own, without the store's time bound per operation."""
    store = MongoStore.from_url(uri)
    try:
        for n, template in enumerate(made):
            await store.commit(copy_of(template, -1 - n))
        collection = store.collection.name
    finally:
        await store.close()
    async with AsyncMongoClient[dict[str, Any]](uri) as client:
        sessions = client.get_default_database()[collection]
        documents = [await sessions.find_one({"_id": f"bench:{-1 - n}/signup"}) for n in range(len(made))]
        await sessions.delete_many({})
        batch = 1000
        for start in range(0, count, batch):
            await sessions.insert_many([
                {**documents[i % len(made)], "_id": f"bench:{i:06d}/signup", "partition": f"bench:{i:06d}"}  # type: ignore[dict-item]
                for i in range(start, min(start + batch, count))], ordered=False)


def run_check(url: str) -> tuple[float, float, str]:
    """The real command in a process of its own: seconds, its peak memory (maximum resident set
    size, MiB, from wait4) and its report's first line."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "convoflow.adapters.host.cli", "check", "bots/signup.py",
                                    "--store", url], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        report = out.read()
    if process.returncode != 0:
        raise SystemExit(f"convoflow check failed ({process.returncode}):\n{report}")
    return seconds, usage.ru_maxrss / 1024, report.splitlines()[0]


async def main() -> None:
    made = await templates()
    server = mongo_server_from_environment()
    databases: list[str] = []
    print(f"{'store':<8} {'sessions':>9} {'seconds':>8} {'sessions/s':>11} {'peak MiB':>9}")
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name in ("sqlite", "mongodb"):
                for count in SIZES:
                    if name == "sqlite":
                        path = Path(folder) / f"check-{count}.db"
                        await fill_sqlite(path, count, made)
                        url = f"sqlite:///{path}"
                    else:
                        databases.append(f"convoflow_bench_{uuid.uuid4().hex[:12]}")
                        url = server.uri_for(databases[-1])
                        await fill_mongo(url, count, made)
                    seconds, peak, first = run_check(url)
                    assert f"{count} live sessions" in first, first
                    print(f"{name:<8} {count:>9,} {seconds:>8.1f} {count / seconds:>11,.0f} {peak:>9.1f}", flush=True)
    finally:
        async with AsyncMongoClient[dict[str, Any]](server.uri) as client:
            for database in databases:
                await client.drop_database(database)
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())

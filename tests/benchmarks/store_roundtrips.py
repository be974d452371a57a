"""Store round trips and throughput, side by side for the memory, SQLite and MongoDB stores.

    .venv/bin/python tests/benchmarks/store_roundtrips.py

Prints, per store: round trips per turn (MongoDB: commands on the wire, counted with PyMongo's
command monitoring; memory and SQLite: calls into the store), turns per second for one session
and for 100 concurrent sessions, and the cost of a turn with 100,000 stored sessions against 100.
MongoDB is the server MONGODB_URI names, else a SecantusDB started for the run. Takes a few minutes.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pymongo import AsyncMongoClient  # noqa: E402

from convoflow import Incoming, SessionKey, dialog, get_client_response, goto, send_message  # noqa: E402
from convoflow.turns import Engine  # noqa: E402
from convoflow.stores import MemoryStore, Session, Store  # noqa: E402
from convoflow.stores.mongo import MongoStore  # noqa: E402
from convoflow.stores.sqlite import SQLiteStore  # noqa: E402
from tests.support.mongo_server import MongoServer, mongo_server_from_environment  # noqa: E402
from tests.support.counting import CountingStore, MongoCommands  # noqa: E402

SECONDS = 3.0
"""How long each throughput measurement runs."""
STORED = (100, 100_000)
CONCURRENT = 100
SAMPLE_TURNS = 200
ROUNDS = 5
"""The stored-sessions comparison: rounds of SAMPLE_TURNS turns, alternating between the sizes
after one warm-up round each; the median round is reported."""


@dialog(version="1")
def echo(turn: int = 0) -> Any:
    """Answers every message except "shh"; `goto` keeps the state the same size however long it runs."""
    said = yield get_client_response()
    if said != "shh":
        yield send_message(said)
    yield goto(echo(turn + 1))


async def deliver(reply: Any) -> None:
    pass


class Backend:
    """Opens fresh, empty stores of one kind, and fills them fast."""

    name = ""

    async def open(self) -> Store:
        raise NotImplementedError

    async def counted(self) -> tuple[Store, Callable[[], int]]:
        store = CountingStore(await self.open())
        return store, lambda: store.count

    async def fill(self, store: Store, template: Session, count: int) -> None:
        """Store `count` copies of `template` under keys bench:0/echo ... (not through the Engine)."""
        for i in range(count):
            await store.commit(_copy(template, f"bench:{i}"))

    async def cleanup(self) -> None:
        pass


def _copy(template: Session, partition: str) -> Session:
    """`template` as the first revision of the session `partition`/echo."""
    return Session.from_record({**template.to_record(), "partition": partition, "revision": 1})


class MemoryBackend(Backend):
    name = "memory"

    async def open(self) -> Store:
        return MemoryStore()


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def open(self) -> Store:
        return SQLiteStore(self.directory / f"{uuid.uuid4().hex}.db")

    async def fill(self, store: Store, template: Session, count: int) -> None:
        assert isinstance(store, SQLiteStore)
        await store.commit(_copy(template, "bench:template"))  # the file and its schema
        with sqlite3.connect(store.path) as db:
            record, updated = db.execute("SELECT record, updated FROM sessions").fetchone()
            db.execute("DELETE FROM sessions")
            db.executemany(
                "INSERT INTO sessions (key, partition, app, revision, record, updated) VALUES (?, ?, ?, 1, ?, ?)",
                ((f"bench:{i}/echo", f"bench:{i}", "echo", record, updated) for i in range(count)),
            )
        db.close()


class MongoBackend(Backend):
    name = "mongodb"

    def __init__(self, server: MongoServer) -> None:
        self.server = server
        self.databases: list[str] = []

    def _uri(self) -> str:
        self.databases.append(f"convoflow_bench_{uuid.uuid4().hex[:12]}")
        return self.server.uri_for(self.databases[-1])

    async def open(self) -> Store:
        return MongoStore.from_url(self._uri())

    async def counted(self) -> tuple[Store, Callable[[], int]]:
        commands = MongoCommands()
        client: AsyncMongoClient[Any] = AsyncMongoClient(self._uri(), event_listeners=[commands])
        return MongoStore(client), lambda: commands.count

    async def fill(self, store: Store, template: Session, count: int) -> None:
        assert isinstance(store, MongoStore)
        await store.commit(_copy(template, "bench:template"))  # the indexes, and the document to copy
        document = await store.collection.find_one({"_id": "bench:template/echo"})
        assert document is not None
        batch = 1000  # small enough for a busy test server to take within the client timeout
        for start in range(0, count, batch):
            documents = [
                {**document, "_id": f"bench:{i}/echo", "partition": f"bench:{i}", "revision": 1}
                for i in range(start, min(start + batch, count))
            ]
            await store.collection.insert_many(documents, ordered=False)

    async def cleanup(self) -> None:
        async with AsyncMongoClient[dict[str, Any]](self.server.uri) as client:
            for name in self.databases:
                await client.drop_database(name)


# --- measurements ---------------------------------------------------------------------------------


ROUND_TRIP_TURNS = [
    "first message (creates the session)", "warm turn with a reply", "warm turn without a reply",
    "redelivered update", "cold turn with a reply", "cold turn without a reply",
]
"""What `round_trips` counts, in order. Warm: the process that committed the session's last turn
takes the next one; cold: another process (or this one after a restart) does."""
ROUND_TRIP_TARGETS = {"warm turn with a reply": 2, "cold turn with a reply": 3}


async def round_trips(backend: Backend) -> list[int]:
    """Round trips of each turn of ROUND_TRIP_TURNS."""
    store, count = await backend.counted()
    engine = Engine(echo, store)
    key = SessionKey("bench:rt", "echo")
    await engine.handle(Incoming(SessionKey("bench:warm-up", "echo"), "w", text="hi"), deliver)  # makes indexes
    results = []
    turns = [(engine, "u0", "start"), (engine, "u1", "hello"), (engine, "u2", "shh"), (engine, "u1", "hello"),
             (Engine(echo, store), "u3", "hello"), (Engine(echo, store), "u4", "shh")]
    for turn_engine, update_id, text in turns:
        before = count()
        await turn_engine.handle(Incoming(key, update_id, text=text), deliver)
        results.append(count() - before)
    await store.close()
    return results


async def until(deadline: float, turn: Callable[[int], Awaitable[None]]) -> int:
    """Call turn(0), turn(1), ... until `deadline`; how many completed."""
    n = 0
    while time.perf_counter() < deadline:
        await turn(n)
        await asyncio.sleep(0)  # let the other sessions' turns in, even on a store that never waits
        n += 1
    return n


async def one_session(backend: Backend) -> float:
    store = await backend.open()
    engine = Engine(echo, store)
    key = SessionKey("bench:one", "echo")
    await engine.handle(Incoming(key, "start", text="start"), deliver)
    started = time.perf_counter()
    turns = await until(started + SECONDS, lambda n: _turn(engine, key, n))
    elapsed = time.perf_counter() - started
    await store.close()
    return turns / elapsed


async def concurrent_sessions(backend: Backend) -> float:
    store = await backend.open()
    engine = Engine(echo, store)
    keys = [SessionKey(f"bench:c{i}", "echo") for i in range(CONCURRENT)]
    await asyncio.gather(*(engine.handle(Incoming(key, "start", text="start"), deliver) for key in keys))
    started = time.perf_counter()
    def turns_of(key: SessionKey) -> Callable[[int], Awaitable[None]]:
        return lambda n: _turn(engine, key, n)

    counts = await asyncio.gather(*(until(started + SECONDS, turns_of(key)) for key in keys))
    elapsed = time.perf_counter() - started
    await store.close()
    return sum(counts) / elapsed


async def _turn(engine: Engine, key: SessionKey, n: int) -> None:
    await engine.handle(Incoming(key, f"t{n}", text=f"message {n}"), deliver)


async def cost_by_stored_sessions(backend: Backend) -> list[float]:
    """Milliseconds per turn on random stored sessions, for each size in STORED.

    The Engine keeps no suspended dialogs in memory here (max_live=0), so every turn loads and
    replays its session and the figures differ only by what the store does.
    """
    template = await _template()
    stores = []
    for size in STORED:
        store = await backend.open()
        await backend.fill(store, template, size)
        stores.append(store)
    rounds: list[list[float]] = [[] for _ in STORED]
    sequence = 0
    for _ in range(ROUNDS + 1):  # alternating rounds, so a busy moment of the machine hits both sizes alike
        for i, (store, size) in enumerate(zip(stores, STORED)):
            engine = Engine(echo, store, max_live=0)
            picks = [random.randrange(size) for _ in range(SAMPLE_TURNS)]
            await _turn(engine, SessionKey(f"bench:{picks[0]}", "echo"), -1)  # first write: indexes
            started = time.perf_counter()
            for pick in picks:
                sequence += 1
                await _turn(engine, SessionKey(f"bench:{pick}", "echo"), sequence)
            rounds[i].append((time.perf_counter() - started) / SAMPLE_TURNS * 1000)
    for store in stores:
        await store.close()
    return [statistics.median(times[1:]) for times in rounds]


async def _template() -> Session:
    """A session after a few turns of the echo flow, as users leave them."""
    store = MemoryStore()
    engine = Engine(echo, store)
    key = SessionKey("bench:template", "echo")
    for n, text in enumerate(["start", "hello there", "how are you?", "fine, thanks"]):
        await engine.handle(Incoming(key, f"t{n}", text=text, address={"chat_id": 42}), deliver)
    session = await store.load(key)
    assert session is not None
    return session


# --- report ---------------------------------------------------------------------------------------


def row(label: str, values: list[str]) -> str:
    return f"  {label:<40}" + "".join(f"{value:>12}" for value in values)


async def main() -> None:
    print("convoflow store benchmark: each turn is one update through Engine.handle (an echo flow)\n")
    server = mongo_server_from_environment()
    mongo_label = "MONGODB_URI" if server.external_uri else "SecantusDB 0.7 (started for this run)"
    with tempfile.TemporaryDirectory() as directory:
        backends: list[Backend] = [MemoryBackend(), SQLiteBackend(Path(directory)), MongoBackend(server)]
        try:
            trips = [await round_trips(b) for b in backends]
            print(row("Round trips per turn", [b.name for b in backends]))
            for i, label in enumerate(ROUND_TRIP_TURNS):
                print(row(label, [str(t[i]) for t in trips]))
            for label, target in ROUND_TRIP_TARGETS.items():
                at = ROUND_TRIP_TURNS.index(label)
                verdict = "met" if all(t[at] <= target for t in trips) else "MISSED"
                print(f"  target: {label}, at most {target} on every store: {verdict}")
            print("  (memory, sqlite: calls into the store; mongodb: commands on the wire, counted with")
            print("   PyMongo command monitoring; a store's very first write also creates its indexes)\n")

            print(row("Turns per second", [b.name for b in backends]))
            print(row("one session, one after another", [f"{await one_session(b):,.0f}" for b in backends]))
            print(row(f"{CONCURRENT} sessions at once", [f"{await concurrent_sessions(b):,.0f}" for b in backends]))
            print()

            costs, took = [], []
            for b in backends:
                started = time.perf_counter()
                costs.append(await cost_by_stored_sessions(b))
                took.append(f"{time.perf_counter() - started:.0f} s")
            print(row("Per-turn cost (ms, every turn replays)", [b.name for b in backends]))
            for i, size in enumerate(STORED):
                print(row(f"{size:,} stored sessions", [f"{c[i]:.2f}" for c in costs]))
            print(row(f"ratio {STORED[-1]:,} / {STORED[0]:,}", [f"{c[-1] / c[0]:.2f}x" for c in costs]))
            print(row("(filling and measuring took)", took))
        finally:
            for b in backends:
                await b.cleanup()
            server.stop()
    print(f"\nMongoDB here: {mongo_label}.")
    print("SecantusDB's absolute speed says nothing about mongod's; the round-trip count is the figure")
    print("that carries over: a cold turn is one load, one conditional write and, when it replies, one")
    print("write marking the replies delivered, whatever the server; a warm turn skips the load.")


if __name__ == "__main__":
    asyncio.run(main())

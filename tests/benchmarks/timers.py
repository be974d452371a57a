"""Timers: many due at once across processes, and what pending timers cost an ordinary turn.

    .venv/bin/python tests/benchmarks/timers.py [--sessions 10000] [--pending 100000] [--no-mongo]

1. `--sessions` conversations each sleep until a time within the same second, a few seconds ahead;
   then 1 and 3 processes (this script as workers) run a Scheduler each on the one store, real
   clock, and record every reply a fired timer sent. Printed: whether every timer fired exactly
   once (sends per session), and the lateness of the sends (send time minus due time) p50/p99.
2. The time of an ordinary turn (a message answered by a flow waiting for input) on a store with
   no other sessions, then with `--pending` other sessions whose timers are due later (seeded
   straight into the store's table, as commits would have left them), a Scheduler polling
   alongside; printed: turns/s and the ratio.

The stores: one SQLite file, and the MongoDB test server (SecantusDB, or MONGODB_URI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from convoflow import Incoming, ManualClock, Reply, SessionKey, dialog, get_client_response, send_message, sleep_until  # noqa: E402
from convoflow.turns import Engine  # noqa: E402
from convoflow.scheduler import Scheduler  # noqa: E402
from convoflow.stores import Session, Store, open_store  # noqa: E402
from convoflow.stores.mongo import MongoStore  # noqa: E402
from convoflow.stores.sqlite import SQLiteStore, _rest_of  # noqa: E402
from tests.support.mongo_server import mongo_server_from_environment  # noqa: E402

APP = "timerbench"


@dialog()
def wake(at: float) -> Any:
    yield sleep_until(datetime.fromtimestamp(at, timezone.utc))
    yield send_message(f"woke {at!r}")


@dialog()
def echo() -> Any:
    while True:
        said = yield get_client_response()
        yield send_message(said)


def engine_on(store: Store, **options: Any) -> Engine:
    return Engine(echo, store, app=APP, max_live=0, **options)


# --- 1. many timers due at once ---------------------------------------------------------------------


async def seed_sleepers(url: str, sessions: int, due_at: float, first: int = 0) -> None:
    """Sessions `first`.. each sleeping until a time within the second from `due_at`. The seeding
    engine's clock stands still, so every session is left sleeping however long seeding takes."""
    store = open_store(url)
    engine = engine_on(store, clock=ManualClock(time.time()))
    limit = asyncio.Semaphore(32)

    async def start(n: int) -> None:
        async with limit:
            await engine.start(SessionKey(f"bench:{n}", APP), wake(due_at + (n - first) / sessions), {"n": n}, f"s{n}")

    await asyncio.gather(*(start(n) for n in range(first, first + sessions)))
    await store.close()


async def seeding_rate(url: str) -> float:
    """Sessions seeded per second on this store (a probe, due a day from now: never fired here)."""
    started = time.perf_counter()
    await seed_sleepers(url, 200, time.time() + 86_400, first=10_000_000)
    return 200 / (time.perf_counter() - started)


async def worker(url: str, out: Path, until_count: int) -> None:
    """Run a Scheduler until the sends of all workers (their files) reach `until_count`."""
    store = open_store(url)
    engine = engine_on(store)
    sent: list[str] = []

    async def send(reply: Reply) -> None:
        sent.append(json.dumps([reply.address["n"], reply.message.text, time.time()]))  # type: ignore[union-attr]

    scheduler = Scheduler(engine, send, poll_seconds=0.5)
    task = asyncio.create_task(scheduler.run())
    try:
        while True:
            await asyncio.sleep(0.5)
            out.write_text("\n".join(sent) + ("\n" if sent else ""))
            done = sum(len(path.read_text().splitlines()) for path in out.parent.glob("sent-*.txt"))
            if done >= until_count:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        out.write_text("\n".join(sent) + ("\n" if sent else ""))
        await store.close()


async def many_due(label: str, url: str, sessions: int, processes: int, folder: Path) -> None:
    due_at = time.time() + 5 + 1.5 * sessions / await seeding_rate(url)  # after the seeding
    started = time.perf_counter()
    await seed_sleepers(url, sessions, due_at)
    seeded = time.perf_counter() - started
    if time.time() > due_at:
        print(f"  {label}: seeding took {seeded:.1f} s, past the due time; the lateness below includes it")
    for old in folder.glob("sent-*.txt"):
        old.unlink()
    workers = [subprocess.Popen([sys.executable, __file__, "--worker", url, str(folder / f"sent-{n}.txt"), str(sessions)])
               for n in range(processes)]
    for process in workers:
        process.wait(timeout=600)
    sends = [json.loads(line) for path in folder.glob("sent-*.txt") for line in path.read_text().splitlines()]
    sends = [send for send in sends if send[0] < sessions]  # not the probe's
    per_session: dict[int, int] = {}
    for n, _text, _at in sends:
        per_session[n] = per_session.get(n, 0) + 1
    lateness = sorted(at - (due_at + n / sessions) for n, _text, at in sends)
    once = sum(1 for count in per_session.values() if count == 1)
    twice = sum(1 for count in per_session.values() if count > 1)
    print(f"  {label}, {processes} process{'es' if processes > 1 else ''}: {len(sends)} sends for {sessions} timers; "
          f"{once} fired once, {twice} more than once, {sessions - len(per_session)} never; "
          f"lateness p50 {_pct(lateness, 50) * 1000:.0f} ms, p99 {_pct(lateness, 99) * 1000:.0f} ms "
          f"(seeded in {seeded:.1f} s)")


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else 0.0


# --- 2. an ordinary turn with many timers pending -----------------------------------------------------


def pending_sessions(count: int, due_from: float) -> list[Session]:
    state = {"frame": {"name": "echo", "version": "1.0", "log": [],
                       "pending": {"name": "wake", "version": "1.0", "log": [], "pending": {"wait": "<sleep>", "due": 0}}}}
    sessions = []
    for n in range(count):
        due = due_from + n
        state["frame"]["pending"]["pending"]["due"] = due
        sessions.append(Session(SessionKey(f"pending:{n}", APP)).advanced(state=json.loads(json.dumps(state)), due=due))
    return sessions


async def seed_pending(store: Store, count: int) -> None:
    sessions = pending_sessions(count, time.time() + 86_400)
    if isinstance(store, SQLiteStore):
        rows = [(s.revision, _rest_of(s.to_record()), s.updated, s.due, str(s.key), s.key.partition, s.key.app) for s in sessions]
        await store.load(SessionKey("warm:up", APP))  # opens the file, makes the schema

        def insert() -> None:
            assert store._db is not None
            store._db.execute("BEGIN")
            store._db.executemany("INSERT INTO sessions (revision, record, updated, due, key, partition, app) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            store._db.execute("COMMIT")

        await store._call(insert)
    else:
        assert isinstance(store, MongoStore)
        await store.commit(Session(SessionKey("warm:up", APP)).advanced())  # makes the indexes
        for start in range(0, count, 5000):
            await store.collection.insert_many([store._document(s) for s in sessions[start:start + 5000]])


async def turns_per_second(store: Store, turns: int) -> float:
    engine = engine_on(store)
    scheduler = Scheduler(engine, lambda reply: asyncio.sleep(0), poll_seconds=0.2)
    polling = asyncio.create_task(scheduler.run())
    key = SessionKey(f"talker:{time.time()}", APP)
    try:
        await engine.handle(Incoming(key, "first", text="hi"))
        started = time.perf_counter()
        for n in range(turns):
            await engine.handle(Incoming(key, f"t{n}", text=f"message {n}"))
        return turns / (time.perf_counter() - started)
    finally:
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)


async def turn_cost(label: str, make_store: Any, pending: int, turns: int) -> None:
    empty, full = make_store("empty"), make_store("full")
    try:
        await seed_pending(full, pending)
        alone, crowded = [], []
        for _ in range(3):  # interleaved, so neither gains from running later (warmer caches)
            alone.append(await turns_per_second(empty, turns))
            crowded.append(await turns_per_second(full, turns))
    finally:
        await empty.close()
        await full.close()
    ratio = statistics.median(alone) / statistics.median(crowded)
    print(f"  {label}: {statistics.median(alone):.0f} turns/s with no timers pending, "
          f"{statistics.median(crowded):.0f} with {pending:,} pending: a turn costs {ratio:.2f}x")


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="convoflow-timers-"))
    server = None if args.no_mongo else mongo_server_from_environment()
    try:
        if args.part in (None, 1):
            await many_at_once(args, folder, server)
        if args.part in (None, 2):
            await pending_cost(args, folder, server)
    finally:
        if server is not None:
            server.stop()


async def many_at_once(args: argparse.Namespace, folder: Path, server: Any) -> None:
    print(f"1. {args.sessions:,} timers due within one second")
    for processes in (1, 3):
        database = folder / f"due-{processes}.db"
        await many_due("SQLite", f"sqlite:///{database}", args.sessions, processes, folder)
        if server is not None:
            await many_due("MongoDB", server.uri_for(f"timers_due_{processes}_{os.getpid()}"), args.sessions, processes, folder)


async def pending_cost(args: argparse.Namespace, folder: Path, server: Any) -> None:
    print(f"2. an ordinary turn with {args.pending:,} timers pending")
    await turn_cost("SQLite", lambda name: SQLiteStore(folder / f"{name}.db"), args.pending, args.turns)
    if server is not None:
        await turn_cost("MongoDB", lambda name: open_store(server.uri_for(f"timers_{name}_{os.getpid()}")),
                        args.pending, args.turns)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        asyncio.run(worker(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--no-mongo", action="store_true")
    parser.add_argument("--part", type=int, choices=(1, 2), help="run only part 1 or part 2")
    asyncio.run(main(parser.parse_args()))

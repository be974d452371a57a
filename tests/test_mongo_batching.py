"""MongoDB batching: commits pending together go as one unordered bulk write of conditional
writes, on the suite's MongoDB test server; a conflict fails only its own commit."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest
from pymongo import AsyncMongoClient

from convoflow import SessionKey
from convoflow.stores import Conflict, Session
from convoflow.stores.mongo import MongoStore
from tests.support.counting import MongoCommands
from tests.support.flows import two_turns_each


def key(n: int) -> SessionKey:
    return SessionKey(f"telegram:7:{n}", "guessbot")


@pytest.fixture
async def watched(mongo_uri: str) -> AsyncIterator[tuple[MongoStore, MongoCommands]]:
    commands = MongoCommands()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri, event_listeners=[commands])
    store = MongoStore(client)
    await store.commit(Session(key(-1)).advanced())  # the first write makes the indexes
    commands.take()
    yield store, commands
    await store.close()
    await client.close()


async def created(store: MongoStore, count: int) -> list[Session]:
    sessions = [Session(key(n)).advanced(state={"n": n}) for n in range(count)]
    await asyncio.gather(*(store.commit(session) for session in sessions))
    return sessions


async def test_pending_commits_go_in_one_bulk_write_and_all_win(watched: tuple[MongoStore, MongoCommands]) -> None:
    store, commands = watched
    firsts = await created(store, 20)
    assert commands.take() == ["insert"]  # 20 new sessions, one round trip
    seconds = [session.advanced(state={"n": n, "turn": 2}) for n, session in enumerate(firsts)]
    await asyncio.gather(*(store.commit(session) for session in seconds))
    assert commands.take() == ["update"]  # 20 conditional replacements, one round trip
    for n, session in enumerate(seconds):
        assert await store.load(key(n)) == session


async def test_a_conflict_in_a_batch_fails_only_its_own_commit(watched: tuple[MongoStore, MongoCommands]) -> None:
    store, commands = watched
    firsts = await created(store, 10)
    commands.take()
    seconds = [session.advanced(state={"n": n, "turn": 2}) for n, session in enumerate(firsts)]
    stale = firsts[3].advanced(state={"lost": True})  # revision 2 as well, from the same revision 1
    again = Session(key(5)).advanced()  # creating a session that exists
    outcomes = await asyncio.gather(*(store.commit(s) for s in [*seconds[:4], stale, again, *seconds[4:]]),
                                    return_exceptions=True)
    assert [type(outcome) for outcome in outcomes] == [type(None)] * 4 + [Conflict, Conflict] + [type(None)] * 6
    # fewer matched than sent: the batch's documents are read back to tell the winners
    assert commands.take() == ["insert", "update", "find"]
    for n, session in enumerate(seconds):
        assert await store.load(key(n)) == session


async def test_a_single_pending_commit_is_a_plain_conditional_write(watched: tuple[MongoStore, MongoCommands]) -> None:
    store, commands = watched
    (first,) = await created(store, 1)
    await store.commit(first.advanced(state={"turn": 2}))
    with pytest.raises(Conflict):
        await store.commit(first.advanced(state={"turn": "lost"}))
    assert commands.take() == ["insert", "update", "update"]


async def test_concurrent_turns_of_many_sessions_all_land(watched: tuple[MongoStore, MongoCommands]) -> None:
    store, commands = watched
    keys = [key(n) for n in range(30)]
    sent = await two_turns_each(store, keys)
    writes = [name for name in commands.take() if name in ("insert", "update")]
    assert len(writes) < 30 * 4  # 2 turns x (commit + mark delivered) each, some commits batched
    assert sent == {k: ["hi", f"you said {k.partition}"] for k in keys}
    for k in keys:
        session = await store.load(k)
        assert session is not None and session.seen == ("u1", "u2") and session.outbox == ()

"""Store round trips per turn, counted (never timed) on every store: a warm turn (this process
committed the session's last turn) commits without reading first; a cold one reads first."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
from pymongo import AsyncMongoClient

from convoflow import Incoming, SessionKey, dialog, get_client_response, send_message
from convoflow.messages import Reply
from convoflow.stores import MemoryStore, Store
from convoflow.stores.mongo import MongoStore
from convoflow.stores.sqlite import SQLiteStore
from convoflow.turns import Engine
from tests.support.counting import CountingStore, MongoCommands

KEY = SessionKey("telegram:7:42", "echo")


@dialog(version="1")
def echo() -> Any:
    yield send_message("hi")
    while True:
        said = yield get_client_response()
        if said != "shh":
            yield send_message(f"you said {said}")


@pytest.fixture(params=["memory", "sqlite", "mongo"])
async def counted(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Callable[[], int]]]:
    store: Store
    if request.param == "mongo":
        commands = MongoCommands()
        client: AsyncMongoClient[Any] = AsyncMongoClient(request.getfixturevalue("mongo_uri"), event_listeners=[commands])
        store = MongoStore(client)
        yield store, lambda: commands.count
        await client.close()
        return
    wrapped = CountingStore(MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "sessions.db"))
    yield wrapped, lambda: wrapped.count
    await wrapped.close()


async def turn(engine: Engine, count: Callable[[], int], update_id: str, text: str, sent: list[Reply]) -> int:
    async def deliver(reply: Reply) -> None:
        sent.append(reply)

    before = count()
    await engine.handle(Incoming(KEY, update_id, text=text), deliver)
    return count() - before


async def test_a_warm_turn_takes_two_round_trips_and_a_cold_one_three(counted: tuple[Store, Callable[[], int]]) -> None:
    store, count = counted
    sent: list[Reply] = []
    engine = Engine(echo, store)
    await engine.handle(Incoming(SessionKey("telegram:7:1", "echo"), "w", text="hi"))  # a first write makes indexes
    assert await turn(engine, count, "u1", "hello", sent) == 3  # a first contact: load, create, mark

    assert await turn(engine, count, "u2", "again", sent) == 2  # warm: commit, mark delivered
    assert await turn(engine, count, "u3", "shh", sent) == 1  # warm, no reply: the commit alone
    assert await turn(engine, count, "u4", "more", sent) == 2

    restarted = Engine(echo, store)  # another process, or this one after a restart
    assert await turn(restarted, count, "u5", "cold", sent) == 3  # load, commit, mark delivered
    assert await turn(restarted, count, "u6", "warm again", sent) == 2

    assert [reply.message.text for reply in sent] == [  # type: ignore[attr-defined]
        "hi", "you said again", "you said more", "you said cold", "you said warm again"]
    stored = await store.load(KEY)
    assert stored is not None and stored.outbox == () and stored.seen[-1] == "u6"


async def test_a_warm_turn_that_lost_a_race_reloads_and_is_redone(counted: tuple[Store, Callable[[], int]]) -> None:
    store, count = counted
    sent: list[Reply] = []
    first, other = Engine(echo, store), Engine(echo, store)
    await turn(first, count, "u1", "one", sent)
    await turn(other, count, "u2", "two", sent)  # another worker moves the session on
    # `first` commits on the record it knows and conflicts, reads the session, replays the turn on
    # it and commits: the 2 of a warm turn, a load and a commit
    assert await turn(first, count, "u3", "three", sent) == 4
    assert [reply.message.text for reply in sent] == [  # type: ignore[attr-defined]
        "hi", "you said two", "you said three"]
    stored = await store.load(KEY)
    assert stored is not None and stored.seen == ("u1", "u2", "u3") and stored.outbox == ()


async def test_a_redelivered_update_to_a_warm_session_reads_the_store_and_sends_nothing_twice(
    counted: tuple[Store, Callable[[], int]],
) -> None:
    store, count = counted
    sent: list[Reply] = []
    first, other = Engine(echo, store), Engine(echo, store)
    await turn(first, count, "u1", "one", sent)
    await turn(other, count, "u2", "two", sent)
    # u2 is new to what `first` knows, so it reads the store and finds it processed
    await turn(first, count, "u2", "two", sent)
    assert [reply.message.text for reply in sent] == ["hi", "you said two"]  # type: ignore[attr-defined]
    stored = await store.load(KEY)
    assert stored is not None and stored.seen == ("u1", "u2") and stored.outbox == ()

"""What only the MongoDB store has to prove: its URL and clients, its documents and indexes, many
processes on one session, crashes, an unreachable server, hostile input and the size limit.

Every test talks to a real MongoDB wire-protocol server (SecantusDB, or MONGODB_URI)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient

from convoflow import Incoming, Reply, SessionKey, Text, dialog, get_client_response, send_message
from convoflow.replay import INPUT, log_entries
from convoflow.turns import Engine
from convoflow.stores import Conflict, Session, StoreError, open_store
from convoflow.stores.mongo import (
    BSON_LIMIT,
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    DEFAULT_MAX_SESSION_BYTES,
    DEFAULT_TIMEOUT,
    MongoStore,
    SessionTooLarge,
)

from tests.support.counting import MongoCommands
from tests.support.mongo_server import MongoServer, free_port, start_mongo_server

ROOT = Path(__file__).resolve().parents[1]
KEY = SessionKey("telegram:7:42", "echo")
HANG_GUARD = 60.0
"""Seconds after which a test gives up waiting (a guard against hangs, never a timing assertion)."""


@dialog(version="1")
def echo() -> Any:
    """Repeats what the user says; "shh" gets no answer. Every input is recorded in the state."""
    while True:
        said = yield get_client_response()
        if said != "shh":
            yield send_message(said)


class Inbox:
    """A channel's deliver(): collects the texts it is given."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, reply: Reply) -> None:
        assert isinstance(reply.message, Text)
        self.texts.append(reply.message.text)


def database_of(uri: str) -> str:
    return uri.rpartition("/")[2].partition("?")[0]


@pytest.fixture
async def store(mongo_uri: str) -> AsyncIterator[MongoStore]:
    opened = MongoStore.from_url(mongo_uri)
    yield opened
    await opened.close()


@pytest.fixture
async def raw(mongo_uri: str) -> AsyncIterator[Any]:
    """The test's database through a client of its own, to look at what the store wrote."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri)
    yield client.get_database(database_of(mongo_uri))
    await client.close()


def first(key: SessionKey = KEY, **changes: Any) -> Session:
    return Session(key).advanced(**changes)


# --- URL and clients ------------------------------------------------------------------------------


class TestUrl:
    async def test_defaults(self) -> None:
        store = open_store("mongodb://db.example:27017")
        assert isinstance(store, MongoStore)
        try:
            assert (store.database.name, store.collection.name) == (DEFAULT_DATABASE, DEFAULT_COLLECTION)
            assert (store.ttl, store.max_session_bytes, store.timeout) == (None, DEFAULT_MAX_SESSION_BYTES, DEFAULT_TIMEOUT)
            client: Any = store.database.client
            # bounded waits: an unreachable server fails fast instead of after pymongo's 30 s
            assert client.options.timeout == DEFAULT_TIMEOUT
            assert client.options.server_selection_timeout == 5
            assert client.options.pool_options.connect_timeout == 5
        finally:
            await store.close()

    async def test_database_collection_and_store_options(self) -> None:
        url = ("mongodb://user:pw@db1.example,db2.example/bots?replicaSet=rs0&collection=chats"
               "&ttlSeconds=86400&maxSessionBytes=100000&timeoutMS=2500&serverSelectionTimeoutMS=700")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the store's own options never reach pymongo as unknown ones
            store = open_store(url)
        assert isinstance(store, MongoStore)
        try:
            assert (store.database.name, store.collection.name) == ("bots", "chats")
            assert (store.ttl, store.max_session_bytes, store.timeout) == (86400, 100000, 2.5)
            options = store.database.client.options
            assert isinstance(options, pymongo.client_options.ClientOptions)
            assert (options.replica_set_name, options.timeout, options.server_selection_timeout) == ("rs0", 2.5, 0.7)
        finally:
            await store.close()

    async def test_srv_url_names_its_database(self) -> None:
        store = open_store("mongodb+srv://user:pw@cluster0.example.net/production?collection=sessions_v2")
        assert isinstance(store, MongoStore)
        try:
            assert (store.database.name, store.collection.name) == ("production", "sessions_v2")
        finally:
            await store.close()

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("mongodb://user:secret@/convoflow", "Empty host"),
            ("mongodb://db.example/?ttlSeconds=soon", "ttlSeconds"),
            ("mongodb://db.example/?ttlSeconds=0", "ttlSeconds"),
            ("mongodb://db.example/?maxSessionBytes=-5", "maxSessionBytes"),
            ("mongodb://db.example/?maxSessionBytes=20000000", "at most 16777216"),
            ("mongodb://db.example/?timeoutMS=0", "timeoutMS"),
            ("mongodb://user:secret@db.example/?serverSelectionTimeoutMS=abc", "serverselectiontimeoutms"),
            ("mongodb://user:secret@db.example/?ttlseconds=60", "Unknown option"),
            ("mongodb://db.example/?collection=", "collection names cannot be empty"),
            ("mongodb://db.example/?collection=a$b", "must not contain '$'"),
            ("mongodb://db.example/bad%20name", "database name"),
        ],
    )
    def test_a_bad_url_is_a_value_error_that_hides_the_password(self, url: str, message: str) -> None:
        with pytest.raises(ValueError, match="(?i)" + message.replace("$", r"\$")) as raised:
            open_store(url)
        assert "secret" not in str(raised.value)

    def test_bad_constructor_arguments(self) -> None:
        client: AsyncMongoClient[Any] = AsyncMongoClient("mongodb://db.example", connect=False)
        with pytest.raises(ValueError, match="ttl"):
            MongoStore(client, ttl=0)
        with pytest.raises(ValueError, match="max_session_bytes"):
            MongoStore(client, max_session_bytes=BSON_LIMIT + 1)
        with pytest.raises(ValueError, match="timeout"):
            MongoStore(client, timeout=float("inf"))
        with pytest.raises(ValueError, match="contradicts"):
            MongoStore(client.get_database("one"), database="two")
        with pytest.raises(TypeError, match="AsyncMongoClient"):
            MongoStore(pymongo.MongoClient("mongodb://db.example", connect=False))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not str"):
            MongoStore("mongodb://db.example")  # type: ignore[arg-type]


async def assert_store_works_in(store: MongoStore, uri: str, database: str, collection: str) -> None:
    """The store commits and reads back, and its document lands in `database`.`collection`."""
    session = first(state={"n": 1})
    await store.commit(session)
    assert await store.load(KEY) == session
    assert [s.key for s in await store.list_sessions(KEY.partition)] == [KEY]
    with pymongo.MongoClient[dict[str, Any]](uri) as client:
        assert client[database][collection].find_one({"_id": str(KEY)}, {"revision": 1}) == {"_id": str(KEY), "revision": 1}


class TestClients:
    async def test_an_async_client_with_its_default_database(self, mongo_uri: str) -> None:
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri)
        store = MongoStore(client)
        await assert_store_works_in(store, mongo_uri, database_of(mongo_uri), DEFAULT_COLLECTION)
        await store.close()
        assert (await client.get_database("admin").command("ping"))["ok"] == 1  # still the caller's
        await client.close()

    async def test_an_async_client_and_a_database_name(self, mongo_uri: str) -> None:
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri)
        name = database_of(mongo_uri) + "_named"
        store = MongoStore(client, database=name, collection="chats")
        assert store.database.name == name
        await assert_store_works_in(store, mongo_uri, name, "chats")
        await store.close()
        await client.drop_database(name)
        await client.close()

    async def test_an_async_database(self, mongo_uri: str) -> None:
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri)
        database = client.get_database(database_of(mongo_uri))
        store = MongoStore(database, database=database.name)
        assert store.database is database  # other stores may keep their records beside the sessions
        await assert_store_works_in(store, mongo_uri, database.name, DEFAULT_COLLECTION)
        await store.close()
        await client.close()

    async def test_a_motor_client(self, mongo_uri: str) -> None:
        client: AsyncIOMotorClient = AsyncIOMotorClient(mongo_uri)
        store = MongoStore(client, collection="motor_sessions")
        await assert_store_works_in(store, mongo_uri, database_of(mongo_uri), "motor_sessions")
        await store.close()
        assert (await client.admin.command("ping"))["ok"] == 1
        client.close()

    async def test_a_motor_database(self, mongo_uri: str) -> None:
        client: AsyncIOMotorClient = AsyncIOMotorClient(mongo_uri)
        database = client.get_database(database_of(mongo_uri))
        store = MongoStore(database)
        assert store.database is database
        await assert_store_works_in(store, mongo_uri, database.name, DEFAULT_COLLECTION)
        await store.close()
        client.close()

    async def test_a_closed_store_says_so(self, mongo_uri: str) -> None:
        store = MongoStore.from_url(mongo_uri)
        await store.load(KEY)
        await store.close()
        await store.close()  # closing twice is harmless
        with pytest.raises(StoreError, match="closed"):
            await store.load(KEY)


# --- documents and indexes ------------------------------------------------------------------------


class TestDocuments:
    async def test_one_document_per_session(self, store: MongoStore, raw: Any) -> None:
        reply = {"seq": 1, "to": {"chat_id": 42}, "message": {"text": "hi"}}
        session = first(state={"n": 1}, outbox=(reply,), seen=("u1",), next_seq=2)
        await store.commit(session)
        document = await raw[DEFAULT_COLLECTION].find_one({"_id": str(KEY)})
        assert document is not None
        assert (document["partition"], document["app"], document["revision"]) == (KEY.partition, KEY.app, 1)
        assert [item["seq"] for item in document["outbox"]] == [1]
        assert json.loads(document["outbox"][0]["reply"]) == reply
        assert json.loads(document["session"])["state"] == {"n": 1}
        # BSON dates (readable in any MongoDB tool); the exact float timestamps round-trip too
        assert abs(document["updated"].timestamp() - session.updated) < 0.002
        assert abs(document["created"].timestamp() - session.created) < 0.002
        assert "expire_at" not in document
        loaded = await store.load(KEY)
        assert loaded is not None and (loaded.created, loaded.updated) == (session.created, session.updated)

    async def test_indexes_are_made_on_first_write_only_and_idempotently(self, mongo_uri: str, raw: Any) -> None:
        replicas = [MongoStore.from_url(mongo_uri) for _ in range(3)]
        try:
            # reading (e.g. `convoflow sessions list`) never creates anything
            assert await replicas[0].load(KEY) is None and await replicas[0].list_sessions() == []
            assert DEFAULT_COLLECTION not in await raw.list_collection_names()
            # every replica creates the indexes on its first write; the second time changes nothing
            await asyncio.gather(*(r.commit(first(SessionKey(f"p{i}", "a"))) for i, r in enumerate(replicas)))
            indexes = await raw[DEFAULT_COLLECTION].index_information()
            assert {name: spec["key"] for name, spec in indexes.items()} == {
                "_id_": [("_id", 1)],
                "partition_updated": [("partition", 1), ("updated", -1)],
                "updated": [("updated", -1)],
                "app_updated": [("app", 1), ("updated", 1)],
                "app_due": [("app", 1), ("due_at", 1)],
            }
            assert await raw[DEFAULT_COLLECTION].index_information() == indexes
        finally:
            for replica in replicas:
                await replica.close()

    async def test_a_read_only_store_writes_nothing_and_creates_no_index(self, mongo_uri: str, raw: Any) -> None:
        reader = open_store(mongo_uri, read_only=True)
        try:
            assert await reader.list_sessions() == [] and await reader.load(KEY) is None
            with pytest.raises(StoreError, match="read-only"):
                await reader.commit(first())
            with pytest.raises(StoreError, match="read-only"):
                await reader.mark_delivered(KEY, 1, 1)
            assert await raw.list_collection_names() == []
            writer = MongoStore.from_url(mongo_uri)
            await writer.commit(first())
            await writer.close()
            assert [s.key for s in await reader.list_sessions()] == [KEY]
        finally:
            await reader.close()

    async def test_ttl_index_and_expiry_dates_when_configured(self, mongo_uri: str, raw: Any) -> None:
        expiring = MongoStore.from_url(mongo_uri + "&ttlSeconds=3600")
        lasting = MongoStore.from_url(mongo_uri)
        try:
            session = first(state={"n": 1})
            await expiring.commit(session)
            indexes = await raw[DEFAULT_COLLECTION].index_information()
            assert indexes["expire_at"]["key"] == [("expire_at", 1)]
            assert indexes["expire_at"]["expireAfterSeconds"] == 0  # each document says when it expires
            document = await raw[DEFAULT_COLLECTION].find_one({"_id": str(KEY)})
            assert document["expire_at"] - document["updated"] == timedelta(hours=1)
            # a store without a TTL writing the session later keeps it for good
            await lasting.commit(session.advanced(state={"n": 2}))
            document = await raw[DEFAULT_COLLECTION].find_one({"_id": str(KEY)})
            assert document["revision"] == 2 and "expire_at" not in document
        finally:
            await expiring.close()
            await lasting.close()

    async def test_a_document_from_a_newer_convoflow_is_refused_untouched(self, store: MongoStore, raw: Any) -> None:
        await store.commit(first(state={"n": 1}))
        await raw[DEFAULT_COLLECTION].update_one({"_id": str(KEY)}, {"$set": {"format": 2}})
        with pytest.raises(StoreError, match="format 2"):
            await store.load(KEY)
        await raw[DEFAULT_COLLECTION].insert_one({"_id": "someone:else/app", "partition": "someone:else", "name": "x"})
        with pytest.raises(StoreError, match="not a session"):
            await store.load(SessionKey("someone:else", "app"))


# --- user input that MongoDB would mangle ----------------------------------------------------------

HOSTILE_KEYS = [
    SessionKey("$where", "$app"),
    SessionKey("slack:-:T1:C.1.2", "app.v2"),
    SessionKey("nul\x00partition", "a\x00pp"),
    SessionKey("{\"$ne\": null}", "app"),
    SessionKey("😀 \u202e", "\u200b"),
]


class TestHostileInput:
    @pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
    async def test_hostile_session_keys_are_found_and_listed_exactly(self, store: MongoStore, key: SessionKey) -> None:
        other = SessionKey("plain", "app")
        await store.commit(first(other))
        session = first(key, state={"key": str(key)})
        await store.commit(session)
        assert await store.load(key) == session
        assert [s.key for s in await store.list_sessions(key.partition)] == [key]  # no query injection
        await store.commit(session.advanced(state={"again": True}))
        with pytest.raises(Conflict):
            await store.commit(session.advanced())

    async def test_hostile_state_keys_and_values_round_trip(self, store: MongoStore) -> None:
        hostile = {
            "$set": {"$inc": 1}, "a.b.c": ".", "": {"": ""}, "$": "$$ROOT", "_id": "not mine",
            "nul\x00key": "nul\x00value", "\ud800lone": "surrogate \udfff", "revision": -1,
            "long": "€" * 300_000, "deep": [[[[{"$ref": "x", "$id": 1}]]]],
        }
        session = first(state={"frame": {"log": [[INPUT, hostile]]}}, address={"$chat": "a.b"},
                        seen=("$id.1", "\x00"), last=({"seq": 1, "to": {"$x": 1}, "message": {"text": "\ud83d"}},))
        await store.commit(session)
        assert await store.load(KEY) == session
        delivered = session.advanced(outbox=({"seq": 1, "to": {"a.b": "$c"}, "message": {"text": "\udc80"}},))
        await store.commit(delivered)
        assert await store.load(KEY) == delivered
        assert await store.mark_delivered(KEY, 2, 1) is True

    async def test_a_user_typing_hostile_text_gets_it_back_unchanged(self, store: MongoStore) -> None:
        engine, inbox = Engine(echo, store), Inbox()
        texts = ["$set", "a.b", "\x00", "lone \ud800 surrogate", "x" * 100_000, "{\"$gt\": \"\"}"]
        await engine.handle(Incoming(KEY, "start", text="start"), inbox)
        for n, text in enumerate(texts):
            await engine.handle(Incoming(KEY, f"u{n}", text=text, address={"$chat.id": text[:10]}), inbox)
        assert inbox.texts == texts
        fresh = Engine(echo, store)  # another replica replays the stored record
        await fresh.handle(Incoming(KEY, "last", text="again"), inbox)
        assert inbox.texts[-1] == "again"
        session = await store.load(KEY)
        assert session is not None and session.address == {"$chat.id": texts[-1][:10]}

    async def test_a_key_that_is_not_unicode_text_is_a_clear_error(self, store: MongoStore) -> None:
        with pytest.raises(ValueError, match="not valid Unicode"):
            await store.commit(first(SessionKey("console:\udcff", "app")))
        assert await store.list_sessions() == []


class TestSizeLimit:
    async def test_a_session_over_the_limit_is_refused_and_nothing_is_written(self, store: MongoStore) -> None:
        await store.commit(first(state={"text": "small"}))
        before = await store.load(KEY)
        assert before is not None
        huge = before.advanced(state={"text": "y" * DEFAULT_MAX_SESSION_BYTES})
        with pytest.raises(SessionTooLarge, match="over the limit") as raised:
            await store.commit(huge)
        assert isinstance(raised.value, StoreError) and str(KEY) in str(raised.value)
        assert await store.load(KEY) == before

    async def test_a_turn_that_would_outgrow_the_limit_is_dropped_with_an_apology(
        self, store: MongoStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        engine, inbox = Engine(echo, store), Inbox()
        await engine.handle(Incoming(KEY, "start", text="start"), inbox)
        await engine.handle(Incoming(KEY, "u1", text="small"), inbox)
        before = await store.load(KEY)
        huge = "y" * (DEFAULT_MAX_SESSION_BYTES // 2)  # recorded in the state and echoed: over the limit
        await engine.handle(Incoming(KEY, "u2", text=huge), inbox)
        assert inbox.texts == ["small", engine.apology]
        assert "over the limit" in caplog.text and str(KEY) in caplog.text
        after = await store.load(KEY)
        assert before is not None and after is not None and after.state == before.state
        await engine.handle(Incoming(KEY, "u2", text=huge), inbox)  # a redelivery is not played again
        await engine.handle(Incoming(KEY, "u3", text="still here"), inbox)
        assert inbox.texts == ["small", engine.apology, "still here"]

    async def test_the_limit_is_configurable(self, mongo_uri: str) -> None:
        store = open_store(mongo_uri + "&maxSessionBytes=50000")
        try:
            await store.commit(first(state={"text": "z" * 40_000}))
            with pytest.raises(SessionTooLarge, match="50,000"):
                await store.commit(first(state={"text": "z" * 40_000}).advanced(state={"text": "z" * 60_000}))
            loaded = await store.load(KEY)
            assert loaded is not None and loaded.revision == 1
        finally:
            await store.close()

    async def test_even_the_highest_limit_refuses_before_mongodb_would(self, mongo_uri: str) -> None:
        store = MongoStore.from_url(mongo_uri)
        store.max_session_bytes = BSON_LIMIT
        try:
            with pytest.raises(SessionTooLarge, match="16 MiB"):
                await store.commit(first(state={"text": "z" * BSON_LIMIT}))
            assert await store.load(KEY) is None
        finally:
            await store.close()


# --- the Engine on MongoDB --------------------------------------------------------------------------


class TestRoundTrips:
    async def test_a_cold_turn_costs_three_round_trips_with_replies_a_warm_one_two(self, mongo_uri: str) -> None:
        commands = MongoCommands()
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri, event_listeners=[commands])
        store = MongoStore(client)
        engine, inbox = Engine(echo, store), Inbox()
        try:
            await engine.handle(Incoming(KEY, "start", text="start"), inbox)
            assert commands.take() == ["find", *["createIndexes"] * 4, "insert"]  # first contact
            await engine.handle(Incoming(KEY, "u1", text="hello"), inbox)
            assert commands.take() == ["update", "update"]  # warm: commit unread, mark delivered
            await engine.handle(Incoming(KEY, "u2", text="shh"), inbox)
            assert commands.take() == ["update"]  # warm, no replies: the commit alone
            await engine.handle(Incoming(KEY, "u1", text="hello"), inbox)
            assert commands.take() == ["find"]  # a redelivered update: load (to be sure), nothing to send
            replica = Engine(echo, store)  # no suspended dialog in memory: replays, same round trips
            await replica.handle(Incoming(KEY, "u3", text="again"), inbox)
            assert commands.take() == ["find", "update", "update"]
            assert inbox.texts == ["hello", "again"]
        finally:
            await store.close()
            await client.close()


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=HANG_GUARD * 3)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


# A bot process: the echo flow on the store at argv[1]. It handles the updates named on argv[3:]
# (ID=TEXT) and prints what it delivered as JSON lines [seq, text], then a summary line. An update
# whose turn fails before its commit is handled again, as the platform would redeliver it. With
# argv[2] == "fragile" it kills itself with SIGKILL when asked to deliver the text "die": after
# the commit, before the delivery.
BOT = """
import asyncio, json, os, signal, sys
from convoflow import Incoming, SessionKey, dialog, get_client_response, send_message
from convoflow.turns import Engine, TooManyConflicts
from convoflow.stores import open_store

@dialog(version="1")
def echo():
    while True:
        said = yield get_client_response()
        if said != "shh":
            yield send_message(said)

async def deliver(reply):
    if sys.argv[2] == "fragile" and reply.message.text == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    print(json.dumps([reply.seq, reply.message.text]), flush=True)

async def main(url, updates):
    store = open_store(url)
    conflicts = []
    engine = Engine(echo, store, on_turn=lambda turn: conflicts.append(turn.conflicts), handoff_seconds=2)
    key = SessionKey("race", "echo")
    redelivered = 0
    await store.load(key)  # connected before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    for update in updates:
        update_id, _, text = update.partition("=")
        while True:
            try:
                await engine.handle(Incoming(key, update_id, text=text), deliver)
                break
            except TooManyConflicts:
                redelivered += 1
    await store.close()
    print(json.dumps({"conflicts": sum(conflicts), "redelivered": redelivered}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[3:]))
"""
RACE_KEY = SessionKey("race", "echo")


def run_bots(url: str, *update_lists: list[str]) -> list[tuple[list[tuple[int, str]], dict[str, int]]]:
    """Run one bot process per update list, released together: what each delivered, in order,
    and its summary."""
    bots = [spawn(BOT, url, "sturdy", *updates) for updates in update_lists]
    try:
        for bot in bots:
            assert bot.stdout is not None
            line = bot.stdout.readline()
            assert line == "ready\n", f"bot process failed to start: {line!r} {bot.stderr.read() if bot.stderr else ''}"
        for bot in bots:  # released together, so their turns interleave
            assert bot.stdin is not None
            bot.stdin.write("\n")
            bot.stdin.flush()
        results = [finish(bot) for bot in bots]
    finally:
        for bot in bots:
            if bot.poll() is None:
                bot.kill()
                bot.wait()
    outcomes = []
    for code, out, err in results:
        assert code == 0, err
        *lines, summary = out.splitlines()
        outcomes.append(([tuple(json.loads(line)) for line in lines], json.loads(summary)))
    return outcomes


class TestSeveralProcesses:
    async def test_two_processes_hammering_one_session_lose_and_repeat_no_turn(self, store: MongoStore, mongo_uri: str) -> None:
        turns = 60
        await Engine(echo, store).handle(Incoming(RACE_KEY, "start", text="start"))
        updates = {name: [f"{name}{n}={name}{n}" for n in range(1, turns + 1)] for name in ("a", "b")}
        outcomes = await asyncio.to_thread(run_bots, mongo_uri, updates["a"], updates["b"])
        delivered = [bot for bot, _ in outcomes]
        # they really raced: commits lost to the other process were redone (and a turn that lost too
        # often was handled again, as the platform redelivers an update that got no 2xx answer)
        assert sum(summary["conflicts"] for _, summary in outcomes) > 0

        final = await store.load(RACE_KEY)
        assert final is not None and final.state is not None and final.outbox == ()
        said = [entry[1] for entry in log_entries(final.state["frame"]["log"]) if entry[0] == INPUT]
        # every update was played exactly once (a turn is never lost, duplicated or interleaved)...
        assert sorted(said) == sorted(f"{name}{n}" for name in "ab" for n in range(1, turns + 1))
        # ... each process's updates in the order it sent them
        for name in "ab":
            assert [s for s in said if s.startswith(name)] == [f"{name}{n}" for n in range(1, turns + 1)]
        # replies are numbered in commit order: reply n answers the n-th update played
        replies = {seq: text for bot in delivered for seq, text in bot}
        assert replies == {seq: text for seq, text in enumerate(said, 1)}
        for name, bot in zip("ab", delivered):
            # a process delivers in order and never the same reply twice; it may deliver a reply
            # of the other process that was still in the outbox (at least once, never lost)
            seqs = [seq for seq, _ in bot]
            assert seqs == sorted(set(seqs))
            # so each of its own replies goes out after those of its earlier turns
            assert [text for _, text in bot if text.startswith(name)] == [f"{name}{n}" for n in range(1, turns + 1)]

    @pytest.mark.parametrize("then", ["redelivered", "next-update"])
    async def test_a_process_killed_between_commit_and_delivery_loses_no_reply(
        self, store: MongoStore, mongo_uri: str, then: str
    ) -> None:
        await Engine(echo, store).handle(Incoming(RACE_KEY, "start", text="start"))
        bot = spawn(BOT, mongo_uri, "fragile", "u0=before", "u1=die")
        assert bot.stdin is not None
        bot.stdin.write("\n")
        bot.stdin.flush()
        code, out, _ = finish(bot)
        assert code == -signal.SIGKILL
        assert out.splitlines() == ["ready", json.dumps([1, "before"])]
        crashed = await store.load(RACE_KEY)
        assert crashed is not None and [item["message"]["text"] for item in crashed.outbox] == ["die"]

        # The platform redelivers the update that got no answer, or the user sends the next one:
        # another process sends the committed reply first, and plays no turn twice.
        update = "u1=die" if then == "redelivered" else "u2=after"
        [(delivered, _)] = await asyncio.to_thread(run_bots, mongo_uri, [update])
        after = await store.load(RACE_KEY)
        assert after is not None and after.state is not None and after.outbox == ()
        said = [entry[1] for entry in log_entries(after.state["frame"]["log"]) if entry[0] == INPUT]
        if then == "redelivered":
            assert (said, delivered) == (["before", "die"], [(2, "die")])
        else:
            assert (said, delivered) == (["before", "die", "after"], [(2, "die"), (3, "after")])


# --- the server goes away ---------------------------------------------------------------------------

before_commit: list[Any] = []
"""Things to do inside the next turn, after its load and before its commit."""


@dialog()
def side_effect() -> None:
    while before_commit:
        before_commit.pop()()


@dialog(version="1")
def noted() -> Any:
    while True:
        said = yield get_client_response()
        yield side_effect()
        yield send_message(said)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MongoServer]:
    """A server of this test's own that it may stop and restart; its data is kept on disk."""
    server = start_mongo_server(storage_path=tmp_path / "data", log_dir=tmp_path)
    yield server
    server.stop()


class TestServerOutage:
    async def test_a_stopped_server_is_a_store_error_in_bounded_time_then_the_store_recovers(
        self, own_server: MongoServer
    ) -> None:
        before_commit.clear()
        store = open_store(own_server.uri_for("outage", timeoutMS="2000", serverSelectionTimeoutMS="1000"))
        engine, inbox = Engine(noted, store), Inbox()
        outage = "MongoDB store outage.sessions: (no answer within 2 s|server unreachable)"
        try:
            await engine.handle(Incoming(KEY, "u0", text="start"), inbox)
            await engine.handle(Incoming(KEY, "u1", text="one"), inbox)

            # the server dies after the turn loaded the session, before its commit
            before_commit.append(own_server.stop)
            with pytest.raises(StoreError, match=outage):
                await asyncio.wait_for(engine.handle(Incoming(KEY, "u2", text="two"), inbox), HANG_GUARD)
            # while it is down every operation fails the same way, none hangs
            with pytest.raises(StoreError, match=outage):
                await asyncio.wait_for(engine.handle(Incoming(KEY, "u2", text="two"), inbox), HANG_GUARD)
            with pytest.raises(StoreError, match=outage):
                await asyncio.wait_for(store.list_sessions(), HANG_GUARD)

            own_server.restart()
            # the platform redelivers the update: the same store object works again by itself
            await asyncio.wait_for(engine.handle(Incoming(KEY, "u2", text="two"), inbox), HANG_GUARD)
            assert inbox.texts == ["one", "two"]
            session = await store.load(KEY)
            assert session is not None and session.state is not None and session.outbox == ()
            # nothing was half-written: the failed turn left no trace, the redelivered one counts once
            said = [entry[1] for entry in log_entries(session.state["frame"]["log"]) if entry[0] == INPUT]
            assert said == ["one", "two"] and session.seen == ("u0", "u1", "u2")
        finally:
            await store.close()


# --- the command line ---------------------------------------------------------------------------------


def convoflow(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("CONVOFLOW_STORE", "MONGODB_URI")}
    environment["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "convoflow.adapters.host.cli", *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, env=environment, timeout=HANG_GUARD,
    )


class TestCommandLine:
    def test_an_unreachable_server_is_a_clear_error(self) -> None:
        url = f"mongodb://user:secret@127.0.0.1:{free_port()}/bots?serverSelectionTimeoutMS=300&timeoutMS=1000"
        result = convoflow("sessions", "--store", url, "list")
        assert result.returncode == 2
        assert result.stderr.startswith("convoflow: error: MongoDB store bots.sessions: ")
        assert "Traceback" not in result.stderr and "secret" not in result.stderr
